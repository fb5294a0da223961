package rudp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// outMsg is a message being sent, guarded by Endpoint.mu.
type outMsg struct {
	id       uint64
	kind     uint8
	ref      uint64
	payload  []byte // not modified; the caller keeps it unchanged until done
	frags    []outFrag
	unacked  int // Invariant: number of frags not acked
	finished bool
	err      error      // the outcome, once finished
	done     chan error // capacity 1; receives the outcome once; nil for calls and replies
	start    time.Time  // when it was queued
	one      [1]outFrag // frags of a one-fragment message (saves an allocation)
}

// outFrag is one fragment of an outMsg.
type outFrag struct {
	msg      *outMsg
	idx      uint16
	seq      uint64 // 0 until first sent
	sends    int
	sentAt   time.Time // last transmission
	deadline time.Time // retransmission due
	sentIdx  uint64
	acked    bool
}

func (f *outFrag) size() int {
	lo, hi := fragBounds(f.idx, uint16(len(f.msg.frags)), uint32(len(f.msg.payload)))
	return int(hi - lo)
}

// pendingCall waits for the response to a request.
type pendingCall struct {
	e       *Endpoint
	to      netip.AddrPort
	msg     *outMsg
	done    chan callResult // capacity 1; receives the first outcome only
	sent    atomic.Bool
	reading atomic.Bool // the caller reads the socket (readForCall)
	// deadline is the Call's: its ctx's or CallTimeout after submit.
	// Set before the call is shared, then read-only.
	deadline time.Time
}

// callResult is a response, or the failure of a request.
type callResult struct {
	resp []byte
	err  error
}

// complete delivers the call's outcome unless one was delivered already,
// and reports whether it did.
func (c *pendingCall) complete(r callResult) bool {
	if !c.sent.CompareAndSwap(false, true) {
		return false
	}
	c.done <- r
	return true
}

// fail completes the call with err, waking its caller from the socket
// read if it reads for itself.
func (c *pendingCall) fail(err error) {
	if c.complete(callResult{err: err}) && c.reading.Load() {
		c.e.interruptRead()
	}
}

// Send delivers payload to the peer at to, at most once, and returns when
// the peer has acknowledged all of it. It retries until then, until ctx is
// done (ErrPeerUnreachable with context.DeadlineExceeded, or the context's
// error when cancelled), or until the peer makes no progress for
// Config.PeerTimeout (ErrPeerUnreachable). It waits while more than
// Config.MaxQueuedBytes are queued to the peer. payload must not be
// modified until Send returns.
func (e *Endpoint) Send(ctx context.Context, to netip.AddrPort, payload []byte) error {
	m, _, err := e.submit(ctx, to, kindOneWay, 0, payload, nil)
	if err != nil {
		return err
	}
	select {
	case err := <-m.done:
		return err
	case <-ctx.Done():
		return e.abandon(m, to, ctx.Err())
	}
}

// SendMany sends payload to every address in to concurrently, as Send does,
// and returns one error per address (nil where it was delivered).
func (e *Endpoint) SendMany(ctx context.Context, to []netip.AddrPort, payload []byte) []error {
	errs := make([]error, len(to))
	var wg sync.WaitGroup
	for i, a := range to {
		wg.Go(func() { errs[i] = e.Send(ctx, a, payload) })
	}
	wg.Wait()
	return errs
}

