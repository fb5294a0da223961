package node

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/faultnet"
	"github.com/raftkv/raftkv/internal/proto"
)

func (c *cluster) voters(tn *tnode) int {
	var n int
	_ = tn.n.do(context.Background(), func() { n = len(tn.n.rn.Status().Config.Voters) })
	return n
}

// TestLeaderRefusesToRemoveItself: a leader that applied its own removal
// would stop before its followers learned that the change committed; with
// two voters the survivor would then wait forever for the removed node's
// vote. The leader refuses; stop-node (transfer first, then removal by the
// new leader) is the way out, and leaves the survivor leading alone.
func TestLeaderRefusesToRemoveItself(t *testing.T) {
	c := newCluster(t, 2)
	mustOK(t, c.do(put(81, 1, "k", "v")))
	lead := c.waitLeader()
	r := lead.n.Admin(context.Background(), proto.AdminRequest{Op: proto.AdminRemove, NodeID: lead.id})
	if r.Code != proto.CodeInvalid || !strings.Contains(r.Message, "transfer leadership first") {
		t.Fatalf("leader removing itself: %v %q, want invalid with a hint", r.Code, r.Message)
	}
	if got := c.voters(lead); got != 2 {
		t.Fatalf("%d voters after a refused removal, want 2", got)
	}
	if r := lead.n.Admin(context.Background(), proto.AdminRequest{Op: proto.AdminStop}); r.Code != proto.CodeOK {
		t.Fatalf("stop-node on the leader of two: %v %s", r.Code, r.Message)
	}
	waitStopped(t, lead)
	survivor := c.waitLeader()
	if got := c.voters(survivor); got != 1 {
		t.Fatalf("survivor has %d voters, want 1", got)
	}
	mustOK(t, c.do(put(81, 2, "k", "alone")))
}

