package node

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/faultnet"
	"github.com/raftkv/raftkv/internal/proto"
)

// TestFaultyNetwork runs a cluster whose sockets lose, duplicate, corrupt
// and reorder datagrams: rudp hides the faults, writes retried with the
// same session are applied once, and every replica ends with the same data.
func TestFaultyNetwork(t *testing.T) {
	fn := faultnet.New(0x5eed)
	t.Cleanup(func() { fn.Close() })
	fn.SetDefault(faultnet.Link{Drop: 0.1, Dup: 0.1, Corrupt: 0.01, Reorder: 0.2, ReorderDelay: 2 * time.Millisecond})
	c := newCluster(t, 3, func(c *cluster) {
		c.wrap = func(pc net.PacketConn) net.PacketConn { return fn.Wrap(pc) }
	})
	const writes = 60
	for i := range writes {
		// c.do retries with the same (ClientID, Seq) on timeouts and
		// redirects: each write is applied at most once.
		mustOK(t, c.do(put(91, uint64(i+1), fmt.Sprintf("f%02d", i), fmt.Sprint(i))))
	}
	for i := range writes {
		kv := mustOK(t, c.do(get(fmt.Sprintf("f%02d", i)))).KVs[0]
		if string(kv.Value) != fmt.Sprint(i) || kv.Version != 1 {
			t.Fatalf("f%02d = %q version %d", i, kv.Value, kv.Version)
		}
	}
	for _, tn := range c.nodes {
		waitFor(t, tn.name+" applies every write", func() bool {
			v, code := localValue(tn, fmt.Sprintf("f%02d", writes-1))
			return code == proto.CodeOK && v == fmt.Sprint(writes-1)
		})
	}
	// State-machine safety: every replica holds exactly the same state.
	waitFor(t, "replicas at the same applied index", func() bool {
		a := c.nodes[0].n.kv.Applied()
		for _, tn := range c.nodes[1:] {
			if tn.n.kv.Applied() != a {
				return false
			}
		}
		return true
	})
	fp0, err := c.nodes[0].n.kv.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range c.nodes[1:] {
		fp, err := tn.n.kv.Fingerprint()
		if err != nil {
			t.Fatal(err)
		}
		if fp != fp0 {
			t.Fatalf("%s's state differs from n1's at applied %d/%d", tn.name, fp.Applied, fp0.Applied)
		}
	}
	st := fn.Stats()
	if st.Dropped == 0 || st.Duplicated == 0 || st.Reordered == 0 {
		t.Fatalf("the network injected no faults: %+v", st)
	}
}

// TestIsolatedLeaderRetryIsExactlyOnce: a write reaches a leader that is
// then cut off; it steps down (CheckQuorum) and answers not-leader or
// unavailable; the client retries the same (ClientID, Seq) on the new
// leader; after the partition heals the write is there exactly once and
// the old leader caught up.
func TestIsolatedLeaderRetryIsExactlyOnce(t *testing.T) {
	fn := faultnet.New(7)
	t.Cleanup(func() { fn.Close() })
	c := newCluster(t, 3, func(c *cluster) {
		c.wrap = func(pc net.PacketConn) net.PacketConn { return fn.Wrap(pc) }
	})
	mustOK(t, c.do(put(111, 1, "x", "1")))
	old := c.waitLeader()
	fn.Isolate(old.addr)
	req := proto.ClientRequest{ClientID: 111, Seq: 2, Op: proto.OpPut, Key: []byte("x"), Value: []byte("2")}
	r := old.n.Do(context.Background(), req)
	if r.Code != proto.CodeNotLeader && r.Code != proto.CodeUnavailable {
		t.Fatalf("isolated leader answered %v %s", r.Code, r.Message)
	}
	// The majority elects a new leader; the retry goes there.
	old.joined = false
	var lead *tnode
	waitFor(t, "a new leader", func() bool {
		lead = c.waitLeader()
		return lead != old
	})
	mustOK(t, c.do(req))
	mustOK(t, c.do(req)) // and once more, for good measure
	fn.Heal()
	old.joined = true
	waitFor(t, "old leader catches up", func() bool {
		v, code := localValue(old, "x")
		return code == proto.CodeOK && v == "2"
	})
	kv := mustOK(t, c.do(get("x"))).KVs[0]
	if kv.Version != 2 {
		t.Fatalf("x has version %d after one put and one retried put, want 2", kv.Version)
	}
}

// TestTransferLeaderToALaggingTarget: leadership is moved to a voter that
// was cut off and missed writes, and that comes back only after longer
// than the core gives a transfer (one election timeout). The transfer
// still succeeds: it starts once the target caught up (a member promoted
// a moment ago, still installing its snapshot, is such a target).
func TestTransferLeaderToALaggingTarget(t *testing.T) {
	fn := faultnet.New(11)
	t.Cleanup(func() { fn.Close() })
	c := newCluster(t, 3, func(c *cluster) {
		c.wrap = func(pc net.PacketConn) net.PacketConn { return fn.Wrap(pc) }
	})
	lead, to := c.waitLeader(), c.node(3)
	fn.Isolate(to.addr)
	to.joined = false // it loses the leader while cut off
	for i := range 5 {
		mustOK(t, lead.n.Do(context.Background(), put(121, uint64(i+1), fmt.Sprintf("t%d", i), "x")))
	}
	t0 := lead.n.ticks.Load()
	answer := make(chan proto.AdminResponse, 1)
	go func() {
		answer <- lead.n.Admin(context.Background(), proto.AdminRequest{Op: proto.AdminTransferLeader, NodeID: to.id})
	}()
	// Longer than one election timeout of the leader's core.
	waitFor(t, "two election timeouts on the leader", func() bool {
		return lead.n.ticks.Load() >= t0+2*uint64(lead.n.cfg.ElectionTicks)+1
	})
	fn.Heal()
	to.joined = true
	if r := <-answer; r.Code != proto.CodeOK {
		t.Fatalf("transfer to a target that came back: %v %s", r.Code, r.Message)
	}
	if got := c.waitLeader(); got != to {
		t.Fatalf("leader %s after transfer, want %s", got.name, to.name)
	}
	if v, code := localValue(to, "t4"); code != proto.CodeOK || v != "x" {
		t.Fatalf("t4 on the new leader = %q %v", v, code)
	}
}