// Call sends req to the peer at to as Send does and waits for the reply its
// Handler returns. Without a ctx deadline it waits at most
// Config.CallTimeout. If the request was delivered but no reply came in
// time the error wraps ctx's error but not ErrPeerUnreachable; if the peer
// restarted after taking the request it wraps ErrPeerUnreachable.
func (e *Endpoint) Call(ctx context.Context, to netip.AddrPort, req []byte) ([]byte, error) {
	c := &pendingCall{e: e, to: to, done: make(chan callResult, 1)}
	var hasDeadline bool
	c.deadline, hasDeadline = ctx.Deadline() // else set by submit
	m, reading, err := e.submit(ctx, to, kindRequest, 0, req, c)
	if err != nil {
		return nil, err
	}
	// The request's failure arrives on c.done too (finishLocked); its
	// success needs no wake-up: the reply is what we wait for.
	var ctxErr error
	if reading {
		ctxErr = e.readForCall(ctx, c)
	}
	if ctxErr == nil {
		var timeout <-chan time.Time
		if !hasDeadline {
			select {
			case r := <-c.done:
				return e.callOutcome(m, r)
			default:
			}
			// A (reused) timer, not context.WithTimeout: it costs a fraction.
			t, _ := e.timers.Get().(*time.Timer)
			if t == nil {
				t = time.NewTimer(time.Until(c.deadline))
			} else {
				t.Reset(time.Until(c.deadline))
			}
			defer func() {
				t.Stop() // no stale tick can be received after Stop (Go 1.23+)
				e.timers.Put(t)
			}()
			timeout = t.C
		}
		select {
		case r := <-c.done:
			return e.callOutcome(m, r)
		case <-ctx.Done():
			ctxErr = ctx.Err()
		case <-timeout:
			ctxErr = context.DeadlineExceeded
		}
	}
	defer e.forgetCall(m.id)
	if err := e.abandon(m, to, ctxErr); err != nil {
		return nil, err
	}
	select {
	case r := <-c.done:
		if r.err == nil {
			return r.resp, nil
		}
	default:
	}
	return nil, fmt.Errorf("rudp: call %v: no reply: %w", to, ctxErr)
}

// callOutcome returns the outcome r of the Call of request m.
func (e *Endpoint) callOutcome(m *outMsg, r callResult) ([]byte, error) {
	if r.err != nil {
		e.forgetCall(m.id)
		return nil, r.err
	}
	return r.resp, nil // completeCall removed the call from e.calls
}

// readForCall is Call's wait when its submit took the read token (see
// lendToken, parkTokenLocked): the caller reads the socket itself, as the
// spare reader does (messages for handlers go to the inbox), until its
// response has arrived, so that it is not handed over from another
// goroutine. It stops early when c fails (pendingCall.fail), ctx is done
// (context.AfterFunc) or c.deadline passes (onTimer): each of them
// interrupts the read (interruptRead). It then parks the token or passes
// it on, and returns ctx's error or context.DeadlineExceeded if it stopped
// for them, else nil (c.done then holds the outcome, or will: ErrClosed).
func (e *Endpoint) readForCall(ctx context.Context, c *pendingCall) (ctxErr error) {
	c.reading.Store(true)
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, e.interruptRead)
		defer stop()
	}
	if e.callBuf == nil { // only the token holder uses callBuf and callDs
		e.callBuf = make([]byte, readBufSize)
	}
	ds := e.callDs[:0]
	// An interrupter completes c, cancels ctx or finds the deadline
	// passed before it sets a read deadline in the past; the loop clears
	// that deadline before it checks them again, so no interruption is
	// lost.
	for !c.sent.Load() {
		if ctxErr = ctx.Err(); ctxErr != nil {
			break
		}
		n, from, done, _ := e.readOne(e.callBuf)
		if done { // closed or failed: a worker will see it too
			c.reading.Store(false)
			e.mu.Lock()
			e.reader = nil
			e.mu.Unlock()
			e.readTok <- struct{}{}
			return nil
		}
		if n < 0 {
			e.clearReadDeadline()
			if !time.Now().Before(c.deadline) {
				ctxErr = context.DeadlineExceeded
				break
			}
			continue
		}
		ds = e.applyDatagram(e.callBuf[:n], from, ds[:0])
		e.flush()
		e.deliver(ds) // holding the token, as the spare reader does
		clear(ds)
	}
	e.callDs = ds[:0]
	c.reading.Store(false)
	e.mu.Lock()
	e.reader = nil
	if !e.parkTokenLocked(time.Now()) {
		e.readTok <- struct{}{}
	}
	e.mu.Unlock()
	return ctxErr
}

