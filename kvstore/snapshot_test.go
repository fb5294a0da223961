package kvstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node/raft"
)

// fillKV writes some history and a session into k; it returns the session.
func fillKV(t *testing.T, k *testKV, tag string) uint64 {
	t.Helper()
	id := register(t, k, time.Second)
	for i := range 50 {
		k.mustApply(withSession(put(string(rune('a'+i%7)), tag+string(rune('0'+i%10))), id, uint64(i+1), time.Second))
	}
	k.mustApply(Command{Op: OpDelete, Key: []byte("c")})
	return id
}

func TestSnapshotRoundTrip(t *testing.T) {
	src := newTestKV(t, Config{})
	id := fillKV(t, src, "x")
	data, info, err := src.s.SnapshotBytes()
	if err != nil {
		t.Fatal(err)
	}
	if info.Applied != src.s.Applied() || info.Rev != 51 || info.Size != int64(len(data)) {
		t.Fatalf("snapshot info %+v (len %d)", info, len(data))
	}
	for _, name := range []string{"fresh", "over existing"} {
		t.Run(name, func(t *testing.T) {
			dst := newTestKV(t, Config{})
			if name == "over existing" {
				register(t, dst, time.Second)
				dst.mustApply(put("a", "dst"))
				dst.mustApply(put("only-in-dst", "z"))
			}
			if err := dst.s.InstallSnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: info.Applied, Term: 1}, Data: data}); err != nil {
				t.Fatal(err)
			}
			if got, want := dumpStore(t, dst.s), dumpStore(t, src.s); got != want {
				t.Fatalf("installed store differs:\n got %s\nwant %s", got, want)
			}
			if dst.s.Applied() != info.Applied {
				t.Fatalf("applied %d, want %d", dst.s.Applied(), info.Applied)
			}
			// Sessions came along: a retry is still answered from the table.
			dst.idx = dst.s.Applied()
			r := dst.apply(withSession(put("a", "retry"), id, 50, time.Second))
			if !r.Duplicate {
				t.Fatalf("retry after install: %+v", r)
			}
			// And the store keeps working, with history.
			dst.mustApply(put("a", "after"))
			if kv, err := dst.s.Get([]byte("a"), 2); err != nil || string(kv.Value) != "x0" {
				t.Fatalf("history after install: %q %v", kv.Value, err)
			}
		})
	}
}

func TestSnapshotInstallRefusals(t *testing.T) {
	src := newTestKV(t, Config{})
	fillKV(t, src, "x")
	data, info, err := src.s.SnapshotBytes()
	if err != nil {
		t.Fatal(err)
	}
	dst := newTestKV(t, Config{})
	fillKV(t, dst, "y")
	before := dumpStore(t, dst.s)
	corrupt := bytes.Clone(data)
	for i := len(snapshotMagic) + 4096; i < len(corrupt); i += 97 {
		corrupt[i] ^= 0x5a
	}
	for _, tt := range []struct {
		name  string
		index uint64
		data  []byte
	}{
		{"wrong index", info.Applied + 1, data},
		{"no header", info.Applied + 5, data[len(snapshotMagic):]},
		{"header only", info.Applied + 5, snapshotMagic},
		{"garbage", info.Applied + 5, append(bytes.Clone(snapshotMagic), bytes.Repeat([]byte{7}, 10000)...)},
		{"truncated", info.Applied + 5, data[:len(data)/2]},
		{"corrupt pages", info.Applied + 5, corrupt},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := dst.s.InstallSnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: tt.index}, Data: tt.data})
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("install: %v, want ErrBadSnapshot", err)
			}
			if got := dumpStore(t, dst.s); got != before {
				t.Fatal("refused snapshot changed the store")
			}
			if _, err := os.Stat(dst.s.tmpPath()); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("temporary file left behind: %v", err)
			}
		})
	}
	// A snapshot at or below the applied index is ignored.
	old := dst.s.Applied()
	if err := dst.s.InstallSnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: old}, Data: []byte("junk")}); err != nil {
		t.Fatalf("stale snapshot: %v", err)
	}
	if dumpStore(t, dst.s) != before {
		t.Fatal("stale snapshot changed the store")
	}
}

func TestSnapshotBootstrapEmpty(t *testing.T) {
	k := newTestKV(t, Config{})
	if err := k.s.InstallSnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: 1, Term: 1}}); err != nil {
		t.Fatal(err)
	}
	st, _ := k.s.Status()
	if st.Applied != 1 || st.AppliedTerm != 1 || st.Rev != 0 {
		t.Fatalf("status after bootstrap %+v", st)
	}
	k.idx = 1
	k.mustApply(put("a", "b"))
}

