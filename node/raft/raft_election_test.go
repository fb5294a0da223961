package raft

import (
	"slices"
	"testing"
)

func TestStartAsFollower(t *testing.T) {
	r := newTestRaft(t, 1, []uint64{1, 2, 3}, nil)
	if r.state != StateFollower {
		t.Fatalf("state = %s, want follower", r.state)
	}
}

// TestElectionTimeoutRandomized checks the timeout spreads over
// [election, 2*election) (paper §5.2).
func TestElectionTimeoutRandomized(t *testing.T) {
	r := newTestRaft(t, 1, []uint64{1, 2, 3}, nil)
	seen := map[int]bool{}
	for range 1000 {
		r.resetRandomizedElectionTimeout()
		to := r.randomizedElectionTimeout
		if to < r.electionTimeout || to >= 2*r.electionTimeout {
			t.Fatalf("timeout %d outside [%d, %d)", to, r.electionTimeout, 2*r.electionTimeout)
		}
		seen[to] = true
	}
	if len(seen) != r.electionTimeout {
		t.Fatalf("saw %d distinct timeouts, want all %d", len(seen), r.electionTimeout)
	}
}

func TestFollowerStartsElectionAfterTimeout(t *testing.T) {
	for _, prevote := range []bool{false, true} {
		r := newTestRaft(t, 1, []uint64{1, 2, 3}, func(c *Config) { c.DisablePreVote = !prevote })
		for range r.randomizedElectionTimeout {
			r.tick()
		}
		msgs := readMessages(r)
		want := MsgVote
		wantState := StateCandidate
		wantTerm := uint64(2)
		if prevote {
			want, wantState, wantTerm = MsgPreVote, StatePreCandidate, 1
		}
		if r.state != wantState || r.Term != wantTerm {
			t.Fatalf("prevote=%t: state %s term %d, want %s %d", prevote, r.state, r.Term, wantState, wantTerm)
		}
		votes := msgsOfType(msgs, want)
		if len(votes) != 2 {
			t.Fatalf("prevote=%t: %d %s sent, want 2", prevote, len(votes), want)
		}
		for _, m := range votes {
			if m.Term != 2 || m.Index != 1 || m.LogTerm != 1 {
				t.Fatalf("vote request %+v: want term 2, last (1,1)", m)
			}
		}
	}
}

// TestLeaderElectionInOneRound checks win/lose/pending by vote counts.
func TestLeaderElectionInOneRound(t *testing.T) {
	tests := []struct {
		size  int
		votes map[uint64]bool
		state StateType
	}{
		{1, map[uint64]bool{}, StateLeader},
		{3, map[uint64]bool{2: true, 3: true}, StateLeader},
		{3, map[uint64]bool{2: true}, StateLeader},
		{5, map[uint64]bool{2: true, 3: true, 4: true, 5: true}, StateLeader},
		{5, map[uint64]bool{2: true, 3: true}, StateLeader},
		{3, map[uint64]bool{2: false, 3: false}, StateFollower},
		{5, map[uint64]bool{2: false, 3: false, 4: false}, StateFollower},
		{5, map[uint64]bool{2: true}, StateCandidate},
		{5, map[uint64]bool{2: true, 3: false}, StateCandidate},
	}
	for i, tt := range tests {
		var ids []uint64
		for id := uint64(1); id <= uint64(tt.size); id++ {
			ids = append(ids, id)
		}
		r := newTestRaft(t, 1, ids, noPreVoteNoCQ)
		mustStep(t, r, Message{Type: MsgHup})
		for id, granted := range tt.votes {
			mustStep(t, r, Message{From: id, To: 1, Term: r.Term, Type: MsgVoteResp, Reject: !granted})
		}
		if r.state != tt.state {
			t.Errorf("#%d: state = %s, want %s", i, r.state, tt.state)
		}
	}
}

