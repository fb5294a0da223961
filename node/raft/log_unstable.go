package raft

import "fmt"

// unstable holds what the core has accepted but the application has not yet
// persisted: an incoming snapshot and/or entries following it.
type unstable struct {
	// snapshot is the incoming snapshot, if any.
	snapshot *Snapshot
	// entries are not yet written to Storage.
	// Invariant: entries[i].Index == offset + i.
	entries []Entry
	// offset is the index of entries[0] (or where it would be).
	// Invariant: snapshot == nil || snapshot.Meta.Index + 1 == offset at restore time.
	offset uint64
}

// maybeFirstIndex returns the first index known from the unstable snapshot.
func (u *unstable) maybeFirstIndex() (uint64, bool) {
	if u.snapshot != nil {
		return u.snapshot.Meta.Index + 1, true
	}
	return 0, false
}

// maybeLastIndex returns the last index held by unstable, if any.
func (u *unstable) maybeLastIndex() (uint64, bool) {
	if l := len(u.entries); l != 0 {
		return u.offset + uint64(l) - 1, true
	}
	if u.snapshot != nil {
		return u.snapshot.Meta.Index, true
	}
	return 0, false
}

// maybeTerm returns the term of entry i if unstable knows it.
func (u *unstable) maybeTerm(i uint64) (uint64, bool) {
	if i < u.offset {
		if u.snapshot != nil && u.snapshot.Meta.Index == i {
			return u.snapshot.Meta.Term, true
		}
		return 0, false
	}
	last, ok := u.maybeLastIndex()
	if !ok || i > last {
		return 0, false
	}
	return u.entries[i-u.offset].Term, true
}

// stableTo marks entries up to (i, t) as persisted. A mismatching term means
// the entry was replaced since the Ready that carried it: keep it.
func (u *unstable) stableTo(i, t uint64) {
	gt, ok := u.maybeTerm(i)
	if !ok || gt != t || i < u.offset {
		return
	}
	n := i + 1 - u.offset
	u.entries = u.entries[n:]
	if len(u.entries) == 0 {
		u.entries = nil
	}
	u.offset = i + 1
}

// stableSnapTo marks the unstable snapshot at index i as persisted.
func (u *unstable) stableSnapTo(i uint64) {
	if u.snapshot != nil && u.snapshot.Meta.Index == i {
		u.snapshot = nil
	}
}

func (u *unstable) restore(s Snapshot) {
	u.offset = s.Meta.Index + 1
	u.entries = nil
	u.snapshot = &s
}

// truncateAndAppend adds ents, replacing any unstable entries at or after
// ents[0].Index.
func (u *unstable) truncateAndAppend(ents []Entry) {
	after := ents[0].Index
	switch {
	case after == u.offset+uint64(len(u.entries)):
		u.entries = append(u.entries, ents...)
	case after <= u.offset:
		// Everything unstable is replaced; the new entries start the
		// unstable part (earlier stable entries after 'after' are
		// overwritten when the application appends these).
		u.offset = after
		u.entries = append([]Entry(nil), ents...)
	default:
		keep := u.slice(u.offset, after)
		u.entries = append(append(make([]Entry, 0, len(keep)+len(ents)), keep...), ents...)
	}
}

func (u *unstable) slice(lo, hi uint64) []Entry {
	if lo > hi || lo < u.offset || hi > u.offset+uint64(len(u.entries)) {
		panic(fmt.Sprintf("raft: unstable slice [%d,%d) out of bound [%d,%d)", lo, hi, u.offset, u.offset+uint64(len(u.entries))))
	}
	return u.entries[lo-u.offset : hi-u.offset]
}
