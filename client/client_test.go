package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/internal/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeNode is one node of fakeCluster.
type fakeNode struct {
	leader string // what it answers as LeaderAddr when not leader
	down   bool   // calls block until ctx ends (no reply)
	// dropReplies drops this many replies after applying the request.
	dropReplies int
}

// fakeCluster is a Transport that simulates nodes by address, with a
// shared store and an exactly-once session table keyed by (ClientID, Seq).
type fakeCluster struct {
	mu       sync.Mutex
	nodes    map[string]*fakeNode
	leader   string
	whoLeads *proto.WhoLeadsResponse // entrance answer (entrance address "entrance")
	peers    []proto.Peer
	data     map[string][]byte
	rev      int64
	applied  map[[2]uint64]proto.ClientResponse // session table
	applies  int                                // writes applied (not deduplicated)
	seen     []proto.ClientRequest              // every client request received, in order
	inflight map[uint64]bool                    // ClientIDs with a request being served
	overlap  bool                               // two requests of one ClientID were in flight together
	ids      map[uint64]string                  // node ID -> address, for AdminTransferLeader
	// Sessions, as kvstore keeps them: a ClientID is known from its first
	// write (Seq 1) until it expires; expireOnDrop expires a client's
	// session right after a write whose reply is dropped.
	known        map[uint64]bool
	expireOnDrop bool
	admin        []string // every admin request: "addr {op ...}"
}

func newFakeCluster(leader string, addrs ...string) *fakeCluster {
	fc := &fakeCluster{nodes: map[string]*fakeNode{}, leader: leader, data: map[string][]byte{},
		applied: map[[2]uint64]proto.ClientResponse{}, inflight: map[uint64]bool{}, known: map[uint64]bool{}}
	for _, a := range addrs {
		fc.nodes[a] = &fakeNode{leader: leader}
	}
	return fc
}

func (fc *fakeCluster) Close() error { return nil }

