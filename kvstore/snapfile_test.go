package kvstore

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/node/raft"
	bolt "go.etcd.io/bbolt"
)

// snapFiles lists the snapshot directory (every name, temporary or not).
func snapFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// TestSnapshotFileLifecycle: the log names a file in the snapshot dir,
// Snapshot reads it back, a newer snapshot replaces (and removes) it, and
// a restart reads the same.
func TestSnapshotFileLifecycle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "raft.db")
	l, err := OpenLog(path, LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ents(1, 20, 1)); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("snapshot-5 "), 1000)
	f, err := l.WriteSnapshotFile(5, 1, func(w io.Writer) error { _, err := w.Write(data); return err })
	if err != nil {
		t.Fatal(err)
	}
	cs := raft.ConfState{Voters: []uint64{1, 2, 3}}
	if err := l.RecordSnapshot(raft.SnapshotMeta{Index: 5, Term: 1, ConfState: cs}, f); err != nil {
		t.Fatal(err)
	}
	if got := snapFiles(t, l.SnapshotDir()); !slices.Equal(got, []string{f.Name}) {
		t.Fatalf("snapshot dir holds %v, want [%s]", got, f.Name)
	}
	if err := l.RecordSnapshot(raft.SnapshotMeta{Index: 5, Term: 1}, f); !errors.Is(err, raft.ErrSnapOutOfDate) {
		t.Fatalf("recording the same index again: %v, want ErrSnapOutOfDate", err)
	}
	if err := l.RecordSnapshot(raft.SnapshotMeta{Index: 7, Term: 2}, f); err == nil {
		t.Fatal("recorded a snapshot whose term is not the log's")
	}
	// A newer one replaces it, through CreateSnapshot.
	if _, err := l.CreateSnapshot(10, nil, []byte("snapshot-10")); err != nil {
		t.Fatal(err)
	}
	if got := snapFiles(t, l.SnapshotDir()); len(got) != 1 || got[0] == f.Name {
		t.Fatalf("after a newer snapshot the dir holds %v, want only the new file", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTestLog(t, path, LogOptions{})
	s, err := l.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if s.Meta.Index != 10 || string(s.Data) != "snapshot-10" {
		t.Fatalf("after restart: snapshot %d %q, want 10 %q", s.Meta.Index, s.Data, "snapshot-10")
	}
	// A snapshot file that will not be recorded is removed on request, the
	// recorded one never.
	g, err := l.WriteSnapshotFile(12, 1, func(w io.Writer) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RemoveSnapshotFile(g); err != nil {
		t.Fatal(err)
	}
	if got := snapFiles(t, l.SnapshotDir()); len(got) != 1 {
		t.Fatalf("after removing an unrecorded file the dir holds %v", got)
	}
}

// TestSnapshotFileCrashes simulates a crash at every step of creating a
// snapshot (write, fsync, rename, record, remove the old file) and of
// saving a received one: after a restart the log names a complete file
// (the old snapshot or the new one), Snapshot returns its data, and no
// other file is left in the snapshot directory.
func TestSnapshotFileCrashes(t *testing.T) {
	type op struct {
		name string
		run  func(l *LogStore) error
	}
	ops := []op{
		{"create", func(l *LogStore) error {
			f, err := l.WriteSnapshotFile(8, 1, func(w io.Writer) error { _, err := w.Write([]byte("new")); return err })
			if err != nil {
				return err
			}
			return l.RecordSnapshot(raft.SnapshotMeta{Index: 8, Term: 1}, f)
		}},
		{"install", func(l *LogStore) error {
			return l.Save(raft.HardState{Term: 3, Commit: 30}, nil,
				raft.Snapshot{Meta: raft.SnapshotMeta{Index: 30, Term: 3}, Data: []byte("new")}, true)
		}},
	}
	steps := []string{"snap-synced", "snap-renamed", "snap-recorded", ""} // "": no crash
	for _, o := range ops {
		for _, step := range steps {
			t.Run(o.name+"/"+step, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "raft.db")
				l, err := OpenLog(path, LogOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if err := l.Append(ents(1, 20, 1)); err != nil {
					t.Fatal(err)
				}
				if _, err := l.CreateSnapshot(4, nil, []byte("old")); err != nil {
					t.Fatal(err)
				}
				crashed := false
				l.testHook = func(s string) error {
					if s == step {
						crashed = true
						return errTestCrash
					}
					return nil
				}
				err = o.run(l)
				if crashed != (err != nil) && step != "snap-recorded" {
					t.Fatalf("crash at %q: crashed %v, err %v", step, crashed, err)
				}
				if step != "" && !crashed {
					t.Fatalf("step %q never ran", step)
				}
				l.testHook = nil
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				l = openTestLog(t, path, LogOptions{})
				s, err := l.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				// The new snapshot is there once it was recorded.
				wantNew := step == "" || step == "snap-recorded"
				if got := string(s.Data); (got == "new") != wantNew || (got != "new" && (got != "old" || s.Meta.Index != 4)) {
					t.Fatalf("after a crash at %q: snapshot %d %q (want new: %v)", step, s.Meta.Index, got, wantNew)
				}
				if files := snapFiles(t, l.SnapshotDir()); len(files) != 1 {
					t.Fatalf("after a crash at %q the snapshot dir holds %v, want one file", step, files)
				}
			})
		}
	}
}

// TestOpenLogRefusesDamagedSnapshot: a log whose snapshot file is missing,
// truncated or corrupt is refused with an error naming the file and what
// to do; nothing is removed.
func TestOpenLogRefusesDamagedSnapshot(t *testing.T) {
	damage := map[string]func(path string) error{
		"missing":   os.Remove,
		"truncated": func(p string) error { return os.Truncate(p, 3) },
		"corrupt": func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 0xff
			return os.WriteFile(p, b, 0o600)
		},
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "raft.db")
			l, err := OpenLog(path, LogOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Append(ents(1, 10, 1)); err != nil {
				t.Fatal(err)
			}
			if _, err := l.CreateSnapshot(5, nil, bytes.Repeat([]byte{7}, 100)); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(l.SnapshotDir(), l.st.snapFile.Name)
			l.Close()
			if err := fn(file); err != nil {
				t.Fatal(err)
			}
			l, err = OpenLog(path, LogOptions{})
			if err == nil {
				l.Close()
				t.Fatalf("opened a log whose snapshot file is %s", name)
			}
			if msg := err.Error(); !strings.Contains(msg, filepath.Base(file)) || !strings.Contains(msg, "empty data dir") {
				t.Fatalf("error %q does not name the file and the remedy", msg)
			}
		})
	}
}

