package raft

import (
	"slices"
	"testing"
)

// leaderWithLog returns a 3-voter leader (node 1) whose log after the
// bootstrap snapshot has the given terms, elected in term `term`+1
// (so its no-op is at the end). Followers' Progress start in probe.
func leaderWithLog(t *testing.T, term uint64, terms ...uint64) *raft {
	t.Helper()
	r := newTestRaft(t, 1, []uint64{1, 2, 3}, noPreVoteNoCQ)
	setLog(t, r, term, terms...)
	r.becomeCandidate()
	r.becomeLeader()
	persist(t, r)
	readMessages(r)
	return r
}

// TestFig8CurrentTermCommitRule: a leader never commits an entry of an
// earlier term by counting replicas; only when an entry of its own term is
// on a quorum does it commit (and with it, everything before) (paper §5.4.2,
// figure 8).
func TestFig8CurrentTermCommitRule(t *testing.T) {
	r := leaderWithLog(t, 2, 1, 2) // entries 2@1 3@2; leader at term 3, no-op 4@3
	if r.Term != 3 || r.raftLog.lastIndex() != 4 {
		t.Fatalf("setup: term %d last %d", r.Term, r.raftLog.lastIndex())
	}
	// A quorum (1 and 2) holds index 3 from term 2: not committed.
	mustStep(t, r, Message{From: 2, To: 1, Term: 3, Type: MsgAppResp, Index: 3})
	if c := r.raftLog.committed; c != 1 {
		t.Fatalf("committed = %d after a quorum acked an entry of an older term, want 1", c)
	}
	// Even all voters holding it is not enough.
	mustStep(t, r, Message{From: 3, To: 1, Term: 3, Type: MsgAppResp, Index: 3})
	if c := r.raftLog.committed; c != 1 {
		t.Fatalf("committed = %d, want 1", c)
	}
	// The no-op of term 3 on a quorum commits it and all before.
	mustStep(t, r, Message{From: 2, To: 1, Term: 3, Type: MsgAppResp, Index: 4})
	if c := r.raftLog.committed; c != 4 {
		t.Fatalf("committed = %d after the term's no-op reached a quorum, want 4", c)
	}
}

// TestFig8Scenario replays figure 8 on a 5-node network: an entry of term
// 2 replicated to a majority by the leader of term 4 can still be
// overwritten, so it must not have been reported committed.
func TestFig8Scenario(t *testing.T) {
	nw := newNetworkWithConfig(t, noPreVoteNoCQ, 1, 2, 3, 4, 5)
	// (a) S1 leads term 2 and replicates entry "x" only to S2.
	nw.elect(1)
	nw.isolate(1)
	nw.dropm[connem{1, 2}], nw.dropm[connem{2, 1}] = false, false
	_ = nw.propose(1, "x") // reaches S2 only
	// (b) S1 crashes; S5 wins term 3 with S3, S4; its entries (no-op and
	// "y") stay local.
	nw.recover()
	nw.isolate(1)
	nw.cut(5, 2)
	nw.hook = func(m *Message) bool { return !(m.Type == MsgApp && m.From == 5) }
	nw.elect(5)
	_ = nw.propose(5, "y")
	// (c) S5 crashes; S1 restarts and wins term 4 (S2, S3 vote), and
	// replicates "x" (term 2) to S3 -- but its term-4 no-op never arrives.
	nw.recover()
	nw.restart(1)
	nw.isolate(5)
	nw.cut(1, 4)
	nw.hook = func(m *Message) bool {
		if m.Type == MsgApp && m.From == 1 {
			var keep []Entry
			for _, e := range m.Entries {
				if e.Term < 4 {
					keep = append(keep, e)
				}
			}
			m.Entries = keep
		}
		return true
	}
	nw.campaign(1) // term 3: S3 already voted for S5
	nw.elect(1)    // term 4
	r1 := nw.raft(1)
	if r1.Term != 4 {
		t.Fatalf("setup: S1 leads term %d, want 4", r1.Term)
	}
	xIndex := uint64(3) // 2 is S1's term-2 no-op, 3 is "x"
	if term, _ := r1.raftLog.term(xIndex); term != 2 {
		t.Fatalf("setup: S1 entry %d has term %d, want 2", xIndex, term)
	}
	for _, id := range []uint64{2, 3} {
		if term, _ := nw.raft(id).raftLog.term(xIndex); term != 2 {
			t.Fatalf("setup: S%d entry %d has term %d, want 2 (x on a majority)", id, xIndex, term)
		}
	}
	if r1.raftLog.committed >= xIndex {
		t.Fatalf("S1 (term %d) committed %d, which includes the term-2 entry only replicated, never its own", r1.Term, r1.raftLog.committed)
	}
	// (d) S1 crashes; S5 can still be elected and overwrite "x".
	nw.recover()
	nw.isolate(1)
	nw.restart(5)
	nw.campaign(5) // term 4: S2 and S3 already voted for S1
	nw.elect(5)
	nw.tickAll(3)
	for _, id := range []uint64{2, 3, 4, 5} {
		if got := nw.appliedData(id); slices.Contains(got, "x") {
			t.Fatalf("node %d applied x (overwritten entry): %v", id, got)
		}
	}
	nw.checkLogsMatch()
}

