package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/kvstore"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTick keeps elections quick: a 200ms election timeout.
const testTick = 20 * time.Millisecond

// tnode is one runtime of a test cluster.
type tnode struct {
	n    *Node
	id   uint64
	name string
	dir  string
	addr netip.AddrPort
	done chan error
	// joined: a member, expected to know the leader.
	joined bool
}

type cluster struct {
	t     testing.TB
	nodes []*tnode
	// wrap, when set, wraps every socket (faultnet).
	wrap func(net.PacketConn) net.PacketConn
	// tune adjusts each node's Config.
	tune func(*Config)
}

func testLogger(t testing.TB, name string) *slog.Logger {
	if os.Getenv("RAFTKV_NODE_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("test_node", name)
}

// newCluster starts size runtimes on loopback: node 1 bootstraps, the
// others are added as learners and promoted through Admin on the leader
// (what the entrance does).
func newCluster(t testing.TB, size int, opts ...func(*cluster)) *cluster {
	t.Helper()
	c := &cluster{t: t}
	for _, o := range opts {
		o(c)
	}
	for i := range size {
		tn := &tnode{id: uint64(i + 1), name: fmt.Sprintf("n%d", i+1), dir: t.TempDir(), joined: i == 0}
		c.nodes = append(c.nodes, tn)
		c.start(tn, netip.AddrPort{})
	}
	t.Cleanup(c.stopAll)
	lead := c.waitLeader()
	if lead.id != 1 {
		t.Fatalf("leader %d, want the bootstrap node 1", lead.id)
	}
	for _, tn := range c.nodes[1:] {
		c.admin(proto.AdminRequest{Op: proto.AdminAddLearner, NodeID: tn.id, Name: tn.name, Addr: tn.addr.String()})
		c.admin(proto.AdminRequest{Op: proto.AdminPromote, NodeID: tn.id})
		tn.joined = true
	}
	return c
}

// start runs tn on a fresh socket (on addr, when valid: a restart).
func (c *cluster) start(tn *tnode, addr netip.AddrPort) {
	c.t.Helper()
	listen := "127.0.0.1:0"
	if addr.IsValid() {
		listen = addr.String()
	}
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		c.t.Fatal(err)
	}
	tn.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	if c.wrap != nil {
		pc = c.wrap(pc)
	}
	cfg := Config{
		Name: tn.name, DataDir: tn.dir, PacketConn: pc, AdvertiseAddr: tn.addr,
		NodeID: tn.id, ClusterID: 7, Bootstrap: tn.id == 1,
		TickInterval: testTick, NoSync: true, Seed: tn.id,
		RequestTimeout: 3 * time.Second,
		Logger:         testLogger(c.t, tn.name),
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	tn.n, tn.done = n, make(chan error, 1)
	go func() { tn.done <- n.Run(context.Background()) }()
	select {
	case <-n.Ready():
	case err := <-tn.done:
		tn.n = nil // Run has returned: nothing for stop to wait for
		c.t.Fatalf("%s: Run returned before serving: %v", tn.name, err)
	}
}

// stop closes tn and waits for Run.
func (c *cluster) stop(tn *tnode) {
	c.t.Helper()
	if tn.n == nil {
		return
	}
	tn.n.Close()
	if err := <-tn.done; err != nil {
		c.t.Errorf("%s: Run: %v", tn.name, err)
	}
	tn.n = nil
}

// waitStopped waits for tn's Run to return nil.
func waitStopped(t *testing.T, tn *tnode) {
	t.Helper()
	select {
	case err := <-tn.done:
		if err != nil {
			t.Fatalf("%s: Run: %v", tn.name, err)
		}
		tn.n, tn.joined = nil, false
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not stop", tn.name)
	}
}

func (c *cluster) stopAll() {
	for _, tn := range c.nodes {
		c.stop(tn)
	}
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLeader waits until exactly one running node leads and every
// running node knows it.
func (c *cluster) waitLeader() *tnode {
	c.t.Helper()
	var lead *tnode
	waitFor(c.t, "a leader", func() bool {
		lead = nil
		for _, tn := range c.nodes {
			if tn.n != nil && tn.n.IsLeader() {
				if lead != nil {
					return false
				}
				lead = tn
			}
		}
		if lead == nil {
			return false
		}
		for _, tn := range c.nodes {
			if tn.n != nil && tn.joined && tn.n.Leader() != lead.id {
				return false
			}
		}
		return true
	})
	return lead
}

// admin sends req to the leader, retrying while a change is pending or the
// leader moves.
func (c *cluster) admin(req proto.AdminRequest) {
	c.t.Helper()
	var last proto.AdminResponse
	waitFor(c.t, fmt.Sprintf("admin op %d on %016x (last: %v %s)", req.Op, req.NodeID, last.Code, last.Message), func() bool {
		last = c.waitLeader().n.Admin(context.Background(), req)
		return last.Code == proto.CodeOK
	})
}

func (c *cluster) node(id uint64) *tnode { return c.nodes[id-1] }

// do sends req to the leader, following redirects and retrying while
// unavailable (same ClientID/Seq: a retry).
func (c *cluster) do(req proto.ClientRequest) proto.ClientResponse {
	c.t.Helper()
	var resp proto.ClientResponse
	waitFor(c.t, fmt.Sprintf("request %v %q", req.Op, req.Key), func() bool {
		resp = c.waitLeader().n.Do(context.Background(), req)
		return resp.Code != proto.CodeUnavailable && resp.Code != proto.CodeNotLeader
	})
	return resp
}

func put(cl, seq uint64, k, v string) proto.ClientRequest {
	return proto.ClientRequest{ClientID: cl, Seq: seq, Op: proto.OpPut, Key: []byte(k), Value: []byte(v)}
}

func get(k string) proto.ClientRequest {
	return proto.ClientRequest{Op: proto.OpGet, Key: []byte(k)}
}

func mustOK(t testing.TB, resp proto.ClientResponse) proto.ClientResponse {
	t.Helper()
	if resp.Code != proto.CodeOK {
		t.Fatalf("response %v: %s", resp.Code, resp.Message)
	}
	return resp
}

// localValue reads k with a serializable read on tn.
func localValue(tn *tnode, k string) (string, proto.Code) {
	resp := tn.n.Do(context.Background(), proto.ClientRequest{Op: proto.OpGet, Key: []byte(k), Serializable: true})
	if resp.Code != proto.CodeOK || len(resp.KVs) != 1 {
		return "", resp.Code
	}
	return string(resp.KVs[0].Value), resp.Code
}

func TestClusterPutGetRedirectAndSerializableRead(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.waitLeader()
	resp := mustOK(t, c.do(put(11, 1, "alpha", "1")))
	if resp.Revision < 1 || !resp.Succeeded {
		t.Fatalf("put answered %+v", resp)
	}
	got := mustOK(t, c.do(get("alpha")))
	if len(got.KVs) != 1 || string(got.KVs[0].Value) != "1" || got.KVs[0].Version != 1 {
		t.Fatalf("get alpha = %+v", got.KVs)
	}
	if r := c.do(get("missing")); r.Code != proto.CodeNotFound {
		t.Fatalf("get missing: %v, want not found", r.Code)
	}

	var follower *tnode
	for _, tn := range c.nodes {
		if tn != lead {
			follower = tn
			break
		}
	}
	// A follower redirects writes and linearizable reads to the leader.
	for _, req := range []proto.ClientRequest{put(11, 2, "beta", "2"), get("alpha")} {
		r := follower.n.Do(context.Background(), req)
		if r.Code != proto.CodeNotLeader || r.LeaderID != lead.id || r.LeaderAddr != lead.addr.String() {
			t.Fatalf("follower answered %v leader %d at %q, want not leader %d at %s", r.Code, r.LeaderID, r.LeaderAddr, lead.id, lead.addr)
		}
	}
	// Serializable reads are served by the follower itself once it applied.
	waitFor(t, "follower applies alpha", func() bool {
		v, code := localValue(follower, "alpha")
		return code == proto.CodeOK && v == "1"
	})

	// The same over the network: a client endpoint calling the follower
	// and then the leader it names.
	cl := newClientEndpoint(t)
	r := cl.call(t, follower.addr, put(12, 1, "gamma", "3"))
	if r.Code != proto.CodeNotLeader {
		t.Fatalf("follower over rudp: %v", r.Code)
	}
	r = cl.call(t, netip.MustParseAddrPort(r.LeaderAddr), put(12, 1, "gamma", "3"))
	mustOK(t, r)
	r = cl.call(t, lead.addr, get("gamma"))
	if mustOK(t, r); string(r.KVs[0].Value) != "3" {
		t.Fatalf("gamma = %q", r.KVs[0].Value)
	}
	st, err := follower.n.Status(context.Background())
	if err != nil || st.Role != "follower" || st.Leader != fmt.Sprintf("%016x", lead.id) {
		t.Fatalf("follower status %+v, %v", st, err)
	}
}

func TestExactlyOnceUnderRetry(t *testing.T) {
	c := newCluster(t, 3)
	first := mustOK(t, c.do(put(21, 1, "k", "v1")))
	// The same (ClientID, Seq) again: a retry after a lost answer.
	again := mustOK(t, c.do(put(21, 1, "k", "v1")))
	if again.Revision != first.Revision {
		t.Fatalf("retry answered revision %d, first %d: applied twice", again.Revision, first.Revision)
	}
	kv := mustOK(t, c.do(get("k"))).KVs[0]
	if kv.Version != 1 || kv.ModRevision != first.Revision {
		t.Fatalf("after a retried put: version %d mod %d, want 1 and %d", kv.Version, kv.ModRevision, first.Revision)
	}
	// A retried delete does not delete a newer value either.
	mustOK(t, c.do(proto.ClientRequest{ClientID: 21, Seq: 2, Op: proto.OpDelete, Key: []byte("k")}))
	mustOK(t, c.do(put(22, 1, "k", "v2")))
	if r := c.do(proto.ClientRequest{ClientID: 21, Seq: 2, Op: proto.OpDelete, Key: []byte("k")}); r.Code != proto.CodeOK || r.Deleted != 1 {
		t.Fatalf("retried delete answered %v deleted %d", r.Code, r.Deleted)
	}
	if v := mustOK(t, c.do(get("k"))); string(v.KVs[0].Value) != "v2" {
		t.Fatalf("k = %q after a retried delete, want v2", v.KVs[0].Value)
	}
	// An older Seq after a newer one is refused, not applied.
	if r := c.do(put(21, 1, "k", "old")); r.Code != proto.CodeInvalid {
		t.Fatalf("stale seq (1 after 2) answered %v, want invalid", r.Code)
	}
	if v := mustOK(t, c.do(get("k"))); string(v.KVs[0].Value) != "v2" {
		t.Fatalf("k = %q after a stale request", v.KVs[0].Value)
	}
	// The session survives a leader change: the new leader deduplicates.
	old := c.waitLeader()
	c.stop(old)
	c.waitLeader()
	if r := mustOK(t, c.do(put(22, 1, "k", "v2"))); r.Revision != mustOK(t, c.do(get("k"))).KVs[0].ModRevision {
		t.Fatalf("retry on the new leader applied again: rev %d", r.Revision)
	}
	c.start(old, old.addr)
}

// A client's first write opens its session in the same log entry: one
// entry, one commit round, no registration. A write of an unknown client
// that is not its first is refused with CodeSessionExpired, not applied.
func TestFirstWriteIsOneEntry(t *testing.T) {
	c := newCluster(t, 1) // one voter: no election can add an entry meanwhile
	mustOK(t, c.do(put(41, 1, "warm", "up")))
	lead := c.waitLeader()
	// A write is answered before its batch commits in the store; a
	// linearizable read waits until the store applied (and committed)
	// everything committed before it, and adds no entry.
	mustOK(t, c.do(get("warm")))
	before := lead.n.kv.Applied()
	mustOK(t, lead.n.Do(context.Background(), put(42, 1, "k", "v")))
	mustOK(t, c.do(get("k")))
	if got := lead.n.kv.Applied() - before; got != 1 {
		t.Fatalf("a new client's first write took %d log entries, want 1", got)
	}
	st, err := lead.n.kv.Status()
	if err != nil || st.Sessions != 2 {
		t.Fatalf("kvstore has %d sessions (%v), want 2", st.Sessions, err)
	}
	r := lead.n.Do(context.Background(), put(43, 2, "k", "expired"))
	if r.Code != proto.CodeSessionExpired {
		t.Fatalf("unknown client with seq 2: %v %s, want session expired", r.Code, r.Message)
	}
	if v := mustOK(t, c.do(get("k"))); string(v.KVs[0].Value) != "v" {
		t.Fatalf("k = %q after a refused write", v.KVs[0].Value)
	}
}

func TestCASAndRange(t *testing.T) {
	c := newCluster(t, 3)
	mustOK(t, c.do(put(31, 1, "p/a", "1")))
	mustOK(t, c.do(put(31, 2, "p/b", "2")))
	mustOK(t, c.do(put(31, 3, "q", "3")))
	r := mustOK(t, c.do(proto.ClientRequest{Op: proto.OpRange, Key: []byte("p/"), Prefix: true}))
	if len(r.KVs) != 2 || string(r.KVs[0].Key) != "p/a" || string(r.KVs[1].Key) != "p/b" {
		t.Fatalf("range p/ = %+v", r.KVs)
	}
	cas := proto.ClientRequest{ClientID: 31, Seq: 4, Op: proto.OpCAS, Key: []byte("q"), Value: []byte("4"),
		Compare: proto.CompareValue, CompareValue: []byte("nope")}
	// The failing CAS and two retries of it (same ClientID/Seq) all answer
	// "compare failed": a duplicate keeps its first answer.
	for attempt := range 3 {
		if r := c.do(cas); r.Code != proto.CodeCompareFailed || r.Succeeded {
			t.Fatalf("failing CAS, attempt %d, answered %v", attempt+1, r.Code)
		}
	}
	cas.Seq, cas.CompareValue = 5, []byte("3")
	if r := mustOK(t, c.do(cas)); !r.Succeeded {
		t.Fatal("CAS did not succeed")
	}
	if v := mustOK(t, c.do(get("q"))); string(v.KVs[0].Value) != "4" {
		t.Fatalf("q = %q", v.KVs[0].Value)
	}
	if r := mustOK(t, c.do(proto.ClientRequest{ClientID: 31, Seq: 6, Op: proto.OpDeletePrefix, Key: []byte("p/")})); r.Deleted != 2 {
		t.Fatalf("delete prefix deleted %d", r.Deleted)
	}
	if r := c.do(put(31, 7, "", "x")); r.Code != proto.CodeInvalid {
		t.Fatalf("empty key answered %v", r.Code)
	}
}

func TestRestartFromDataDirLosesNothing(t *testing.T) {
	c := newCluster(t, 3)
	for i := range 20 {
		mustOK(t, c.do(put(41, uint64(i+1), fmt.Sprintf("k%02d", i), fmt.Sprint(i))))
	}
	// Stop a follower, write more, and restart it from its data dir.
	lead := c.waitLeader()
	var f *tnode
	for _, tn := range c.nodes {
		if tn != lead {
			f = tn
			break
		}
	}
	c.stop(f)
	for i := 20; i < 40; i++ {
		mustOK(t, c.do(put(41, uint64(i+1), fmt.Sprintf("k%02d", i), fmt.Sprint(i))))
	}
	c.start(f, f.addr)
	if f.n.ID() != f.id {
		t.Fatalf("restarted node has ID %d, want %d", f.n.ID(), f.id)
	}
	waitFor(t, "restarted follower catches up", func() bool {
		v, code := localValue(f, "k39")
		return code == proto.CodeOK && v == "39"
	})
	for i := range 40 {
		if v, code := localValue(f, fmt.Sprintf("k%02d", i)); code != proto.CodeOK || v != fmt.Sprint(i) {
			t.Fatalf("k%02d on the restarted node = %q (%v)", i, v, code)
		}
	}
	// Restart the whole cluster: everything is still there.
	c.stopAll()
	for _, tn := range c.nodes {
		c.start(tn, tn.addr)
	}
	for i := range 40 {
		r := mustOK(t, c.do(get(fmt.Sprintf("k%02d", i))))
		if string(r.KVs[0].Value) != fmt.Sprint(i) {
			t.Fatalf("k%02d after a full restart = %q", i, r.KVs[0].Value)
		}
	}
}

func TestLeaderStopNewLeaderTakesOver(t *testing.T) {
	c := newCluster(t, 3)
	mustOK(t, c.do(put(51, 1, "before", "x")))
	old := c.waitLeader()
	c.stop(old)
	lead := c.waitLeader()
	if lead == old {
		t.Fatal("stopped node still leads")
	}
	mustOK(t, c.do(put(51, 2, "after", "y")))
	if v := mustOK(t, c.do(get("before"))); string(v.KVs[0].Value) != "x" {
		t.Fatalf("before = %q", v.KVs[0].Value)
	}
	// The old leader comes back as a follower and catches up.
	c.start(old, old.addr)
	waitFor(t, "old leader catches up", func() bool {
		v, code := localValue(old, "after")
		return code == proto.CodeOK && v == "y"
	})
}

func TestTransferLeaderAndRemove(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.waitLeader()
	to := c.node(3)
	if r := lead.n.Admin(context.Background(), proto.AdminRequest{Op: proto.AdminTransferLeader, NodeID: to.id}); r.Code != proto.CodeOK {
		t.Fatalf("transfer: %v %s", r.Code, r.Message)
	}
	if got := c.waitLeader(); got != to {
		t.Fatalf("leader %s after transfer, want %s", got.name, to.name)
	}
	// Idempotent membership ops answer OK without a change.
	for _, req := range []proto.AdminRequest{
		{Op: proto.AdminAddLearner, NodeID: 2, Name: "n2", Addr: c.node(2).addr.String()},
		{Op: proto.AdminPromote, NodeID: 2},
	} {
		if r := to.n.Admin(context.Background(), req); r.Code != proto.CodeOK {
			t.Fatalf("idempotent op %d: %v %s", req.Op, r.Code, r.Message)
		}
	}
	// Removing node 1 makes it stop by itself.
	victim := c.node(1)
	c.admin(proto.AdminRequest{Op: proto.AdminRemove, NodeID: victim.id})
	waitStopped(t, victim)
	mustOK(t, c.do(put(61, 1, "two-nodes", "ok")))
}

func TestStopNodeLeavesCluster(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.waitLeader()
	if r := lead.n.Admin(context.Background(), proto.AdminRequest{Op: proto.AdminStop}); r.Code != proto.CodeOK {
		t.Fatalf("stop: %v %s", r.Code, r.Message)
	}
	waitStopped(t, lead)
	nl := c.waitLeader()
	st, err := nl.n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var voters int
	waitFor(t, "two voters", func() bool {
		_ = nl.n.do(context.Background(), func() { voters = len(nl.n.rn.Status().Config.Voters) })
		return voters == 2
	})
	_ = st
	mustOK(t, c.do(put(71, 1, "after-stop", "ok")))
}

func TestSnapshotCatchUpOfNewMember(t *testing.T) {
	c := newCluster(t, 1, func(c *cluster) {
		c.tune = func(cfg *Config) { cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 20, 5 }
	})
	for i := range 60 {
		mustOK(t, c.do(put(81, uint64(i+1), fmt.Sprintf("s%02d", i), fmt.Sprint(i))))
	}
	lead := c.waitLeader()
	// Snapshots are written in the background: wait for one to be recorded.
	waitFor(t, "a snapshot after 60 writes with SnapshotEntries 20", func() bool { return lead.n.snapIndexForTest() > 0 })
	// A new node joins: the log was compacted, so it needs the snapshot.
	tn := &tnode{id: 2, name: "n2", dir: t.TempDir()}
	c.nodes = append(c.nodes, tn)
	c.start(tn, netip.AddrPort{})
	c.admin(proto.AdminRequest{Op: proto.AdminAddLearner, NodeID: 2, Name: "n2", Addr: tn.addr.String()})
	waitFor(t, "learner installs the snapshot and catches up", func() bool {
		v, code := localValue(tn, "s59")
		return code == proto.CodeOK && v == "59"
	})
	c.admin(proto.AdminRequest{Op: proto.AdminPromote, NodeID: 2})
	tn.joined = true
	// The members table came with the snapshot: the new node knows the
	// leader's name and address.
	var m Member
	_ = tn.n.do(context.Background(), func() { m = tn.n.repl.Members[1] })
	if m.Name != "n1" || m.Addr != c.node(1).addr.String() {
		t.Fatalf("new node's members table has %+v for node 1", m)
	}
	// The client session table came too: a retry is deduplicated there.
	c.stop(c.node(1))
	c.start(c.node(1), c.node(1).addr)
	r := mustOK(t, c.do(put(81, 60, "s59", "59")))
	if kv := mustOK(t, c.do(get("s59"))).KVs[0]; kv.Version != 1 || r.Revision != kv.ModRevision {
		t.Fatalf("retry after snapshot: version %d", kv.Version)
	}
}

func (n *Node) snapIndexForTest() uint64 {
	var i uint64
	_ = n.do(context.Background(), func() { i = n.snapIndex })
	return i
}

// clientEndpoint is a bare rudp client for network-level tests.
type clientEndpoint struct {
	// call fails the test on a transport error; try returns it (for
	// goroutines other than the test's).
	call func(t testing.TB, to netip.AddrPort, req proto.ClientRequest) proto.ClientResponse
	try  func(to netip.AddrPort, req proto.ClientRequest) (proto.ClientResponse, error)
}

// TestLearnerRestartsOnNewAddress: a learner never campaigns, so the
// leader learns its new address only from its announcement.
func TestLearnerRestartsOnNewAddress(t *testing.T) {
	c := newCluster(t, 2)
	tn := &tnode{id: 3, name: "n3", dir: t.TempDir()}
	c.nodes = append(c.nodes, tn)
	c.start(tn, netip.AddrPort{})
	c.admin(proto.AdminRequest{Op: proto.AdminAddLearner, NodeID: 3, Name: "n3", Addr: tn.addr.String()})
	mustOK(t, c.do(put(101, 1, "a", "1")))
	waitFor(t, "learner catches up", func() bool { v, code := localValue(tn, "a"); return code == proto.CodeOK && v == "1" })
	old := tn.addr
	c.stop(tn)
	mustOK(t, c.do(put(101, 2, "b", "2")))
	c.start(tn, netip.AddrPort{}) // a new port
	if tn.addr == old {
		t.Fatalf("restarted on the same address %s", old)
	}
	waitFor(t, "learner on a new address catches up", func() bool {
		v, code := localValue(tn, "b")
		return code == proto.CodeOK && v == "2"
	})
	if st, err := tn.n.Status(context.Background()); err != nil || st.Role != "learner" {
		t.Fatalf("status %+v %v, want role learner", st, err)
	}
}

// TestLeaderCloseHandsOver: a leader asked to stop (SIGTERM, Close) first
// transfers leadership, so it exits knowing its successor and the cluster
// needs no election timeout.
func TestLeaderCloseHandsOver(t *testing.T) {
	c := newCluster(t, 3)
	mustOK(t, c.do(put(121, 1, "k", "v")))
	old := c.waitLeader()
	n := old.n
	c.stop(old)
	next := n.Leader()
	if next == 0 || next == old.id {
		t.Fatalf("stopped leader exited knowing leader %016x, want a successor", next)
	}
	old.joined = false
	if got := c.waitLeader(); got.id != next {
		t.Fatalf("leader %d, the handover named %d", got.id, next)
	}
	mustOK(t, c.do(put(121, 2, "k", "w")))
}

// TestStateMachineRebuiltFromLogSnapshot: a node whose state machine file
// is behind the log's snapshot (a crash between saving a snapshot and
// installing it; here: the file is gone) reinstalls the snapshot from the
// log at start and re-applies the entries after it.
func TestStateMachineRebuiltFromLogSnapshot(t *testing.T) {
	c := newCluster(t, 1, func(c *cluster) {
		c.tune = func(cfg *Config) { cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 10, 2 }
	})
	for i := range 25 {
		mustOK(t, c.do(put(131, uint64(i+1), fmt.Sprintf("r%02d", i), fmt.Sprint(i))))
	}
	tn := c.node(1)
	waitFor(t, "a snapshot", func() bool { return tn.n.snapIndexForTest() > 0 })
	c.stop(tn)
	if err := os.Remove(filepath.Join(tn.dir, "kv.db")); err != nil {
		t.Fatal(err)
	}
	c.start(tn, tn.addr)
	for i := range 25 {
		kv := mustOK(t, c.do(get(fmt.Sprintf("r%02d", i)))).KVs[0]
		if string(kv.Value) != fmt.Sprint(i) || kv.Version != 1 {
			t.Fatalf("r%02d = %q version %d after the rebuild", i, kv.Value, kv.Version)
		}
	}
	// The session table came back too: a retry of the last write is a
	// duplicate, not a second version.
	mustOK(t, c.do(put(131, 25, "r24", "24")))
	if kv := mustOK(t, c.do(get("r24"))).KVs[0]; kv.Version != 1 {
		t.Fatalf("retry after the rebuild applied again: version %d", kv.Version)
	}
}

// TestRestartWithCommitBehindApplied: the log writes commit index updates
// lazily while the state machine fsyncs what it applied, so after a crash
// raft.db's commit index can be below kv.db's applied index. Every node
// must still restart and serve all acknowledged writes.
func TestRestartWithCommitBehindApplied(t *testing.T) {
	c := newCluster(t, 3)
	for i := range 10 {
		mustOK(t, c.do(put(43, uint64(i+1), fmt.Sprintf("k%d", i), fmt.Sprint(i))))
	}
	c.stopAll()
	for _, tn := range c.nodes {
		lg, err := kvstore.OpenLog(filepath.Join(tn.dir, "raft.db"), kvstore.LogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hs, _, err := lg.InitialState()
		if err == nil {
			hs.Commit = 1 // as if the updates since the bootstrap were lost
			err = lg.SetHardState(hs)
		}
		if err := errors.Join(err, lg.Close()); err != nil {
			t.Fatalf("%s: lowering the stored commit index: %v", tn.name, err)
		}
	}
	for _, tn := range c.nodes {
		c.start(tn, tn.addr)
	}
	for i := range 10 {
		r := mustOK(t, c.do(get(fmt.Sprintf("k%d", i))))
		if string(r.KVs[0].Value) != fmt.Sprint(i) {
			t.Fatalf("k%d after restarting with commit 1 = %q", i, r.KVs[0].Value)
		}
	}
	mustOK(t, c.do(put(43, 11, "after", "restart")))
}

// TestLargestRequestReplicates: a put at the store's limits (the largest
// key and value) reaches the leader over rudp, replicates and commits, and
// the cluster keeps serving; one byte more is refused with a clear error.
// (A Raft message that rudp cannot carry would stall replication for good.)
func TestLargestRequestReplicates(t *testing.T) {
	// The daemons' tick: with the tests' 20 ms one, the leader resends a
	// 1 MiB MsgApp every few ms of a -race run, faster than it moves. And
	// a 3 s election timeout: rudp sends a peer's messages in order, so
	// heartbeats wait behind the 1 MiB MsgApp, which under -race on a
	// loaded 2-core machine can take longer than the daemons' 1 s to go
	// out; the followers then campaign, again and again, and the put is
	// not answered in time (about 1 run in 30 there).
	c := newCluster(t, 3, func(c *cluster) {
		c.tune = func(cfg *Config) { cfg.TickInterval, cfg.ElectionTicks = 100*time.Millisecond, 30 }
	})
	ce := newClientEndpoint(t)
	key := strings.Repeat("k", kvstore.DefaultMaxKeyBytes)
	value := bytes.Repeat([]byte{0xa5}, kvstore.DefaultMaxValueBytes)
	req := proto.ClientRequest{ClientID: 44, Seq: 1, Op: proto.OpPut, Key: []byte(key), Value: value}
	var resp proto.ClientResponse
	waitFor(t, "the largest put is answered", func() bool {
		var err error
		resp, err = ce.try(c.waitLeader().addr, req)
		return err == nil && resp.Code != proto.CodeUnavailable && resp.Code != proto.CodeNotLeader
	})
	mustOK(t, resp)
	mustOK(t, c.do(put(44, 2, "after", "big")))
	for _, tn := range c.nodes {
		waitFor(t, tn.name+" applies the largest put and the next one", func() bool {
			v, code := localValue(tn, "after")
			return code == proto.CodeOK && v == "big"
		})
		r := tn.n.Do(context.Background(), proto.ClientRequest{Op: proto.OpGet, Key: []byte(key), Serializable: true})
		if r.Code != proto.CodeOK || len(r.KVs) != 1 || !bytes.Equal(r.KVs[0].Value, value) {
			t.Fatalf("%s: the largest value reads back as %v with %d KVs", tn.name, r.Code, len(r.KVs))
		}
	}
	over := proto.ClientRequest{ClientID: 44, Seq: 3, Op: proto.OpPut, Key: []byte("over"), Value: append(value, 0)}
	if r := c.do(over); r.Code != proto.CodeInvalid || !strings.Contains(r.Message, "too large") {
		t.Fatalf("a value one byte over the limit: %v %q, want invalid, too large", r.Code, r.Message)
	}
}

// A removed node started again on its data dir stops at once: Run returns
// nil without serving (it used to serve, a member of nothing, for good).
func TestRemovedNodeRestartedStops(t *testing.T) {
	c := newCluster(t, 3)
	victim := c.node(3)
	c.admin(proto.AdminRequest{Op: proto.AdminRemove, NodeID: victim.id})
	waitStopped(t, victim)
	pc, err := net.ListenPacket("udp", victim.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{
		Name: victim.name, DataDir: victim.dir, PacketConn: pc, AdvertiseAddr: victim.addr,
		NodeID: victim.id, ClusterID: 7, TickInterval: testTick, NoSync: true, Seed: victim.id,
		Logger: testLogger(t, victim.name),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("restarted removed node: Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		n.Close()
		<-done
		t.Fatal("a removed node restarted on its data dir kept running")
	}
	select {
	case <-n.Ready():
		t.Fatal("a removed node restarted on its data dir served")
	default:
	}
	mustOK(t, c.do(put(131, 1, "two-nodes", "ok")))
}