// forgetCall stops waiting for the response to request id.
func (e *Endpoint) forgetCall(id uint64) {
	e.mu.Lock()
	delete(e.calls, id)
	e.mu.Unlock()
}

// reply sends a Call's response without waiting for its acknowledgement.
func (e *Endpoint) reply(to netip.AddrPort, ref uint64, payload []byte) error {
	if len(payload) > e.cfg.MaxMessageSize {
		return fmt.Errorf("rudp: reply to %v: %d bytes: %w", to, len(payload), ErrTooLarge)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	now := time.Now()
	p, err := e.peerLocked(to, now)
	if err == nil {
		e.enqueueLocked(p, kindResponse, ref, payload, nil, now)
	}
	e.mu.Unlock()
	e.flush()
	return err
}

// submit waits for queue space (until deadline, if not zero) and queues a
// message. The caller will wait for a datagram (the ack or the response),
// so a lent or parked read token (see lendToken) is passed on to another
// reader, or taken by a Call (kindRequest): reading reports that the
// caller holds the token and must read (readForCall).
func (e *Endpoint) submit(ctx context.Context, to netip.AddrPort, kind uint8, ref uint64, payload []byte, c *pendingCall) (_ *outMsg, reading bool, _ error) {
	if len(payload) > e.cfg.MaxMessageSize {
		return nil, false, fmt.Errorf("rudp: send to %v: %d bytes: %w", to, len(payload), ErrTooLarge)
	}
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	var timeout <-chan time.Time
	for {
		if err := ctx.Err(); err != nil {
			return nil, false, fmt.Errorf("rudp: send to %v: %w", to, err)
		}
		now := time.Now()
		if c != nil && c.deadline.IsZero() {
			c.deadline = now.Add(e.cfg.CallTimeout)
		}
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return nil, false, ErrClosed
		}
		p, err := e.peerLocked(to, now)
		if err != nil {
			e.mu.Unlock()
			return nil, false, fmt.Errorf("rudp: send to %v: %w", to, err)
		}
		if p.queuedBytes == 0 || p.queuedBytes+len(payload) <= e.cfg.MaxQueuedBytes {
			var done chan error
			if c == nil {
				done = make(chan error, 1)
			}
			m := e.enqueueLocked(p, kind, ref, payload, done, now)
			if c != nil {
				c.msg = m
				e.calls[m.id] = c
			}
			if kind == kindRequest {
				if reading = e.takeTokenLocked(); reading {
					e.reader = c
					e.wakeLocked(c.deadline)
				}
			} else {
				e.reclaimTokenLocked()
			}
			e.mu.Unlock()
			e.flush()
			return m, reading, nil
		}
		e.reclaimTokenLocked() // acks free the space
		space := p.spaceSignal()
		e.mu.Unlock()
		if timeout == nil && c != nil {
			t := time.NewTimer(time.Until(c.deadline))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-space:
		case <-ctx.Done():
		case <-e.done:
		case <-timeout:
			return nil, false, fmt.Errorf("rudp: send to %v: %w", to, context.DeadlineExceeded)
		}
	}
}

// enqueueLocked splits payload into fragments, queues them and sends what
// the window allows.
func (e *Endpoint) enqueueLocked(p *peer, kind uint8, ref uint64, payload []byte, done chan error, now time.Time) *outMsg {
	e.nextMsgID++
	n := max(1, (len(payload)+e.chunk-1)/e.chunk)
	m := &outMsg{id: e.nextMsgID, kind: kind, ref: ref, payload: payload, unacked: n, done: done, start: now}
	if n == 1 {
		m.frags = m.one[:]
	} else {
		m.frags = make([]outFrag, n)
	}
	for i := range m.frags {
		m.frags[i] = outFrag{msg: m, idx: uint16(i)}
		p.queue = append(p.queue, &m.frags[i])
	}
	p.msgs[m.id] = m
	e.unfinished.Add(1)
	p.queuedBytes += len(payload)
	e.pumpLocked(p, now)
	return m
}