// TestSnapshotInstallCrash injects a crash between the steps of an install
// and checks that reopening finds the old store (crash before the rename)
// or the new one (after), never a mix, and no temporary file.
func TestSnapshotInstallCrash(t *testing.T) {
	src := newTestKV(t, Config{})
	fillKV(t, src, "new")
	data, info, err := src.s.SnapshotBytes()
	if err != nil {
		t.Fatal(err)
	}
	want := dumpStore(t, src.s)
	for _, tt := range []struct {
		step    string
		wantNew bool
	}{
		{"synced", false},
		{"renamed", true},
		{"dir-synced", true},
	} {
		t.Run(tt.step, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kv.db")
			s, err := Open(path, Config{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			k := &testKV{t: t, s: s}
			register(t, k, time.Second)
			k.mustApply(put("a", "old"))
			k.mustApply(put("only-old", "old"))
			old := dumpStore(t, s)
			s.testHook = func(step string) error {
				if step == tt.step {
					return errTestCrash
				}
				return nil
			}
			err = s.InstallSnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: info.Applied}, Data: data})
			if !errors.Is(err, errTestCrash) {
				t.Fatalf("install: %v, want the simulated crash", err)
			}
			s.Close() // releases the lock, as the dying process would
			s, err = Open(path, Config{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got := dumpStore(t, s)
			switch {
			case tt.wantNew && got != want:
				t.Fatalf("after a crash at %s: not the new store", tt.step)
			case !tt.wantNew && got != old:
				t.Fatalf("after a crash at %s: not the old store", tt.step)
			}
			if _, err := os.Stat(s.tmpPath()); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("temporary file left after reopen: %v", err)
			}
		})
	}
}

func TestRecover(t *testing.T) {
	// The log recorded a snapshot, then the process died before the store
	// installed it: Recover installs it from the log.
	src := newTestKV(t, Config{})
	fillKV(t, src, "x")
	data, info, err := src.s.SnapshotBytes()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := openTestLog(t, filepath.Join(dir, "raft.db"), LogOptions{NoSync: true})
	snap := raft.Snapshot{Meta: raft.SnapshotMeta{Index: info.Applied, Term: 1, ConfState: raft.ConfState{Voters: []uint64{1}}}, Data: data}
	if err := l.Save(raft.HardState{Term: 1, Commit: info.Applied}, nil, snap, true); err != nil {
		t.Fatal(err)
	}
	kv, err := Open(filepath.Join(dir, "kv.db"), Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	if err := Recover(l, kv); err != nil {
		t.Fatal(err)
	}
	if kv.Applied() != info.Applied || dumpStore(t, kv) != dumpStore(t, src.s) {
		t.Fatalf("after Recover: applied %d, want %d with the snapshot's data", kv.Applied(), info.Applied)
	}
	if err := Recover(l, kv); err != nil { // nothing to do now
		t.Fatal(err)
	}
}

func TestSnapshotWhileApplying(t *testing.T) {
	// A snapshot taken while Apply runs is a consistent state: installing
	// it gives exactly a replay of the log up to its applied index.
	k := newTestKV(t, Config{})
	var es []raft.Entry
	for i := range 400 {
		es = append(es, k.entry(put(string(rune('a'+i%13)), string(rune('0'+i%10)))))
	}
	done := make(chan error, 1)
	go func() {
		for i := 0; i < len(es); i += 10 {
			if _, err := k.s.Apply(es[i : i+10]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var snaps [][]byte
	var infos []SnapshotInfo
	for range 5 {
		data, info, err := k.s.SnapshotBytes()
		if err != nil {
			t.Fatal(err)
		}
		snaps, infos = append(snaps, data), append(infos, info)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, data := range snaps {
		if infos[i].Applied == 0 {
			continue
		}
		got := newTestKV(t, Config{})
		if err := got.s.InstallSnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: infos[i].Applied}, Data: data}); err != nil {
			t.Fatal(err)
		}
		ref := newTestKV(t, Config{})
		if _, err := ref.s.Apply(es[:infos[i].Applied]); err != nil {
			t.Fatal(err)
		}
		if dumpStore(t, got.s) != dumpStore(t, ref.s) {
			t.Fatalf("snapshot %d at applied %d is not the replayed state", i, infos[i].Applied)
		}
	}
}

// TestCheckSnapshot: CheckSnapshot accepts what WriteSnapshot wrote and
// refuses damaged or foreign bytes without installing anything.
func TestCheckSnapshot(t *testing.T) {
	src := newTestKV(t, Config{})
	fillKV(t, src, "c")
	data, _, err := src.s.SnapshotBytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSnapshot(data); err != nil {
		t.Fatalf("CheckSnapshot of a fresh snapshot: %v", err)
	}
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x40
	for name, bad := range map[string][]byte{
		"empty":       nil,
		"no header":   data[len(snapshotMagic):],
		"truncated":   data[:len(data)-5],
		"flipped bit": flipped,
		"extra bytes": append(bytes.Clone(data), 0),
	} {
		if err := CheckSnapshot(bad); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: CheckSnapshot = %v, want ErrBadSnapshot", name, err)
		}
	}
}