// TestCommitWithoutNewTermEntry: entries of earlier terms commit once the
// new leader's no-op does (paper §8).
func TestCommitWithoutNewTermEntry(t *testing.T) {
	nw := newNetworkWithConfig(t, noPreVoteNoCQ, 1, 2, 3, 4, 5)
	nw.elect(1)
	nw.cut(1, 3)
	nw.cut(1, 4)
	nw.cut(1, 5)
	_ = nw.propose(1, "a")
	_ = nw.propose(1, "b")
	if c := nw.raft(1).raftLog.committed; c != 2 {
		t.Fatalf("committed %d without a quorum, want 2", c)
	}
	nw.recover()
	// 2 has the entries; it wins and its no-op commits them.
	nw.isolate(1)
	nw.elect(2)
	nw.tickOne(2, 2)
	for _, id := range []uint64{2, 3, 4, 5} {
		if got := nw.appliedData(id); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("node %d applied %v, want [a b]", id, got)
		}
	}
}

// TestDuplicateAndReorderedAppendNeverTruncatesMatched: over UDP, an old or
// reordered MsgApp must not delete entries that match; only a real
// conflict truncates (akka-raft #66).
func TestDuplicateAndReorderedAppendNeverTruncatesMatched(t *testing.T) {
	r := newTestRaft(t, 2, []uint64{1, 2, 3}, noPreVoteNoCQ)
	app := func(prev, prevTerm, commit uint64, idx ...uint64) Message {
		var ents []Entry
		for _, i := range idx {
			ents = append(ents, Entry{Index: i, Term: 2, Data: []byte{byte(i)}})
		}
		return Message{From: 1, To: 2, Term: 2, Type: MsgApp, Index: prev, LogTerm: prevTerm, Commit: commit, Entries: ents}
	}
	mustStep(t, r, app(1, 1, 1, 2, 3, 4, 5))
	persist(t, r)
	// Duplicate of an earlier, shorter append.
	mustStep(t, r, app(1, 1, 1, 2))
	// Reordered: a later append arrives before an earlier one.
	mustStep(t, r, app(5, 2, 1, 6, 7))
	mustStep(t, r, app(3, 2, 1, 4))
	mustStep(t, r, app(1, 1, 1, 2, 3))
	if got, want := logTerms(r), []uint64{2, 2, 2, 2, 2, 2}; !slices.Equal(got, want) {
		t.Fatalf("log terms %v, want %v (matched entries were truncated)", got, want)
	}
	msgs := msgsOfType(readMessages(r), MsgAppResp)
	wantIdx := []uint64{5, 2, 7, 4, 3}
	for i, m := range msgs {
		if m.Reject || m.Index != wantIdx[i] {
			t.Fatalf("response %d = (reject %t, index %d), want ack of %d", i, m.Reject, m.Index, wantIdx[i])
		}
	}
	// A real conflict (term 3 at index 4) does truncate the suffix.
	mustStep(t, r, Message{From: 1, To: 2, Term: 3, Type: MsgApp, Index: 3, LogTerm: 2, Entries: []Entry{{Index: 4, Term: 3}}})
	if got, want := logTerms(r), []uint64{2, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("after conflict log terms %v, want %v", got, want)
	}
}

