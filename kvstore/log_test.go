package kvstore

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/raftkv/raftkv/node/raft"
	bolt "go.etcd.io/bbolt"
)

// writableStorage is what both raft.MemoryStorage and LogStore offer.
type writableStorage interface {
	raft.Storage
	Append([]raft.Entry) error
	SetHardState(raft.HardState) error
	SetConfState(raft.ConfState) error
	ApplySnapshot(raft.Snapshot) error
	CreateSnapshot(uint64, *raft.ConfState, []byte) (raft.Snapshot, error)
	Compact(uint64) error
}

var (
	_ writableStorage = (*raft.MemoryStorage)(nil)
	_ writableStorage = (*LogStore)(nil)
)

func openTestLog(t testing.TB, path string, opts LogOptions) *LogStore {
	t.Helper()
	l, err := OpenLog(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// storageImpl makes a fresh storage; reopen (nil for memory) simulates a
// restart, returning the storage as read back from disk.
type storageImpl struct {
	name   string
	open   func(t *testing.T) writableStorage
	reopen func(t *testing.T, s writableStorage) writableStorage
}

func storageImpls() []storageImpl {
	boltOpen := func(cache int) func(t *testing.T) writableStorage {
		return func(t *testing.T) writableStorage {
			return openTestLog(t, filepath.Join(t.TempDir(), "raft.db"), LogOptions{NoSync: true, CacheBytes: cache})
		}
	}
	reopen := func(t *testing.T, s writableStorage) writableStorage {
		l := s.(*LogStore)
		path := l.Path()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return openTestLog(t, path, LogOptions{NoSync: true})
	}
	return []storageImpl{
		{name: "memory", open: func(*testing.T) writableStorage { return raft.NewMemoryStorage() }},
		{name: "bolt", open: boltOpen(0)},
		{name: "bolt-nocache", open: boltOpen(-1)},
		{name: "bolt-tinycache", open: boltOpen(100)},
		{name: "bolt-reopen", open: boltOpen(0), reopen: reopen},
	}
}

func ents(lo, hi, term uint64) []raft.Entry {
	var out []raft.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, raft.Entry{Index: i, Term: term, Data: fmt.Appendf(nil, "e%d/%d", i, term)})
	}
	return out
}

// errClass names the sentinel an error wraps, for comparisons.
func errClass(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, raft.ErrCompacted):
		return "ErrCompacted"
	case errors.Is(err, raft.ErrUnavailable):
		return "ErrUnavailable"
	case errors.Is(err, raft.ErrSnapOutOfDate):
		return "ErrSnapOutOfDate"
	}
	return "other"
}

