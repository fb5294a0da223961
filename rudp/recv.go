package rudp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// peerLocked returns the state for addr, creating it (and forgetting an
// idle peer when MaxPeers is reached).
func (e *Endpoint) peerLocked(addr netip.AddrPort, now time.Time) (*peer, error) {
	if p := e.peers[addr]; p != nil {
		return p, nil
	}
	if len(e.peers) >= e.cfg.MaxPeers {
		var victim *peer
		for _, p := range e.peers {
			if p.idle() && (victim == nil || p.lastHeard.Before(victim.lastHeard)) {
				victim = p
			}
		}
		if victim == nil {
			return nil, ErrTooManyPeers
		}
		delete(e.peers, victim.addr)
	}
	p := newPeer(addr, &e.cfg)
	p.lastHeard = now
	e.peers[addr] = p
	return p, nil
}

// handleDatagram authenticates, parses and applies one datagram, writes
// what it produced and delivers its messages (blocking while the inbox is
// full). The workers use applyDatagram and dispatch instead.
func (e *Endpoint) handleDatagram(b []byte, from netip.AddrPort) {
	ds := e.applyDatagram(b, from, nil)
	e.flush()
	e.deliver(ds)
}

// applyDatagram authenticates, parses and applies one datagram and returns
// ds with the messages it completed appended. Only the holder of the read
// token (or a test's single goroutine) calls it.
func (e *Endpoint) applyDatagram(b []byte, from netip.AddrPort, ds []delivery) []delivery {
	e.st.datagramsReceived.Add(1)
	if len(b) == noticeLen && b[1] == typeAuthFailed {
		e.handleNotice(b, from) // untagged: a hint at most
		return ds
	}
	if len(b) < headerLen+tagLen || !e.mac.verify(b) {
		e.st.droppedBadMAC.Add(1)
		e.answerBadMAC(b, from)
		return ds
	}
	var g datagram
	if err := decodeDatagram(b[:len(b)-tagLen], &g); err != nil {
		e.st.droppedMalformed.Add(1)
		e.log.Debug("rudp: malformed datagram", "peer", from, "err", err)
		return ds
	}
	if g.h.cluster != e.cfg.ClusterID {
		e.st.droppedStale.Add(1)
		return ds
	}
	if g.h.typ == typeBroadcast {
		if g.h.node != e.nodeID || g.h.inc != e.inc { // not our own, looped back
			if d, ok := e.handleBroadcast(&g, from); ok {
				ds = append(ds, d)
			}
		}
		return ds
	}
	now := time.Now()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ds
	}
	p, err := e.peerLocked(from, now)
	if err != nil {
		e.mu.Unlock()
		e.st.droppedStale.Add(1)
		return ds
	}
	if g.h.inc != p.remoteInc {
		if p.isRetired(g.h.inc) {
			e.mu.Unlock()
			e.st.droppedStale.Add(1)
			return ds
		}
		e.newIncarnationLocked(p, g.h.inc, now)
	}
	p.remoteNode = g.h.node
	p.lastHeard = now
	forUs := g.h.dstInc == e.inc
	if g.hasAck && forUs {
		e.processAckLocked(p, &g.ack, now)
	}
	if g.h.typ == typeData {
		if forUs {
			p.maxPN = max(p.maxPN, g.h.pn)
			urgent, accepted := false, false
			for i := range g.nFrames {
				var u, a bool
				ds, u, a = e.processDataLocked(p, &g.frames[i], now, ds)
				urgent, accepted = urgent || u, accepted || a
			}
			if accepted {
				p.lastDataAt = now
				p.ackPending++
			}
			// Ack every second datagram, and at once on a gap or duplicate.
			if urgent || p.ackPending >= 2 {
				e.sendAckLocked(p, now)
			} else if accepted && p.ackDue.IsZero() {
				p.ackDue = now.Add(e.cfg.AckDelay)
				e.wakeLocked(p.ackDue)
			}
		} else {
			e.sendAckLocked(p, now) // "hello": tells the sender our incarnation
		}
	}
	e.mu.Unlock()
	return ds
}

