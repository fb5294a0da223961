package raft

import (
	"errors"
	"slices"
	"testing"
)

func TestConfChangeMarshalRoundTrip(t *testing.T) {
	for _, cc := range []ConfChange{
		{},
		{Type: ConfChangeAddLearner, NodeID: 7, Context: []byte("n7 127.0.0.1:7707")},
		{Type: ConfChangeRemoveNode, NodeID: ^uint64(0)},
	} {
		var got ConfChange
		if err := got.Unmarshal(cc.Marshal()); err != nil {
			t.Fatal(err)
		}
		if got.Type != cc.Type || got.NodeID != cc.NodeID || string(got.Context) != string(cc.Context) {
			t.Fatalf("round trip %+v -> %+v", cc, got)
		}
	}
	var cc ConfChange
	if err := cc.Unmarshal([]byte{0xc6, 0xff, 0xff, 0xff, 0xff}); err == nil {
		t.Fatal("forged length decoded without error")
	}
}

// TestConfChangeAddLearnerThenPromote: a learner receives the log but does
// not vote; promoted, it counts toward the quorum.
func TestConfChangeAddLearnerThenPromote(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	_ = nw.propose(1, "a")
	nw.addNode(testConfig(t, 4, NewMemoryStorage()))
	if err := nw.node(1).ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 4}); err != nil {
		t.Fatal(err)
	}
	nw.stabilize()
	_ = nw.propose(1, "b")
	nw.tickAll(2)
	if got := nw.appliedData(4); !slices.Contains(got, "b") {
		t.Fatalf("learner applied %v", got)
	}
	r1 := nw.raft(1)
	if !r1.prs[4].IsLearner || len(r1.cs.Voters) != 3 {
		t.Fatalf("leader config %+v", r1.cs)
	}
	// The learner does not count: with 2 and 3 down nothing commits.
	nw.isolate(2)
	nw.isolate(3)
	nw.dropm[connem{1, 4}], nw.dropm[connem{4, 1}] = false, false
	_ = nw.propose(1, "c")
	if c := r1.raftLog.committed; c == r1.raftLog.lastIndex() {
		t.Fatal("entry committed with only the leader and a learner")
	}
	nw.recover()
	nw.stabilize()
	nw.tickAll(2)
	if err := nw.node(1).ProposeConfChange(ConfChange{Type: ConfChangeAddVoter, NodeID: 4}); err != nil {
		t.Fatal(err)
	}
	nw.stabilize()
	for _, id := range nw.ids() {
		if cs := nw.raft(id).cs; !slices.Equal(cs.Voters, []uint64{1, 2, 3, 4}) || len(cs.Learners) != 0 {
			t.Fatalf("node %d config %+v after promotion", id, cs)
		}
	}
	// Now 4 voters: quorum is 3, so 1, 4 and one more are needed.
	nw.isolate(3)
	nw.cut(1, 2)
	_ = nw.propose(1, "d")
	if slices.Contains(nw.appliedData(1), "d") {
		t.Fatal("committed with 2 of 4 voters")
	}
	nw.recover()
	nw.isolate(3)
	nw.tickAll(2)
	if !slices.Contains(nw.appliedData(1), "d") {
		t.Fatal("not committed with 3 of 4 voters")
	}
}

// TestConfChangeNotBeforeTermFirstCommit: a new leader refuses conf
// changes until it has applied an entry of its own term (its no-op).
func TestConfChangeNotBeforeTermFirstCommit(t *testing.T) {
	r := newTestRaft(t, 1, []uint64{1, 2, 3}, noPreVoteNoCQ)
	r.becomeCandidate()
	r.becomeLeader()
	n := &Node{r: r}
	err := n.ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 4})
	if !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("conf change before the no-op committed: %v, want ErrProposalDropped", err)
	}
	// Commit the no-op but do not apply it yet: still refused.
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgAppResp, Index: r.raftLog.lastIndex()})
	if r.raftLog.committed != r.raftLog.lastIndex() {
		t.Fatal("setup: no-op not committed")
	}
	if err := n.ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 4}); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("conf change before the no-op applied: %v", err)
	}
	r.raftLog.appliedTo(r.raftLog.committed)
	if err := n.ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 4}); err != nil {
		t.Fatalf("conf change after the no-op applied: %v", err)
	}
}

