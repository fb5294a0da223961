package kvstore

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node/raft"
)

func register(t *testing.T, k *testKV, at time.Duration) uint64 {
	t.Helper()
	r := k.mustApply(Command{Op: OpRegisterSession, Time: int64(at)})
	if r.Session != k.idx {
		t.Fatalf("session id %d, want the entry index %d", r.Session, k.idx)
	}
	return r.Session
}

func withSession(cmd Command, id, seq uint64, at time.Duration) Command {
	cmd.Session, cmd.Seq, cmd.Time = id, seq, int64(at)
	return cmd
}

func TestSessionExactlyOnce(t *testing.T) {
	k := newTestKV(t, Config{})
	id := register(t, k, time.Second)
	r1 := k.mustApply(withSession(put("a", "1"), id, 1, time.Second))
	k.mustApply(put("a", "other")) // someone else writes in between
	dup := k.apply(withSession(put("a", "1"), id, 1, time.Second))
	if !dup.Duplicate || dup.Rev != r1.Rev || dup.KV.ModRev != r1.KV.ModRev {
		t.Fatalf("retry: %+v, want the first answer %+v marked Duplicate", dup, r1)
	}
	if kv, _ := k.s.Get([]byte("a"), 0); string(kv.Value) != "other" || kv.Version != 2 {
		t.Fatalf("retry was applied again: a=%q version %d", kv.Value, kv.Version)
	}
	// A failed CAS is answered the same way on retry, even though the
	// compare would hold now.
	c := withSession(cas("a", Compare{Target: CompareValue, Value: []byte("x")}, OpPut, "y"), id, 2, time.Second)
	if r := k.apply(c); !errors.Is(r.Err, ErrCompareFailed) {
		t.Fatalf("cas: %v", r.Err)
	}
	k.mustApply(put("a", "x"))
	// Every retry, not just the first, gets the stored failure: answering
	// a duplicate rewrites the session row and must keep its code.
	for i := range 3 {
		if r := k.apply(c); !errors.Is(r.Err, ErrCompareFailed) || !r.Duplicate {
			t.Fatalf("cas retry %d: %+v, want the stored ErrCompareFailed", i+1, r)
		}
	}
	if r := k.apply(withSession(put("a", "old"), id, 1, time.Second)); !errors.Is(r.Err, ErrStaleSequence) {
		t.Fatalf("stale seq: %v, want ErrStaleSequence", r.Err)
	}
	if r := k.apply(withSession(put("a", "z"), 999, 1, time.Second)); !errors.Is(r.Err, ErrSessionExpired) {
		t.Fatalf("unknown session: %v, want ErrSessionExpired", r.Err)
	}
	k.mustApply(withSession(Command{Op: OpCloseSession}, id, 3, time.Second))
	if r := k.apply(withSession(put("a", "z"), id, 4, time.Second)); !errors.Is(r.Err, ErrSessionExpired) {
		t.Fatalf("closed session: %v, want ErrSessionExpired", r.Err)
	}
	if kv, _ := k.s.Get([]byte("a"), 0); string(kv.Value) != "x" {
		t.Fatalf("a=%q after refused commands, want x", kv.Value)
	}
}

func TestSessionAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	k := &testKV{t: t, s: s}
	id := register(t, k, time.Second)
	first := k.mustApply(withSession(put("a", "1"), id, 1, time.Second))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k.s = s
	if s.Applied() != 2 {
		t.Fatalf("applied %d after restart, want 2", s.Applied())
	}
	r := k.apply(withSession(put("a", "1"), id, 1, 2*time.Second))
	if !r.Duplicate || r.Rev != first.Rev {
		t.Fatalf("retry after restart: %+v", r)
	}
	if st, _ := s.Status(); st.Rev != 1 {
		t.Fatalf("rev %d after a retried put, want 1", st.Rev)
	}
}

func TestSessionExpiry(t *testing.T) {
	k := newTestKV(t, Config{SessionTTL: 10 * time.Second})
	idle := register(t, k, 1*time.Second)
	busy := register(t, k, 1*time.Second)
	seq := uint64(0)
	for at := 2 * time.Second; at <= 20*time.Second; at += 2 * time.Second {
		seq++
		k.mustApply(withSession(Command{Op: OpNoop}, busy, seq, at)) // keep-alive
	}
	if r := k.apply(withSession(put("a", "1"), idle, 1, 20*time.Second)); !errors.Is(r.Err, ErrSessionExpired) {
		t.Fatalf("idle session after 19s of log time: %v, want ErrSessionExpired", r.Err)
	}
	if r := k.apply(withSession(put("a", "1"), busy, seq+1, 20*time.Second)); r.Err != nil {
		t.Fatalf("busy session: %v", r.Err)
	}
	// The log clock never goes back: an entry with an old Time does not
	// revive anything or expire anything differently.
	if r := k.apply(withSession(put("a", "2"), busy, seq+2, time.Second)); r.Err != nil {
		t.Fatalf("entry with an old time: %v", r.Err)
	}
	st, _ := k.s.Status()
	if st.Clock != int64(20*time.Second) || st.Sessions != 1 {
		t.Fatalf("status %+v, want clock 20s and 1 session", st)
	}
	// A session expires at the same log index on every replica, however
	// the entries are batched.
	entries := func(k *testKV) []raft.Entry {
		var es []raft.Entry
		es = append(es, k.entry(Command{Op: OpRegisterSession, Time: int64(time.Second)}))
		for i := 2; i < 30; i++ {
			es = append(es, k.entry(withSession(put("k", "v"), 1, uint64(i), time.Duration(i)*time.Second)))
			if i == 5 {
				es = append(es, k.entry(Command{Op: OpRegisterSession, Time: int64(5 * time.Second)}))
			}
		}
		return es
	}
	a, b := newTestKV(t, Config{SessionTTL: 10 * time.Second}), newTestKV(t, Config{SessionTTL: 10 * time.Second})
	es := entries(a)
	entries(b)
	if _, err := a.s.Apply(es); err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if _, err := b.s.Apply([]raft.Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	if dumpStore(t, a.s) != dumpStore(t, b.s) {
		t.Fatal("one batch and entry-by-entry apply differ")
	}
}
