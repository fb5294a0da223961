package rudp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Rate limits of "auth failed" notices, per fixed one-second window.
const (
	noticesPerSource = 4  // to one address
	noticesTotal     = 32 // to all addresses together
	noticeWindow     = time.Second
)

// noticeLimiter bounds the "auth failed" notices sent, so that datagrams
// with forged source addresses cannot turn an endpoint into a flood
// source. Guarded by Endpoint.mu.
type noticeLimiter struct {
	start     time.Time // of the current window
	total     int
	perSource map[netip.AddrPort]int // at most noticesTotal entries
}

// allow reports whether a notice may go to addr now, and counts it.
func (l *noticeLimiter) allow(addr netip.AddrPort, now time.Time) bool {
	if l.perSource == nil || now.Sub(l.start) >= noticeWindow || now.Before(l.start) {
		l.start, l.total = now, 0
		if l.perSource == nil {
			l.perSource = make(map[netip.AddrPort]int)
		}
		clear(l.perSource)
	}
	if l.total >= noticesTotal || l.perSource[addr] >= noticesPerSource {
		return false
	}
	l.total++
	l.perSource[addr]++
	return true
}

// answerBadMAC queues an "auth failed" notice to from in answer to b, a
// datagram whose tag did not verify, if b looks like a datagram of this
// cluster (read before authentication: a hint at most) and the rate limits
// allow it. The notice (noticeLen bytes) is shorter than b.
func (e *Endpoint) answerBadMAC(b []byte, from netip.AddrPort) {
	if len(b) < headerLen+tagLen || b[0] != ProtocolVersion || (b[1] != typeData && b[1] != typeAck) ||
		binary.BigEndian.Uint64(b[4:]) != e.cfg.ClusterID || binary.BigEndian.Uint64(b[incOffset:]) == 0 || !from.IsValid() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || !e.notices.allow(from, time.Now()) {
		return
	}
	buf := e.newBuf()
	*buf = appendNotice(*buf, e.cfg.ClusterID, e.nodeID, e.inc, b)
	e.out = append(e.out, outDatagram{buf: buf, to: from})
	e.st.noticesSent.Add(1)
}

// handleNotice applies an "auth failed" notice from from: if it answers a
// datagram this incarnation sent to a peer it has state for, the peer is
// marked as refusing our authentication. Nothing else changes.
func (e *Endpoint) handleNotice(b []byte, from netip.AddrPort) {
	h, err := decodeNotice(b)
	if err != nil {
		e.st.droppedMalformed.Add(1)
		return
	}
	if h.cluster != e.cfg.ClusterID || h.dstInc != e.inc {
		e.st.droppedStale.Add(1)
		return
	}
	e.mu.Lock()
	p := e.peers[from]
	if p == nil || h.pn == 0 || h.pn > e.pn {
		e.mu.Unlock()
		e.st.droppedStale.Add(1)
		return
	}
	p.authFailedAt = time.Now()
	e.mu.Unlock()
	e.st.noticesReceived.Add(1)
	e.log.Debug("rudp: peer cannot verify our datagrams (auth failed notice)", "peer", from,
		"peer_node_id", fmt.Sprintf("%016x", h.node))
}

// withAuthHintLocked returns err, which failed m to p, also wrapping
// ErrAuthFailed if it wraps ErrPeerUnreachable and p sent an "auth failed"
// notice since m was queued.
func withAuthHintLocked(p *peer, m *outMsg, err error) error {
	if p == nil || p.authFailedAt.IsZero() || p.authFailedAt.Before(m.start) || !errors.Is(err, ErrPeerUnreachable) {
		return err
	}
	return fmt.Errorf("%w: %w", err, ErrAuthFailed)
}
