package raft

import (
	"errors"
	"fmt"
)

// raftLog is the core's view of the log: a stable prefix read through
// Storage and an unstable suffix held in memory until the application has
// persisted it.
//
//	snapshot/first ..... applied ..... committed ..... stable ..... last
type raftLog struct {
	storage  Storage
	unstable unstable
	// committed is the highest index known to be on a quorum.
	// Invariant: applied <= committed <= lastIndex().
	committed uint64
	// applied is the highest index the application has applied.
	// Invariant: firstIndex()-1 <= applied <= committed (after restore, applied == snapshot index).
	applied uint64
	// maxNextEntsSize caps the bytes of CommittedEntries in one Ready.
	maxNextEntsSize uint64
}

func newLog(storage Storage, maxNextEntsSize uint64) (*raftLog, error) {
	first, err := storage.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("raft: storage first index: %w", err)
	}
	last, err := storage.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("raft: storage last index: %w", err)
	}
	l := &raftLog{storage: storage, maxNextEntsSize: maxNextEntsSize}
	l.unstable.offset = last + 1
	l.committed = first - 1
	l.applied = first - 1
	return l, nil
}

func (l *raftLog) String() string {
	return fmt.Sprintf("committed=%d applied=%d unstable.offset=%d len(unstable)=%d", l.committed, l.applied, l.unstable.offset, len(l.unstable.entries))
}

func (l *raftLog) firstIndex() uint64 {
	if i, ok := l.unstable.maybeFirstIndex(); ok {
		return i
	}
	i, err := l.storage.FirstIndex()
	if err != nil {
		panic(fmt.Sprintf("raft: storage first index: %v", err))
	}
	return i
}

func (l *raftLog) lastIndex() uint64 {
	if i, ok := l.unstable.maybeLastIndex(); ok {
		return i
	}
	i, err := l.storage.LastIndex()
	if err != nil {
		panic(fmt.Sprintf("raft: storage last index: %v", err))
	}
	return i
}

func (l *raftLog) lastTerm() uint64 {
	t, err := l.term(l.lastIndex())
	if err != nil {
		panic(fmt.Sprintf("raft: term of last index %d: %v", l.lastIndex(), err))
	}
	return t
}

// term returns the term of entry i. The valid range is
// [firstIndex()-1, lastIndex()]; outside it, 0 and an error.
func (l *raftLog) term(i uint64) (uint64, error) {
	if i < l.firstIndex()-1 {
		return 0, ErrCompacted
	}
	if i > l.lastIndex() {
		return 0, ErrUnavailable
	}
	if t, ok := l.unstable.maybeTerm(i); ok {
		return t, nil
	}
	t, err := l.storage.Term(i)
	if err == nil {
		return t, nil
	}
	if errors.Is(err, ErrCompacted) || errors.Is(err, ErrUnavailable) {
		return 0, err
	}
	panic(fmt.Sprintf("raft: storage term %d: %v", i, err))
}

// zeroTermOnOutOfRange returns 0 for out-of-range indices.
func (l *raftLog) zeroTermOnOutOfRange(i uint64) uint64 {
	t, err := l.term(i)
	if err != nil {
		return 0
	}
	return t
}

func (l *raftLog) matchTerm(i, term uint64) bool {
	t, err := l.term(i)
	return err == nil && t == term
}

// isUpToDate reports whether a log ending at (lasti, term) is at least as
// up to date as ours: compare last terms first, then last indices (Raft
// paper §5.4.1).
func (l *raftLog) isUpToDate(lasti, term uint64) bool {
	lt := l.lastTerm()
	return term > lt || (term == lt && lasti >= l.lastIndex())
}

// findConflict returns the index of the first entry of ents that is not in
// our log (missing or with a different term), or 0 if all are present.
// ents must be contiguous.
func (l *raftLog) findConflict(ents []Entry) uint64 {
	for _, e := range ents {
		if !l.matchTerm(e.Index, e.Term) {
			return e.Index
		}
	}
	return 0
}

// findConflictByTerm returns the largest index j <= index whose term is at
// most term, with that term. It lets a leader skip a whole term of
// mismatching entries in one round trip.
func (l *raftLog) findConflictByTerm(index, term uint64) (uint64, uint64) {
	for ; index > 0; index-- {
		t, err := l.term(index)
		if err != nil {
			return index, 0
		}
		if t <= term {
			return index, t
		}
	}
	return 0, 0
}

// maybeAppend handles the entries of a MsgApp whose previous entry is
// (index, logTerm). It returns the last index of the new entries and true
// if the previous entry matched. Entries already present with the same
// term are never touched: only a real conflict truncates (so duplicated or
// reordered MsgApps cannot drop matched entries).
func (l *raftLog) maybeAppend(index, logTerm, committed uint64, ents []Entry) (uint64, bool, error) {
	if !l.matchTerm(index, logTerm) {
		return 0, false, nil
	}
	lastNew := index + uint64(len(ents))
	ci := l.findConflict(ents)
	switch {
	case ci == 0:
	case ci <= l.committed:
		return 0, false, fmt.Errorf("raft: entry %d conflicts with committed entry (committed %d)", ci, l.committed)
	default:
		l.append(ents[ci-(index+1):]...)
	}
	l.commitTo(min(committed, lastNew))
	return lastNew, true, nil
}