// newIncarnationLocked switches p to a new remote incarnation: the old
// one's datagrams are dropped from now on, receive state starts afresh and
// unfinished messages are sent again.
func (e *Endpoint) newIncarnationLocked(p *peer, inc uint64, now time.Time) {
	if p.remoteInc != 0 {
		p.retired[p.nRetired%retiredIncarnations] = p.remoteInc
		p.nRetired = min(p.nRetired+1, retiredIncarnations)
		e.st.peerRestarts.Add(1)
		e.log.Info("rudp: peer restarted", "peer", p.addr, "incarnation", fmt.Sprintf("%016x", inc))
	}
	p.remoteInc = inc
	p.recvInit = false
	p.maxPN = 0
	p.ackPending = 0
	p.ackDue = time.Time{}
	for id, pa := range p.partials {
		p.reasmBytes -= pa.reserved
		e.reasmBytes -= pa.reserved
		delete(p.partials, id)
	}
	e.resetStreamLocked(p, now)
}

// processDataLocked applies one data fragment addressed to this incarnation
// and returns ds with the messages it completes appended, whether an ack
// should go out at once (a duplicate or a gap), and whether the fragment
// was accepted.
func (e *Endpoint) processDataLocked(p *peer, d *dataFrame, now time.Time, ds []delivery) (_ []delivery, urgent, accepted bool) {
	if !p.recvInit {
		p.win = newDupWindow(d.una)
		p.recvInit = true
	}
	p.win.advance(d.una)
	topBefore := p.win.top // one past the highest seq received
	switch p.win.status(d.seq) {
	case seqDup:
		e.st.duplicates.Add(1)
		return ds, true, false // our ack was probably lost
	case seqAhead:
		e.st.droppedStale.Add(1)
		return ds, false, false
	}
	if d.fragCnt == 1 {
		ds = append(ds, e.deliveryLocked(p, d.kind, d.msgID, d.ref, bytes.Clone(d.payload), 0))
	} else {
		pa := p.partials[d.msgID]
		if pa == nil {
			cost := partialCost(d.total, d.fragCnt)
			if int(d.total) > e.cfg.MaxMessageSize ||
				p.reasmBytes+cost > e.cfg.MaxReassemblyBytesPerPeer || e.reasmBytes+cost > e.cfg.MaxReassemblyBytes {
				e.st.droppedNoBuffer.Add(1)
				return ds, false, false // not marked: the sender will retry
			}
			pa = &partial{
				msgID: d.msgID, kind: d.kind, ref: d.ref, fragCnt: d.fragCnt, total: d.total,
				buf: make([]byte, d.total), have: make([]uint64, (int(d.fragCnt)+63)/64), reserved: cost,
			}
			p.partials[d.msgID] = pa
			p.reasmBytes += cost
			e.reasmBytes += cost
			e.wakeLocked(now.Add(e.cfg.ReassemblyTimeout))
		}
		if pa.fragCnt != d.fragCnt || pa.total != d.total || pa.kind != d.kind || pa.ref != d.ref {
			e.st.droppedMalformed.Add(1)
			return ds, false, false
		}
		pa.last = now
		if pa.have[d.fragIdx/64]&(1<<(d.fragIdx%64)) == 0 {
			pa.have[d.fragIdx/64] |= 1 << (d.fragIdx % 64)
			pa.got++
			lo, _ := fragBounds(d.fragIdx, d.fragCnt, d.total)
			copy(pa.buf[lo:], d.payload)
		}
		if pa.got == int(pa.fragCnt) {
			delete(p.partials, d.msgID)
			// The reservation moves to the delivery until the handler returns.
			ds = append(ds, e.deliveryLocked(p, pa.kind, pa.msgID, pa.ref, pa.buf, pa.reserved))
		}
	}
	p.win.mark(d.seq)
	// Out of order (it fills a hole, or jumps over missing ones) means an
	// ack at once; in-order fragments behind an old hole do not.
	return ds, d.seq != topBefore, true
}

