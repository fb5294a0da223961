package raft

import (
	"slices"
	"testing"
)

// earlyNode is a Node with the application loop of node.Node: Ready,
// split, persist to a MemoryStorage, Advance.
type earlyNode struct {
	t  *testing.T
	n  *Node
	ms *MemoryStorage
}

func newEarlyNode(t *testing.T, id uint64, cs ConfState) *earlyNode {
	t.Helper()
	ms := NewMemoryStorage()
	if err := ms.ApplySnapshot(Snapshot{Meta: SnapshotMeta{Index: 1, Term: 1, ConfState: cs}}); err != nil {
		t.Fatal(err)
	}
	if err := ms.SetHardState(HardState{Term: 1, Commit: 1}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, id, ms)
	noPreVoteNoCQ(&cfg)
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &earlyNode{t: t, n: n, ms: ms}
}

// ready processes one Ready (there must be one) and returns it with the
// types of its early and late messages.
func (e *earlyNode) ready() (rd Ready, early, late []MessageType) {
	e.t.Helper()
	if !e.n.HasReady() {
		e.t.Fatal("no Ready")
	}
	rd = e.n.Ready()
	em, lm := rd.SplitMessages()
	if got := append(slices.Clone(em), lm...); len(got) != len(rd.Messages) {
		e.t.Fatalf("split %d messages into %d early + %d late", len(rd.Messages), len(em), len(lm))
	}
	for _, m := range em {
		early = append(early, m.Type)
	}
	for _, m := range lm {
		late = append(late, m.Type)
	}
	if !rd.Snapshot.IsEmpty() {
		if err := e.ms.ApplySnapshot(rd.Snapshot); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.ms.Append(rd.Entries); err != nil {
		e.t.Fatal(err)
	}
	if !rd.HardState.IsEmpty() {
		if err := e.ms.SetHardState(rd.HardState); err != nil {
			e.t.Fatal(err)
		}
	}
	e.n.Advance(rd)
	return rd, early, late
}

func (e *earlyNode) step(m Message) {
	e.t.Helper()
	m.To = e.n.r.id
	if err := e.n.Step(m); err != nil {
		e.t.Fatalf("step %v: %v", m.Type, err)
	}
}

func wantTypes(t *testing.T, what string, got []MessageType, want ...MessageType) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s messages %v, want %v", what, got, want)
	}
}

// TestSplitMessagesLeaderReplicatesEarly walks a leader through an
// election, replication, a commit and a leadership transfer: only MsgApp
// and MsgHeartbeat of Readies without a term or vote change go early.
func TestSplitMessagesLeaderReplicatesEarly(t *testing.T) {
	l := newEarlyNode(t, 1, ConfState{Voters: []uint64{1, 2, 3}})
	if err := l.n.Campaign(); err != nil {
		t.Fatal(err)
	}
	// Term and vote change: the vote requests wait for the write.
	rd, early, late := l.ready()
	if rd.HardState.Term != 2 || rd.HardState.Vote != 1 {
		t.Fatalf("campaign hard state %+v", rd.HardState)
	}
	wantTypes(t, "early", early)
	wantTypes(t, "late", late, MsgVote, MsgVote)

	l.step(Message{From: 2, Type: MsgVoteResp, Term: 2})
	// Leader: its no-op goes to both followers while it is written.
	rd, early, late = l.ready()
	if len(rd.Entries) != 1 || rd.Entries[0].Index != 2 {
		t.Fatalf("leader's first Ready entries %+v", rd.Entries)
	}
	wantTypes(t, "early", early, MsgApp, MsgApp)
	wantTypes(t, "late", late)

	// Node 2's ack commits the no-op (the leader's write is done: acks
	// are stepped after the Ready), and 2 replicates from now on. The
	// commit index covers only durable entries, so the MsgApp that
	// announces it goes early, with the proposal's entry, in the Ready
	// that writes that entry.
	l.step(Message{From: 2, Type: MsgAppResp, Term: 2, Index: 2})
	if err := l.n.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	rd, early, late = l.ready()
	if rd.HardState.Commit != 2 || len(rd.Entries) != 1 || rd.Entries[0].Index != 3 {
		t.Fatalf("commit %d, entries %+v", rd.HardState.Commit, rd.Entries)
	}
	wantTypes(t, "early", early, MsgApp, MsgApp) // commit 2, then entry 3 (node 3 still probes)
	wantTypes(t, "late", late)

	l.step(Message{From: 2, Type: MsgAppResp, Term: 2, Index: 3})
	rd, early, late = l.ready()
	if rd.HardState.Commit != 3 || len(rd.CommittedEntries) != 1 {
		t.Fatalf("commit %d, committed entries %d", rd.HardState.Commit, len(rd.CommittedEntries))
	}
	wantTypes(t, "early", early, MsgApp)
	wantTypes(t, "late", late)

	l.n.Tick()
	_, early, late = l.ready()
	wantTypes(t, "early", early, MsgHeartbeat, MsgHeartbeat)
	wantTypes(t, "late", late)

	// Node 2 has the whole log: the transfer's MsgTimeoutNow waits.
	l.n.TransferLeader(2)
	_, early, late = l.ready()
	wantTypes(t, "early", early)
	wantTypes(t, "late", late, MsgTimeoutNow)
}