// TestConfChangeOneAtATime: while a change is unapplied, another is
// refused; normal proposals are not affected.
func TestConfChangeOneAtATime(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.isolate(2)
	nw.isolate(3) // the first change cannot commit
	n1 := nw.node(1)
	if err := n1.ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 4}); err != nil {
		t.Fatal(err)
	}
	if err := n1.ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 5}); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("second pending change: %v, want ErrProposalDropped", err)
	}
	if err := n1.Propose([]byte("x")); err != nil {
		t.Fatalf("normal proposal during a pending change: %v", err)
	}
	nw.recover()
	nw.tickAll(2)
	if err := n1.ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 5}); err != nil {
		t.Fatalf("change after the first applied: %v", err)
	}
	nw.stabilize()
	if cs := nw.raft(1).cs; !slices.Equal(cs.Learners, []uint64{4, 5}) {
		t.Fatalf("learners %v, want [4 5]", cs.Learners)
	}
	// A forwarded change mixed with data: the refused change becomes a
	// no-op entry, the data still goes in.
	if err := nw.node(1).ProposeConfChange(ConfChange{Type: ConfChangeRemoveNode, NodeID: 5}); err != nil {
		t.Fatal(err)
	}
	r1 := nw.raft(1)
	r1.pendingConfIndex = r1.raftLog.lastIndex() + 100 // pretend a change is pending
	mustStep(t, r1, Message{From: 2, To: 1, Type: MsgProp, Entries: []Entry{
		{Type: EntryConfChange, Data: ConfChange{Type: ConfChangeRemoveNode, NodeID: 4}.Marshal()},
		{Data: []byte("y")},
	}})
	ents, _ := r1.raftLog.entries(r1.raftLog.lastIndex()-1, 1<<30)
	if ents[0].Type != EntryNormal || len(ents[0].Data) != 0 || string(ents[1].Data) != "y" {
		t.Fatalf("entries %+v", ents)
	}
}

// TestConfChangeRemoveLastVoterRefused keeps the cluster from losing all
// voters.
func TestConfChangeRemoveLastVoterRefused(t *testing.T) {
	nw := newNetwork(t, 1)
	nw.tickAll(20)
	nw.stabilize()
	err := nw.node(1).ProposeConfChange(ConfChange{Type: ConfChangeRemoveNode, NodeID: 1})
	if !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("removing the last voter: %v", err)
	}
	if err := nw.node(1).ProposeConfChange(ConfChange{Type: ConfChangeAddVoter, NodeID: 0}); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("adding node 0: %v", err)
	}
}

// TestConfChangeCommitAfterRemoveNode: pending entries commit once the
// quorum shrinks (TinyKV TestCommitAfterRemoveNode3A).
func TestConfChangeCommitAfterRemoveNode(t *testing.T) {
	r := newTestRaft(t, 1, []uint64{1, 2}, noPreVoteNoCQ)
	r.becomeCandidate()
	r.becomeLeader()
	n := &Node{r: r}
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgAppResp, Index: r.raftLog.lastIndex()})
	r.raftLog.appliedTo(r.raftLog.committed)
	if err := n.ProposeConfChange(ConfChange{Type: ConfChangeRemoveNode, NodeID: 2}); err != nil {
		t.Fatal(err)
	}
	ccIndex := r.raftLog.lastIndex()
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgAppResp, Index: ccIndex})
	if err := n.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// 2 never acks x: with two voters it cannot commit.
	if r.raftLog.committed != ccIndex {
		t.Fatalf("committed %d, want %d", r.raftLog.committed, ccIndex)
	}
	r.raftLog.appliedTo(ccIndex)
	r.applyConfChange(ConfChange{Type: ConfChangeRemoveNode, NodeID: 2})
	if r.raftLog.committed != ccIndex+1 {
		t.Fatalf("committed %d after the quorum shrank, want %d", r.raftLog.committed, ccIndex+1)
	}
}