// TestStaleResponsesIgnored: old acks and rejections must not move a
// follower's progress backwards (etcd PR #1207).
func TestStaleResponsesIgnored(t *testing.T) {
	r := leaderWithLog(t, 1, 1, 1, 1, 1) // entries 2..5 term 1, no-op 6@2
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgAppResp, Index: 6})
	pr := r.prs[2]
	if pr.State != ProgressReplicate || pr.Match != 6 {
		t.Fatalf("setup: %s", pr)
	}
	readMessages(r)
	// An old acknowledgement.
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgAppResp, Index: 3})
	// An old rejection of an index at or below Match.
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgAppResp, Index: 4, Reject: true, RejectHint: 2})
	if pr.State != ProgressReplicate || pr.Match != 6 || pr.Next != 7 {
		t.Fatalf("stale responses changed progress: %s", pr)
	}
	if msgs := readMessages(r); len(msgs) != 0 {
		t.Fatalf("stale responses triggered sends: %+v", msgs)
	}
	// Probe state: a rejection of anything but the last probe is stale.
	pr3 := r.prs[3]
	if pr3.State != ProgressProbe {
		t.Fatalf("setup: %s", pr3)
	}
	next := pr3.Next
	mustStep(t, r, Message{From: 3, To: 1, Term: r.Term, Type: MsgAppResp, Index: next + 5, Reject: true, RejectHint: 1})
	if pr3.Next != next {
		t.Fatalf("stale probe rejection moved Next %d -> %d", next, pr3.Next)
	}
	// A response from an older term is ignored entirely.
	mustStep(t, r, Message{From: 3, To: 1, Term: r.Term - 1, Type: MsgAppResp, Index: next - 1, Reject: true, RejectHint: 1})
	if pr3.Next != next {
		t.Fatalf("old-term rejection moved Next %d -> %d", next, pr3.Next)
	}
}

// TestFastBacktracking: a follower with a long divergent log is repaired in
// a couple of round trips using conflict (term, index) hints, not one
// entry per round trip.
func TestFastBacktracking(t *testing.T) {
	nw := newNetworkWithConfig(t, noPreVoteNoCQ, 1, 2, 3)
	t3 := slices.Repeat([]uint64{3}, 50)
	t2 := slices.Repeat([]uint64{2}, 60)
	setLog(t, nw.raft(1), 3, t3...)
	setLog(t, nw.raft(2), 3, t3...)
	setLog(t, nw.raft(3), 2, t2...)
	rejections := 0
	nw.hook = func(m *Message) bool {
		if m.Type == MsgAppResp && m.Reject && m.From == 3 {
			rejections++
		}
		return true
	}
	nw.elect(1)
	if rejections > 2 {
		t.Fatalf("%d rejections to repair 60 divergent entries, want <= 2", rejections)
	}
	if got, want := logTerms(nw.raft(3)), logTerms(nw.raft(1)); !slices.Equal(got, want) {
		t.Fatalf("follower log %v\nleader log %v", got, want)
	}
}

// TestLeaderSyncFollowerLog replays figure 7: whatever a follower's log
// looks like, the leader makes it identical to its own.
func TestLeaderSyncFollowerLog(t *testing.T) {
	leader := []uint64{1, 1, 4, 4, 5, 5, 6, 6, 6} // after the snapshot (index 1, term 1)
	followers := [][]uint64{
		{1, 1, 4, 4, 5, 5, 6, 6},
		{1, 1, 4},
		{1, 1, 4, 4, 5, 5, 6, 6, 6, 6},
		{1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},
		{1, 1, 4, 4, 4, 4},
		{1, 1, 2, 2, 2, 3, 3, 3, 3, 3},
		{},
	}
	for i, f := range followers {
		nw := newNetworkWithConfig(t, noPreVoteNoCQ, 1, 2, 3)
		setLog(t, nw.raft(1), 7, leader...)
		setLog(t, nw.raft(3), 7, leader...)
		setLog(t, nw.raft(2), 7, f...)
		nw.elect(1)
		nw.tickAll(2)
		if got, want := logTerms(nw.raft(2)), logTerms(nw.raft(1)); !slices.Equal(got, want) {
			t.Errorf("#%d: follower log %v, leader log %v", i, got, want)
		}
		if c1, c2 := nw.raft(1).raftLog.committed, nw.raft(2).raftLog.committed; c1 != c2 || c1 != nw.raft(1).raftLog.lastIndex() {
			t.Errorf("#%d: commit leader %d follower %d last %d", i, c1, c2, nw.raft(1).raftLog.lastIndex())
		}
	}
}

