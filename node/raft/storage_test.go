package raft

import (
	"errors"
	"slices"
	"testing"
)

func msWithEntries(t *testing.T, snapIndex, snapTerm uint64, terms ...uint64) *MemoryStorage {
	t.Helper()
	ms := NewMemoryStorage()
	if snapIndex > 0 {
		if err := ms.ApplySnapshot(Snapshot{Meta: SnapshotMeta{Index: snapIndex, Term: snapTerm}}); err != nil {
			t.Fatal(err)
		}
	}
	var ents []Entry
	for i, term := range terms {
		ents = append(ents, Entry{Index: snapIndex + 1 + uint64(i), Term: term})
	}
	if err := ms.Append(ents); err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestMemoryStorageTerm(t *testing.T) {
	ms := msWithEntries(t, 3, 3, 4, 5) // dummy 3@3, 4@4, 5@5
	tests := []struct {
		i     uint64
		term  uint64
		wantE error
	}{
		{2, 0, ErrCompacted},
		{3, 3, nil},
		{4, 4, nil},
		{5, 5, nil},
		{6, 0, ErrUnavailable},
	}
	for _, tt := range tests {
		got, err := ms.Term(tt.i)
		if !errors.Is(err, tt.wantE) && !(err == nil && tt.wantE == nil) {
			t.Errorf("Term(%d) err = %v, want %v", tt.i, err, tt.wantE)
		}
		if got != tt.term {
			t.Errorf("Term(%d) = %d, want %d", tt.i, got, tt.term)
		}
	}
}

func TestMemoryStorageEntries(t *testing.T) {
	ms := msWithEntries(t, 3, 3, 4, 5, 6)
	size := entrySize(Entry{})
	tests := []struct {
		lo, hi, max uint64
		wantE       error
		want        []uint64 // indices
	}{
		{2, 6, 1 << 30, ErrCompacted, nil},
		{3, 4, 1 << 30, ErrCompacted, nil},
		{4, 5, 1 << 30, nil, []uint64{4}},
		{4, 7, 1 << 30, nil, []uint64{4, 5, 6}},
		{4, 7, 0, nil, []uint64{4}},           // at least one
		{4, 7, 2 * size, nil, []uint64{4, 5}}, // size limited
		{4, 8, 1 << 30, ErrUnavailable, nil},
	}
	for _, tt := range tests {
		ents, err := ms.Entries(tt.lo, tt.hi, tt.max)
		if tt.wantE != nil {
			if !errors.Is(err, tt.wantE) {
				t.Errorf("Entries(%d,%d) err = %v, want %v", tt.lo, tt.hi, err, tt.wantE)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Entries(%d,%d): %v", tt.lo, tt.hi, err)
		}
		var got []uint64
		for _, e := range ents {
			got = append(got, e.Index)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Entries(%d,%d,%d) = %v, want %v", tt.lo, tt.hi, tt.max, got, tt.want)
		}
	}
}

func TestMemoryStorageLastFirstIndex(t *testing.T) {
	ms := msWithEntries(t, 3, 3, 4, 5)
	if li, _ := ms.LastIndex(); li != 5 {
		t.Errorf("LastIndex = %d, want 5", li)
	}
	if fi, _ := ms.FirstIndex(); fi != 4 {
		t.Errorf("FirstIndex = %d, want 4", fi)
	}
	if err := ms.Append([]Entry{{Index: 6, Term: 5}}); err != nil {
		t.Fatal(err)
	}
	if li, _ := ms.LastIndex(); li != 6 {
		t.Errorf("LastIndex = %d, want 6", li)
	}
	if err := ms.Compact(4); err != nil {
		t.Fatal(err)
	}
	if fi, _ := ms.FirstIndex(); fi != 5 {
		t.Errorf("FirstIndex after Compact(4) = %d, want 5", fi)
	}
}

func TestMemoryStorageCompact(t *testing.T) {
	tests := []struct {
		i      uint64
		wantE  error
		wantFI uint64
	}{
		{2, ErrCompacted, 4},
		{3, ErrCompacted, 4},
		{4, nil, 5},
		{5, nil, 6},
		{6, ErrUnavailable, 4},
	}
	for _, tt := range tests {
		ms := msWithEntries(t, 3, 3, 4, 5)
		err := ms.Compact(tt.i)
		if tt.wantE != nil && !errors.Is(err, tt.wantE) || tt.wantE == nil && err != nil {
			t.Errorf("Compact(%d) = %v, want %v", tt.i, err, tt.wantE)
		}
		if fi, _ := ms.FirstIndex(); fi != tt.wantFI {
			t.Errorf("Compact(%d): FirstIndex = %d, want %d", tt.i, fi, tt.wantFI)
		}
		if tt.wantE == nil {
			if term, err := ms.Term(tt.i); err != nil || term != tt.i {
				t.Errorf("Compact(%d): Term(%d) = %d, %v; want the dummy entry's term", tt.i, tt.i, term, err)
			}
		}
	}
}

func TestMemoryStorageCreateSnapshot(t *testing.T) {
	ms := msWithEntries(t, 3, 3, 4, 5)
	cs := ConfState{Voters: []uint64{1, 2, 3}}
	snap, err := ms.CreateSnapshot(4, &cs, []byte("data"))
	if err != nil {
		t.Fatal(err)
	}
	if snap.Meta.Index != 4 || snap.Meta.Term != 4 || string(snap.Data) != "data" || !slices.Equal(snap.Meta.ConfState.Voters, cs.Voters) {
		t.Fatalf("snapshot = %+v", snap)
	}
	if _, err := ms.CreateSnapshot(4, nil, nil); !errors.Is(err, ErrSnapOutOfDate) {
		t.Fatalf("second CreateSnapshot(4) = %v, want ErrSnapOutOfDate", err)
	}
	if _, err := ms.CreateSnapshot(9, nil, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("CreateSnapshot(9) = %v, want ErrUnavailable", err)
	}
	// CreateSnapshot does not compact.
	if fi, _ := ms.FirstIndex(); fi != 4 {
		t.Fatalf("FirstIndex = %d, want 4", fi)
	}
}

func TestMemoryStorageAppend(t *testing.T) {
	tests := []struct {
		name  string
		ents  []Entry
		want  []uint64 // terms from index 4
		wantE bool
	}{
		{"same", []Entry{{Index: 4, Term: 4}, {Index: 5, Term: 5}}, []uint64{4, 5}, false},
		{"conflict truncates", []Entry{{Index: 4, Term: 4}, {Index: 5, Term: 6}}, []uint64{4, 6}, false},
		{"extend", []Entry{{Index: 6, Term: 5}}, []uint64{4, 5, 5}, false},
		{"overwrite middle", []Entry{{Index: 5, Term: 7}}, []uint64{4, 7}, false},
		{"compacted prefix ignored", []Entry{{Index: 2, Term: 3}, {Index: 3, Term: 3}, {Index: 4, Term: 6}}, []uint64{6}, false},
		{"gap", []Entry{{Index: 7, Term: 5}}, []uint64{4, 5}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := msWithEntries(t, 3, 3, 4, 5)
			err := ms.Append(tt.ents)
			if (err != nil) != tt.wantE {
				t.Fatalf("Append err = %v, wantErr %t", err, tt.wantE)
			}
			li, _ := ms.LastIndex()
			var got []uint64
			for i := uint64(4); i <= li; i++ {
				term, _ := ms.Term(i)
				got = append(got, term)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("terms = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMemoryStorageApplySnapshot(t *testing.T) {
	ms := msWithEntries(t, 3, 3, 4, 5)
	cs := ConfState{Voters: []uint64{1, 2}, Learners: []uint64{3}}
	if err := ms.ApplySnapshot(Snapshot{Meta: SnapshotMeta{Index: 10, Term: 7, ConfState: cs}}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := ms.FirstIndex(); fi != 11 {
		t.Fatalf("FirstIndex = %d, want 11", fi)
	}
	if li, _ := ms.LastIndex(); li != 10 {
		t.Fatalf("LastIndex = %d, want 10", li)
	}
	if term, _ := ms.Term(10); term != 7 {
		t.Fatalf("Term(10) = %d, want 7", term)
	}
	_, gotCS, _ := ms.InitialState()
	if !slices.Equal(gotCS.Voters, cs.Voters) || !slices.Equal(gotCS.Learners, cs.Learners) {
		t.Fatalf("conf state = %+v, want %+v", gotCS, cs)
	}
	if err := ms.ApplySnapshot(Snapshot{Meta: SnapshotMeta{Index: 9, Term: 7}}); !errors.Is(err, ErrSnapOutOfDate) {
		t.Fatalf("older snapshot: %v, want ErrSnapOutOfDate", err)
	}
}

func TestMemoryStorageCloneIsDeep(t *testing.T) {
	ms := msWithEntries(t, 0, 0, 1, 1)
	_ = ms.SetHardState(HardState{Term: 1, Vote: 2, Commit: 1})
	c := ms.Clone()
	_ = ms.Append([]Entry{{Index: 2, Term: 2}, {Index: 3, Term: 2}})
	_ = ms.SetHardState(HardState{Term: 2})
	if li, _ := c.LastIndex(); li != 2 {
		t.Fatalf("clone LastIndex = %d, want 2", li)
	}
	if term, _ := c.Term(2); term != 1 {
		t.Fatalf("clone Term(2) = %d, want 1", term)
	}
	if hs, _, _ := c.InitialState(); hs != (HardState{Term: 1, Vote: 2, Commit: 1}) {
		t.Fatalf("clone hard state = %+v", hs)
	}
}

func TestMemoryStorageEntriesDoNotAlias(t *testing.T) {
	ms := msWithEntries(t, 0, 0, 1, 1, 1)
	ents, _ := ms.Entries(1, 3, 1<<30)
	_ = append(ents, Entry{Index: 99, Term: 99})
	if term, _ := ms.Term(3); term != 1 {
		t.Fatalf("appending to returned entries changed storage: Term(3) = %d", term)
	}
}

// A snapshot below an index the log was already compacted to has no term
// to record: CreateSnapshot must refuse it rather than index out of range.
func TestMemoryStorageCreateSnapshotBelowCompacted(t *testing.T) {
	ms := msWithEntries(t, 3, 3, 4, 5, 6)
	if err := ms.Compact(5); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.CreateSnapshot(4, nil, nil); !errors.Is(err, ErrCompacted) {
		t.Fatalf("CreateSnapshot(4) after Compact(5) = %v, want ErrCompacted", err)
	}
	if snap, err := ms.CreateSnapshot(5, nil, nil); err != nil || snap.Meta.Term != 5 {
		t.Fatalf("CreateSnapshot(5) = %+v, %v; want term 5", snap.Meta, err)
	}
}