// TestVoterOneVotePerTerm: first come, first served (paper §5.2).
func TestVoterOneVotePerTerm(t *testing.T) {
	r := newTestRaft(t, 1, []uint64{1, 2, 3}, noPreVoteNoCQ)
	mustStep(t, r, Message{From: 2, To: 1, Term: 2, Type: MsgVote, Index: 1, LogTerm: 1})
	mustStep(t, r, Message{From: 3, To: 1, Term: 2, Type: MsgVote, Index: 1, LogTerm: 1})
	mustStep(t, r, Message{From: 2, To: 1, Term: 2, Type: MsgVote, Index: 1, LogTerm: 1}) // repeat
	msgs := readMessages(r)
	want := []bool{false, true, false} // Reject flags
	if len(msgs) != 3 {
		t.Fatalf("%d responses, want 3", len(msgs))
	}
	for i, m := range msgs {
		if m.Reject != want[i] {
			t.Fatalf("response %d to %d: reject=%t, want %t", i, m.To, m.Reject, want[i])
		}
	}
	if r.Vote != 2 {
		t.Fatalf("vote = %d, want 2", r.Vote)
	}
}

// TestVoterLexicographicUpToDate checks the election restriction compares
// (lastTerm, lastIndex) lexicographically (paper §5.4.1): a longer log with
// an older last term is less up to date.
func TestVoterLexicographicUpToDate(t *testing.T) {
	tests := []struct {
		index, logTerm uint64
		reject         bool
	}{
		// voter's log: terms [1(snap), 2, 2] -> last (3, 2)
		{3, 1, true},   // older term, same length
		{10, 1, true},  // older term, much longer: still rejected
		{2, 2, true},   // same term, shorter
		{3, 2, false},  // identical
		{4, 2, false},  // same term, longer
		{1, 3, false},  // newer term, shorter: granted
		{2, 3, false},  // newer term
		{100, 0, true}, // no log term at all
	}
	for i, tt := range tests {
		r := newTestRaft(t, 1, []uint64{1, 2, 3}, noPreVoteNoCQ)
		setLog(t, r, 2, 2, 2)
		mustStep(t, r, Message{From: 2, To: 1, Term: 5, Type: MsgVote, Index: tt.index, LogTerm: tt.logTerm})
		msgs := readMessages(r)
		if len(msgs) != 1 || msgs[0].Type != MsgVoteResp {
			t.Fatalf("#%d: msgs = %+v", i, msgs)
		}
		if msgs[0].Reject != tt.reject {
			t.Errorf("#%d: candidate last (%d,%d): reject=%t, want %t", i, tt.index, tt.logTerm, msgs[0].Reject, tt.reject)
		}
	}
}

// TestTermHygiene: any message with a higher term makes the receiver adopt
// it, clear its vote and step down; lower terms are ignored (figure 2).
func TestTermHygiene(t *testing.T) {
	for _, st := range []StateType{StateFollower, StateCandidate, StateLeader} {
		for _, mt := range []MessageType{MsgApp, MsgHeartbeat, MsgVoteResp, MsgAppResp} {
			r := newTestRaft(t, 1, []uint64{1, 2, 3}, noPreVoteNoCQ)
			switch st {
			case StateCandidate:
				r.becomeCandidate()
			case StateLeader:
				r.becomeCandidate()
				r.becomeLeader()
			}
			mustStep(t, r, Message{From: 2, To: 1, Term: 9, Type: mt, Index: 1, LogTerm: 1})
			if r.Term != 9 || r.state != StateFollower || r.Vote != None {
				t.Errorf("%s got %s: term %d state %s vote %d; want 9 follower none", st, mt, r.Term, r.state, r.Vote)
			}
			wantLead := None
			if mt == MsgApp || mt == MsgHeartbeat {
				wantLead = 2
			}
			if r.lead != wantLead {
				t.Errorf("%s got %s: lead %d, want %d", st, mt, r.lead, wantLead)
			}
		}
	}
	// Lower terms are ignored.
	r := newTestRaft(t, 1, []uint64{1, 2, 3}, noPreVoteNoCQ)
	r.becomeFollower(5, 2)
	mustStep(t, r, Message{From: 3, To: 1, Term: 4, Type: MsgApp, Index: 1, LogTerm: 1, Entries: []Entry{{Index: 2, Term: 4}}})
	if r.raftLog.lastIndex() != 1 || r.Term != 5 || r.lead != 2 {
		t.Fatalf("stale MsgApp changed state: last %d term %d lead %d", r.raftLog.lastIndex(), r.Term, r.lead)
	}
}

