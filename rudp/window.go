package rudp

// dupWindow records which sequence numbers of one peer incarnation's stream
// have been received, for duplicate suppression, replay protection and
// acknowledgements (in the manner of the RFC 6479 bitmap).
type dupWindow struct {
	cum  uint64 // every seq < cum was received or given up by the sender. Invariant: cum >= 1
	top  uint64 // one past the highest seq marked. Invariant: cum <= top <= cum+recvWindow
	bits [recvWindow / 64]uint64
	// Invariant: bit s%recvWindow is set iff s in [cum, top) was received; bits for
	// positions outside [cum, cum+recvWindow) are clear.
}

// seqStatus is what a window says about a sequence number.
type seqStatus uint8

const (
	seqNew   seqStatus = iota // not received, inside the window
	seqDup                    // received before (or below the cumulative point)
	seqAhead                  // too far above the cumulative point to track
)

func newDupWindow(start uint64) dupWindow { return dupWindow{cum: max(start, 1), top: max(start, 1)} }

func (w *dupWindow) bit(s uint64) bool { return w.bits[(s%recvWindow)/64]&(1<<(s%64)) != 0 }
func (w *dupWindow) set(s uint64)      { w.bits[(s%recvWindow)/64] |= 1 << (s % 64) }
func (w *dupWindow) unset(s uint64)    { w.bits[(s%recvWindow)/64] &^= 1 << (s % 64) }

func (w *dupWindow) status(seq uint64) seqStatus {
	switch {
	case seq < w.cum:
		return seqDup
	case seq-w.cum >= recvWindow:
		return seqAhead
	case w.bit(seq):
		return seqDup
	}
	return seqNew
}

// mark records seq as received; status(seq) must be seqNew.
func (w *dupWindow) mark(seq uint64) {
	w.set(seq)
	w.top = max(w.top, seq+1)
	w.slide()
}

// slide moves cum over received sequence numbers.
func (w *dupWindow) slide() {
	for w.cum < w.top && w.bit(w.cum) {
		w.unset(w.cum)
		w.cum++
	}
}

// advance moves cum up to to (the sender's una): everything below is done.
func (w *dupWindow) advance(to uint64) {
	if to <= w.cum {
		return
	}
	if to-w.cum >= recvWindow {
		clear(w.bits[:])
	} else {
		for s := w.cum; s < to; s++ {
			w.unset(s)
		}
	}
	w.cum = to
	w.top = max(w.top, to)
	w.slide()
}

// ranges fills a with the cumulative point and up to maxRanges ranges of
// received sequence numbers above it, lowest first.
func (w *dupWindow) ranges(a *ackBlock, maxRanges int) {
	a.cum = w.cum
	a.n = 0
	s := w.cum
	for s < w.top && a.n < maxRanges {
		// Skip missing sequence numbers, a word at a time when possible.
		for s < w.top && !w.bit(s) {
			if s%64 == 0 && w.bits[(s%recvWindow)/64] == 0 {
				s += 64
				continue
			}
			s++
		}
		if s >= w.top {
			break
		}
		lo := s
		for s < w.top && w.bit(s) {
			s++
		}
		a.ranges[a.n] = ackRange{lo, s}
		a.n++
	}
}
