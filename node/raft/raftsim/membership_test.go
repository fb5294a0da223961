package raftsim

import (
	"errors"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/node/raft"
)

// confChange proposes cc on the current leader until some leader applies
// it; it returns the membership after the change.
func (h *harness) confChange(cc raft.ConfChange) raft.ConfState {
	h.t.Helper()
	deadline := h.Now() + 40*h.ElectionTimeout()
	for h.Now() < deadline {
		lead := h.WaitLeader(4 * h.ElectionTimeout())
		var res *ConfChangeResult
		if lead != 0 {
			err := h.ProposeConfChange(lead, cc, func(r ConfChangeResult) { res = &r })
			if err == nil {
				h.RunUntil(func() bool { return res != nil }, 4*h.ElectionTimeout())
				h.ok()
				if res != nil && res.Err == nil {
					return res.ConfState
				}
			}
		}
		h.ticks(h.Config().ElectionTicks / 2)
	}
	h.fatalf("conf change %v %d never applied", cc.Type, cc.NodeID)
	return raft.ConfState{}
}

func TestLeaderTransfer(t *testing.T) {
	h := newHarness(t, Config{Nodes: 5})
	lead := h.checkOneLeader()
	h.one(cmd("0"), 5, true)
	for i, target := range append(others(h.IDs(), lead), lead) {
		term := h.Term(lead)
		h.transfer(lead, target)
		if !h.RunUntil(func() bool { return h.Leader() == target }, h.ElectionTimeout()) {
			h.fatalf("transfer %d -> %d did not happen within an election timeout", lead, target)
		}
		if h.Term(target) <= term {
			h.fatalf("new leader %d in term %d, not above %d", target, h.Term(target), term)
		}
		lead = target
		h.one(cmd("after-%d", i), 5, true)
	}
	// Transfer to oneself is a no-op.
	term := h.Term(lead)
	h.transfer(lead, lead)
	h.ticks(2 * h.Config().ElectionTicks)
	if h.Leader() != lead || h.Term(lead) != term {
		h.fatalf("transfer to self moved leadership")
	}
}

func TestLeaderTransferToLaggingFollower(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	lead := h.checkOneLeader()
	f := ring(lead, 1, 3)
	h.Isolate(f)
	var idx uint64
	for i := range 30 {
		idx = h.one(cmd("lag%d", i), 2, true)
	}
	h.Reconnect(f)
	lead = h.checkOneLeader()
	if lead == f {
		h.fatalf("lagging node %d won an election", f)
	}
	term := h.Term(lead)
	h.transfer(lead, f)
	// While the transfer is in progress the leader takes no proposals.
	if err := h.Propose(lead, cmd("during"), nil); !errors.Is(err, raft.ErrProposalDropped) && h.Leader() == lead {
		h.fatalf("leader accepted a proposal during a transfer: err=%v", err)
	}
	if !h.RunUntil(func() bool { return h.Leader() == f }, 2*h.ElectionTimeout()) {
		h.fatalf("lagging follower %d did not become leader", f)
	}
	if h.Term(f) <= term {
		h.fatalf("term did not advance: %d", h.Term(f))
	}
	// It was caught up first: it holds everything committed (the checker
	// verified leader completeness) and serves writes.
	h.waitApplied(idx, h.ElectionTimeout(), f)
	h.one(cmd("after"), 3, true)
}

func TestLeaderTransferToDeadNode(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	lead := h.checkOneLeader()
	h.one(cmd("a"), 3, true)
	dead := ring(lead, 1, 3)
	h.Crash(dead)
	term := h.Term(lead)
	h.transfer(lead, dead)
	if err := h.Propose(lead, cmd("during"), nil); !errors.Is(err, raft.ErrProposalDropped) {
		h.fatalf("leader accepted a proposal while transferring: %v", err)
	}
	// The transfer is abandoned after an election timeout; the leader
	// stays and takes proposals again.
	ok := h.RunUntil(func() bool {
		return h.Node(lead).BasicStatus().LeadTransferee == raft.None
	}, 2*h.ElectionTimeout())
	if !ok {
		h.fatalf("transfer to dead node %d never abandoned", dead)
	}
	if h.Leader() != lead || h.Term(lead) != term {
		h.fatalf("leadership moved: leader %d term %d", h.Leader(), h.Term(h.Leader()))
	}
	h.one(cmd("b"), 2, false)
	h.restart(dead)
	h.one(cmd("c"), 3, true)
}