// TestCandidateFallback: an append from a leader of the same term turns a
// candidate into a follower.
func TestCandidateFallback(t *testing.T) {
	r := newTestRaft(t, 1, []uint64{1, 2, 3}, noPreVoteNoCQ)
	mustStep(t, r, Message{Type: MsgHup})
	if r.state != StateCandidate {
		t.Fatalf("state %s", r.state)
	}
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgApp, Index: 1, LogTerm: 1})
	if r.state != StateFollower || r.lead != 2 {
		t.Fatalf("state %s lead %d, want follower of 2", r.state, r.lead)
	}
}

func TestDuelingCandidates(t *testing.T) {
	nw := newNetworkWithConfig(t, noPreVoteNoCQ, 1, 2, 3)
	nw.cut(1, 3)
	nw.campaign(1)
	nw.campaign(3)
	if nw.raft(1).state != StateLeader {
		t.Fatalf("node 1 is %s, want leader", nw.raft(1).state)
	}
	if nw.raft(3).state != StateCandidate {
		t.Fatalf("node 3 is %s, want candidate", nw.raft(3).state)
	}
	nw.recover()
	// 3's higher term disrupts 1 (no PreVote/CheckQuorum), but 3's log is
	// behind so it cannot win; someone with the no-op wins eventually.
	nw.campaign(3)
	if nw.raft(3).state == StateLeader {
		t.Fatal("node 3 with a stale log became leader")
	}
	nw.tickAll(40)
	leaders := 0
	for _, id := range nw.ids() {
		if nw.raft(id).state == StateLeader {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders after recovery:\n%s", leaders, nw)
	}
	nw.checkLogsMatch()
}

// TestPreVoteDoesNotDisrupt: a node rejoining after a partition must not
// depose a healthy leader or inflate terms (thesis §9.6).
func TestPreVoteDoesNotDisrupt(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	term := nw.raft(1).Term
	nw.isolate(3)
	// 3 times out many times while isolated.
	nw.tickOne(3, 100)
	if r3 := nw.raft(3); r3.Term != term {
		t.Fatalf("isolated node raised its term to %d (was %d) despite PreVote", r3.Term, term)
	}
	nw.recover()
	nw.tickOne(3, 30) // it keeps campaigning after rejoining
	nw.tickAll(3)
	if r1 := nw.raft(1); r1.state != StateLeader || r1.Term != term {
		t.Fatalf("leader disrupted: node 1 %s term %d (was leader at %d)", r1.state, r1.Term, term)
	}
	if r3 := nw.raft(3); r3.lead != 1 {
		t.Fatalf("node 3 follows %d, want 1", r3.lead)
	}
}

// TestWithoutPreVoteRejoiningNodeDisrupts documents the problem PreVote
// solves, so the test above can fail.
func TestWithoutPreVoteRejoiningNodeDisrupts(t *testing.T) {
	nw := newNetworkWithConfig(t, noPreVoteNoCQ, 1, 2, 3)
	nw.elect(1)
	term := nw.raft(1).Term
	nw.isolate(3)
	nw.tickOne(3, 30)
	nw.recover()
	nw.tickOne(3, 20)
	if r1 := nw.raft(1); r1.state == StateLeader && r1.Term == term {
		t.Fatalf("expected the rejoining node's higher term to depose the leader")
	}
}

// TestCheckQuorumStepsDown: a leader that hears from no quorum for an
// election timeout steps down (thesis §6.2).
func TestCheckQuorumStepsDown(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.isolate(1)
	r1 := nw.raft(1)
	for range 2 * r1.electionTimeout {
		nw.tickOne(1, 1)
	}
	if r1.state == StateLeader {
		t.Fatal("isolated leader did not step down")
	}
	// It must not step down while it hears from a quorum.
	nw.recover()
	nw.tickAll(40)
	var leader uint64
	for _, id := range nw.ids() {
		if nw.raft(id).state == StateLeader {
			leader = id
		}
	}
	if leader == 0 {
		t.Fatalf("no leader after recovery:\n%s", nw)
	}
	nw.tickAll(50)
	if nw.raft(leader).state != StateLeader {
		t.Fatal("leader with a live quorum stepped down")
	}
}

// TestLeaseIgnoresVoteRequests: with CheckQuorum, a follower that heard
// from the leader within the election timeout ignores vote requests, even
// with a higher term.
func TestLeaseIgnoresVoteRequests(t *testing.T) {
	nw := newNetworkWithConfig(t, func(c *Config) { c.DisablePreVote = true }, 1, 2, 3)
	nw.elect(1)
	term := nw.raft(1).Term
	nw.campaign(3) // forced MsgHup, real election at term+1
	for _, id := range []uint64{1, 2} {
		if r := nw.raft(id); r.Term != term {
			t.Fatalf("node %d moved to term %d on a vote request within the lease", id, r.Term)
		}
	}
	if nw.raft(3).state == StateLeader {
		t.Fatal("node 3 won despite the lease")
	}
	if nw.raft(1).state != StateLeader {
		t.Fatal("leader lost leadership")
	}
}

// TestCheckQuorumInflatedTermRejoins: a node whose term rose during a
// partition (PreVote off) gets back in (etcd #8501): the leader learns its
// term from the answer to a stale MsgApp and a new election succeeds,
// although CheckQuorum's lease makes the others ignore its vote requests.
func TestCheckQuorumInflatedTermRejoins(t *testing.T) {
	nw := newNetworkWithConfig(t, func(c *Config) { c.DisablePreVote = true }, 1, 2, 3)
	nw.elect(1)
	nw.isolate(3)
	nw.tickOne(3, 25) // term inflates without PreVote
	nw.recover()
	nw.tickAll(60)
	var leaders int
	for _, id := range nw.ids() {
		if nw.raft(id).state == StateLeader {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders:\n%s", leaders, nw)
	}
	terms := []uint64{nw.raft(1).Term, nw.raft(2).Term, nw.raft(3).Term}
	if terms[0] != terms[1] || terms[1] != terms[2] {
		t.Fatalf("terms did not converge: %v", terms)
	}
	if err := nw.propose(nw.leaderID(), "x"); err != nil {
		t.Fatal(err)
	}
	nw.tickAll(2)
	for _, id := range nw.ids() {
		if !slices.Equal(nw.appliedData(id), []string{"x"}) {
			t.Fatalf("node %d applied %v", id, nw.appliedData(id))
		}
	}
}

func TestLearnerNeverCampaigns(t *testing.T) {
	s := NewMemoryStorage()
	_ = s.ApplySnapshot(Snapshot{Meta: SnapshotMeta{Index: 1, Term: 1, ConfState: ConfState{Voters: []uint64{1}, Learners: []uint64{2}}}})
	cfg := testConfig(t, 2, s)
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		n.Tick()
	}
	_ = n.Campaign()
	if n.r.state != StateFollower || n.r.Term != 0 || len(n.r.msgs) != 0 {
		t.Fatalf("learner campaigned: %s term %d msgs %d", n.r.state, n.r.Term, len(n.r.msgs))
	}
	// Nor on MsgTimeoutNow.
	_ = n.Step(Message{From: 1, To: 2, Term: 3, Type: MsgTimeoutNow})
	if n.r.state != StateFollower {
		t.Fatalf("learner campaigned on timeout-now: %s", n.r.state)
	}
}

func TestNonMemberNeverCampaigns(t *testing.T) {
	cfg := testConfig(t, 9, NewMemoryStorage()) // joiner: empty storage
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		n.Tick()
	}
	if n.r.state != StateFollower || len(n.r.msgs) != 0 {
		t.Fatalf("non-member campaigned: %s msgs %d", n.r.state, len(n.r.msgs))
	}
}