// TestFollowerCommitIsMinOfLastNew: a follower commits min(leaderCommit,
// index of the last new entry), never entries it holds beyond what the
// leader just matched (figure 2, AppendEntries rule 5).
func TestFollowerCommitIsMinOfLastNew(t *testing.T) {
	r := newTestRaft(t, 2, []uint64{1, 2, 3}, noPreVoteNoCQ)
	setLog(t, r, 2, 2, 2, 2, 2) // stale entries 2..5 of term 2
	mustStep(t, r, Message{From: 1, To: 2, Term: 3, Type: MsgApp, Index: 1, LogTerm: 1, Commit: 5,
		Entries: []Entry{{Index: 2, Term: 2}}})
	if c := r.raftLog.committed; c != 2 {
		t.Fatalf("committed = %d, want 2 (min(leader commit 5, last new 2))", c)
	}
}

// TestHeartbeatCommitIsMinMatch: heartbeats never carry a commit index
// beyond what the follower is known to hold.
func TestHeartbeatCommitIsMinMatch(t *testing.T) {
	r := leaderWithLog(t, 1, 1, 1, 1)
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgAppResp, Index: r.raftLog.lastIndex()})
	readMessages(r)
	if r.raftLog.committed != r.raftLog.lastIndex() {
		t.Fatalf("setup: committed %d", r.raftLog.committed)
	}
	r.bcastHeartbeat()
	for _, m := range readMessages(r) {
		want := min(r.prs[m.To].Match, r.raftLog.committed)
		if m.Commit != want {
			t.Fatalf("heartbeat to %d carries commit %d, want %d", m.To, m.Commit, want)
		}
	}
	if r.prs[3].Match != 0 {
		t.Fatalf("setup: node 3 match %d", r.prs[3].Match)
	}
}

// TestHeartbeatUpdatesFollowerCommit: a follower learns the commit index
// from heartbeats.
func TestHeartbeatUpdatesFollowerCommit(t *testing.T) {
	r := newTestRaft(t, 2, []uint64{1, 2, 3}, noPreVoteNoCQ)
	mustStep(t, r, Message{From: 1, To: 2, Term: 2, Type: MsgApp, Index: 1, LogTerm: 1, Commit: 1,
		Entries: []Entry{{Index: 2, Term: 2}, {Index: 3, Term: 2}}})
	mustStep(t, r, Message{From: 1, To: 2, Term: 2, Type: MsgHeartbeat, Commit: 3})
	if r.raftLog.committed != 3 {
		t.Fatalf("committed %d, want 3", r.raftLog.committed)
	}
	// A commit beyond our log is not trusted.
	mustStep(t, r, Message{From: 1, To: 2, Term: 2, Type: MsgHeartbeat, Commit: 10})
	if r.raftLog.committed != 3 {
		t.Fatalf("committed %d after a heartbeat beyond the log, want 3", r.raftLog.committed)
	}
}

// TestLostAppendRecoveredByHeartbeat: lost MsgApps are resent without new
// proposals (etcd #13951).
func TestLostAppendRecoveredByHeartbeat(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	drop := true
	nw.hook = func(m *Message) bool {
		if drop && m.Type == MsgApp && m.To == 3 && len(m.Entries) > 0 {
			return false
		}
		return true
	}
	_ = nw.propose(1, "a")
	_ = nw.propose(1, "b")
	drop = false
	if got := nw.appliedData(3); len(got) != 0 {
		t.Fatalf("setup: node 3 applied %v", got)
	}
	nw.tickAll(4)
	if got := nw.appliedData(3); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("node 3 applied %v after heartbeats, want [a b]", got)
	}
}

// TestInflightLimit: at most MaxInflightMsgs MsgApps are outstanding per
// follower in replicate state.
func TestInflightLimit(t *testing.T) {
	r := newTestRaft(t, 1, []uint64{1, 2}, func(c *Config) {
		noPreVoteNoCQ(c)
		c.MaxInflightMsgs = 3
	})
	r.becomeCandidate()
	r.becomeLeader()
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgAppResp, Index: r.raftLog.lastIndex()})
	readMessages(r)
	var apps []Message
	for i := range 10 {
		// One Ready round per proposal: no batching.
		mustStep(t, r, Message{From: 1, Type: MsgProp, Entries: []Entry{{Data: []byte{byte(i)}}}})
		apps = append(apps, msgsOfType(readMessages(r), MsgApp)...)
	}
	if len(apps) != 3 {
		t.Fatalf("%d MsgApps outstanding, want 3", len(apps))
	}
	// An ack frees a slot and the pipeline refills.
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgAppResp, Index: apps[0].Entries[0].Index})
	apps = msgsOfType(readMessages(r), MsgApp)
	if len(apps) != 1 || len(apps[0].Entries) == 0 {
		t.Fatalf("after one ack: %d MsgApps, want 1 carrying the backlog", len(apps))
	}
}