// append adds ents (contiguous) and returns the new last index.
func (l *raftLog) append(ents ...Entry) uint64 {
	if len(ents) == 0 {
		return l.lastIndex()
	}
	if after := ents[0].Index - 1; after < l.committed {
		panic(fmt.Sprintf("raft: append after %d is below committed %d", after, l.committed))
	}
	l.unstable.truncateAndAppend(ents)
	return l.lastIndex()
}

func (l *raftLog) unstableEntries() []Entry {
	if len(l.unstable.entries) == 0 {
		return nil
	}
	return l.unstable.entries
}

// nextEnts returns the committed entries not yet applied.
func (l *raftLog) nextEnts() []Entry {
	lo := max(l.applied+1, l.firstIndex())
	if l.committed+1 > lo {
		ents, err := l.slice(lo, l.committed+1, l.maxNextEntsSize)
		if err != nil {
			panic(fmt.Sprintf("raft: unexpected error reading committed entries [%d,%d]: %v", lo, l.committed, err))
		}
		return ents
	}
	return nil
}

func (l *raftLog) hasNextEnts() bool {
	return l.committed+1 > max(l.applied+1, l.firstIndex())
}

func (l *raftLog) hasUnstableSnapshot() bool { return l.unstable.snapshot != nil }

// snapshot returns the latest snapshot (unstable first, then stable).
func (l *raftLog) snapshot() (Snapshot, error) {
	if l.unstable.snapshot != nil {
		return *l.unstable.snapshot, nil
	}
	return l.storage.Snapshot()
}

func (l *raftLog) commitTo(tocommit uint64) {
	if l.committed < tocommit {
		if l.lastIndex() < tocommit {
			panic(fmt.Sprintf("raft: commit %d > lastIndex %d", tocommit, l.lastIndex()))
		}
		l.committed = tocommit
	}
}

func (l *raftLog) appliedTo(i uint64) {
	if i == 0 {
		return
	}
	if l.committed < i || i < l.applied {
		panic(fmt.Sprintf("raft: applied %d out of range [prevApplied %d, committed %d]", i, l.applied, l.committed))
	}
	l.applied = i
}

func (l *raftLog) stableTo(i, t uint64) { l.unstable.stableTo(i, t) }

func (l *raftLog) stableSnapTo(i uint64) { l.unstable.stableSnapTo(i) }

// entries returns entries from i on, limited to maxBytes.
func (l *raftLog) entries(i, maxBytes uint64) ([]Entry, error) {
	if i > l.lastIndex() {
		return nil, nil
	}
	return l.slice(i, l.lastIndex()+1, maxBytes)
}

// maybeCommit commits maxIndex if its entry is of the given term: a leader
// commits by counting replicas only entries of its own term (figure 8).
func (l *raftLog) maybeCommit(maxIndex, term uint64) bool {
	if maxIndex > l.committed && l.zeroTermOnOutOfRange(maxIndex) == term {
		l.commitTo(maxIndex)
		return true
	}
	return false
}

func (l *raftLog) restore(s Snapshot) {
	l.committed = s.Meta.Index
	l.unstable.restore(s)
}

// slice returns entries in [lo, hi) limited to maxBytes (at least one).
func (l *raftLog) slice(lo, hi, maxBytes uint64) ([]Entry, error) {
	if err := l.mustCheckOutOfBounds(lo, hi); err != nil {
		return nil, err
	}
	if lo == hi {
		return nil, nil
	}
	var ents []Entry
	if lo < l.unstable.offset {
		stored, err := l.storage.Entries(lo, min(hi, l.unstable.offset), maxBytes)
		if errors.Is(err, ErrCompacted) {
			return nil, err
		} else if errors.Is(err, ErrUnavailable) {
			panic(fmt.Sprintf("raft: entries [%d,%d) unavailable from storage", lo, min(hi, l.unstable.offset)))
		} else if err != nil {
			panic(fmt.Sprintf("raft: storage entries [%d,%d): %v", lo, min(hi, l.unstable.offset), err))
		}
		if uint64(len(stored)) < min(hi, l.unstable.offset)-lo {
			return stored, nil // size-limited
		}
		ents = stored
	}
	if hi > l.unstable.offset {
		u := l.unstable.slice(max(lo, l.unstable.offset), hi)
		if len(ents) > 0 {
			combined := make([]Entry, len(ents), len(ents)+len(u))
			copy(combined, ents)
			ents = append(combined, u...)
		} else {
			ents = u
		}
	}
	return limitSize(ents, maxBytes), nil
}

// mustCheckOutOfBounds checks firstIndex <= lo <= hi <= lastIndex+1.
func (l *raftLog) mustCheckOutOfBounds(lo, hi uint64) error {
	if lo > hi {
		panic(fmt.Sprintf("raft: invalid slice %d > %d", lo, hi))
	}
	if lo < l.firstIndex() {
		return ErrCompacted
	}
	if length := l.lastIndex() + 1 - l.firstIndex(); hi > l.firstIndex()+length {
		panic(fmt.Sprintf("raft: slice [%d,%d) out of bound [%d,%d]", lo, hi, l.firstIndex(), l.lastIndex()))
	}
	return nil
}
