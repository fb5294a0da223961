package kvstore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/raftkv/raftkv/node/raft"
)

// sameResults compares results by their persisted form (Code, not the
// wrapped Err value).
var sameResults = cmpopts.IgnoreFields(Result{}, "Err")

// TestApplyThenAnswersBeforeCommit: ApplyThen hands the results over while
// its transaction is still open; until the commit returns, Applied(),
// WaitApplied and reads show the state before the batch.
func TestApplyThenAnswersBeforeCommit(t *testing.T) {
	k := newTestKV(t, Config{})
	k.mustApply(put("a", "old"))
	before := k.s.Applied()
	id := register(t, k, time.Second)
	e := k.entry(withSession(put("a", "new"), id, 1, time.Second))

	atCommit, release := make(chan struct{}), make(chan struct{})
	k.s.testHook = func(step string) error {
		if step == "apply-commit" {
			close(atCommit)
			<-release
		}
		return nil
	}
	type out struct {
		rs  []Result
		err error
	}
	answered, done := make(chan []Result, 1), make(chan out, 1)
	go func() {
		rs, err := k.s.ApplyThen([]raft.Entry{e}, func(rs []Result) error {
			answered <- rs
			return nil
		})
		done <- out{rs, err}
	}()
	early := <-answered
	<-atCommit // the transaction waits to commit
	if len(early) != 1 || early[0].Index != e.Index || early[0].Err != nil || early[0].KV == nil {
		t.Fatalf("early results %+v, want the put at %d", early, e.Index)
	}
	if got := k.s.Applied(); got != before {
		t.Fatalf("Applied() = %d before the commit, want %d", got, before)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := k.s.WaitApplied(ctx, e.Index); err == nil {
		t.Fatal("WaitApplied returned before the commit")
	}
	if kv, err := k.s.Get([]byte("a"), 0); err != nil || string(kv.Value) != "old" {
		t.Fatalf("read before the commit: %q, %v; want the committed old value", kv.Value, err)
	}
	close(release)
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if d := cmp.Diff(early, o.rs, sameResults); d != "" {
		t.Fatalf("returned results differ from the early ones (-early +returned):\n%s", d)
	}
	if got := k.s.Applied(); got != e.Index {
		t.Fatalf("Applied() = %d after the commit, want %d", got, e.Index)
	}
	if kv, err := k.s.Get([]byte("a"), 0); err != nil || string(kv.Value) != "new" {
		t.Fatalf("read after the commit: %q, %v", kv.Value, err)
	}
}

// TestApplyThenCrashBeforeCommit: a process that answered a batch and died
// before the commit (here: the commit fails, as a crash leaves the file)
// has the state before the batch on disk; re-applying the batch gives the
// answers already given, and a client's retry of an answered write gets
// that answer from the session table, not a second application.
func TestApplyThenCrashBeforeCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := Open(path, Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	k := &testKV{t: t, s: s}
	a, b := register(t, k, time.Second), register(t, k, time.Second)
	k.mustApply(withSession(put("x", "1"), a, 1, time.Second))
	committed := s.Applied()
	putX := withSession(put("x", "2"), a, 2, 2*time.Second)
	batch := []raft.Entry{
		k.entry(putX),
		k.entry(withSession(cas("x", Compare{Target: CompareValue, Value: []byte("1")}, OpPut, "3"), b, 1, 3*time.Second)),
		k.entry(withSession(Command{Op: OpDelete, Key: []byte("x")}, b, 2, 4*time.Second)),
	}
	s.testHook = func(step string) error {
		if step == "apply-commit" {
			return errTestCrash
		}
		return nil
	}
	var answered []Result
	if _, err := s.ApplyThen(batch, func(rs []Result) error {
		answered = append([]Result(nil), rs...)
		return nil
	}); !errors.Is(err, errTestCrash) {
		t.Fatalf("ApplyThen: %v, want the simulated crash", err)
	}
	if len(answered) != len(batch) || !errors.Is(answered[1].Err, ErrCompareFailed) || answered[2].Deleted != 1 {
		t.Fatalf("answers before the crash: %+v", answered)
	}
	s.Close() // releases the lock, as the dying process would
	if s, err = Open(path, Config{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k.s = s
	if got := s.Applied(); got != committed {
		t.Fatalf("applied %d after the crash, want %d: the uncommitted batch reached the file", got, committed)
	}
	again, err := s.Apply(batch)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(answered, again, sameResults); d != "" {
		t.Fatalf("re-applied results differ from the answers given before the crash (-answered +again):\n%s", d)
	}
	retry := k.apply(putX)
	if !retry.Duplicate || retry.Rev != answered[0].Rev || retry.KV == nil || retry.KV.ModRev != answered[0].KV.ModRev {
		t.Fatalf("retry of the answered put: %+v, want the answer %+v as a duplicate", retry, answered[0])
	}
	if _, err := s.Get([]byte("x"), 0); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("x after the retry: %v, want deleted (the retry must not apply again)", err)
	}
}

// TestApplyThenErrorRollsBack: an error from then rolls the batch back.
func TestApplyThenErrorRollsBack(t *testing.T) {
	k := newTestKV(t, Config{})
	k.mustApply(put("a", "1"))
	before, dump := k.s.Applied(), dumpStore(t, k.s)
	stop := errors.New("stop")
	if _, err := k.s.ApplyThen([]raft.Entry{k.entry(put("a", "2"))}, func([]Result) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ApplyThen: %v, want then's error", err)
	}
	if k.s.Applied() != before || dumpStore(t, k.s) != dump {
		t.Fatal("a batch whose then failed changed the store")
	}
}
