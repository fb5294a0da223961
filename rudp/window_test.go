package rudp

import (
	"testing"

	"pgregory.net/rapid"
)

// refWindow is the dumb reference for dupWindow: a set of received
// sequence numbers and a floor set by advance.
type refWindow struct {
	seen  map[uint64]bool
	floor uint64
}

func (r *refWindow) cum() uint64 {
	c := r.floor
	for r.seen[c] {
		c++
	}
	return c
}

func (r *refWindow) status(seq uint64) seqStatus {
	c := r.cum()
	switch {
	case seq < c || r.seen[seq]:
		return seqDup
	case seq-c >= recvWindow:
		return seqAhead
	}
	return seqNew
}

// TestDupWindowMatchesReference drives dupWindow and the reference with the
// same random marks and advances and compares every answer, the cumulative
// point and the acknowledged ranges.
func TestDupWindowMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		start := rapid.Uint64Range(1, 1<<40).Draw(t, "start")
		w := newDupWindow(start)
		ref := &refWindow{seen: map[uint64]bool{}, floor: start}
		steps := rapid.IntRange(1, 300).Draw(t, "steps")
		for range steps {
			c := ref.cum()
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0: // the sender's una moves up
				to := c + rapid.Uint64Range(0, 2*recvWindow).Draw(t, "advance")
				w.advance(to)
				ref.floor = max(ref.floor, to)
			default: // a fragment arrives, near or far from the window
				var seq uint64
				if rapid.Bool().Draw(t, "near") {
					seq = c + rapid.Uint64Range(0, 70).Draw(t, "near offset")
				} else {
					seq = max(1, c+rapid.Uint64Range(0, 2*recvWindow).Draw(t, "far offset")-recvWindow/2)
				}
				got, want := w.status(seq), ref.status(seq)
				if got != want {
					t.Fatalf("status(%d) = %d, reference %d (cum %d)", seq, got, want, ref.cum())
				}
				if got == seqNew {
					w.mark(seq)
					ref.seen[seq] = true
				}
			}
			if w.cum != ref.cum() {
				t.Fatalf("cum = %d, reference %d", w.cum, ref.cum())
			}
			var a ackBlock
			w.ranges(&a, maxAckRanges)
			prev := a.cum
			for _, r := range a.ranges[:a.n] {
				if r.lo <= prev || r.hi <= r.lo {
					t.Fatalf("range %v after %d", r, prev)
				}
				for s := prev; s < r.hi; s++ {
					if (s >= r.lo) != ref.seen[s] && s >= ref.floor {
						t.Fatalf("seq %d: in range %v but seen=%v", s, r, ref.seen[s])
					}
				}
				prev = r.hi
			}
		}
	})
}

func TestBroadcastWindow(t *testing.T) {
	var w bcastWindow
	for _, tt := range []struct {
		seq  uint64
		want bool
	}{{5, true}, {5, false}, {3, true}, {3, false}, {70, true}, {6, false}, {69, true}, {7, true}, {6, false}, {70, false}, {200, true}, {137, true}, {136, false}} {
		if got := w.accept(tt.seq); got != tt.want {
			t.Fatalf("accept(%d) = %v, want %v", tt.seq, got, tt.want)
		}
	}
}