// pumpLocked sends queued fragments while the window has room.
func (e *Endpoint) pumpLocked(p *peer, now time.Time) {
	i := 0
	defer func() {
		if i == len(p.queue) {
			p.queue = p.queue[:0] // keep the array
		} else {
			p.queue = p.queue[i:]
		}
	}()
	for ; i < len(p.queue); i++ {
		f := p.queue[i]
		if len(p.inflight) > 0 && (p.inflightBytes+f.size() > e.cfg.MaxInflightBytes || p.nextSeq-p.una() >= recvWindow) {
			return
		}
		p.queue[i] = nil
		if len(p.inflight) == 0 {
			p.progressAt = now
		}
		f.seq = p.nextSeq
		p.nextSeq++
		p.inflight = append(p.inflight, f)
		p.inflightBytes += f.size()
		e.transmitLocked(p, f, now)
	}
}

// transmitLocked (re)sends fragment f with an ack block if one is due.
func (e *Endpoint) transmitLocked(p *peer, f *outFrag, now time.Time) {
	f.sends++
	if f.sends > 1 {
		e.st.retransmits.Add(1)
	}
	f.sentAt = now
	p.sentIdx++
	f.sentIdx = p.sentIdx
	rto := p.currentRTO(&e.cfg)
	jitter := time.Duration((e.rng.Float64()*0.4 - 0.2) * float64(rto)) // ±20%
	f.deadline = now.Add(rto + jitter)
	e.wakeLocked(f.deadline)

	m := f.msg
	lo, hi := fragBounds(f.idx, uint16(len(m.frags)), uint32(len(m.payload)))
	d := dataFrame{
		seq: f.seq, una: p.una(), msgID: m.id, ref: m.ref, kind: m.kind,
		fragIdx: f.idx, fragCnt: uint16(len(m.frags)), total: uint32(len(m.payload)),
		payload: m.payload[lo:hi],
	}
	// Frames ride in the peer's open datagram while they fit; flush seals
	// it. Under load, frames produced while a flush is writing share
	// datagrams, without delaying anything when idle.
	if p.open != nil && (len(*p.open)+dataFixedLen+len(d.payload)+tagLen > e.cfg.MaxDatagramSize || p.openFrames == maxFrames) {
		e.sealOpenLocked(p)
	}
	if p.open == nil {
		buf := e.newBuf()
		h := header{version: ProtocolVersion, typ: typeData, cluster: e.cfg.ClusterID, node: e.nodeID, inc: e.inc, dstInc: p.remoteInc}
		var ack ackBlock
		if p.recvInit {
			h.flags |= flagAck
			e.ackBlockLocked(p, &ack, piggyAckRanges, now)
		}
		*buf = appendHeader(*buf, h)
		if p.recvInit {
			*buf = appendAck(*buf, &ack)
		}
		p.open, p.openFrames = buf, 0
		e.openPeers = append(e.openPeers, p)
	}
	*p.open = appendData(*p.open, &d)
	p.openFrames++
	p.openMaxIdx = f.sentIdx
}

// sealOpenLocked queues p's open data datagram and remembers which
// transmissions it carried, for acks that name its packet number.
func (e *Endpoint) sealOpenLocked(p *peer) {
	pn := e.queueLocked(p.open, p.addr)
	p.open = nil
	p.recordPN(pn, p.openMaxIdx)
}

// discardOpenLocked drops p's unsealed datagram (its frames are stale).
func (e *Endpoint) discardOpenLocked(p *peer) {
	if p.open != nil {
		*p.open = (*p.open)[:0]
		e.bufPool.Put(p.open)
		p.open = nil
	}
}

