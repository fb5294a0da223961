package raft

import (
	"testing"
)

// newTestRaft returns the raft of a founding member of voters, with
// PreVote and CheckQuorum as given by mod (default: both on).
func newTestRaft(t testing.TB, id uint64, voters []uint64, mod func(*Config)) *raft {
	t.Helper()
	cfg := testConfig(t, id, bootstrapStorage(voters...))
	if mod != nil {
		mod(&cfg)
	}
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n.r
}

func noPreVoteNoCQ(c *Config) { c.DisablePreVote = true; c.DisableCheckQuorum = true }

// readMessages returns and clears r's outbox.
func readMessages(r *raft) []Message {
	r.flushAppends()
	msgs := r.msgs
	r.msgs = nil
	return msgs
}

// msgsOfType filters msgs.
func msgsOfType(msgs []Message, t MessageType) []Message {
	var out []Message
	for _, m := range msgs {
		if m.Type == t {
			out = append(out, m)
		}
	}
	return out
}

// mustStep steps m and fails on error.
func mustStep(t testing.TB, r *raft, m Message) {
	t.Helper()
	if err := r.Step(m); err != nil {
		t.Fatalf("step %s: %v", m.Type, err)
	}
}

// persist pretends the application persisted everything unstable.
func persist(t testing.TB, r *raft) {
	t.Helper()
	ms := r.raftLog.storage.(*MemoryStorage)
	if s := r.raftLog.unstable.snapshot; s != nil {
		if err := ms.ApplySnapshot(*s); err != nil {
			t.Fatal(err)
		}
		r.raftLog.stableSnapTo(s.Meta.Index)
	}
	if ents := r.raftLog.unstableEntries(); len(ents) > 0 {
		if err := ms.Append(ents); err != nil {
			t.Fatal(err)
		}
		last := ents[len(ents)-1]
		r.raftLog.stableTo(last.Index, last.Term)
	}
}

// logTerms returns the terms of r's log from firstIndex to lastIndex.
func logTerms(r *raft) []uint64 {
	var out []uint64
	for i := r.raftLog.firstIndex(); i <= r.raftLog.lastIndex(); i++ {
		term, _ := r.raftLog.term(i)
		out = append(out, term)
	}
	return out
}

// setLog replaces r's log (after the bootstrap snapshot at 1) with entries
// of the given terms, stable in storage, and sets the term.
func setLog(t testing.TB, r *raft, term uint64, terms ...uint64) {
	t.Helper()
	ms := r.raftLog.storage.(*MemoryStorage)
	var ents []Entry
	for i, tt := range terms {
		ents = append(ents, Entry{Index: 2 + uint64(i), Term: tt})
	}
	if err := ms.Append(ents); err != nil {
		t.Fatal(err)
	}
	r.raftLog.unstable.offset = 2 + uint64(len(terms))
	r.raftLog.unstable.entries = nil
	r.Term = term
	r.reset(term)
}
