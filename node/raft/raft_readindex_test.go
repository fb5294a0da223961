package raft

import (
	"testing"
)

func TestReadIndexLeader(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	_ = nw.propose(1, "a")
	var hbWithCtx int
	nw.hook = func(m *Message) bool {
		if m.Type == MsgHeartbeat && string(m.Context) == "r1" {
			hbWithCtx++
		}
		return true
	}
	nw.node(1).ReadIndex([]byte("r1"))
	nw.stabilize()
	rs := nw.nodes[1].readStates
	if len(rs) != 1 || string(rs[0].RequestCtx) != "r1" || rs[0].Index != nw.raft(1).raftLog.committed {
		t.Fatalf("read states %+v, want r1 at %d", rs, nw.raft(1).raftLog.committed)
	}
	if hbWithCtx != 2 {
		t.Fatalf("%d heartbeats carried the context, want 2", hbWithCtx)
	}
}

// TestReadIndexNeedsQuorum: without a quorum of heartbeat acks there is no
// answer.
func TestReadIndexNeedsQuorum(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.isolate(1)
	nw.node(1).ReadIndex([]byte("r1"))
	nw.stabilize()
	nw.tickOne(1, 3)
	if rs := nw.nodes[1].readStates; len(rs) != 0 {
		t.Fatalf("isolated leader answered a read: %+v", rs)
	}
}

// TestReadIndexFollowerForwarded: a follower's request goes to the leader
// and the answer comes back to the follower.
func TestReadIndexFollowerForwarded(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	_ = nw.propose(1, "a")
	nw.node(2).ReadIndex([]byte("f"))
	nw.stabilize()
	rs := nw.nodes[2].readStates
	if len(rs) != 1 || string(rs[0].RequestCtx) != "f" || rs[0].Index != nw.raft(1).raftLog.committed {
		t.Fatalf("follower read states %+v", rs)
	}
	if len(nw.nodes[1].readStates) != 0 {
		t.Fatal("leader kept the follower's read state")
	}
}

// TestReadIndexWaitsForTermCommit: a new leader answers only after it
// committed an entry of its term (so its commit index is current).
func TestReadIndexWaitsForTermCommit(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.ignore[MsgAppResp] = true // the no-op cannot commit
	nw.raft(1).becomeFollower(nw.raft(1).Term, None)
	nw.elect(2)
	if nw.raft(2).committedEntryInCurrentTerm() {
		t.Fatal("setup: no-op committed")
	}
	nw.node(2).ReadIndex([]byte("r"))
	nw.stabilize()
	if len(nw.nodes[2].readStates) != 0 {
		t.Fatal("answered before committing an entry of the term")
	}
	nw.recover()
	nw.tickAll(2)
	rs := nw.nodes[2].readStates
	if len(rs) != 1 || rs[0].Index < nw.raft(2).raftLog.lastIndex() {
		t.Fatalf("read states %+v after the term's first commit (last %d)", rs, nw.raft(2).raftLog.lastIndex())
	}
}

func TestReadIndexSingleVoter(t *testing.T) {
	nw := newNetwork(t, 1)
	nw.tickAll(20)
	nw.node(1).ReadIndex([]byte("x"))
	if rs := nw.nodes[1].n.r.readStates; len(rs) != 1 || rs[0].Index != nw.raft(1).raftLog.committed {
		t.Fatalf("single voter read states %+v (answered without a round)", rs)
	}
}

// TestReadIndexPartitionedOldLeaderNeverAnswers: a deposed leader in a
// minority partition must never answer, even while it still believes it
// leads; the majority side moves on.
func TestReadIndexPartitionedOldLeaderNeverAnswers(t *testing.T) {
	nw := newNetworkWithConfig(t, func(c *Config) { c.DisableCheckQuorum = true }, 1, 2, 3, 4, 5)
	nw.elect(1)
	_ = nw.propose(1, "a")
	// 1 and 2 in the minority; 3, 4, 5 elect 3 and write.
	for _, a := range []uint64{1, 2} {
		for _, b := range []uint64{3, 4, 5} {
			nw.cut(a, b)
		}
	}
	nw.elect(3)
	_ = nw.propose(3, "b")
	if nw.raft(1).state != StateLeader {
		t.Fatal("setup: old leader should still believe it leads (no CheckQuorum)")
	}
	nw.node(1).ReadIndex([]byte("stale"))
	nw.stabilize()
	nw.tickOne(1, 5)
	if rs := nw.nodes[1].readStates; len(rs) != 0 {
		t.Fatalf("old leader answered %+v", rs)
	}
	// A follower in the minority asking the old leader gets nothing either.
	nw.node(2).ReadIndex([]byte("stale2"))
	nw.stabilize()
	if rs := nw.nodes[2].readStates; len(rs) != 0 {
		t.Fatalf("minority follower got %+v", rs)
	}
	// After healing, the old leader steps down and never answers the old
	// requests.
	nw.recover()
	nw.tickAll(3)
	if rs := nw.nodes[1].readStates; len(rs) != 0 {
		t.Fatalf("old leader answered after healing: %+v", rs)
	}
	if nw.leaderID() != 3 {
		t.Fatalf("leader %d, want 3", nw.leaderID())
	}
}

// TestReadIndexBatched: a quorum ack of a later request answers every
// earlier pending request too.
func TestReadIndexBatched(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.ignore[MsgHeartbeatResp] = true
	for _, c := range []string{"a", "b", "c"} {
		nw.node(1).ReadIndex([]byte(c))
	}
	nw.stabilize()
	if len(nw.nodes[1].readStates) != 0 {
		t.Fatal("setup: answered without acks")
	}
	nw.recover()
	nw.tickOne(1, 1) // a heartbeat with the newest context
	rs := nw.nodes[1].readStates
	if len(rs) != 3 || string(rs[0].RequestCtx) != "a" || string(rs[2].RequestCtx) != "c" {
		t.Fatalf("read states %+v, want a, b, c in order", rs)
	}
}