// abandon gives up on m after its sender's ctx ended.
func (e *Endpoint) abandon(m *outMsg, to netip.AddrPort, ctxErr error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if m.finished { // completed meanwhile
		return m.err
	}
	p := e.peers[to]
	var err error
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		err = fmt.Errorf("rudp: send to %v: %w: %w", to, withAuthHintLocked(p, m, ErrPeerUnreachable), ctxErr)
	} else {
		err = fmt.Errorf("rudp: send to %v: %w", to, ctxErr)
	}
	if p != nil {
		e.dropMsgLocked(p, m)
	}
	e.finishLocked(p, m, err)
	return err
}

// dropMsgLocked removes m's fragments from p's queue and window.
func (e *Endpoint) dropMsgLocked(p *peer, m *outMsg) {
	p.queue = slices.DeleteFunc(p.queue, func(f *outFrag) bool { return f.msg == m })
	for i := range m.frags {
		f := &m.frags[i]
		if f.seq != 0 && !f.acked {
			f.acked = true // out of the window
			p.inflightBytes -= f.size()
		}
	}
	e.compactLocked(p)
}

// finishLocked completes m with err (nil: delivered).
func (e *Endpoint) finishLocked(p *peer, m *outMsg, err error) {
	if m.finished {
		return
	}
	m.finished = true
	m.err = err
	if p != nil {
		delete(p.msgs, m.id)
		e.unfinished.Add(-1)
		p.queuedBytes -= len(m.payload)
		p.signalSpace()
	}
	if err == nil {
		e.st.messagesSent.Add(1)
	} else if errors.Is(err, ErrPeerUnreachable) {
		e.st.unreachable.Add(1)
	}
	if m.done != nil {
		m.done <- err
	}
	if err != nil && m.kind == kindRequest {
		if c := e.calls[m.id]; c != nil {
			c.fail(err)
		}
	}
}

