package rudp

import (
	"net/netip"
	"slices"
	"time"
)

// retiredIncarnations is how many past incarnations of an address are
// remembered so that their late or replayed datagrams are dropped.
const retiredIncarnations = 8

// peer is the state kept for one remote address, guarded by Endpoint.mu.
type peer struct {
	addr       netip.AddrPort
	remoteInc  uint64 // incarnation of the process at addr; 0 until heard from
	remoteNode uint64
	retired    [retiredIncarnations]uint64
	nRetired   int
	lastHeard  time.Time
	// authFailedAt is when this address last sent an "auth failed"
	// notice answering this incarnation (unauthenticated; zero if never).
	authFailedAt time.Time

	// Receive side, for remoteInc.
	recvInit   bool      // win is valid
	maxPN      uint64    // highest packet number of a data datagram from remoteInc
	win        dupWindow // fragments received from remoteInc
	ackPending int       // fragments received since the last ack sent
	ackDue     time.Time // when a delayed ack must go out; zero if none
	lastDataAt time.Time // arrival of the newest fragment (for ack delay)
	partials   map[uint64]*partial
	reasmBytes int // reserved by partials and undelivered messages from this peer

	// Send side.
	open          *[]byte    // data datagram being filled, sealed by flush; nil if none
	openFrames    int        // frames in open
	openMaxIdx    uint64     // sentIdx of the newest frame in open
	sentPNs       []pnIdx    // recent data datagrams, by increasing pn
	nextSeq       uint64     // next sequence number to assign. Invariant: nextSeq >= 1
	queue         []*outFrag // fragments not yet sent, in message order
	inflight      []*outFrag // sent fragments by increasing seq; acked ones are removed from the front
	inflightBytes int        // payload bytes of unacked inflight fragments
	queuedBytes   int        // payload bytes of unfinished messages
	msgs          map[uint64]*outMsg
	space         chan struct{} // closed when queuedBytes drops; nil while nobody waits
	sentIdx       uint64        // transmissions so far (local, for loss detection)
	ackedIdx      uint64        // highest sentIdx of an acknowledged fragment
	hasRTT        bool
	srtt, rttvar  time.Duration
	rto           time.Duration // RFC 6298 RTO without backoff
	backoff       uint          // consecutive timeouts since the last valid RTT sample
	progressAt    time.Time     // last ack progress (or start of sending)
}

func newPeer(addr netip.AddrPort, cfg *Config) *peer {
	return &peer{
		addr:     addr,
		nextSeq:  1,
		msgs:     make(map[uint64]*outMsg),
		partials: make(map[uint64]*partial),
		rto:      cfg.InitialRTO,
	}
}

// idle reports whether the peer holds nothing that forgetting it would lose.
func (p *peer) idle() bool {
	return len(p.msgs) == 0 && len(p.partials) == 0 && p.reasmBytes == 0 && p.ackDue.IsZero() && p.open == nil
}

// onlyReplies reports whether every unfinished message to p is a reply.
func (p *peer) onlyReplies() bool {
	for _, m := range p.msgs {
		if m.kind != kindResponse {
			return false
		}
	}
	return true
}

func (p *peer) isRetired(inc uint64) bool {
	for _, r := range p.retired[:p.nRetired] {
		if r == inc {
			return true
		}
	}
	return false
}

// una is the lowest sequence number that may still be retransmitted.
func (p *peer) una() uint64 {
	if len(p.inflight) > 0 {
		return p.inflight[0].seq
	}
	return p.nextSeq
}

// currentRTO is the retransmission timeout including backoff.
func (p *peer) currentRTO(cfg *Config) time.Duration {
	rto := p.rto
	for i := uint(0); i < p.backoff && rto < cfg.MaxRTO; i++ {
		rto *= 2
	}
	return min(rto, cfg.MaxRTO)
}

// lossDelay is how long after a later fragment was acknowledged an
// earlier one is presumed lost: 9/8 of the smoothed RTT, at least 1ms
// (RFC 9002 kTimeThreshold and granularity).
func (p *peer) lossDelay() time.Duration {
	return max(p.srtt*9/8, time.Millisecond)
}

// sampleRTT updates the RTO from one unambiguous RTT sample (RFC 6298 2.2,
// 2.3; clock granularity G = 1ms).
func (p *peer) sampleRTT(r time.Duration, cfg *Config) {
	r = max(r, time.Microsecond)
	if !p.hasRTT {
		p.srtt, p.rttvar, p.hasRTT = r, r/2, true
	} else {
		d := p.srtt - r
		if d < 0 {
			d = -d
		}
		p.rttvar = (3*p.rttvar + d) / 4
		p.srtt = (7*p.srtt + r) / 8
	}
	p.rto = min(max(p.srtt+max(time.Millisecond, 4*p.rttvar), cfg.MinRTO), cfg.MaxRTO)
	p.backoff = 0 // Karn: keep the backed-off RTO until a valid sample
}

// pnIdx maps a data datagram's packet number to the newest transmission
// (sentIdx) it carried.
type pnIdx struct{ pn, idx uint64 }

// maxSentPNs bounds the datagrams remembered per peer.
const maxSentPNs = 1024

func (p *peer) recordPN(pn, idx uint64) {
	if len(p.sentPNs) == maxSentPNs {
		n := copy(p.sentPNs, p.sentPNs[maxSentPNs/2:])
		p.sentPNs = p.sentPNs[:n]
	}
	p.sentPNs = append(p.sentPNs, pnIdx{pn, idx})
}

// lookupPN returns the newest transmission carried by datagram pn.
func (p *peer) lookupPN(pn uint64) (uint64, bool) {
	i, ok := slices.BinarySearchFunc(p.sentPNs, pn, func(e pnIdx, t uint64) int { return cmpU64(e.pn, t) })
	if !ok {
		return 0, false
	}
	return p.sentPNs[i].idx, true
}

// signalSpace wakes senders waiting for queue space.
func (p *peer) signalSpace() {
	if p.space != nil {
		close(p.space)
		p.space = nil
	}
}

// spaceSignal returns a channel closed when queue space may have appeared.
func (p *peer) spaceSignal() <-chan struct{} {
	if p.space == nil {
		p.space = make(chan struct{})
	}
	return p.space
}

// partial is a message being reassembled.
type partial struct {
	msgID    uint64
	kind     uint8
	ref      uint64
	fragCnt  uint16
	total    uint32
	buf      []byte
	have     []uint64 // bitmap of received fragment indexes
	got      int
	reserved int
	last     time.Time
}

// partialOverhead is the bookkeeping charged per partial besides its bytes.
const partialOverhead = 256

func partialCost(total uint32, fragCnt uint16) int {
	return int(total) + int(fragCnt)/8 + partialOverhead
}

// bcastWindow suppresses repeated broadcasts of one sender incarnation.
type bcastWindow struct {
	top  uint64 // highest seq seen
	bits uint64 // bit i set: top-i was seen
}

// accept reports whether seq is new and records it.
func (w *bcastWindow) accept(seq uint64) bool {
	switch {
	case seq > w.top:
		shift := seq - w.top
		if shift >= 64 {
			w.bits = 0
		} else {
			w.bits <<= shift
		}
		w.bits |= 1
		w.top = seq
		return true
	case w.top-seq >= 64:
		return false
	case w.bits&(1<<(w.top-seq)) != 0:
		return false
	}
	w.bits |= 1 << (w.top - seq)
	return true
}
