package raftsim

import (
	"bytes"
	"testing"

	"github.com/raftkv/raftkv/node/raft"
)

// TestLeaderCrashAfterEarlySend: a leader sends a proposal's entry to its
// followers while writing it (raft.Ready.SplitMessages), then crashes
// before the write is durable. The followers hold an entry the leader has
// lost; nobody counted it committed. The cluster must stay safe (the
// checker runs throughout) and live, and the restarted leader must
// converge on whatever the new leader decides.
func TestLeaderCrashAfterEarlySend(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	h.one(cmd("warm-up"), 3, true)
	seen := 0
	for attempt := 0; attempt < 40 && seen < 3; attempt++ {
		lead := h.checkOneLeader()
		// Every follower replicates (not probing) so the MsgApp goes at once.
		h.one(cmd("sync %d", attempt), 3, true)
		h.CrashAt(lead, CrashBeforePersist)
		val := cmd("early %d", attempt)
		if _, err := h.proposeOn(lead, val); err != nil {
			h.fatalf("propose on %d: %v", lead, err)
		}
		h.ok()
		if h.IsUp(lead) {
			h.fatalf("leader %d did not crash in the proposal's Ready", lead)
		}
		leadLast, _ := h.Storage(lead).LastIndex()
		h.ticks(2) // deliver what left
		for _, f := range others(h.IDs(), lead) {
			if last, _ := h.Storage(f).LastIndex(); last > leadLast {
				seen++
				break
			}
		}
		h.restart(lead)
		idx := h.one(cmd("after %d", attempt), 3, true)
		h.waitApplied(idx, 10*h.ElectionTimeout(), h.IDs()...)
		// Whether the early entry survived or not, all agree on it.
		for i := uint64(1); i <= idx; i++ {
			if d, _, ok := h.CommittedData(i); ok && bytes.Equal(d, val) {
				t.Logf("attempt %d: early entry survived at %d", attempt, i)
			}
		}
	}
	if seen < 3 {
		h.fatalf("only %d crashes left an entry on a follower that the leader lost", seen)
	}
	if err := h.CheckLiveness(100 * h.ElectionTimeout()); err != nil {
		h.fatalf("%v", err)
	}
}

// TestFollowerAckWaitsForItsWrite: a follower acknowledges an entry only
// once it is durable. Here the follower that got the entry dies in the
// Ready that writes it and the other follower never got it: had the ack
// left early, the leader would count it, commit the entry, and a new
// leader elected by the two followers would lack it (leader completeness
// and the committed record catch that).
func TestFollowerAckWaitsForItsWrite(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	h.one(cmd("warm-up"), 3, true)
	lead := h.checkOneLeader()
	fs := others(h.IDs(), lead)
	f1, f2 := fs[0], fs[1]
	val := cmd("acked early?")
	armed := false
	h.tapDeliver = func(m raft.Message) {
		if m.To == f1 && m.Type == raft.MsgApp && !armed {
			for _, e := range m.Entries {
				if _, p := unwrap(e.Data); e.Type == raft.EntryNormal && bytes.Equal(p, val) {
					armed = true
					h.CrashAt(f1, CrashAfterEarlySend)
				}
			}
		}
	}
	h.Block(lead, f2)
	o, err := h.proposeOn(lead, val)
	if err != nil {
		h.fatalf("propose: %v", err)
	}
	if !h.RunUntil(func() bool { return !h.IsUp(f1) }, 10*h.Config().TickInterval) {
		h.fatalf("follower %d never got the entry", f1)
	}
	h.ticks(5) // whatever f1 sent arrives
	if o.done && o.r.Err == nil {
		h.fatalf("entry committed at %d with only the leader's copy durable", o.r.Index)
	}
	h.Crash(lead)
	h.Heal()
	h.restart(f1)
	h.one(cmd("after"), 2, true)
	h.restart(lead)
	idx := h.one(cmd("all"), 3, true)
	h.waitApplied(idx, 10*h.ElectionTimeout(), h.IDs()...)
}

// TestSingleVoterCommitWaitsForItsWrite: a single voter commits an entry
// in the Ready that appends it. The MsgApp telling its learner must wait
// for the write: sent early, the learner would record the entry as
// committed, and the voter, crashing before its fsync, would restart
// without it and commit something else at that index.
func TestSingleVoterCommitWaitsForItsWrite(t *testing.T) {
	h := newHarness(t, Config{Nodes: 1})
	const learner = 2
	h.confChange(raft.ConfChange{Type: raft.ConfChangeAddLearner, NodeID: learner})
	if err := h.AddNode(learner); err != nil {
		h.fatalf("%v", err)
	}
	idx := h.one(cmd("with-learner"), 1, true)
	h.waitApplied(idx, 10*h.ElectionTimeout(), learner)
	h.one(cmd("replicating"), 2, true)
	h.CrashAt(1, CrashAfterEarlySend)
	val := cmd("committed early?")
	if _, err := h.proposeOn(1, val); err != nil {
		h.fatalf("propose: %v", err)
	}
	if h.IsUp(1) {
		h.fatalf("voter did not crash in the proposal's Ready")
	}
	h.ticks(5)
	h.restart(1)
	idx = h.one(cmd("after"), 2, true)
	h.waitApplied(idx, 10*h.ElectionTimeout(), learner)
}