// failPeerLocked fails every unfinished message to p with err.
func (e *Endpoint) failPeerLocked(p *peer, err error) {
	if len(p.msgs) == 0 {
		return
	}
	ms := make([]*outMsg, 0, len(p.msgs))
	for _, m := range p.msgs {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *outMsg) int { return cmpU64(a.id, b.id) })
	p.queue = nil
	p.inflight = nil
	p.inflightBytes = 0
	e.discardOpenLocked(p)
	for _, m := range ms {
		e.finishLocked(p, m, fmt.Errorf("rudp: send to %v: %w", p.addr, withAuthHintLocked(p, m, err)))
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compactLocked removes acknowledged fragments from the front of the window.
func (e *Endpoint) compactLocked(p *peer) {
	i := 0
	for i < len(p.inflight) && p.inflight[i].acked {
		i++
	}
	if i == 0 {
		return
	}
	// Move the rest to the front (the window is small) so that appends
	// reuse the array.
	n := copy(p.inflight, p.inflight[i:])
	clear(p.inflight[n:])
	p.inflight = p.inflight[:n]
}

// processAckLocked applies an ack block for this incarnation's stream.
func (e *Endpoint) processAckLocked(p *peer, a *ackBlock, now time.Time) {
	upper := a.cum
	if a.n > 0 {
		upper = a.ranges[a.n-1].hi
	}
	var newest *outFrag
	ri, progress := 0, false
	for _, f := range p.inflight {
		if f.seq >= upper {
			break
		}
		if f.acked {
			continue
		}
		acked := f.seq < a.cum
		if !acked {
			for ri < a.n && a.ranges[ri].hi <= f.seq {
				ri++
			}
			acked = ri < a.n && a.ranges[ri].lo <= f.seq
		}
		if !acked {
			continue
		}
		progress = true
		f.acked = true
		p.inflightBytes -= f.size()
		if f.sends == 1 {
			// Only unambiguous acks count for loss detection: the ack of a
			// resent fragment may be for its first transmission.
			p.ackedIdx = max(p.ackedIdx, f.sentIdx)
		}
		if newest == nil || f.sentIdx > newest.sentIdx {
			newest = f
		}
		m := f.msg
		m.unacked--
		if m.unacked == 0 {
			e.finishLocked(p, m, nil)
		}
	}
	// The datagram a.maxPN arrived: everything it carried was sent after
	// whatever it does not acknowledge, even if it carried resent
	// fragments (whose own acks are ambiguous).
	if idx, ok := p.lookupPN(a.maxPN); ok && idx > p.ackedIdx {
		p.ackedIdx = idx
		if !progress {
			e.detectLossLocked(p, now)
		}
	}
	if !progress {
		return
	}
	p.progressAt = now
	if newest.sends == 1 { // Karn: only unambiguous samples
		r := now.Sub(newest.sentAt)
		if d := time.Duration(a.delay) * time.Microsecond; d < r {
			r -= d
		}
		p.sampleRTT(r, &e.cfg)
	}
	e.compactLocked(p)
	e.detectLossLocked(p, now)
	e.pumpLocked(p, now)
}

// detectLossLocked resends fragments presumed lost because a fragment sent
// after them was acknowledged (RFC 9002 6.1): either three transmissions
// later, or at least lossDelay ago. It returns when the next fragment
// would pass the time threshold (zero if none).
func (e *Endpoint) detectLossLocked(p *peer, now time.Time) time.Time {
	var next time.Time
	delay := p.lossDelay()
	for _, f := range p.inflight {
		if f.acked || f.sentIdx >= p.ackedIdx {
			continue
		}
		if f.sentIdx+3 <= p.ackedIdx || now.Sub(f.sentAt) >= delay {
			e.transmitLocked(p, f, now)
		} else if at := f.sentAt.Add(delay); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if !next.IsZero() {
		e.wakeLocked(next)
	}
	return next
}

// resetStreamLocked restarts every unfinished message to p after p got a
// new incarnation: the new process has seen none of it.
func (e *Endpoint) resetStreamLocked(p *peer, now time.Time) {
	ms := make([]*outMsg, 0, len(p.msgs))
	for _, m := range p.msgs {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *outMsg) int { return cmpU64(a.id, b.id) })
	p.queue = p.queue[:0]
	p.inflight = nil
	p.inflightBytes = 0
	p.ackedIdx = p.sentIdx
	p.sentPNs = p.sentPNs[:0]
	e.discardOpenLocked(p)
	for _, m := range ms {
		m.unacked = len(m.frags)
		for i := range m.frags {
			m.frags[i] = outFrag{msg: m, idx: uint16(i)}
			p.queue = append(p.queue, &m.frags[i])
		}
	}
	// Calls whose request the old process took will get no reply.
	for id, c := range e.calls {
		if c.to == p.addr && c.msg != nil && c.msg.finished {
			c.fail(fmt.Errorf("rudp: call %v: %w: peer restarted", p.addr, ErrPeerUnreachable))
			delete(e.calls, id)
		}
	}
	e.pumpLocked(p, now)
}

// Broadcast sends payload in one unreliable datagram to to, normally a
// broadcast address such as 192.168.1.255:P (SO_BROADCAST is set by
// ListenUDP). Endpoints reading port P on that network deliver it to their
// Handler with Message.Broadcast set; the sender ignores its own.
func (e *Endpoint) Broadcast(to netip.AddrPort, payload []byte) error {
	if max := e.cfg.MaxDatagramSize - headerLen - bcastFixedLen - tagLen; len(payload) > max {
		return fmt.Errorf("rudp: broadcast of %d bytes (at most %d): %w", len(payload), max, ErrTooLarge)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	e.bcastSeq++
	buf := e.newBuf()
	*buf = appendHeader(*buf, header{version: ProtocolVersion, typ: typeBroadcast, cluster: e.cfg.ClusterID, node: e.nodeID, inc: e.inc})
	*buf = binary.BigEndian.AppendUint64(*buf, e.bcastSeq)
	*buf = append(*buf, payload...)
	e.queueLocked(buf, to)
	e.mu.Unlock()
	e.flush()
	return nil
}
