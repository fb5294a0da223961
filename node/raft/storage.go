package raft

import (
	"fmt"
	"slices"
)

// MemoryStorage is an in-memory Storage. Tests and the simulator use it as
// "the disk": the application writes each Ready into it, and a crash is
// simulated by keeping a Clone taken after the last durable write.
//
// MemoryStorage is not safe for concurrent use; the single goroutine that
// drives the core owns it.
type MemoryStorage struct {
	hardState HardState
	confState ConfState
	snapshot  Snapshot
	// ents[0] is a dummy entry holding the snapshot's index and term.
	// Invariant: ents[i].Index == ents[0].Index + i.
	ents []Entry
}

// NewMemoryStorage returns an empty MemoryStorage (no snapshot, no entries).
func NewMemoryStorage() *MemoryStorage {
	return &MemoryStorage{ents: make([]Entry, 1)}
}

// InitialState implements Storage.
func (ms *MemoryStorage) InitialState() (HardState, ConfState, error) {
	return ms.hardState, cloneConfState(ms.confState), nil
}

// SetHardState saves hs.
func (ms *MemoryStorage) SetHardState(hs HardState) error {
	ms.hardState = hs
	return nil
}

// SetConfState saves the membership the application got from
// Node.ApplyConfChange, so that InitialState returns it after a restart.
func (ms *MemoryStorage) SetConfState(cs ConfState) error {
	ms.confState = cloneConfState(cs)
	return nil
}

// Entries implements Storage.
func (ms *MemoryStorage) Entries(lo, hi, maxBytes uint64) ([]Entry, error) {
	offset := ms.ents[0].Index
	if lo <= offset {
		return nil, ErrCompacted
	}
	if hi > ms.lastIndex()+1 {
		return nil, fmt.Errorf("raft: memory storage entries [%d,%d) beyond last index %d: %w", lo, hi, ms.lastIndex(), ErrUnavailable)
	}
	if lo >= hi {
		return nil, nil
	}
	ents := limitSize(ms.ents[lo-offset:hi-offset], maxBytes)
	// The caller may append to the result: never let it alias our array.
	return ents[:len(ents):len(ents)], nil
}

// Term implements Storage.
func (ms *MemoryStorage) Term(i uint64) (uint64, error) {
	offset := ms.ents[0].Index
	if i < offset {
		return 0, ErrCompacted
	}
	if i-offset >= uint64(len(ms.ents)) {
		return 0, ErrUnavailable
	}
	return ms.ents[i-offset].Term, nil
}

// LastIndex implements Storage.
func (ms *MemoryStorage) LastIndex() (uint64, error) { return ms.lastIndex(), nil }

func (ms *MemoryStorage) lastIndex() uint64 {
	return ms.ents[0].Index + uint64(len(ms.ents)) - 1
}

// FirstIndex implements Storage.
func (ms *MemoryStorage) FirstIndex() (uint64, error) { return ms.ents[0].Index + 1, nil }

// Snapshot implements Storage.
func (ms *MemoryStorage) Snapshot() (Snapshot, error) { return ms.snapshot, nil }

// ApplySnapshot replaces the whole log with s. It returns ErrSnapOutOfDate
// when s is not newer than the current snapshot. The ConfState returned by
// InitialState becomes s's.
func (ms *MemoryStorage) ApplySnapshot(s Snapshot) error {
	if s.Meta.Index <= ms.snapshot.Meta.Index {
		return ErrSnapOutOfDate
	}
	ms.snapshot = s
	ms.ents = []Entry{{Term: s.Meta.Term, Index: s.Meta.Index}}
	ms.confState = cloneConfState(s.Meta.ConfState)
	return nil
}