// TestStopLeaderSkipsDeadVoter: a leader leaving the cluster hands over to
// a voter it hears from, never to a dead one with an equal or better
// match (the transfer would hold proposals for its whole timeout and then
// fail the stop).
func TestStopLeaderSkipsDeadVoter(t *testing.T) {
	// Four voters: after the leader leaves, two of the three left are a
	// quorum without the dead one.
	c := newCluster(t, 4)
	mustOK(t, c.do(put(82, 1, "k", "v")))
	lead := c.waitLeader()
	// Kill the voter the leader would pick while everyone is alive. The
	// core forgets who it heard from at every check-quorum round, so right
	// after one no voter looks active until its next heartbeat response:
	// look until one does (it read 0 about once in 60 runs).
	var pick uint64
	waitFor(t, "a handoff target with every voter alive", func() bool {
		_ = lead.n.do(context.Background(), func() { pick = handoffTarget(lead.n.rn.Status()) })
		return pick != 0
	})
	dead := c.node(pick)
	c.stop(dead)
	dead.joined = false
	waitFor(t, "the leader to notice the dead voter", func() bool {
		var active bool
		_ = lead.n.do(context.Background(), func() {
			active = lead.n.rn.Status().Progress[pick].RecentActive
		})
		return !active
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r := lead.n.Admin(ctx, proto.AdminRequest{Op: proto.AdminStop}); r.Code != proto.CodeOK {
		t.Fatalf("stop-node on the leader with a dead voter: %v %s", r.Code, r.Message)
	}
	waitStopped(t, lead)
	next := c.waitLeader()
	if next.id == pick {
		t.Fatalf("the dead voter %s leads", next.name)
	}
	mustOK(t, c.do(put(82, 2, "k", "w")))
}

// TestStopKeepMembershipLeaderHandsOver: stop-node --keep-membership on the
// leader hands leadership over before the process stops, as SIGTERM does,
// instead of leaving the cluster without a leader for an election timeout.
func TestStopKeepMembershipLeaderHandsOver(t *testing.T) {
	c := newCluster(t, 3)
	mustOK(t, c.do(put(83, 1, "k", "v")))
	old := c.waitLeader()
	n := old.n
	if r := n.Admin(context.Background(), proto.AdminRequest{Op: proto.AdminStop, KeepMembership: true}); r.Code != proto.CodeOK {
		t.Fatalf("stop --keep-membership on the leader: %v %s", r.Code, r.Message)
	}
	waitStopped(t, old)
	next := n.Leader()
	if next == 0 || next == old.id {
		t.Fatalf("stopped leader exited knowing leader %016x, want a successor", next)
	}
	if got := c.waitLeader(); got.id != next {
		t.Fatalf("leader %d, the handover named %d", got.id, next)
	}
	mustOK(t, c.do(put(83, 2, "k", "w")))
}

// TestRetryJoinsPendingProposal: a retry of a write that the leader has
// proposed and not yet applied waits for that entry instead of adding a
// second copy to the log.
func TestRetryJoinsPendingProposal(t *testing.T) {
	// The leader's slow log write holds its loop while the first copy is
	// being saved; the retry reaches the loop before the followers' acks
	// can commit the first copy.
	c := newCluster(t, 3, func(c *cluster) {
		c.tune = func(cfg *Config) {
			if cfg.NodeID == 1 {
				// Well below the election timeout (10 ticks of 20ms).
				cfg.slowSync = 80 * time.Millisecond
			}
		}
	})
	mustOK(t, c.do(put(84, 1, "warm", "up")))
	mustOK(t, c.do(get("warm")))
	lead := c.waitLeader()
	before := lead.n.kv.Applied()
	req := put(85, 1, "k", "v")
	first := make(chan proto.ClientResponse, 1)
	go func() { first <- lead.n.Do(context.Background(), req) }()
	waitFor(t, "the first copy to be proposed", func() bool {
		lead.n.stMu.Lock()
		defer lead.n.stMu.Unlock()
		return len(lead.n.waiters[waitKey{85, 1}]) > 0
	})
	second := mustOK(t, lead.n.Do(context.Background(), req))
	if r := mustOK(t, <-first); r.Revision != second.Revision {
		t.Fatalf("the retry answered revision %d, the first copy %d", second.Revision, r.Revision)
	}
	mustOK(t, c.do(get("k")))
	if got := lead.n.kv.Applied() - before; got != 1 {
		t.Fatalf("a write and its retry took %d log entries, want 1", got)
	}
}

// TestTransferLeaderUnderWriteLoad: a healthy voter behind a slower link
// (3 ms each way) under a steady write load is always a few entries behind
// the commit index; a transfer to it must still start (it once waited for
// match >= the current commit index, which never held).
func TestTransferLeaderUnderWriteLoad(t *testing.T) {
	fn := faultnet.New(12)
	t.Cleanup(func() { fn.Close() })
	c := newCluster(t, 3, func(c *cluster) {
		c.wrap = func(pc net.PacketConn) net.PacketConn { return fn.Wrap(pc) }
	})
	lead := c.waitLeader()
	var to *tnode
	for i := uint64(1); i <= 3; i++ {
		if c.node(i) != lead {
			to = c.node(i)
		}
	}
	fn.SetLink(lead.addr, to.addr, faultnet.Link{Delay: 3 * time.Millisecond})
	fn.SetLink(to.addr, lead.addr, faultnet.Link{Delay: 3 * time.Millisecond})
	var stop atomic.Bool
	var wg sync.WaitGroup
	var puts atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := uint64(1); !stop.Load(); i++ {
				lead.n.Do(context.Background(), put(uint64(500+w), i, fmt.Sprintf("w%d", w), "x"))
				puts.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	start := time.Now()
	r := lead.n.Admin(ctx, proto.AdminRequest{Op: proto.AdminTransferLeader, NodeID: to.id})
	el := time.Since(start)
	stop.Store(true)
	wg.Wait()
	t.Logf("transfer under load: %v %q after %v (%d puts)", r.Code, r.Message, el, puts.Load())
	if r.Code != proto.CodeOK {
		t.Fatalf("transfer to a healthy, slower voter under load failed: %v %s", r.Code, r.Message)
	}
}