func TestLearnerAddCatchUpPromoteRemove(t *testing.T) {
	h := newHarness(t, snapCfg(3))
	for i := range 40 {
		h.one(cmd("pre%d", i), 3, true)
	}
	// Add a learner: it catches up by snapshot.
	const learner = 4
	cs := h.confChange(raft.ConfChange{Type: raft.ConfChangeAddLearner, NodeID: learner})
	if !slices.Contains(cs.Learners, learner) || slices.Contains(cs.Voters, learner) {
		h.fatalf("after add-learner: %v", cs)
	}
	if err := h.AddNode(learner); err != nil {
		h.fatalf("%v", err)
	}
	idx := h.one(cmd("with-learner"), 3, true)
	h.waitApplied(idx, 4*h.ElectionTimeout(), learner)
	if s, _ := h.Storage(learner).Snapshot(); s.Meta.Index <= 1 {
		h.fatalf("learner caught up without a snapshot (snapshot %d)", s.Meta.Index)
	}
	// A learner never campaigns, even cut off.
	term := h.Term(learner)
	h.Isolate(learner)
	h.ticks(10 * h.Config().ElectionTicks)
	if h.Term(learner) != term || h.Node(learner).BasicStatus().RaftState != raft.StateFollower {
		h.fatalf("isolated learner moved to term %d / %v", h.Term(learner), h.Node(learner).BasicStatus().RaftState)
	}
	h.Reconnect(learner)
	// Promote: now its ack is needed for a quorum when one old voter is down.
	cs = h.confChange(raft.ConfChange{Type: raft.ConfChangeAddVoter, NodeID: learner})
	if !slices.Contains(cs.Voters, learner) || len(cs.Voters) != 4 {
		h.fatalf("after promotion: %v", cs)
	}
	lead := h.checkOneLeader()
	down := others(h.IDs(), lead, learner)[0]
	h.Crash(down)
	idx = h.one(cmd("needs-4"), 3, true)
	h.waitApplied(idx, h.ElectionTimeout(), learner)
	h.restart(down)
	// Remove it again.
	cs = h.confChange(raft.ConfChange{Type: raft.ConfChangeRemoveNode, NodeID: learner})
	if slices.Contains(cs.Voters, learner) || slices.Contains(cs.Learners, learner) {
		h.fatalf("after removal: %v", cs)
	}
	h.Remove(learner)
	idx = h.one(cmd("after-remove"), 3, true)
	h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
}

func TestRemoveLeader(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	h.one(cmd("a"), 3, true)
	lead := h.checkOneLeader()
	var res *ConfChangeResult
	if err := h.ProposeConfChange(lead, raft.ConfChange{Type: raft.ConfChangeRemoveNode, NodeID: lead},
		func(r ConfChangeResult) { res = &r }); err != nil {
		h.fatalf("leader refused to propose its own removal: %v", err)
	}
	rest := others(h.IDs(), lead)
	if !h.RunUntil(func() bool {
		for _, id := range rest {
			if slices.Contains(h.ConfState(id).Voters, lead) {
				return false
			}
		}
		return true
	}, 4*h.ElectionTimeout()) {
		h.fatalf("removal of leader %d not applied by %v", lead, rest)
	}
	// A new leader among the remaining two; the old one never leads again.
	if !h.RunUntil(func() bool { l := h.Leader(); return l != 0 && l != lead }, 4*h.ElectionTimeout()) {
		h.fatalf("no new leader after removing %d", lead)
	}
	h.one(cmd("b"), 2, true)
	if h.RunUntil(func() bool {
		return h.Node(lead).BasicStatus().RaftState == raft.StateLeader && h.Term(lead) == h.MaxTerm()
	}, 10*h.ElectionTimeout()) {
		h.fatalf("removed node %d leads again", lead)
	}
	_ = res
	h.Remove(lead)
	h.one(cmd("c"), 2, true)
}