// TestLogConformance runs one script against every Storage and checks
// each step's outcome.
func TestLogConformance(t *testing.T) {
	cs := raft.ConfState{Voters: []uint64{1, 2, 3}}
	type step struct {
		name string
		do   func(s writableStorage) error
		want string // errClass of the result
	}
	appendStep := func(lo, hi, term uint64) step {
		return step{fmt.Sprintf("append [%d,%d]@%d", lo, hi, term), func(s writableStorage) error { return s.Append(ents(lo, hi, term)) }, "nil"}
	}
	script := []step{
		{"empty entries", func(s writableStorage) error { _, err := s.Entries(1, 1, 100); return err }, "nil"},
		{"empty term 0", func(s writableStorage) error { _, err := s.Term(0); return err }, "nil"},
		{"empty term 1", func(s writableStorage) error { _, err := s.Term(1); return err }, "ErrUnavailable"},
		{"bootstrap snapshot", func(s writableStorage) error {
			return s.ApplySnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: 1, Term: 1, ConfState: cs}})
		}, "nil"},
		{"hard state", func(s writableStorage) error { return s.SetHardState(raft.HardState{Term: 1, Commit: 1}) }, "nil"},
		{"entries at snapshot", func(s writableStorage) error { _, err := s.Entries(1, 2, 100); return err }, "ErrCompacted"},
		appendStep(2, 10, 1),
		appendStep(1, 3, 1), // partly compacted: ignored below first; discards after 3
		appendStep(4, 10, 1),
		{"entries beyond last", func(s writableStorage) error { _, err := s.Entries(5, 12, 100); return err }, "ErrUnavailable"},
		{"gap", func(s writableStorage) error { return s.Append(ents(12, 13, 1)) }, "other"},
		appendStep(7, 9, 2), // conflict: truncates 10
		appendStep(10, 14, 2),
		appendStep(12, 12, 3), // truncates 13, 14
		{"create snapshot beyond last", func(s writableStorage) error { _, err := s.CreateSnapshot(13, nil, []byte("x")); return err }, "ErrUnavailable"},
		{"create snapshot", func(s writableStorage) error { _, err := s.CreateSnapshot(8, &cs, []byte("snap8")); return err }, "nil"},
		{"create older snapshot", func(s writableStorage) error { _, err := s.CreateSnapshot(5, nil, nil); return err }, "ErrSnapOutOfDate"},
		{"compact", func(s writableStorage) error { return s.Compact(6) }, "nil"},
		{"compact again", func(s writableStorage) error { return s.Compact(6) }, "ErrCompacted"},
		{"compact beyond", func(s writableStorage) error { return s.Compact(13) }, "ErrUnavailable"},
		{"term compacted", func(s writableStorage) error { _, err := s.Term(5); return err }, "ErrCompacted"},
		{"term at offset", func(s writableStorage) error { _, err := s.Term(6); return err }, "nil"},
		{"entries compacted", func(s writableStorage) error { _, err := s.Entries(6, 8, 100); return err }, "ErrCompacted"},
		{"conf state", func(s writableStorage) error {
			return s.SetConfState(raft.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{4}})
		}, "nil"},
		appendStep(3, 8, 9), // below first partly; truncates after 8
		{"old snapshot", func(s writableStorage) error {
			return s.ApplySnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: 8, Term: 2}})
		}, "ErrSnapOutOfDate"},
		{"newer snapshot", func(s writableStorage) error {
			return s.ApplySnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: 20, Term: 5, ConfState: cs}, Data: []byte("snap20")})
		}, "nil"},
		appendStep(21, 25, 5),
		{"compact to last", func(s writableStorage) error { return s.Compact(25) }, "nil"},
		appendStep(26, 26, 6),
	}
	// observe renders everything a reader can see.
	observe := func(s writableStorage) string {
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		hs, cs, _ := s.InitialState()
		snap, _ := s.Snapshot()
		out := fmt.Sprintf("first=%d last=%d hs=%+v cs=%v/%v snap=%d/%d/%v/%q\n", first, last, hs, cs.Voters, cs.Learners,
			snap.Meta.Index, snap.Meta.Term, snap.Meta.ConfState.Voters, snap.Data)
		for i := first - 1; i <= last+1; i++ {
			term, err := s.Term(i)
			out += fmt.Sprintf("term(%d)=%d,%s ", i, term, errClass(err))
		}
		for _, max := range []uint64{0, 30, 60, 1 << 20} {
			es, err := s.Entries(first, last+1, max)
			out += fmt.Sprintf("\nentries(max=%d)=%s:", max, errClass(err))
			for _, e := range es {
				out += fmt.Sprintf(" %d/%d/%s", e.Index, e.Term, e.Data)
			}
		}
		return out
	}
	var want []string // observations of the first implementation
	for _, impl := range storageImpls() {
		t.Run(impl.name, func(t *testing.T) {
			s := impl.open(t)
			for i, st := range script {
				if got := errClass(st.do(s)); got != st.want {
					t.Fatalf("step %d %s: got %s, want %s", i, st.name, got, st.want)
				}
				if impl.reopen != nil {
					s = impl.reopen(t, s)
				}
				obs := observe(s)
				if len(want) <= i {
					want = append(want, obs)
				} else if diff := cmp.Diff(want[i], obs); diff != "" {
					t.Fatalf("step %d %s: observation differs from %s (-want +got):\n%s", i, st.name, "memory", diff)
				}
			}
		})
	}
}

