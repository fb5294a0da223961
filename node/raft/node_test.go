package raft

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestNewNodeValidatesConfig(t *testing.T) {
	ok := Config{ID: 1, Storage: NewMemoryStorage(), Rand: rand.New(rand.NewPCG(1, 1))}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"zero id", func(c *Config) { c.ID = 0 }},
		{"no storage", func(c *Config) { c.Storage = nil }},
		{"no rand", func(c *Config) { c.Rand = nil }},
		{"election <= heartbeat", func(c *Config) { c.ElectionTicks, c.HeartbeatTicks = 3, 3 }},
		{"negative", func(c *Config) { c.MaxInflightMsgs = -1 }},
		{"applied beyond commit", func(c *Config) { c.Applied = 5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			if _, err := NewNode(c); err == nil {
				t.Fatal("NewNode accepted an invalid config")
			}
		})
	}
	n, err := NewNode(ok)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if r := n.r; r.electionTimeout != 10 || r.heartbeatTimeout != 1 || r.maxMsgSize != 64<<10 || r.maxInflight != 256 || r.snapChunkSize != 64<<10 || !r.preVote || !r.checkQuorum {
		t.Fatalf("defaults not applied: %+v", r)
	}
}

func TestStepRefusesLocalAndMalformedMessages(t *testing.T) {
	n, _ := NewNode(testConfig(t, 1, bootstrapStorage(1, 2, 3)))
	for _, m := range []Message{
		{Type: MsgHup, From: 2, To: 1},
		{Type: MsgBeat, From: 2, To: 1},
		{Type: MsgUnreachable, From: 2, To: 1},
	} {
		if err := n.Step(m); !errors.Is(err, ErrLocalMessage) {
			t.Fatalf("Step(%s) = %v, want ErrLocalMessage", m.Type, err)
		}
	}
	for _, m := range []Message{
		{Type: 99, From: 2, To: 1},
		{Type: MsgApp, To: 1, Term: 2},
		{Type: MsgProp, From: 2, To: 1},
		{Type: MsgReadIndex, From: 2, To: 1},
		{Type: MsgVote, From: 2, To: 1},
		{Type: MsgSnap, From: 2, To: 1, Term: 2},
		{Type: MsgApp, From: 2, To: 1, Term: 2, Index: 1, LogTerm: 1, Entries: []Entry{{Index: 5, Term: 2}}},
	} {
		if err := n.Step(m); err == nil {
			t.Fatalf("Step(%+v) accepted a malformed message", m)
		}
	}
	if n.r.state != StateFollower || n.r.raftLog.lastIndex() != 1 {
		t.Fatal("malformed messages changed the node")
	}
}

// TestReadyAdvance checks the Ready contract on a single node: entries to
// persist, hard state, MustSync, committed entries, and that Advance
// clears them.
func TestReadyAdvance(t *testing.T) {
	ms := bootstrapStorage(1)
	n, err := NewNode(testConfig(t, 1, ms))
	if err != nil {
		t.Fatal(err)
	}
	if n.HasReady() {
		t.Fatalf("fresh node has a Ready: %+v", n.Ready())
	}
	if err := n.Campaign(); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if rd.SoftState == nil || rd.SoftState.RaftState != StateLeader || rd.SoftState.Lead != 1 {
		t.Fatalf("soft state %+v", rd.SoftState)
	}
	if rd.HardState.Term != 2 || rd.HardState.Vote != 1 || !rd.MustSync {
		t.Fatalf("hard state %+v must sync %t", rd.HardState, rd.MustSync)
	}
	if len(rd.Entries) != 1 || rd.Entries[0].Index != 2 || len(rd.Entries[0].Data) != 0 {
		t.Fatalf("entries %+v, want the no-op at 2", rd.Entries)
	}
	if len(rd.CommittedEntries) != 1 || rd.CommittedEntries[0].Index != 2 {
		t.Fatalf("committed %+v", rd.CommittedEntries)
	}
	_ = ms.Append(rd.Entries)
	_ = ms.SetHardState(rd.HardState)
	n.Advance(rd)
	if n.HasReady() {
		t.Fatalf("still has Ready after Advance: %+v", n.Ready())
	}
	if st := n.BasicStatus(); st.Applied != 2 || st.Commit != 2 {
		t.Fatalf("status %+v", st)
	}
	// A commit-only change does not need an fsync.
	_ = n.Propose([]byte("x"))
	rd = n.Ready()
	if rd.SoftState != nil {
		t.Fatal("unchanged soft state reported")
	}
	if !rd.MustSync || len(rd.Entries) != 1 {
		t.Fatalf("entries %d must sync %t", len(rd.Entries), rd.MustSync)
	}
	_ = ms.Append(rd.Entries)
	n.Advance(rd)
}