func (fc *fakeCluster) Call(ctx context.Context, addr string, payload []byte) ([]byte, error) {
	kind, body, err := proto.Split(payload)
	if err != nil {
		return nil, err
	}
	fc.mu.Lock()
	if addr == "entrance" {
		defer fc.mu.Unlock()
		switch kind {
		case proto.KindWhoLeads:
			if fc.whoLeads == nil {
				break
			}
			return proto.MustEncode(kind, fc.whoLeads)[1:], nil
		case proto.KindListPeers:
			return proto.MustEncode(kind, &proto.ListPeersResponse{Peers: fc.peers})[1:], nil
		}
		return nil, fmt.Errorf("fake: entrance: unexpected kind %d", kind)
	}
	n, ok := fc.nodes[addr]
	if !ok || n.down {
		fc.mu.Unlock()
		<-ctx.Done()
		return nil, fmt.Errorf("fake: %s: %w", addr, ctx.Err())
	}
	if kind == proto.KindAdmin {
		defer fc.mu.Unlock()
		var req proto.AdminRequest
		if err := proto.Decode(body, &req); err != nil {
			return nil, err
		}
		fc.admin = append(fc.admin, addr+" "+fmt.Sprint(req))
		var resp proto.AdminResponse
		switch req.Op {
		case proto.AdminTransferLeader:
			if addr != fc.leader {
				resp = proto.AdminResponse{Code: proto.CodeNotLeader, LeaderAddr: fc.leader}
			} else if to, ok := fc.ids[req.NodeID]; ok {
				fc.leader = to
			} else {
				resp = proto.AdminResponse{Code: proto.CodeInvalid, Message: "not a voter"}
			}
		case proto.AdminStop:
			n.down = true
		default:
			role := "follower"
			if addr == fc.leader {
				role = "leader"
			}
			resp.Status = &proto.NodeStatus{Name: "n-" + addr, Role: role, Term: 2}
		}
		return proto.MustEncode(kind, &resp)[1:], nil
	}
	var req proto.ClientRequest
	if err := proto.Decode(body, &req); err != nil {
		fc.mu.Unlock()
		return nil, err
	}
	fc.seen = append(fc.seen, req)
	if req.ClientID != 0 {
		if fc.inflight[req.ClientID] {
			fc.overlap = true
		}
		fc.inflight[req.ClientID] = true
	}
	resp := fc.serveLocked(addr, n, &req)
	drop := false
	if n.dropReplies > 0 && isWrite(req.Op) && resp.Code == proto.CodeOK {
		n.dropReplies--
		drop = true
		if fc.expireOnDrop {
			fc.expireLocked(req.ClientID)
		}
	}
	fc.mu.Unlock()
	// Yield so that concurrent requests of one session would overlap.
	time.Sleep(time.Millisecond)
	fc.mu.Lock()
	delete(fc.inflight, req.ClientID)
	fc.mu.Unlock()
	if drop {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return proto.MustEncode(proto.KindClient, resp)[1:], nil
}

func (fc *fakeCluster) serveLocked(addr string, n *fakeNode, req *proto.ClientRequest) proto.ClientResponse {
	if addr != fc.leader && !req.Serializable {
		return proto.ClientResponse{Code: proto.CodeNotLeader, LeaderAddr: n.leader}
	}
	if isWrite(req.Op) {
		if prev, ok := fc.applied[[2]uint64{req.ClientID, req.Seq}]; ok {
			return prev
		}
		if !fc.known[req.ClientID] && req.Seq != 1 {
			return proto.ClientResponse{Code: proto.CodeSessionExpired, Message: "session expired"}
		}
		fc.known[req.ClientID] = true
	}
	var resp proto.ClientResponse
	switch req.Op {
	case proto.OpPut:
		fc.rev++
		fc.data[string(req.Key)] = req.Value
		resp = proto.ClientResponse{Revision: fc.rev}
	case proto.OpGet:
		v, ok := fc.data[string(req.Key)]
		if !ok {
			return proto.ClientResponse{Code: proto.CodeNotFound, Revision: fc.rev}
		}
		return proto.ClientResponse{Revision: fc.rev, KVs: []proto.KeyValue{{Key: req.Key, Value: v}}}
	case proto.OpCAS:
		if string(fc.data[string(req.Key)]) != string(req.CompareValue) {
			resp = proto.ClientResponse{Code: proto.CodeCompareFailed, Revision: fc.rev}
		} else {
			fc.rev++
			fc.data[string(req.Key)] = req.Value
			resp = proto.ClientResponse{Revision: fc.rev, Succeeded: true}
		}
	case proto.OpDelete:
		if _, ok := fc.data[string(req.Key)]; ok {
			fc.rev++
			delete(fc.data, string(req.Key))
			resp = proto.ClientResponse{Revision: fc.rev, Deleted: 1}
		} else {
			resp = proto.ClientResponse{Revision: fc.rev}
		}
	default:
		return proto.ClientResponse{Code: proto.CodeRefused, Message: "not allowed"}
	}
	fc.applies++
	fc.applied[[2]uint64{req.ClientID, req.Seq}] = resp
	return resp
}

// expireLocked drops a client's session, as the cluster does after its TTL.
func (fc *fakeCluster) expireLocked(id uint64) {
	delete(fc.known, id)
	for k := range fc.applied {
		if k[0] == id {
			delete(fc.applied, k)
		}
	}
}

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = 20 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	c, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no address", Config{}},
		{"empty endpoint", Config{Endpoints: []string{""}}},
		{"negative timeout", Config{Endpoints: []string{"a:1"}, Timeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Transport = newFakeCluster("")
			if _, err := New(t.Context(), tt.cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestRedirectToLeader(t *testing.T) {
	fc := newFakeCluster("n3", "n1", "n2", "n3")
	c := newTestClient(t, Config{Endpoints: []string{"n1", "n2", "n3"}, Transport: fc})
	res, err := c.Put(t.Context(), "k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != 1 || c.Leader() != "n3" {
		t.Fatalf("revision %d leader %q, want 1 n3", res.Revision, c.Leader())
	}
	got, err := c.Get(t.Context(), "k", GetOptions{})
	if err != nil || string(got.KVs[0].Value) != "v" {
		t.Fatalf("get: %v %v", got, err)
	}
}

func TestEntranceDiscoveryAndDownLeader(t *testing.T) {
	fc := newFakeCluster("n2", "n1", "n2", "n3")
	fc.whoLeads = &proto.WhoLeadsResponse{LeaderAddr: "n2", Addrs: []string{"n1", "n2", "n3"}}
	c := newTestClient(t, Config{Entrance: "entrance", Transport: fc})
	if _, err := c.Put(t.Context(), "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != "n2" {
		t.Fatalf("leader %q, want n2", c.Leader())
	}
	// n2 dies, n1 wins; the entrance still names n2 for a while: the
	// client must rotate through the nodes it learned and follow n3's
	// redirect.
	fc.mu.Lock()
	fc.nodes["n2"].down = true
	fc.leader = "n1"
	fc.nodes["n3"].leader = "n1"
	fc.mu.Unlock()
	if _, err := c.Put(t.Context(), "b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != "n1" {
		t.Fatalf("leader %q, want n1", c.Leader())
	}
}

func TestRetryKeepsSession(t *testing.T) {
	fc := newFakeCluster("n1", "n1")
	fc.nodes["n1"].dropReplies = 2
	c := newTestClient(t, Config{Endpoints: []string{"n1"}, Transport: fc})
	if _, err := c.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(t.Context(), "k", []byte("w")); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.applies != 2 {
		t.Fatalf("applied %d writes, want 2 (a retry was applied twice)", fc.applies)
	}
	if len(fc.seen) != 4 {
		t.Fatalf("%d requests, want 4 (3 attempts of the first put, 1 of the second)", len(fc.seen))
	}
	first := fc.seen[0]
	for _, r := range fc.seen[:3] {
		if r.ClientID != first.ClientID || r.Seq != first.Seq || first.ClientID == 0 || first.Seq == 0 {
			t.Fatalf("retry sent (%x, %d), first attempt (%x, %d)", r.ClientID, r.Seq, first.ClientID, first.Seq)
		}
	}
	if second := fc.seen[3]; second.ClientID != first.ClientID || second.Seq != first.Seq+1 {
		t.Fatalf("next write (%x, %d), want (%x, %d)", second.ClientID, second.Seq, first.ClientID, first.Seq+1)
	}
}

// A pooled session the cluster expired: the write's only attempt is
// refused (not applied), so it starts over under a new ClientID, and the
// dead one is never used again.
func TestExpiredSessionStartsOver(t *testing.T) {
	fc := newFakeCluster("n1", "n1")
	c := newTestClient(t, Config{Endpoints: []string{"n1"}, Transport: fc})
	if _, err := c.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	old := fc.seen[0].ClientID
	fc.expireLocked(old)
	fc.mu.Unlock()
	for _, v := range []string{"w", "x"} {
		if _, err := c.Put(t.Context(), "k", []byte(v)); err != nil {
			t.Fatalf("put after the session expired: %v", err)
		}
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.applies != 3 || string(fc.data["k"]) != "x" {
		t.Fatalf("applied %d writes, k=%q; want 3 and x", fc.applies, fc.data["k"])
	}
	var got []string
	for _, r := range fc.seen {
		got = append(got, fmt.Sprintf("old=%v/%d", r.ClientID == old, r.Seq))
	}
	if want := []string{"old=true/1", "old=true/2", "old=false/1", "old=false/2"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
}

// A session that expired while the client retried a write whose first
// copy was applied: the retry is refused, and the client must not present
// that as "not applied", nor retry it under a new ClientID (a double apply).
func TestExpiredDuringRetryIsOutcomeUnknown(t *testing.T) {
	fc := newFakeCluster("n1", "n1")
	c := newTestClient(t, Config{Endpoints: []string{"n1"}, Transport: fc})
	if _, err := c.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	fc.nodes["n1"].dropReplies = 1
	fc.expireOnDrop = true
	fc.mu.Unlock()
	_, err := c.Put(t.Context(), "k", []byte("w"))
	if se, ok := errors.AsType[*ServerError](err); !errors.Is(err, ErrOutcomeUnknown) || !ok || se.Code != proto.CodeSessionExpired {
		t.Fatalf("put: %v, want ErrOutcomeUnknown with the server's session-expired answer", err)
	}
	if _, err := c.Put(t.Context(), "k2", []byte("v2")); err != nil {
		t.Fatalf("next put: %v", err)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.applies != 3 || string(fc.data["k"]) != "w" {
		t.Fatalf("applied %d writes (k=%q), want 3 (the second put exactly once)", fc.applies, fc.data["k"])
	}
	s := fc.seen
	if len(s) != 4 || s[1].ClientID != s[0].ClientID || s[1].Seq != 2 || s[2].Seq != 2 || s[3].ClientID == s[0].ClientID || s[3].Seq != 1 {
		t.Fatalf("requests %+v: want put 1, 2 copies of put 2, then put 3 under a new ClientID", s)
	}
}

func TestWriteTimeoutIsOutcomeUnknown(t *testing.T) {
	fc := newFakeCluster("n1", "n1")
	fc.nodes["n1"].down = true
	c := newTestClient(t, Config{Endpoints: []string{"n1"}, Transport: fc, Timeout: 100 * time.Millisecond})
	_, err := c.Put(t.Context(), "k", []byte("v"))
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("put to a dead node: %v, want ErrOutcomeUnknown and ErrTimeout", err)
	}
	_, err = c.Get(t.Context(), "k", GetOptions{})
	if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("get from a dead node: %v, want ErrTimeout only", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = c.Put(ctx, "k", []byte("v"))
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("put with a cancelled context: %v, want context.Canceled and nothing sent", err)
	}
}

func TestNoLeader(t *testing.T) {
	fc := newFakeCluster("", "n1", "n2")
	c := newTestClient(t, Config{Endpoints: []string{"n1", "n2"}, Transport: fc, Timeout: 100 * time.Millisecond})
	_, err := c.Get(t.Context(), "k", GetOptions{})
	if !errors.Is(err, ErrNoLeader) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("get without a leader: %v, want ErrNoLeader and ErrTimeout", err)
	}
}

func TestTypedErrors(t *testing.T) {
	fc := newFakeCluster("n1", "n1")
	c := newTestClient(t, Config{Endpoints: []string{"n1"}, Transport: fc})
	ctx := t.Context()
	if _, err := c.Get(ctx, "missing", GetOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	if _, err := c.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CAS(ctx, "k", Compare{Target: CompareValue, Value: []byte("nope")}, []byte("v2"), false); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("cas with a wrong value: %v, want ErrCompareFailed", err)
	}
	if _, err := c.CAS(ctx, "k", Compare{Target: CompareValue, Value: []byte("v1")}, []byte("v2"), false); err != nil {
		t.Fatalf("cas with the right value: %v", err)
	}
	if err := c.Compact(ctx, 1); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("refused compact: %v, want ErrUnauthorized", err)
	}
	var se *ServerError
	if err := c.Compact(ctx, 1); !errors.As(err, &se) || se.Message != "not allowed" {
		t.Fatalf("refused compact: %v, want a ServerError with the message", err)
	}
	res, err := c.Delete(ctx, "k")
	if err != nil || res.Deleted != 1 {
		t.Fatalf("delete: %v %v", res, err)
	}
	if _, err := c.Get(ctx, "k", GetOptions{Serializable: true}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v, want ErrNotFound", err)
	}
}

func TestConcurrentWritesUseSeparateSessions(t *testing.T) {
	fc := newFakeCluster("n1", "n1")
	c := newTestClient(t, Config{Endpoints: []string{"n1"}, Transport: fc})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 10 {
				if _, err := c.Put(t.Context(), fmt.Sprintf("k%d", i), fmt.Appendf(nil, "%d", j)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.overlap {
		t.Fatal("two writes of one session were in flight at once")
	}
	last := map[uint64]uint64{}
	for _, r := range fc.seen {
		if r.Seq != last[r.ClientID]+1 {
			t.Fatalf("session %x: seq %d after %d", r.ClientID, r.Seq, last[r.ClientID])
		}
		last[r.ClientID] = r.Seq
	}
	if fc.applies != 160 {
		t.Fatalf("%d writes applied, want 160", fc.applies)
	}
}

func TestListPeers(t *testing.T) {
	fc := newFakeCluster("n2", "a1", "a2")
	fc.peers = []proto.Peer{{Name: "n2", Role: "leader"}, {Name: "n1", Role: "follower"}}
	c := newTestClient(t, Config{Entrance: "entrance", Transport: fc})
	peers, err := c.ListPeers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if names := []string{peers[0].Name, peers[1].Name}; !slices.Equal(names, []string{"n1", "n2"}) {
		t.Fatalf("peers %v, want sorted by name", names)
	}

	fc.leader = "a2"
	fc.nodes["a1"].down = true
	c2 := newTestClient(t, Config{Endpoints: []string{"a1", "a2"}, Transport: fc})
	peers, err = c2.ListPeers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []proto.Peer{
		{Name: "a1", Addr: "a1", Role: "unknown", Liveness: "down"},
		{Name: "n-a2", Addr: "a2", Role: "leader", Liveness: "alive", Term: 2},
	}
	if !slices.Equal(peers, want) {
		t.Fatalf("peers from endpoints:\n got %+v\nwant %+v", peers, want)
	}
}

func TestClosed(t *testing.T) {
	c := newTestClient(t, Config{Endpoints: []string{"n1"}, Transport: newFakeCluster("n1", "n1")})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Put(t.Context(), "k", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v, want ErrClosed", err)
	}
}

func FuzzDecodeReply(f *testing.F) {
	f.Add(proto.MustEncode(proto.KindClient, &proto.ClientResponse{Code: proto.CodeNotLeader, LeaderAddr: "127.0.0.1:1"})[1:])
	f.Add(proto.MustEncode(proto.KindClient, &proto.ClientResponse{KVs: []proto.KeyValue{{Key: []byte("k"), Value: []byte("v")}}}))
	f.Add(proto.MustEncode(proto.KindWhoLeads, &proto.WhoLeadsResponse{Addrs: []string{"a", "b"}})[1:])
	f.Add([]byte{})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r proto.ClientResponse
		_ = decodeReply(b, &r)
		var w proto.WhoLeadsResponse
		_ = decodeReply(b, &w)
		var p proto.ListPeersResponse
		_ = decodeReply(b, &p)
	})
}

func TestEntranceDownFallsBackToEndpoints(t *testing.T) {
	fc := newFakeCluster("n2", "n1", "n2")
	// No whoLeads answer: the fake entrance errors like an unreachable one.
	c := newTestClient(t, Config{Entrance: "entrance", Endpoints: []string{"n1", "n2"}, Transport: fc})
	if _, err := c.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("put with the entrance down: %v", err)
	}
	if c.Leader() != "n2" {
		t.Fatalf("leader %q, want n2 (found through n1's redirect)", c.Leader())
	}
}

func TestStaleRedirectToDeadLeader(t *testing.T) {
	// n1 is dead; n2 still names it as leader; n3 leads. The client must
	// not loop between n2 and n1.
	fc := newFakeCluster("n3", "n1", "n2", "n3")
	fc.nodes["n1"].down = true
	fc.nodes["n2"].leader = "n1"
	c := newTestClient(t, Config{Endpoints: []string{"n1", "n2", "n3"}, Transport: fc})
	if _, err := c.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != "n3" {
		t.Fatalf("leader %q, want n3", c.Leader())
	}
}

// garbageTransport answers every call with bytes that do not decode.
type garbageTransport struct{ calls int }

func (g *garbageTransport) Call(context.Context, string, []byte) ([]byte, error) {
	g.calls++
	return []byte{0xc1}, nil
}
func (g *garbageTransport) Close() error { return nil }

func TestMalformedRepliesBackOff(t *testing.T) {
	g := &garbageTransport{}
	c := newTestClient(t, Config{Endpoints: []string{"n1"}, Transport: g, Timeout: 50 * time.Millisecond})
	_, err := c.Get(t.Context(), "k", GetOptions{})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, proto.ErrMalformed) {
		t.Fatalf("get with garbage replies: %v, want ErrTimeout wrapping proto.ErrMalformed", err)
	}
	// Backoff is 1-5 ms in tests: a 50 ms operation makes at most ~100
	// attempts, not a busy loop.
	if g.calls > 100 {
		t.Fatalf("%d attempts in 50ms: no backoff after malformed replies", g.calls)
	}
}

// TestTransferLeaderFollowsRedirect: asked of a follower, the transfer is
// redirected to the leader, which moves leadership; an unknown target is
// an ErrInvalid answer, not retried.
func TestTransferLeaderFollowsRedirect(t *testing.T) {
	fc := newFakeCluster("n1", "n1", "n2", "n3")
	fc.ids = map[uint64]string{1: "n1", 2: "n2", 3: "n3"}
	c := newTestClient(t, Config{Endpoints: []string{"n1", "n2", "n3"}, Transport: fc})
	if err := c.TransferLeader(t.Context(), "n2", 3); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	leader, admin := fc.leader, slices.Clone(fc.admin)
	fc.mu.Unlock()
	if leader != "n3" || len(admin) != 2 || !strings.HasPrefix(admin[0], "n2 ") || !strings.HasPrefix(admin[1], "n1 ") {
		t.Fatalf("leader %s, admin requests %q; want n3 after n2 -> redirect -> n1", leader, admin)
	}
	if err := c.TransferLeader(t.Context(), "n3", 9); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not a voter") {
		t.Fatalf("transfer to an unknown node: %v, want ErrInvalid with the node's message", err)
	}
	if err := c.TransferLeader(t.Context(), "n3", 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("transfer to node 0: %v, want ErrInvalid", err)
	}
}

// TestStopNode: one AdminStop carrying the ID and KeepMembership; a node
// that does not answer is ErrUnavailable and ErrTimeout once ctx ends.
func TestStopNode(t *testing.T) {
	fc := newFakeCluster("n1", "n1", "n2")
	c := newTestClient(t, Config{Endpoints: []string{"n1", "n2"}, Transport: fc})
	if err := c.StopNode(t.Context(), "n2", 7, true); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	admin := slices.Clone(fc.admin)
	fc.mu.Unlock()
	want := []string{"n2 " + fmt.Sprint(proto.AdminRequest{Op: proto.AdminStop, NodeID: 7, KeepMembership: true})}
	if !slices.Equal(admin, want) {
		t.Fatalf("admin requests %q, want %q", admin, want)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := c.StopNode(ctx, "n2", 7, false); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("stop of a node that does not answer: %v, want ErrUnavailable and ErrTimeout", err)
	}
}

// TestRequestOverMessageLimitNotSent: a request larger than any node can
// receive is refused before anything is sent: ErrInvalid at once, never
// retried until the deadline and never "outcome unknown".
func TestRequestOverMessageLimitNotSent(t *testing.T) {
	g := &garbageTransport{}
	c := newTestClient(t, Config{Endpoints: []string{"n1"}, Transport: g})
	_, err := c.Put(t.Context(), "big", bytes.Repeat([]byte{1}, proto.MaxMessageBytes))
	if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrOutcomeUnknown) || !strings.Contains(err.Error(), "largest message") {
		t.Fatalf("put of a value over the message limit: %v, want ErrInvalid naming the limit", err)
	}
	if g.calls != 0 {
		t.Fatalf("%d calls sent for a request no node can receive", g.calls)
	}
}