// TestCandidatesCountOnlyVoters: a vote from a non-member or learner does
// not count toward the quorum.
func TestCandidatesCountOnlyVoters(t *testing.T) {
	s := NewMemoryStorage()
	_ = s.ApplySnapshot(Snapshot{Meta: SnapshotMeta{Index: 1, Term: 1, ConfState: ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}}})
	cfg := testConfig(t, 1, s)
	noPreVoteNoCQ(&cfg)
	n, _ := NewNode(cfg)
	r := n.r
	mustStep(t, r, Message{Type: MsgHup})
	mustStep(t, r, Message{From: 4, To: 1, Term: r.Term, Type: MsgVoteResp})
	mustStep(t, r, Message{From: 7, To: 1, Term: r.Term, Type: MsgVoteResp})
	if r.state != StateCandidate {
		t.Fatalf("state %s after learner/non-member votes, want candidate", r.state)
	}
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgVoteResp})
	if r.state != StateLeader {
		t.Fatalf("state %s after a voter's vote, want leader", r.state)
	}
}

func TestLeaderCycle(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	for _, id := range []uint64{1, 2, 3, 1} {
		// Every node with an up-to-date log can win in turn (the others'
		// lease is overridden by a leadership transfer).
		cur := nw.leaderID()
		if cur == 0 {
			nw.elect(id)
			continue
		}
		nw.node(cur).TransferLeader(id)
		nw.stabilize()
		if nw.leaderID() != id {
			t.Fatalf("transfer to %d: leader is %d\n%s", id, nw.leaderID(), nw)
		}
	}
}