// TestConfChangeRemoveLeader: the leader removing itself steps down once
// the change is applied; the others elect a new leader quickly.
func TestConfChangeRemoveLeader(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	_ = nw.propose(1, "a")
	if err := nw.node(1).ProposeConfChange(ConfChange{Type: ConfChangeRemoveNode, NodeID: 1}); err != nil {
		t.Fatal(err)
	}
	nw.stabilize()
	r1 := nw.raft(1)
	if r1.state == StateLeader {
		t.Fatal("removed leader did not step down")
	}
	lead := nw.leaderID()
	if lead == 0 || lead == 1 {
		t.Fatalf("no new leader right after the removal (hand-over):\n%s", nw)
	}
	if err := nw.propose(lead, "b"); err != nil {
		t.Fatal(err)
	}
	nw.tickAll(2)
	for _, id := range []uint64{2, 3} {
		if got := nw.appliedData(id); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("node %d applied %v", id, got)
		}
		if cs := nw.raft(id).cs; !slices.Equal(cs.Voters, []uint64{2, 3}) {
			t.Fatalf("node %d voters %v", id, cs.Voters)
		}
	}
	// The removed node never campaigns again.
	nw.tickOne(1, 50)
	if r1.state != StateFollower {
		t.Fatalf("removed node is %s", r1.state)
	}
}

// TestConfChangeRemoveLeaderTwoNodes: removing the leader of a 2-voter
// cluster leaves a working 1-voter cluster.
func TestConfChangeRemoveLeaderTwoNodes(t *testing.T) {
	nw := newNetwork(t, 1, 2)
	nw.elect(1)
	if err := nw.node(1).ProposeConfChange(ConfChange{Type: ConfChangeRemoveNode, NodeID: 1}); err != nil {
		t.Fatal(err)
	}
	nw.stabilize()
	nw.tickAll(40)
	if nw.leaderID() != 2 {
		t.Fatalf("leader %d, want 2:\n%s", nw.leaderID(), nw)
	}
	if err := nw.propose(2, "x"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(nw.appliedData(2), []string{"x"}) {
		t.Fatalf("node 2 applied %v", nw.appliedData(2))
	}
}

// TestConfChangeNoCampaignWithUnappliedChange: a node does not campaign
// while a committed conf change is not yet applied.
func TestConfChangeNoCampaignWithUnappliedChange(t *testing.T) {
	r := newTestRaft(t, 2, []uint64{1, 2, 3}, noPreVoteNoCQ)
	mustStep(t, r, Message{From: 1, To: 2, Term: 2, Type: MsgApp, Index: 1, LogTerm: 1, Commit: 2,
		Entries: []Entry{{Index: 2, Term: 2, Type: EntryConfChange, Data: ConfChange{Type: ConfChangeAddLearner, NodeID: 4}.Marshal()}}})
	readMessages(r)
	mustStep(t, r, Message{Type: MsgHup})
	if r.state != StateFollower {
		t.Fatalf("campaigned with an unapplied conf change: %s", r.state)
	}
	r.raftLog.appliedTo(2)
	mustStep(t, r, Message{Type: MsgHup})
	if r.state != StateCandidate {
		t.Fatalf("state %s after applying, want candidate", r.state)
	}
}

// TestConfChangeReapplyIsIdempotent: re-applying changes after a restart
// (AddLearner of a promoted voter) never demotes.
func TestConfChangeReapplyIsIdempotent(t *testing.T) {
	r := newTestRaft(t, 1, []uint64{1, 2, 3}, nil)
	r.applyConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 4})
	r.applyConfChange(ConfChange{Type: ConfChangeAddVoter, NodeID: 4})
	cs := r.applyConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 4})
	if !slices.Equal(cs.Voters, []uint64{1, 2, 3, 4}) || len(cs.Learners) != 0 {
		t.Fatalf("conf state %+v", cs)
	}
	cs = r.applyConfChange(ConfChange{Type: ConfChangeRemoveNode, NodeID: 9})
	if len(cs.Voters) != 4 {
		t.Fatalf("removing an unknown node changed %+v", cs)
	}
}
