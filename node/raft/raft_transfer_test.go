package raft

import (
	"errors"
	"slices"
	"testing"
)

func checkLeader(t *testing.T, nw *network, want uint64) {
	t.Helper()
	if got := nw.leaderID(); got != want {
		t.Fatalf("leader %d, want %d\n%s", got, want, nw)
	}
	for _, id := range nw.ids() {
		if r := nw.raft(id); r.lead != want && nw.dropm[connem{want, id}] == false {
			t.Fatalf("node %d follows %d, want %d", id, r.lead, want)
		}
	}
}

func TestLeaderTransferToUpToDateNode(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	term := nw.raft(1).Term
	nw.node(1).TransferLeader(2)
	nw.stabilize()
	checkLeader(t, nw, 2)
	if nw.raft(2).Term != term+1 {
		t.Fatalf("term %d, want %d (transfer skips PreVote, one election)", nw.raft(2).Term, term+1)
	}
	// And back.
	nw.node(2).TransferLeader(1)
	nw.stabilize()
	checkLeader(t, nw, 1)
}

// TestLeaderTransferFromFollower: a follower forwards the request.
func TestLeaderTransferFromFollower(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.node(2).TransferLeader(2)
	nw.stabilize()
	checkLeader(t, nw, 2)
}

// TestLeaderTransferToSlowFollower: the target is caught up first, then
// gets MsgTimeoutNow.
func TestLeaderTransferToSlowFollower(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.isolate(3)
	_ = nw.propose(1, "a")
	_ = nw.propose(1, "b")
	nw.recover()
	if nw.raft(1).prs[3].Match == nw.raft(1).raftLog.lastIndex() {
		t.Fatal("setup: 3 is not behind")
	}
	order := []MessageType{}
	nw.hook = func(m *Message) bool {
		if m.To == 3 && (m.Type == MsgApp || m.Type == MsgTimeoutNow) {
			order = append(order, m.Type)
		}
		return true
	}
	nw.node(1).TransferLeader(3)
	nw.stabilize()
	checkLeader(t, nw, 3)
	if i := slices.Index(order, MsgTimeoutNow); i < 1 {
		t.Fatalf("messages to 3: %v, want MsgApp before MsgTimeoutNow", order)
	}
	if got := nw.appliedData(3); !slices.Equal(got, []string{"a", "b"}) {
		nw.tickAll(2)
		if got := nw.appliedData(3); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("new leader applied %v", got)
		}
	}
}

// TestLeaderTransferAfterSnapshot: the target needs a snapshot first.
func TestLeaderTransferAfterSnapshot(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.isolate(3)
	_ = nw.propose(1, "a")
	nw.compact(1, []byte("state"))
	nw.recover()
	nw.node(1).TransferLeader(3)
	nw.stabilize()
	checkLeader(t, nw, 3)
	if nw.nodes[3].snapshots != 1 {
		t.Fatalf("target installed %d snapshots", nw.nodes[3].snapshots)
	}
}

func TestLeaderTransferToSelf(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.node(1).TransferLeader(1)
	if nw.raft(1).leadTransferee != None {
		t.Fatal("transfer to self started")
	}
	if err := nw.node(1).Propose([]byte("x")); err != nil {
		t.Fatalf("proposal after a refused self-transfer: %v", err)
	}
}

func TestLeaderTransferToNonExistingNode(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.node(1).TransferLeader(4)
	if nw.raft(1).leadTransferee != None {
		t.Fatal("transfer to a non-member started")
	}
	checkLeader(t, nw, 1)
}

// TestLeaderTransferToLearner is refused (consul #7031).
func TestLeaderTransferToLearner(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.addNode(testConfig(t, 4, NewMemoryStorage()))
	_ = nw.node(1).ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 4})
	nw.stabilize()
	nw.tickAll(2)
	nw.node(1).TransferLeader(4)
	nw.stabilize()
	if nw.raft(1).leadTransferee != None {
		t.Fatal("transfer to a learner started")
	}
	checkLeader(t, nw, 1)
	// A MsgTimeoutNow reaching a learner does nothing.
	_ = nw.node(4).Step(Message{From: 1, To: 4, Term: nw.raft(1).Term, Type: MsgTimeoutNow})
	nw.stabilize()
	checkLeader(t, nw, 1)
}

// TestLeaderTransferTimeout: a transfer to a dead node is aborted after an
// election timeout and proposals flow again; meanwhile they are dropped.
func TestLeaderTransferTimeout(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.isolate(3)
	_ = nw.propose(1, "a") // 3 is behind
	nw.node(1).TransferLeader(3)
	nw.stabilize()
	r1 := nw.raft(1)
	if r1.leadTransferee != 3 {
		t.Fatalf("transferee %d", r1.leadTransferee)
	}
	if err := nw.node(1).Propose([]byte("x")); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("proposal during transfer: %v, want ErrProposalDropped", err)
	}
	for range r1.electionTimeout - 1 {
		nw.tickOne(1, 1)
		nw.node(2).Tick()
		nw.stabilize()
	}
	if r1.leadTransferee != 3 {
		t.Fatal("transfer aborted too early")
	}
	nw.tickOne(1, 1)
	if r1.leadTransferee != None {
		t.Fatal("transfer not aborted after an election timeout")
	}
	if r1.state != StateLeader {
		t.Fatalf("leader lost leadership: %s", r1.state)
	}
	if err := nw.propose(1, "y"); err != nil {
		t.Fatalf("proposal after the aborted transfer: %v", err)
	}
}

// TestLeaderTransferIgnoresLease: the forced campaign is not blocked by
// the followers' CheckQuorum lease nor by PreVote.
func TestLeaderTransferIgnoresLease(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3) // PreVote and CheckQuorum on
	nw.elect(1)
	nw.tickAll(1) // everyone just heard from the leader
	nw.node(1).TransferLeader(3)
	nw.stabilize()
	checkLeader(t, nw, 3)
}

// TestLeaderTransferReceiveHigherTermVote: a higher-term election aborts
// the transfer.
func TestLeaderTransferReceiveHigherTermVote(t *testing.T) {
	nw := newNetworkWithConfig(t, noPreVoteNoCQ, 1, 2, 3)
	nw.elect(1)
	nw.isolate(3)
	_ = nw.propose(1, "a")
	nw.node(1).TransferLeader(3)
	if nw.raft(1).leadTransferee != 3 {
		t.Fatal("setup")
	}
	nw.campaign(2)
	if nw.raft(1).leadTransferee != None {
		t.Fatal("transfer survived a term change")
	}
	checkLeader(t, nw, 2)
}

// TestLeaderTransferSecondTransferToAnotherNode replaces the transferee.
func TestLeaderTransferSecondTransferToAnotherNode(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.isolate(3)
	_ = nw.propose(1, "a")
	nw.node(1).TransferLeader(3)
	nw.node(1).TransferLeader(2)
	nw.stabilize()
	checkLeader(t, nw, 2)
}

// TestLeaderTransferRemoveNode: removing the transferee aborts.
func TestLeaderTransferRemoveNode(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.tickAll(1)
	nw.isolate(3)
	_ = nw.propose(1, "a")
	r1 := nw.raft(1)
	// Pretend a transfer is in progress when the removal applies.
	r1.leadTransferee = 3
	r1.applyConfChange(ConfChange{Type: ConfChangeRemoveNode, NodeID: 3})
	if r1.leadTransferee != None {
		t.Fatal("transfer to a removed node not aborted")
	}
}