// deliveryLocked prepares a completed message for delivery.
func (e *Endpoint) deliveryLocked(p *peer, kind uint8, msgID, ref uint64, payload []byte, reserved int) delivery {
	e.st.messagesReceived.Add(1)
	d := delivery{
		m:    Message{From: p.addr, NodeID: p.remoteNode, Payload: payload},
		kind: kind, msgID: msgID, p: p, release: reserved,
	}
	switch kind {
	case kindResponse:
		d.msgID = ref
	case kindRequest:
		d.m.call = &callReply{e: e, to: p.addr, ref: msgID}
	}
	return d
}

// deliver hands completed messages to waiting calls or to the handler
// workers; it blocks while the inbox is full. It reports whether it woke a
// waiting Call.
func (e *Endpoint) deliver(ds []delivery) (woke bool) {
	for _, d := range ds {
		if d.kind == kindResponse {
			woke = e.completeCall(d) || woke
			continue
		}
		select {
		case e.inbox <- d:
		case <-e.done:
			return woke
		}
	}
	return woke
}

// queueForOthers offers every message in ds but the last one that needs
// a handler to idle workers through the inbox, without blocking, and
// returns ds without the queued ones (in place). The caller holds the read
// token: only its holder adds to the inbox.
func (e *Endpoint) queueForOthers(ds []delivery) []delivery {
	last := -1
	for i := range ds {
		if ds[i].kind != kindResponse {
			last = i
		}
	}
	kept := ds[:0]
	for i, d := range ds {
		if d.kind != kindResponse && i != last {
			select {
			case e.inbox <- d:
				continue
			default:
			}
		}
		kept = append(kept, d)
	}
	clear(ds[len(kept):])
	return kept
}

// dispatch completes calls with the responses in ds and runs the handlers
// of the other messages on this goroutine, in order. It reports whether it
// woke a waiting Call.
func (e *Endpoint) dispatch(ctx context.Context, ds []delivery) (woke bool) {
	for _, d := range ds {
		if d.kind == kindResponse {
			woke = e.completeCall(d) || woke
			continue
		}
		e.handle(ctx, d)
	}
	return woke
}

// completeCall hands a response to its waiting Call, if any, and reports
// whether there was one.
func (e *Endpoint) completeCall(d delivery) bool {
	e.mu.Lock()
	c := e.calls[d.msgID]
	if c != nil && c.to == d.m.From {
		delete(e.calls, d.msgID)
	} else {
		c = nil
	}
	if d.release > 0 {
		d.p.reasmBytes -= d.release
		e.reasmBytes -= d.release
	}
	e.mu.Unlock()
	return c != nil && c.complete(callResult{resp: d.m.Payload})
}

// ackBlockLocked fills a with p's receive state.
func (e *Endpoint) ackBlockLocked(p *peer, a *ackBlock, maxRanges int, now time.Time) {
	p.win.ranges(a, maxRanges)
	a.maxPN = p.maxPN
	delay := now.Sub(p.lastDataAt) / time.Microsecond
	a.delay = uint16(min(max(delay, 0), 0xffff))
	p.ackPending = 0
	p.ackDue = time.Time{}
}

// sendAckLocked queues an ack-only datagram (a bare "hello" before any data
// was accepted from p).
func (e *Endpoint) sendAckLocked(p *peer, now time.Time) {
	buf := e.newBuf()
	h := header{version: ProtocolVersion, typ: typeAck, cluster: e.cfg.ClusterID, node: e.nodeID, inc: e.inc, dstInc: p.remoteInc}
	if p.recvInit {
		h.flags = flagAck
	}
	*buf = appendHeader(*buf, h)
	if p.recvInit {
		var a ackBlock
		e.ackBlockLocked(p, &a, maxAckRanges, now)
		*buf = appendAck(*buf, &a)
	}
	e.queueLocked(buf, p.addr)
}

// maxBroadcastSenders bounds the broadcast replay windows kept.
const maxBroadcastSenders = 256