// TestLogDifferential applies the same random operations to
// raft.MemoryStorage and LogStore and compares everything observable.
func TestLogDifferential(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			mem := raft.NewMemoryStorage()
			path := filepath.Join(t.TempDir(), "raft.db")
			disk := openTestLog(t, path, LogOptions{NoSync: true, CacheBytes: 2000})
			for op := 0; op < 400; op++ {
				step := randomLogStep(rng, mem)
				errM := step.apply(mem)
				errD := step.apply(disk)
				if errClass(errM) != errClass(errD) {
					t.Fatalf("op %d %v: memory %v, disk %v", op, step, errM, errD)
				}
				if op%50 == 49 {
					disk.Close()
					disk = openTestLog(t, path, LogOptions{NoSync: true, CacheBytes: 2000})
				}
				compareStorages(t, fmt.Sprintf("op %d %v", op, step), mem, disk, rng)
			}
		})
	}
}

func compareStorages(t *testing.T, ctx string, want, got raft.Storage, rng *rand.Rand) {
	t.Helper()
	if diff := diffStorages(want, got, rng); diff != "" {
		t.Fatalf("%s: %s", ctx, diff)
	}
}

// diffStorages describes the first difference between two storages ("" if
// none): all metadata, every term, and entry reads (random ranges when rng
// is not nil, else everything).
func diffStorages(want, got raft.Storage, rng *rand.Rand) string {
	wf, _ := want.FirstIndex()
	gf, _ := got.FirstIndex()
	wl, _ := want.LastIndex()
	gl, _ := got.LastIndex()
	if wf != gf || wl != gl {
		return fmt.Sprintf("first/last: want %d/%d, got %d/%d", wf, wl, gf, gl)
	}
	whs, wcs, _ := want.InitialState()
	ghs, gcs, _ := got.InitialState()
	opts := cmpopts.EquateEmpty()
	if diff := cmp.Diff(whs, ghs); diff != "" {
		return fmt.Sprintf("hard state (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wcs, gcs, opts); diff != "" {
		return fmt.Sprintf("conf state (-want +got):\n%s", diff)
	}
	ws, _ := want.Snapshot()
	gs, _ := got.Snapshot()
	if !bytes.Equal(ws.Data, gs.Data) {
		return fmt.Sprintf("snapshot data: want %d bytes, got %d bytes (differing)", len(ws.Data), len(gs.Data))
	}
	ws.Data, gs.Data = nil, nil
	if diff := cmp.Diff(ws, gs, opts); diff != "" {
		return fmt.Sprintf("snapshot (-want +got):\n%s", diff)
	}
	terms := []uint64{}
	for i := wf - 1; i <= wl+1; i++ {
		terms = append(terms, i)
	}
	if rng != nil && len(terms) > 24 { // sample: the ends and a few inside
		sample := append(terms[:3:3], terms[len(terms)-3:]...)
		for range 18 {
			sample = append(sample, terms[rng.IntN(len(terms))])
		}
		terms = sample
	}
	for _, i := range terms {
		wt, werr := want.Term(i)
		gt, gerr := got.Term(i)
		if wt != gt || errClass(werr) != errClass(gerr) {
			return fmt.Sprintf("term(%d): want %d,%v got %d,%v", i, wt, werr, gt, gerr)
		}
	}
	ranges := [][3]uint64{{wf, wl + 1, 1 << 62}}
	if rng != nil {
		ranges = nil
		for range 3 {
			lo := wf - 1 + rng.Uint64N(wl-wf+3)
			hi := lo + rng.Uint64N(wl-lo+3)
			ranges = append(ranges, [3]uint64{lo, hi, rng.Uint64N(400)})
		}
	}
	for _, r := range ranges {
		we, werr := want.Entries(r[0], r[1], r[2])
		ge, gerr := got.Entries(r[0], r[1], r[2])
		if errClass(werr) != errClass(gerr) {
			return fmt.Sprintf("entries%v: want err %v, got %v", r, werr, gerr)
		}
		if !entriesEqual(we, ge) {
			return fmt.Sprintf("entries%v (-want +got):\n%s", r, cmp.Diff(we, ge, opts))
		}
	}
	return ""
}

// logStep is one write to a storage; the crash test's child replays the
// same steps.
type logStep struct {
	kind  string // save, compact, create, conf
	hs    raft.HardState
	ents  []raft.Entry
	snap  raft.Snapshot
	index uint64
	cs    *raft.ConfState
	data  []byte
}

func (s logStep) String() string {
	switch s.kind {
	case "save":
		lo, hi := uint64(0), uint64(0)
		if len(s.ents) > 0 {
			lo, hi = s.ents[0].Index, s.ents[len(s.ents)-1].Index
		}
		return fmt.Sprintf("save(hs=%v ents=[%d,%d] snap=%d)", s.hs, lo, hi, s.snap.Meta.Index)
	default:
		return fmt.Sprintf("%s(%d)", s.kind, s.index)
	}
}

func (s logStep) apply(st writableStorage) error {
	switch s.kind {
	case "save":
		if l, ok := st.(*LogStore); ok {
			return l.Save(s.hs, s.ents, s.snap, true)
		}
		if !s.snap.IsEmpty() {
			if err := st.ApplySnapshot(s.snap); err != nil {
				return err
			}
		}
		if err := st.Append(s.ents); err != nil {
			return err
		}
		if !s.hs.IsEmpty() {
			return st.SetHardState(s.hs)
		}
		return nil
	case "compact":
		return st.Compact(s.index)
	case "create":
		_, err := st.CreateSnapshot(s.index, s.cs, s.data)
		return err
	case "conf":
		return st.SetConfState(*s.cs)
	}
	panic("unknown step " + s.kind)
}

// randomLogStep returns a valid-looking (sometimes invalid) write for the
// state of model.
func randomLogStep(rng *rand.Rand, model *raft.MemoryStorage) logStep {
	first, _ := model.FirstIndex()
	last, _ := model.LastIndex()
	hs, _, _ := model.InitialState()
	snap, _ := model.Snapshot()
	lastTerm, _ := model.Term(last)
	term := max(hs.Term, lastTerm)
	randData := func(n int) []byte {
		b := make([]byte, rng.IntN(n))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	switch p := rng.IntN(100); {
	case p < 70:
		start := last + 1
		if rng.IntN(4) == 0 {
			term++
			start = first + rng.Uint64N(last-first+2) // conflict somewhere in the log
			if rng.IntN(10) == 0 {
				start = first - min(first, 1+rng.Uint64N(3)) // partly compacted
			}
		}
		n := 1 + rng.IntN(20)
		es := make([]raft.Entry, n)
		for i := range es {
			es[i] = raft.Entry{Index: start + uint64(i), Term: term, Type: raft.EntryType(rng.IntN(2)), Data: randData(120)}
		}
		if start == 0 {
			es = es[1:]
		}
		hs := raft.HardState{Term: term, Vote: rng.Uint64N(4), Commit: min(last, hs.Commit+rng.Uint64N(5))}
		return logStep{kind: "save", hs: hs, ents: es}
	case p < 78:
		s := raft.Snapshot{Meta: raft.SnapshotMeta{Index: snap.Meta.Index + rng.Uint64N(max(last+10, snap.Meta.Index+1)-snap.Meta.Index),
			Term: term + 1, ConfState: raft.ConfState{Voters: []uint64{1, rng.Uint64N(9) + 2}}}, Data: randData(300)}
		return logStep{kind: "save", snap: s, hs: raft.HardState{Term: term + 1, Commit: s.Meta.Index}}
	case p < 88:
		return logStep{kind: "compact", index: first - 1 + rng.Uint64N(last-first+3)}
	case p < 96:
		var cs *raft.ConfState
		if rng.IntN(2) == 0 {
			cs = &raft.ConfState{Voters: []uint64{rng.Uint64N(5) + 1}}
		}
		// Not below first-1: raft.MemoryStorage.CreateSnapshot panics there
		// (LogStore returns ErrCompacted, see TestLogCreateSnapshotCompacted).
		lo := max(snap.Meta.Index, first-1)
		return logStep{kind: "create", index: lo + rng.Uint64N(max(last+3, lo+1)-lo), cs: cs, data: randData(200)}
	default:
		return logStep{kind: "conf", cs: &raft.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{rng.Uint64N(5) + 3}}}
	}
}

func TestLogSaveIsAtomic(t *testing.T) {
	// A failing Save (a gap) must leave nothing of the batch behind,
	// including the hard state written in the same call.
	l := openTestLog(t, filepath.Join(t.TempDir(), "raft.db"), LogOptions{NoSync: true})
	if err := l.Save(raft.HardState{Term: 1}, ents(1, 5, 1), raft.Snapshot{}, true); err != nil {
		t.Fatal(err)
	}
	err := l.Save(raft.HardState{Term: 2, Vote: 3}, append(ents(6, 7, 2), ents(9, 9, 2)...), raft.Snapshot{}, true)
	if err == nil {
		t.Fatal("save with a hole succeeded")
	}
	hs, _, _ := l.InitialState()
	last, _ := l.LastIndex()
	if hs.Term != 1 || last != 5 {
		t.Fatalf("after failed save: hs=%v last=%d, want term 1 last 5", hs, last)
	}
}

func TestLogOpenInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	openTestLog(t, path, LogOptions{})
	if _, err := OpenLog(path, LogOptions{Timeout: 50e6}); err == nil {
		t.Fatal("second open of a locked log succeeded")
	}
}