// TestOpenLogRefusesFormat1: a log written by an older raftkv (snapshot
// data inside raft.db, no format key) is refused with ErrFormat.
func TestOpenLogRefusesFormat1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket(bucketRaftLog); err != nil {
			return err
		}
		sb, err := tx.CreateBucket(bucketRaftState)
		if err != nil {
			return err
		}
		if err := putMsgpack(sb, keySnapMeta, raft.SnapshotMeta{Index: 1, Term: 1}); err != nil {
			return err
		}
		return sb.Put([]byte("snapdata"), []byte("old envelope"))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLog(path, LogOptions{})
	if err == nil {
		l.Close()
		t.Fatal("opened a format 1 log")
	}
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "older raftkv") {
		t.Fatalf("error %v, want ErrFormat saying an older raftkv wrote it", err)
	}
}

// TestOpenLogRemovesOrphans: files no log record names (an interrupted
// write, a file written but not recorded) are removed at open.
func TestOpenLogRemovesOrphans(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "raft.db")
	l := openTestLog(t, path, LogOptions{})
	if err := l.Append(ents(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateSnapshot(3, nil, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.WriteSnapshotFile(6, 1, func(w io.Writer) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.SnapshotDir(), snapFileName(9, 1)+".123.tmp"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.SnapshotDir(), "README"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	kept := l.st.snapFile.Name
	l.Close()
	l = openTestLog(t, path, LogOptions{})
	if got := snapFiles(t, l.SnapshotDir()); !slices.Equal(got, []string{kept, "README"}) {
		t.Fatalf("after open the snapshot dir holds %v, want [%s README]", got, kept)
	}
}

// TestPinnedSnapshotIsTheStateWhenPinned: BeginSnapshot pins the state;
// applies after it do not show in the snapshot written later.
func TestPinnedSnapshotIsTheStateWhenPinned(t *testing.T) {
	k := newTestKV(t, Config{})
	fillKV(t, k, "x")
	p, err := k.s.BeginSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	pinned := p.Info().Applied
	ref := newTestKV(t, Config{})
	var buf bytes.Buffer
	done := make(chan error, 1)
	go func() {
		// Applies continue while the snapshot is pinned.
		k.mustApply(put("late", "1"))
		k.mustApply(put("a", "changed"))
		_, err := p.WriteTo(&buf)
		done <- errors.Join(err, p.Close())
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if k.s.Applied() != pinned+2 {
		t.Fatalf("applied %d, want %d", k.s.Applied(), pinned+2)
	}
	if err := ref.s.InstallSnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: pinned}, Data: buf.Bytes()}); err != nil {
		t.Fatal(err)
	}
	if ref.s.Applied() != pinned {
		t.Fatalf("installed snapshot applied %d, want %d", ref.s.Applied(), pinned)
	}
	if kv, err := ref.s.Get([]byte("late"), 0); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("the snapshot shows a write applied after it was pinned: %+v %v", kv, err)
	}
	if kv, err := k.s.Get([]byte("late"), 0); err != nil || string(kv.Value) != "1" {
		t.Fatalf("the live store lost the late write: %+v %v", kv, err)
	}
}