// TestRestartFromStorage: a node restarted from its storage resumes with
// its term, vote, commit and log, and re-delivers committed but unapplied
// entries.
func TestRestartFromStorage(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	for _, d := range []string{"a", "b", "c"} {
		_ = nw.propose(1, d)
	}
	nw.tickAll(2)
	before := nw.raft(2).hardState()
	tn := nw.restart(2)
	r := tn.n.r
	if r.hardState() != before {
		t.Fatalf("hard state %+v after restart, want %+v", r.hardState(), before)
	}
	if r.state != StateFollower || r.lead != None {
		t.Fatalf("restarted as %s lead %d", r.state, r.lead)
	}
	nw.stabilize()
	if got := nw.appliedData(2); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("re-applied %v after restart", got)
	}
	nw.tickAll(2)
	_ = nw.propose(1, "d")
	nw.tickAll(1)
	if got := nw.appliedData(2); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("applied %v", got)
	}
}

// TestRestartWithApplied: Config.Applied skips what the application
// already applied.
func TestRestartWithApplied(t *testing.T) {
	ms := bootstrapStorage(1)
	_ = ms.Append([]Entry{{Index: 2, Term: 2}, {Index: 3, Term: 2, Data: []byte("a")}, {Index: 4, Term: 2, Data: []byte("b")}})
	_ = ms.SetHardState(HardState{Term: 2, Vote: 1, Commit: 4})
	cfg := testConfig(t, 1, ms)
	cfg.Applied = 3
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if len(rd.CommittedEntries) != 1 || string(rd.CommittedEntries[0].Data) != "b" {
		t.Fatalf("committed entries %+v, want only b", rd.CommittedEntries)
	}
	if len(rd.Entries) != 0 || !rd.HardState.IsEmpty() {
		t.Fatalf("restart reported persisted state again: %+v", rd)
	}
}

// TestRestartFromSnapshot: storage holding a snapshot and entries after it.
func TestRestartFromSnapshot(t *testing.T) {
	ms := NewMemoryStorage()
	_ = ms.ApplySnapshot(Snapshot{Meta: SnapshotMeta{Index: 10, Term: 3, ConfState: ConfState{Voters: []uint64{1, 2}}}, Data: []byte("s")})
	_ = ms.Append([]Entry{{Index: 11, Term: 3, Data: []byte("x")}})
	_ = ms.SetHardState(HardState{Term: 3, Commit: 11})
	n, err := NewNode(testConfig(t, 2, ms))
	if err != nil {
		t.Fatal(err)
	}
	st := n.Status()
	if st.Applied != 10 || st.Committed != 11 || st.LastIndex != 11 || st.FirstIndex != 11 || !slices.Equal(st.Config.Voters, []uint64{1, 2}) {
		t.Fatalf("status %+v", st)
	}
	rd := n.Ready()
	if len(rd.CommittedEntries) != 1 || rd.CommittedEntries[0].Index != 11 {
		t.Fatalf("committed %+v", rd.CommittedEntries)
	}
}

func TestRestartRejectsCorruptHardState(t *testing.T) {
	ms := bootstrapStorage(1)
	_ = ms.SetHardState(HardState{Term: 1, Commit: 7})
	if _, err := NewNode(testConfig(t, 1, ms)); err == nil {
		t.Fatal("commit beyond the log accepted")
	}
}

func TestStatusProgressOnLeaderOnly(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	_ = nw.propose(1, "a")
	st := nw.node(1).Status()
	if st.RaftState != StateLeader || st.Lead != 1 || len(st.Progress) != 3 {
		t.Fatalf("leader status %+v", st)
	}
	if pr := st.Progress[2]; pr.Match != st.LastIndex || pr.State != ProgressReplicate {
		t.Fatalf("progress of 2: %+v", pr)
	}
	if st := nw.node(2).Status(); st.Progress != nil || st.Lead != 1 {
		t.Fatalf("follower status %+v", st)
	}
}

// TestDeterministic: the same seed and inputs give the same messages.
func TestDeterministic(t *testing.T) {
	run := func() []Message {
		nw := newNetwork(t, 1, 2, 3, 4, 5)
		var log []Message
		nw.hook = func(m *Message) bool { log = append(log, *m); return true }
		nw.tickAll(30)
		if lead := nw.leaderID(); lead != 0 {
			_ = nw.propose(lead, "x")
		}
		nw.tickAll(5)
		return log
	}
	a, b := run(), run()
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("runs differ in length: %d vs %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].From != b[i].From || a[i].To != b[i].To || a[i].Term != b[i].Term || a[i].Index != b[i].Index {
			t.Fatalf("message %d differs: %+v vs %+v", i, a[i], b[i])
		}
	}
}