func TestConfChangeRacingPartition(t *testing.T) {
	h := newHarness(t, Config{Nodes: 5})
	next := uint64(10)
	for iter := range 6 {
		h.one(cmd("r%d", iter), len(h.Members()), true)
		lead := h.checkOneLeader()
		members := h.Members()
		var cc raft.ConfChange
		if len(members) > 3 && iter%2 == 0 {
			cc = raft.ConfChange{Type: raft.ConfChangeRemoveNode, NodeID: others(members, lead)[h.Rand().IntN(len(members)-1)]}
		} else {
			next++
			cc = raft.ConfChange{Type: raft.ConfChangeAddLearner, NodeID: next}
		}
		_ = h.ProposeConfChange(lead, cc, nil)
		// Cut the leader off with one partner while the change is in flight.
		h.RunFor(Time(h.Rand().Int64N(4)))
		rest := others(h.IDs(), lead)
		h.Partition([]uint64{lead, rest[0]}, rest[1:])
		h.ticks(3 * h.Config().ElectionTicks)
		// The majority side moves on and may change membership itself.
		if l := h.Leader(); l != 0 && l != lead {
			next++
			_ = h.ProposeConfChange(l, raft.ConfChange{Type: raft.ConfChangeAddLearner, NodeID: next}, nil)
		}
		h.ticks(3 * h.Config().ElectionTicks)
		h.Heal()
		if err := h.CheckLiveness(40 * h.ElectionTimeout()); err != nil {
			h.fatalf("%v", err)
		}
		// Removed nodes leave the simulation; every member agrees.
		for _, id := range h.IDs() {
			if !slices.Contains(h.Members(), id) && h.Applied(id) > 0 {
				cs := h.ConfState(h.Leader())
				if !slices.Contains(cs.Voters, id) && !slices.Contains(cs.Learners, id) {
					h.Remove(id)
				}
			}
		}
		lcs := h.ConfState(h.Leader())
		for _, id := range h.Members() {
			if h.Applied(id) == h.Applied(h.Leader()) && !slices.Equal(h.ConfState(id).Voters, lcs.Voters) {
				h.fatalf("node %d has voters %v, leader %v", id, h.ConfState(id).Voters, lcs.Voters)
			}
		}
	}
}

func TestReadIndexPartitionedOldLeaderNeverStale(t *testing.T) {
	h := newHarness(t, Config{Nodes: 5})
	h.one(cmd("x"), 5, true)
	old := h.checkOneLeader()
	partner := ring(old, 1, 5)
	h.Partition([]uint64{old, partner}, others(h.IDs(), old, partner))
	// A read on the old leader right away: it cannot confirm leadership.
	var oldRead *ReadResult
	if err := h.ReadIndex(old, func(r ReadResult) { oldRead = &r }); err != nil {
		h.fatalf("%v", err)
	}
	// The majority elects a new leader and commits a write.
	var lead uint64
	h.RunUntil(func() bool { lead = h.Leader(); return lead != 0 && lead != old && lead != partner }, 4*h.ElectionTimeout())
	y := h.one(cmd("y"), 3, true)
	// More reads on the old side, as clients would retry there.
	for range 3 {
		_ = h.ReadIndex(old, func(r ReadResult) { oldRead = &r })
		_ = h.ReadIndex(partner, func(r ReadResult) { oldRead = &r })
		h.ticks(h.Config().ElectionTicks)
	}
	if oldRead != nil && oldRead.Err == nil {
		h.fatalf("partitioned old leader answered a read at index %d (write y is at %d)", oldRead.Index, y)
	}
	// The new leader answers reads that see y.
	lead = h.checkOneLeader()
	var got *ReadResult
	_ = h.ReadIndex(lead, func(r ReadResult) { got = &r })
	h.RunUntil(func() bool { return got != nil }, 2*h.ElectionTimeout())
	if got == nil || got.Err != nil || got.Index < y {
		h.fatalf("read on the new leader: %+v, want index >= %d", got, y)
	}
	// After healing, a read through the old leader (now a follower) sees y.
	h.Heal()
	got = nil
	h.ticks(2 * h.Config().ElectionTicks)
	_ = h.ReadIndex(old, func(r ReadResult) { got = &r })
	h.RunUntil(func() bool { return got != nil }, 4*h.ElectionTimeout())
	if got == nil || got.Err != nil || got.Index < y {
		h.fatalf("read on the healed old leader: %+v, want index >= %d", got, y)
	}
	if h.Applied(old) < y {
		h.fatalf("read answered before applying %d (applied %d)", y, h.Applied(old))
	}
}