// TestPreVoteWithCheckQuorumLeaderIsolated: with both on, an isolated
// leader steps down, the majority elects a new leader, and the old leader
// rejoins as a follower without disrupting it (etcd #8243, PR #8334).
func TestPreVoteWithCheckQuorumLeaderIsolated(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	nw.isolate(1)
	nw.tickAll(50)
	if nw.raft(1).state == StateLeader {
		t.Fatal("isolated leader still leads")
	}
	lead := nw.leaderID()
	if lead != 2 && lead != 3 {
		t.Fatalf("majority side has no leader:\n%s", nw)
	}
	term := nw.raft(lead).Term
	if r1 := nw.raft(1); r1.Term >= term {
		t.Fatalf("isolated node's term rose to %d (new leader's term %d) despite PreVote", r1.Term, term)
	}
	nw.recover()
	nw.tickAll(30)
	if nw.leaderID() != lead || nw.raft(lead).Term != term {
		t.Fatalf("rejoining old leader disrupted: leader %d term %d, was %d term %d", nw.leaderID(), nw.raft(nw.leaderID()).Term, lead, term)
	}
	if nw.raft(1).lead != lead {
		t.Fatalf("old leader follows %d, want %d", nw.raft(1).lead, lead)
	}
	if err := nw.propose(1, "x"); err != nil {
		t.Fatal(err)
	}
	nw.tickAll(2)
	for _, id := range nw.ids() {
		if !slices.Equal(nw.appliedData(id), []string{"x"}) {
			t.Fatalf("node %d applied %v", id, nw.appliedData(id))
		}
	}
}