// handleBroadcast returns the delivery of a broadcast datagram, unless it
// is a repeat.
func (e *Endpoint) handleBroadcast(g *datagram, from netip.AddrPort) (delivery, bool) {
	key := [2]uint64{g.h.node, g.h.inc}
	e.mu.Lock()
	w := e.bcastSeen[key]
	if w == nil {
		if len(e.bcastSeen) >= maxBroadcastSenders {
			for k := range e.bcastSeen {
				delete(e.bcastSeen, k)
				break
			}
		}
		w = &bcastWindow{}
		e.bcastSeen[key] = w
	}
	fresh := w.accept(g.bcast.seq)
	e.mu.Unlock()
	if !fresh {
		e.st.duplicates.Add(1)
		return delivery{}, false
	}
	e.st.messagesReceived.Add(1)
	return delivery{m: Message{From: from, NodeID: g.h.node, Payload: bytes.Clone(g.bcast.payload), Broadcast: true}, kind: kindOneWay}, true
}

// timeoutProbes is how many expired fragments one timeout resends.
const timeoutProbes = 2

// onTimer sends due acks and retransmissions, gives up on silent peers,
// frees stale partial messages, and returns when it must run next.
func (e *Endpoint) onTimer(now time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := now.Add(time.Hour)
	if c := e.reader; c != nil {
		if now.Before(c.deadline) {
			next = minTime(next, c.deadline)
		} else {
			e.interruptRead() // readForCall stops at its deadline
		}
	}
	if !e.lentSince.IsZero() {
		if at := e.lentSince.Add(lendTimeout); now.Before(at) {
			next = minTime(next, at)
		} else {
			e.reclaimTokenLocked() // the handler may wait for another message
		}
	}
	for _, p := range e.peers {
		if !p.ackDue.IsZero() {
			if !now.Before(p.ackDue) {
				e.sendAckLocked(p, now)
			} else {
				next = minTime(next, p.ackDue)
			}
		}
		if len(p.inflight) > 0 && now.Sub(p.progressAt) > e.cfg.PeerTimeout {
			lvl := slog.LevelWarn
			if p.onlyReplies() {
				lvl = slog.LevelDebug // a caller that went away
			}
			e.log.Log(context.Background(), lvl, "rudp: peer unreachable", "peer", p.addr, "silent_for", now.Sub(p.progressAt))
			e.failPeerLocked(p, ErrPeerUnreachable)
		}
		// On a timeout, back off (RFC 6298 5.5) and resend only the oldest
		// expired fragments as probes; the rest wait another (backed-off)
		// RTO, and the probes' acks reveal which of them are lost (fast
		// retransmit). Resending everything would flood a receiver that is
		// merely slow to drain its queue.
		probes := 0
		for _, f := range p.inflight {
			if f.acked || now.Before(f.deadline) {
				continue
			}
			if probes == 0 && p.currentRTO(&e.cfg) < e.cfg.MaxRTO {
				p.backoff++
			}
			if probes < timeoutProbes {
				probes++
				e.transmitLocked(p, f, now)
			} else {
				f.deadline = now.Add(p.currentRTO(&e.cfg))
			}
		}
		if at := e.detectLossLocked(p, now); !at.IsZero() {
			next = minTime(next, at)
		}
		for _, f := range p.inflight {
			if !f.acked {
				next = minTime(next, f.deadline)
			}
		}
		if len(p.inflight) > 0 {
			next = minTime(next, p.progressAt.Add(e.cfg.PeerTimeout))
		}
		for id, pa := range p.partials {
			if now.Sub(pa.last) > e.cfg.ReassemblyTimeout {
				delete(p.partials, id)
				p.reasmBytes -= pa.reserved
				e.reasmBytes -= pa.reserved
				e.st.partialsExpired.Add(1)
			} else {
				next = minTime(next, pa.last.Add(e.cfg.ReassemblyTimeout))
			}
		}
	}
	e.nextWake = next
	e.timer.Reset(max(next.Sub(now), timerGranularity))
	return next
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