// Without a quorum the live node answers that it knows no leader and the
// dead ones do not answer: the error says the former and names the
// latter, whichever attempt came last (it ended with a dead node's
// "unreachable" half of the time).
func TestNoQuorumSaysNoLeader(t *testing.T) {
	fc := newFakeCluster("", "n1", "n2", "n3")
	fc.nodes["n2"].down, fc.nodes["n3"].down = true, true
	c := newTestClient(t, Config{Endpoints: []string{"n1", "n2", "n3"}, Transport: fc, Timeout: 200 * time.Millisecond})
	for _, op := range []string{"get", "put"} {
		var err error
		if op == "get" {
			_, err = c.Get(t.Context(), "k", GetOptions{})
		} else {
			_, err = c.Put(t.Context(), "k", []byte("v"))
		}
		msg := fmt.Sprint(err)
		if !errors.Is(err, ErrNoLeader) || !errors.Is(err, ErrTimeout) ||
			!strings.Contains(msg, "no leader: n1 knows none (no quorum of voters") ||
			!strings.Contains(msg, "n2, n3 did not answer") && !strings.Contains(msg, "n3, n2 did not answer") {
			t.Fatalf("%s without a quorum: %v; want that n1 knows no leader and n2, n3 did not answer", op, err)
		}
	}
}
