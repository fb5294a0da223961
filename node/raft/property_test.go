package raft

import (
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// TestQuorumCommitIndexProperty pits committedIndex against a brute-force
// reference: the largest index that at least a majority of voters hold.
func TestQuorumCommitIndexProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 7).Draw(t, "voters")
		matches := rapid.SliceOfN(rapid.Uint64Range(0, 20), n, n).Draw(t, "matches")
		r := &raft{prs: map[uint64]*Progress{}}
		for i, m := range matches {
			id := uint64(i + 1)
			r.cs.Voters = append(r.cs.Voters, id)
			r.prs[id] = &Progress{Match: m}
		}
		// Learners never count.
		r.prs[99] = &Progress{Match: 1000, IsLearner: true}
		var want uint64
		for idx := uint64(0); idx <= 20; idx++ {
			have := 0
			for _, m := range matches {
				if m >= idx {
					have++
				}
			}
			if have > n/2 {
				want = idx
			}
		}
		if got := r.committedIndex(); got != want {
			t.Fatalf("committedIndex(%v) = %d, want %d", matches, got, want)
		}
	})
}

// TestInflightsProperty checks the ring against a plain slice.
func TestInflightsProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		size := rapid.IntRange(1, 10).Draw(t, "size")
		in := newInflights(size)
		var ref []uint64
		next := uint64(1)
		for range rapid.IntRange(0, 100).Draw(t, "ops") {
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0, 1:
				if len(ref) < size {
					next += rapid.Uint64Range(1, 3).Draw(t, "step")
					in.add(next)
					ref = append(ref, next)
				}
			case 2:
				to := rapid.Uint64Range(0, next+2).Draw(t, "to")
				in.freeLE(to)
				ref = slices.DeleteFunc(ref, func(x uint64) bool { return x <= to })
			case 3:
				in.freeFirstOne()
				if len(ref) > 0 {
					ref = ref[1:]
				}
			}
			if in.count != len(ref) || in.full() != (len(ref) == size) {
				t.Fatalf("count %d full %t, reference %v (size %d)", in.count, in.full(), ref, size)
			}
		}
	})
}

// TestVoteUpToDateProperty: isUpToDate is the lexicographic order on
// (lastTerm, lastIndex).
func TestVoteUpToDateProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		terms := rapid.SliceOfN(rapid.Uint64Range(1, 4), 0, 8).Draw(rt, "terms")
		slices.Sort(terms)
		r := newTestRaft(t, 1, []uint64{1, 2, 3}, nil)
		setLog(t, r, 5, terms...)
		t := rt
		ci := rapid.Uint64Range(0, 12).Draw(t, "candIndex")
		ct := rapid.Uint64Range(0, 5).Draw(t, "candTerm")
		li, lt := r.raftLog.lastIndex(), r.raftLog.lastTerm()
		want := ct > lt || (ct == lt && ci >= li)
		if got := r.raftLog.isUpToDate(ci, ct); got != want {
			t.Fatalf("isUpToDate(%d,%d) vs ours (%d,%d) = %t, want %t", ci, ct, li, lt, got, want)
		}
	})
}