func TestLogCreateSnapshotCompacted(t *testing.T) {
	l := openTestLog(t, filepath.Join(t.TempDir(), "raft.db"), LogOptions{NoSync: true})
	if err := l.Append(ents(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Compact(8); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateSnapshot(5, nil, nil); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("create snapshot below the first index: got %v, want ErrCompacted", err)
	}
	if _, err := l.CreateSnapshot(8, nil, []byte("x")); err != nil {
		t.Fatalf("create snapshot at the compaction point: %v", err)
	}
}

func entriesEqual(a, b []raft.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Index != b[i].Index || a[i].Term != b[i].Term || a[i].Type != b[i].Type || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

func TestLogOpenRefusesHoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	l, err := OpenLog(path, LogOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ents(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRaftLog).Delete(encodeIndex(5)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if l, err := OpenLog(path, LogOptions{}); err == nil {
		l.Close()
		t.Fatal("opened a log with a hole at index 5")
	}
}

// TestLogUnsyncedSaveWritesNothing: a Save without sync (only the commit
// index moved) leaves the file untouched, since an unsynced bbolt commit
// is unsafe on power loss; the next synced write and Close write it.
func TestLogUnsyncedSaveWritesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "raft.db")
	l := openTestLog(t, path, LogOptions{})
	// onDisk is the hard state a copy of the file holds now (what a crash
	// would leave, as the file has no write in flight).
	onDisk := func() raft.HardState {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cp := filepath.Join(dir, fmt.Sprintf("copy-%d.db", len(b)^int(rand.Uint32())))
		if err := os.WriteFile(cp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := OpenLog(cp, LogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		hs, _, err := c.InitialState()
		if err != nil {
			t.Fatal(err)
		}
		return hs
	}
	if err := l.Save(raft.HardState{Term: 1, Vote: 1, Commit: 1}, ents(1, 3, 1), raft.Snapshot{}, true); err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before, sz := onDisk(), size()
	if err := l.Save(raft.HardState{Term: 1, Vote: 1, Commit: 3}, nil, raft.Snapshot{}, false); err != nil {
		t.Fatal(err)
	}
	if got := onDisk(); got != before || size() != sz {
		t.Fatalf("after an unsynced Save the file holds %+v (size %d), want it untouched: %+v (size %d)", got, size(), before, sz)
	}
	// The next synced write takes the deferred commit index along.
	if err := l.Save(raft.HardState{}, ents(4, 4, 1), raft.Snapshot{}, true); err != nil {
		t.Fatal(err)
	}
	if got, want := onDisk(), (raft.HardState{Term: 1, Vote: 1, Commit: 3}); got != want {
		t.Fatalf("after the next synced Save the file holds %+v, want %+v", got, want)
	}
	// A term or vote change must be synced.
	if err := l.Save(raft.HardState{Term: 2, Vote: 2, Commit: 3}, nil, raft.Snapshot{}, false); err == nil {
		t.Fatal("an unsynced Save changing term and vote succeeded")
	}
	// Close writes what is still deferred.
	if err := l.Save(raft.HardState{Term: 1, Vote: 1, Commit: 4}, nil, raft.Snapshot{}, false); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := onDisk(), (raft.HardState{Term: 1, Vote: 1, Commit: 4}); got != want {
		t.Fatalf("after Close the file holds %+v, want %+v", got, want)
	}
}

// TestLogCacheKeepsReturnedEntries: slices that Entries returned from the
// tail cache keep their contents while later Saves append to the cache (it
// reuses its spare capacity) and replace a conflicting suffix (which must
// not be overwritten in place). Appending to a returned slice must not
// reach into the cache either.
func TestLogCacheKeepsReturnedEntries(t *testing.T) {
	l := openTestLog(t, filepath.Join(t.TempDir(), "raft.db"), LogOptions{NoSync: true})
	type held struct{ got, want []raft.Entry }
	var hold []held
	take := func(lo, hi uint64) {
		t.Helper()
		got, err := l.Entries(lo, hi, math.MaxUint64)
		if err != nil {
			t.Fatalf("entries [%d,%d): %v", lo, hi, err)
		}
		want := make([]raft.Entry, len(got))
		for i, e := range got {
			e.Data = bytes.Clone(e.Data)
			want[i] = e
		}
		hold = append(hold, held{got, want})
	}
	check := func(when string) {
		t.Helper()
		for i, h := range hold {
			if !entriesEqual(h.got, h.want) {
				t.Fatalf("%s: slice %d returned by Entries changed: %v, want %v", when, i, h.got, h.want)
			}
		}
	}
	save := func(es []raft.Entry) {
		t.Helper()
		if err := l.Save(raft.HardState{}, es, raft.Snapshot{}, true); err != nil {
			t.Fatal(err)
		}
	}
	// One entry per Save, so the cache grows by append and has spare
	// capacity behind the slices handed out.
	for i := uint64(1); i <= 40; i++ {
		save(ents(i, i, 1))
		take(1, i+1)
		take(max(1, i-2), i+1)
	}
	check("after appends")
	// Appending to a returned slice must not write into the cache.
	last := hold[len(hold)-1].got
	_ = append(last, raft.Entry{Index: 41, Term: 9, Data: []byte("caller's")})
	take(1, 41)
	check("after a caller appended to a returned slice")
	// Replace the suffix from index 30 with entries of term 2, then keep
	// appending one at a time.
	save(ents(30, 32, 2))
	check("after replacing a suffix")
	for i := uint64(33); i <= 60; i++ {
		save(ents(i, i, 2))
		take(25, i+1)
	}
	check("after appends behind a replaced suffix")
	got, err := l.Entries(1, 61, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(ents(1, 29, 1), ents(30, 60, 2)...); !entriesEqual(got, want) {
		t.Fatalf("entries [1,61) = %v, want %v", got, want)
	}
}