// CreateSnapshot records a snapshot of the application state as of index i
// (which must be applied, so at most LastIndex). cs, when not nil, is the
// membership at i; otherwise the latest saved ConfState is used. The log is
// not compacted: call Compact for that.
func (ms *MemoryStorage) CreateSnapshot(i uint64, cs *ConfState, data []byte) (Snapshot, error) {
	if i <= ms.snapshot.Meta.Index {
		return Snapshot{}, ErrSnapOutOfDate
	}
	offset := ms.ents[0].Index
	if i > ms.lastIndex() {
		return Snapshot{}, fmt.Errorf("raft: create snapshot at %d beyond last index %d: %w", i, ms.lastIndex(), ErrUnavailable)
	}
	if i < offset {
		// The log was compacted past i: its term is gone.
		return Snapshot{}, fmt.Errorf("raft: create snapshot at %d below compacted index %d: %w", i, offset, ErrCompacted)
	}
	ms.snapshot.Meta.Index = i
	ms.snapshot.Meta.Term = ms.ents[i-offset].Term
	if cs != nil {
		ms.snapshot.Meta.ConfState = cloneConfState(*cs)
	} else {
		ms.snapshot.Meta.ConfState = cloneConfState(ms.confState)
	}
	ms.snapshot.Data = data
	return ms.snapshot, nil
}

// Compact discards all entries before compactIndex. The entry at
// compactIndex becomes the dummy entry whose term answers Term(compactIndex).
// The application must not compact beyond its applied index.
func (ms *MemoryStorage) Compact(compactIndex uint64) error {
	offset := ms.ents[0].Index
	if compactIndex <= offset {
		return ErrCompacted
	}
	if compactIndex > ms.lastIndex() {
		return fmt.Errorf("raft: compact %d beyond last index %d: %w", compactIndex, ms.lastIndex(), ErrUnavailable)
	}
	i := compactIndex - offset
	ents := make([]Entry, 1, uint64(len(ms.ents))-i)
	ents[0] = Entry{Index: ms.ents[i].Index, Term: ms.ents[i].Term}
	ents = append(ents, ms.ents[i+1:]...)
	ms.ents = ents
	return nil
}

// Append adds ents to the log. Entries already present are overwritten and
// any suffix after the new entries is discarded (the caller only ever
// appends what the core emitted in Ready.Entries, which replaces a
// conflicting tail). Entries at or below the snapshot index are ignored.
func (ms *MemoryStorage) Append(ents []Entry) error {
	if len(ents) == 0 {
		return nil
	}
	first := ms.ents[0].Index + 1
	last := ents[0].Index + uint64(len(ents)) - 1
	if last < first {
		return nil // all compacted already
	}
	if first > ents[0].Index {
		ents = ents[first-ents[0].Index:]
	}
	for i := 1; i < len(ents); i++ {
		if ents[i].Index != ents[i-1].Index+1 {
			return fmt.Errorf("raft: memory storage append: entry %d follows %d", ents[i].Index, ents[i-1].Index)
		}
	}
	offset := ents[0].Index - ms.ents[0].Index
	switch {
	case uint64(len(ms.ents)) > offset:
		ms.ents = append(ms.ents[:offset:offset], ents...)
	case uint64(len(ms.ents)) == offset:
		ms.ents = append(ms.ents, ents...)
	default:
		return fmt.Errorf("raft: memory storage append: missing log entry [last: %d, append at: %d]", ms.lastIndex(), ents[0].Index)
	}
	return nil
}

// Clone returns a deep copy of ms (the state a crash would leave behind).
func (ms *MemoryStorage) Clone() *MemoryStorage {
	c := &MemoryStorage{
		hardState: ms.hardState,
		confState: cloneConfState(ms.confState),
		snapshot:  ms.snapshot,
		ents:      make([]Entry, len(ms.ents)),
	}
	c.snapshot.Meta.ConfState = cloneConfState(ms.snapshot.Meta.ConfState)
	c.snapshot.Data = slices.Clone(ms.snapshot.Data)
	for i, e := range ms.ents {
		e.Data = slices.Clone(e.Data)
		c.ents[i] = e
	}
	return c
}

func cloneConfState(cs ConfState) ConfState {
	return ConfState{Voters: slices.Clone(cs.Voters), Learners: slices.Clone(cs.Learners)}
}

// entrySize is the byte cost of e used by the size limits.
func entrySize(e Entry) uint64 { return uint64(len(e.Data)) + 24 }

// limitSize returns the longest prefix of ents whose size is at most
// maxBytes, but always at least one entry.
func limitSize(ents []Entry, maxBytes uint64) []Entry {
	if len(ents) == 0 {
		return ents
	}
	size := entrySize(ents[0])
	for i := 1; i < len(ents); i++ {
		size += entrySize(ents[i])
		if size > maxBytes {
			return ents[:i]
		}
	}
	return ents
}