// TestMaxSizePerMsg: MsgApp batches are limited in bytes.
func TestMaxSizePerMsg(t *testing.T) {
	r := newTestRaft(t, 1, []uint64{1, 2}, func(c *Config) {
		noPreVoteNoCQ(c)
		c.MaxSizePerMsg = 2500
	})
	r.becomeCandidate()
	r.becomeLeader()
	for range 10 {
		r.appendEntry(Entry{Data: make([]byte, 1000)})
	}
	readMessages(r)
	// Follower acks the no-op only: everything else is pending.
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgAppResp, Index: 2})
	total := 0
	for _, m := range msgsOfType(readMessages(r), MsgApp) {
		var size uint64
		for _, e := range m.Entries {
			size += entrySize(e)
		}
		if len(m.Entries) > 1 && size > 2500 {
			t.Fatalf("MsgApp of %d bytes (%d entries) exceeds 2500", size, len(m.Entries))
		}
		total += len(m.Entries)
	}
	if total != 10 {
		t.Fatalf("%d entries sent, want 10", total)
	}
}

func TestReportUnreachableProbes(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	_ = nw.propose(1, "a")
	pr := nw.raft(1).prs[2]
	if pr.State != ProgressReplicate {
		t.Fatalf("setup: %s", pr)
	}
	nw.node(1).ReportUnreachable(2)
	if pr.State != ProgressProbe {
		t.Fatalf("after ReportUnreachable: %s, want probe", pr)
	}
}

// TestProbeSendsOneAtATime: in probe state, one MsgApp is outstanding
// until answered or the next heartbeat response.
func TestProbeSendsOneAtATime(t *testing.T) {
	r := leaderWithLog(t, 1)
	for i := range 3 {
		mustStep(t, r, Message{From: 1, Type: MsgProp, Entries: []Entry{{Data: []byte{byte(i)}}}})
	}
	var to2 int
	for _, m := range msgsOfType(readMessages(r), MsgApp) {
		if m.To == 2 && len(m.Entries) > 0 {
			to2++
		}
	}
	if to2 != 1 {
		t.Fatalf("%d MsgApps with entries to a probing follower, want 1", to2)
	}
	mustStep(t, r, Message{From: 2, To: 1, Term: r.Term, Type: MsgHeartbeatResp})
	if apps := msgsOfType(readMessages(r), MsgApp); len(apps) != 1 || apps[0].To != 2 {
		t.Fatalf("heartbeat response should release one probe, got %+v", apps)
	}
}

// TestProposalDroppedWithoutLeader covers ErrProposalDropped.
func TestProposalDroppedWithoutLeader(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	if err := nw.node(1).Propose([]byte("x")); err != ErrProposalDropped {
		t.Fatalf("Propose without leader = %v, want ErrProposalDropped", err)
	}
	_ = nw.node(1).Campaign()
	if err := nw.node(1).Propose([]byte("x")); err != ErrProposalDropped {
		t.Fatalf("Propose as candidate = %v, want ErrProposalDropped", err)
	}
}

// TestDuplicatedForwardedProposalDoesNotCorruptLog: a MsgProp delivered
// twice (same backing array) must append two distinct entries.
func TestDuplicatedForwardedProposalDoesNotCorruptLog(t *testing.T) {
	r := leaderWithLog(t, 1)
	m := Message{From: 2, To: 1, Type: MsgProp, Entries: []Entry{{Data: []byte("x")}}}
	mustStep(t, r, m)
	mustStep(t, r, m)
	ents, _ := r.raftLog.entries(r.raftLog.lastIndex()-1, 1<<30)
	if len(ents) != 2 || ents[0].Index+1 != ents[1].Index {
		t.Fatalf("entries %+v", ents)
	}
	if m.Entries[0].Index != 0 {
		t.Fatalf("the caller's message was modified: %+v", m.Entries[0])
	}
}

// TestProposalsBatchedPerReady: proposals made between two Ready calls go
// to each follower in one MsgApp.
func TestProposalsBatchedPerReady(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	var apps int
	nw.hook = func(m *Message) bool {
		if m.Type == MsgApp && len(m.Entries) > 0 {
			apps++
		}
		return true
	}
	for i := range 50 {
		if err := nw.node(1).Propose([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	nw.stabilize()
	if apps != 2 {
		t.Fatalf("%d MsgApps for 50 proposals in one Ready round, want 2", apps)
	}
	if got := len(nw.appliedData(1)); got != 50 {
		t.Fatalf("leader applied %d, want 50", got)
	}
}