// TestSplitMessagesSingleVoterHoldsCommit: a single voter commits its
// entries in the Ready that appends them; a learner must not hear of that
// commit before the voter's write, or a crash would erase a committed
// entry the learner applied.
func TestSplitMessagesSingleVoterHoldsCommit(t *testing.T) {
	l := newEarlyNode(t, 1, ConfState{Voters: []uint64{1}, Learners: []uint64{2}})
	if err := l.n.Campaign(); err != nil {
		t.Fatal(err)
	}
	rd, _, _ := l.ready()
	if rd.HardState.Term != 2 || rd.HardState.Commit != 2 {
		t.Fatalf("single voter's first Ready %+v", rd.HardState)
	}

	if err := l.n.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	rd, early, late := l.ready()
	if len(rd.Entries) != 1 || rd.HardState.Commit != 3 || len(rd.CommittedEntries) != 1 {
		t.Fatalf("entries %+v commit %d committed %d", rd.Entries, rd.HardState.Commit, len(rd.CommittedEntries))
	}
	wantTypes(t, "early", early)
	wantTypes(t, "late", late, MsgApp)

	// Nothing unstable: heartbeats and appends go early again.
	l.step(Message{From: 2, Type: MsgAppResp, Term: 2, Index: 3})
	l.n.Tick()
	_, early, late = l.ready()
	wantTypes(t, "early", early, MsgApp, MsgHeartbeat) // the ack moved 2 to replicating
	wantTypes(t, "late", late)
}

// TestSplitMessagesFollowerRepliesLate: everything a follower sends
// claims its own persistence and waits.
func TestSplitMessagesFollowerRepliesLate(t *testing.T) {
	f := newEarlyNode(t, 2, ConfState{Voters: []uint64{1, 2, 3}})
	f.step(Message{From: 1, Type: MsgVote, Term: 2, Index: 1, LogTerm: 1})
	_, early, late := f.ready()
	wantTypes(t, "early", early)
	wantTypes(t, "late", late, MsgVoteResp)

	f.step(Message{From: 1, Type: MsgApp, Term: 2, Index: 1, LogTerm: 1, Commit: 1,
		Entries: []Entry{{Index: 2, Term: 2}}})
	_, early, late = f.ready()
	wantTypes(t, "early", early)
	wantTypes(t, "late", late, MsgAppResp)

	f.step(Message{From: 1, Type: MsgHeartbeat, Term: 2, Commit: 2})
	_, early, late = f.ready()
	wantTypes(t, "early", early)
	wantTypes(t, "late", late, MsgHeartbeatResp)
}

// TestSplitMessagesLeaderStepsDownInReady: a leader's MsgApp and its vote
// for a new candidate share a Ready that changes the term: all wait.
func TestSplitMessagesLeaderStepsDownInReady(t *testing.T) {
	l := newEarlyNode(t, 1, ConfState{Voters: []uint64{1, 2, 3}})
	if err := l.n.Campaign(); err != nil {
		t.Fatal(err)
	}
	l.ready()
	l.step(Message{From: 2, Type: MsgVoteResp, Term: 2})
	l.ready()
	l.step(Message{From: 2, Type: MsgAppResp, Term: 2, Index: 2})
	l.ready()
	if err := l.n.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	l.n.HasReady() // flushes the MsgApp of the proposal
	l.step(Message{From: 3, Type: MsgVote, Term: 3, Index: 3, LogTerm: 2})
	rd, early, late := l.ready()
	if rd.HardState.Term != 3 || rd.HardState.Vote != 3 {
		t.Fatalf("hard state %+v", rd.HardState)
	}
	wantTypes(t, "early", early)
	wantTypes(t, "late", late, MsgApp, MsgVoteResp)
}

// TestSplitMessagesZeroReady: a Ready not made by Node.Ready sends
// nothing early.
func TestSplitMessagesZeroReady(t *testing.T) {
	early, late := Ready{Messages: []Message{{Type: MsgApp}, {Type: MsgHeartbeat}}}.SplitMessages()
	if len(early) != 0 || len(late) != 2 {
		t.Fatalf("early %d late %d", len(early), len(late))
	}
}
