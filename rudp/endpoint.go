package rudp

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrPeerUnreachable means a message was not acknowledged before the
	// caller's deadline or before the peer made no progress for
	// Config.PeerTimeout. The peer may or may not have received it.
	ErrPeerUnreachable = errors.New("rudp: peer unreachable")
	// ErrAuthFailed is wrapped, besides ErrPeerUnreachable, by the error
	// of a Send or Call that failed after the peer's address answered with
	// an "auth failed" notice during it: the peer could not verify our
	// datagrams, most likely because its cluster secret differs. The notice
	// is unauthenticated, so this is a diagnosis, not a proof.
	ErrAuthFailed = errors.New("rudp: peer rejected our authentication: the cluster secrets differ")
	// ErrClosed is returned by operations on a closed endpoint.
	ErrClosed = errors.New("rudp: endpoint closed")
	// ErrTooLarge is returned for a message above Config.MaxMessageSize or a
	// broadcast that does not fit one datagram.
	ErrTooLarge = errors.New("rudp: message too large")
	// ErrRunning is returned by a second call of Run.
	ErrRunning = errors.New("rudp: already running")
	// ErrTooManyPeers is returned when Config.MaxPeers peers all have
	// unfinished work.
	ErrTooManyPeers = errors.New("rudp: too many peers")
	// ErrReplied is returned by a deferred reply function (Message.Defer)
	// called again, or after the handler's return value was sent.
	ErrReplied = errors.New("rudp: already replied")
)

// Stats is a snapshot of an endpoint's counters.
type Stats struct {
	DatagramsSent     uint64 // datagrams written, first transmissions and retransmissions
	DatagramsReceived uint64 // datagrams read, good or bad
	MessagesSent      uint64 // messages fully acknowledged (replies included)
	MessagesReceived  uint64 // messages delivered (broadcasts and replies included)
	Retransmits       uint64 // fragments sent again
	Duplicates        uint64 // fragments and broadcasts received again (not delivered)
	DroppedBadMAC     uint64 // datagrams whose tag did not verify (never parsed)
	DroppedMalformed  uint64 // authenticated datagrams that failed to parse
	DroppedStale      uint64 // datagrams of another cluster, a retired incarnation or beyond the window
	DroppedNoBuffer   uint64 // fragments refused by the reassembly bounds (sender retries)
	PartialsExpired   uint64 // partial messages freed after ReassemblyTimeout
	Unreachable       uint64 // messages given up (deadline or PeerTimeout)
	PeerRestarts      uint64 // new incarnations seen from known addresses
	WriteErrors       uint64 // failed socket writes (treated as loss)
	NoticesSent       uint64 // "auth failed" notices sent (answers to datagrams with a bad tag)
	NoticesReceived   uint64 // "auth failed" notices received from addresses we were sending to
	ReassemblyBytes   int64  // bytes now reserved for reassembly and waiting deliveries
	Peers             int    // addresses with state
}

type counters struct {
	datagramsSent, datagramsReceived, messagesSent, messagesReceived atomic.Uint64
	retransmits, duplicates, droppedBadMAC, droppedMalformed         atomic.Uint64
	droppedStale, droppedNoBuffer, partialsExpired, unreachable      atomic.Uint64
	peerRestarts, writeErrors, noticesSent, noticesReceived          atomic.Uint64
}

// Endpoint sends and receives messages over one net.PacketConn. It is safe
// for concurrent use.
type Endpoint struct {
	cfg    Config
	log    *slog.Logger
	pc     net.PacketConn
	udp    *net.UDPConn // pc when it is a UDP socket (allocation-free I/O)
	mac    *sealer
	nodeID uint64
	inc    uint64 // Invariant: inc != 0
	chunk  int    // payload bytes per fragment

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	running   atomic.Bool
	inbox     chan delivery
	readTok   chan struct{} // capacity 1; a worker holding its token reads the socket
	bufPool   sync.Pool     // of *[]byte with capacity MaxDatagramSize
	writeMu   sync.Mutex
	timers    sync.Pool // of *time.Timer, stopped, for Call's CallTimeout
	// unfinished counts the messages being sent (sum of len(peer.msgs),
	// changed under mu): more than one means concurrent senders.
	unfinished atomic.Int64

	mu         sync.Mutex
	closed     bool
	rng        *rand.Rand
	peers      map[netip.AddrPort]*peer
	calls      map[uint64]*pendingCall // by request msg ID
	nextMsgID  uint64
	pn         uint64 // packet number of the last datagram sealed
	bcastSeq   uint64
	bcastSeen  map[[2]uint64]*bcastWindow // by (node, incarnation)
	reasmBytes int                        // Invariant: sum of peer.reasmBytes <= MaxReassemblyBytes
	out        []outDatagram              // built under mu, written by flush
	outSpare   []outDatagram              // the other buffer flush swaps with out
	openPeers  []*peer                    // peers that may have an open datagram
	nextWake   time.Time                  // when timer will next fire
	timer      *time.Timer                // drives timerLoop; reset under mu
	notices    noticeLimiter              // rate of "auth failed" notices sent
	// lentSince is when the read token was lent to a handler or parked
	// (zero: neither); parked means nobody holds it; lendGen numbers the
	// loans. See lendToken and parkTokenLocked.
	lentSince time.Time
	parked    bool
	lendGen   uint64
	reader    *pendingCall // the Call reading for itself (readForCall), if any
	callBuf   []byte       // read buffer of the Call holding the token (readForCall)
	callDs    []delivery   // its deliveries

	st counters
}

type outDatagram struct {
	buf *[]byte
	to  netip.AddrPort
}

type delivery struct {
	m       Message
	kind    uint8
	msgID   uint64
	p       *peer
	release int // reassembly bytes to release after the handler returns
}

// New returns an endpoint that will own pc. It starts nothing: call Run.
func New(pc net.PacketConn, cfg Config) (*Endpoint, error) {
	if pc == nil {
		return nil, errors.New("rudp: nil PacketConn")
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rng := cfg.Rand
	if rng == nil {
		var seed [16]byte
		cryptorand.Read(seed[:])
		rng = rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:]), binary.LittleEndian.Uint64(seed[8:])))
	}
	e := &Endpoint{
		cfg:       cfg,
		pc:        pc,
		chunk:     cfg.chunkSize(),
		done:      make(chan struct{}),
		inbox:     make(chan delivery, cfg.InboxLen),
		readTok:   make(chan struct{}, 1),
		rng:       rng,
		peers:     make(map[netip.AddrPort]*peer),
		calls:     make(map[uint64]*pendingCall),
		bcastSeen: make(map[[2]uint64]*bcastWindow),
		timer:     time.NewTimer(time.Hour),
		nextWake:  time.Now().Add(time.Hour),
	}
	e.udp, _ = pc.(*net.UDPConn)
	e.nodeID = cfg.NodeID
	for e.nodeID == 0 {
		e.nodeID = rng.Uint64()
	}
	for e.inc == 0 {
		e.inc = rng.Uint64()
	}
	var err error
	if e.mac, err = newSealer(cfg.Secret, cfg.ClusterID, e.nodeID, e.inc); err != nil {
		return nil, err
	}
	e.log = cfg.Logger.With("node_id", fmt.Sprintf("%016x", e.nodeID), "local", pc.LocalAddr().String())
	e.bufPool.New = func() any { b := make([]byte, 0, cfg.MaxDatagramSize); return &b }
	if len(cfg.Secret) == 0 {
		e.log.Warn("rudp: no cluster secret configured: datagrams are not authenticated")
	}
	return e, nil
}

// NodeID returns this endpoint's node ID.
func (e *Endpoint) NodeID() uint64 { return e.nodeID }

// Incarnation returns this endpoint's random incarnation.
func (e *Endpoint) Incarnation() uint64 { return e.inc }

// LocalAddr returns the address of the endpoint's PacketConn.
func (e *Endpoint) LocalAddr() net.Addr { return e.pc.LocalAddr() }

// AddrPort returns LocalAddr as a netip.AddrPort.
func (e *Endpoint) AddrPort() netip.AddrPort { return addrPortOf(e.pc.LocalAddr()) }

// Run reads the socket, runs retransmission timers and handlers, and blocks
// until ctx is done or Close is called; it then closes the endpoint and
// returns after every goroutine it started has exited. It returns nil on
// such a stop and the read error if the socket fails.
func (e *Endpoint) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var (
		errOnce sync.Once
		readErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { readErr = err })
		cancel()
	}
	wg.Go(func() { e.timerLoop(ctx) })
	e.readTok <- struct{}{}
	for range e.cfg.HandlerWorkers {
		wg.Go(func() { e.worker(ctx, fail) })
	}
	wg.Go(func() { e.spareReader(ctx, fail) })
	select {
	case <-ctx.Done():
	case <-e.done:
	}
	e.Close()
	cancel()
	wg.Wait()
	return readErr
}

// Close stops the endpoint: pending Send and Call return ErrClosed and the
// PacketConn is closed. Acks not sent yet (they wait up to AckDelay) are
// sent first, so that peers do not retransmit what this endpoint received
// (a reply to a Call made just before Close, say) until their PeerTimeout.
// It is idempotent and does not wait for Run.
func (e *Endpoint) Close() error {
	var err error
	e.closeOnce.Do(func() {
		close(e.done)
		now := time.Now()
		e.mu.Lock()
		e.closed = true
		e.timer.Stop()
		for _, p := range e.peers {
			e.failPeerLocked(p, ErrClosed)
			if p.recvInit && !p.ackDue.IsZero() {
				e.sendAckLocked(p, now)
			}
		}
		for id, c := range e.calls {
			c.fail(ErrClosed)
			delete(e.calls, id)
		}
		e.mu.Unlock()
		e.writeMu.Lock() // after any write in progress
		e.writeBatch()
		e.writeMu.Unlock()
		err = e.pc.Close()
	})
	return err
}

// Stats returns a snapshot of the counters.
func (e *Endpoint) Stats() Stats {
	e.mu.Lock()
	reasm, peers := e.reasmBytes, len(e.peers)
	e.mu.Unlock()
	return Stats{
		DatagramsSent:     e.st.datagramsSent.Load(),
		DatagramsReceived: e.st.datagramsReceived.Load(),
		MessagesSent:      e.st.messagesSent.Load(),
		MessagesReceived:  e.st.messagesReceived.Load(),
		Retransmits:       e.st.retransmits.Load(),
		Duplicates:        e.st.duplicates.Load(),
		DroppedBadMAC:     e.st.droppedBadMAC.Load(),
		DroppedMalformed:  e.st.droppedMalformed.Load(),
		DroppedStale:      e.st.droppedStale.Load(),
		DroppedNoBuffer:   e.st.droppedNoBuffer.Load(),
		PartialsExpired:   e.st.partialsExpired.Load(),
		Unreachable:       e.st.unreachable.Load(),
		PeerRestarts:      e.st.peerRestarts.Load(),
		WriteErrors:       e.st.writeErrors.Load(),
		NoticesSent:       e.st.noticesSent.Load(),
		NoticesReceived:   e.st.noticesReceived.Load(),
		ReassemblyBytes:   int64(reasm),
		Peers:             peers,
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case nil:
		return ap
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// readBufSize is the read buffer: more than any valid datagram (at most
// 1372 bytes), so a longer one is truncated and fails its tag.
const readBufSize = 2048

// readOne reads one datagram into buf; n < 0 means nothing was read (a
// read deadline passed). It returns done when the socket is closed or
// failed (err is then the failure, nil after Close).
func (e *Endpoint) readOne(buf []byte) (n int, from netip.AddrPort, done bool, err error) {
	if e.udp != nil {
		n, from, err = e.udp.ReadFromUDPAddrPort(buf)
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	} else {
		var a net.Addr
		n, a, err = e.pc.ReadFrom(buf)
		from = addrPortOf(a)
	}
	if err == nil {
		return n, from, false, nil
	}
	select {
	case <-e.done:
		return 0, from, true, nil
	default:
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return -1, from, false, nil
	}
	e.log.Error("rudp: read failed", "err", err)
	return 0, from, true, fmt.Errorf("rudp: read: %w", err)
}

// flush writes the datagrams built under the lock, in the order they were
// built. Only one goroutine writes at a time (writeMu; concurrent writers
// would reorder datagrams, which looks like loss to the peer's acks). A
// goroutine that finds another one writing leaves its datagrams to it: the
// writer re-checks for work after each batch. So nobody waits for a write
// and, under load, frames queued during a write share datagrams.
func (e *Endpoint) flush() {
	for first := true; e.writeMu.TryLock(); first = false {
		if first && e.unfinished.Load() > 1 {
			// Other senders are likely runnable (woken by the ack
			// that completed their last message): let them queue
			// their frames first, so that they share datagrams.
			runtime.Gosched()
		}
		out := e.writeBatch()
		e.writeMu.Unlock()
		e.mu.Lock()
		if e.outSpare == nil {
			e.outSpare = out[:0]
		}
		more := len(e.out) > 0 || len(e.openPeers) > 0
		e.mu.Unlock()
		if !more {
			return
		}
	}
}

// writeBatch seals the open datagrams and writes everything queued. The
// caller holds writeMu; it returns the emptied batch for reuse.
func (e *Endpoint) writeBatch() []outDatagram {
	e.mu.Lock()
	for _, p := range e.openPeers {
		if p.open != nil {
			e.sealOpenLocked(p)
		}
	}
	clear(e.openPeers)
	e.openPeers = e.openPeers[:0]
	out := e.out
	e.out, e.outSpare = e.outSpare[:0], nil
	e.mu.Unlock()
	for _, d := range out {
		var err error
		if e.udp != nil {
			_, err = e.udp.WriteToUDPAddrPort(*d.buf, d.to)
		} else {
			_, err = e.pc.WriteTo(*d.buf, net.UDPAddrFromAddrPort(d.to))
		}
		e.st.datagramsSent.Add(1)
		if err != nil {
			e.st.writeErrors.Add(1)
			e.log.Debug("rudp: write failed", "peer", d.to, "err", err)
		}
		*d.buf = (*d.buf)[:0]
		e.bufPool.Put(d.buf)
	}
	clear(out)
	return out
}

// newBuf returns an empty datagram buffer.
func (e *Endpoint) newBuf() *[]byte { return e.bufPool.Get().(*[]byte) }

// queueLocked numbers b, seals it with its tag, queues it for flush and
// returns its packet number.
func (e *Endpoint) queueLocked(b *[]byte, to netip.AddrPort) uint64 {
	e.pn++
	binary.BigEndian.PutUint64((*b)[pnOffset:], e.pn)
	*b = e.mac.appendTag(*b)
	e.out = append(e.out, outDatagram{buf: b, to: to})
	return e.pn
}

// wakeLocked makes sure the timer runs by t.
func (e *Endpoint) wakeLocked(t time.Time) {
	if !t.Before(e.nextWake) {
		return
	}
	e.nextWake = t
	e.timer.Reset(max(time.Until(t), timerGranularity))
}

// timerGranularity is the shortest timer sleep; deadlines due within it are
// handled together.
const timerGranularity = time.Millisecond

// timerLoop runs retransmissions, delayed acks and expiries when timer
// fires; onTimer and wakeLocked re-arm it.
func (e *Endpoint) timerLoop(ctx context.Context) {
	for {
		select {
		case <-e.timer.C:
			e.onTimer(time.Now())
			e.flush()
		case <-ctx.Done():
			return
		}
	}
}

// worker runs handlers and, when it holds the read token, reads the
// socket: it applies one datagram, writes what the datagram produced and
// runs the handler of the message it completed itself, without a hand-off
// to another goroutine. It runs that handler with the token lent (see
// lendToken): no other goroutine is woken to read meanwhile unless the
// handler waits in Send or Call or runs longer than lendTimeout, so a
// quick handler's reply is written before anything else happens, and the
// worker reads on afterwards. So datagrams are applied in the order they
// were read, one at a time, and nobody reads while every worker is busy in
// a handler.
func (e *Endpoint) worker(ctx context.Context, fail func(error)) {
	var (
		buf  []byte
		ds   []delivery
		hold bool // this worker has the token
	)
	for {
		if !hold {
			select {
			case d := <-e.inbox:
				e.handle(ctx, d)
				continue
			case <-e.readTok:
			case <-ctx.Done():
				return
			}
		}
		// Only the token holder adds to the inbox, so if it is empty
		// now it stays so while this worker reads. If a message is
		// waiting, run it and leave the reading to another goroutine: a
		// worker blocked reading would strand it until the next datagram
		// arrives.
		select {
		case d := <-e.inbox:
			e.readTok <- struct{}{}
			hold = false
			e.handle(ctx, d)
			continue
		default:
		}
		if buf == nil {
			buf = make([]byte, readBufSize)
		}
		n, from, done, err := e.readOne(buf)
		if done {
			if err != nil {
				fail(err)
			}
			return // the token stays taken: the endpoint is closed
		}
		if n >= 0 {
			ds = e.applyDatagram(buf[:n], from, ds[:0])
		} else {
			e.clearReadDeadline() // interrupted (readForCall)
		}
		hold = true
		if !slices.ContainsFunc(ds, func(d delivery) bool { return d.kind != kindResponse }) {
			// Responses only: keep reading.
			e.flush()
			if e.dispatch(ctx, ds) {
				// A caller was woken: if nothing else waits for a
				// datagram, park the token so that its next Call
				// reads its own response (readForCall).
				e.mu.Lock()
				hold = !e.parkTokenLocked(time.Now())
				e.mu.Unlock()
				// Let the woken caller run now, on this thread, rather
				// than after this goroutine's next read finds nothing.
				runtime.Gosched()
			}
		} else {
			// Queue messages for idle workers while holding the token
			// (see above), then run the last one here with the token
			// lent.
			ds = e.queueForOthers(ds)
			gen := e.lendToken()
			e.flush()
			e.dispatch(ctx, ds)
			hold = e.unlendToken(gen)
		}
		clear(ds)
		ds = ds[:0]
	}
}

// lendTimeout is how long a handler may hold a lent read token before the
// timer passes the token on to another reader.
const lendTimeout = timerGranularity

// lendToken marks the read token, held by the calling worker, as lent to
// the handler it is about to run, and returns the loan's number for
// unlendToken. Until the loan ends the token is passed on to the next
// reader (reclaimTokenLocked) by the first Send or Call submitted, since
// it will wait for a datagram (it may be the handler's own), or by the
// timer after lendTimeout, since the handler may be waiting for another
// message. Otherwise nobody reads meanwhile: the datagrams wait in the
// socket's buffer.
func (e *Endpoint) lendToken() uint64 {
	now := time.Now()
	e.mu.Lock()
	e.lendGen++
	gen := e.lendGen
	e.lentSince = now
	e.wakeLocked(now.Add(lendTimeout))
	e.mu.Unlock()
	return gen
}

// unlendToken ends loan gen and reports whether the caller still holds
// the read token (false: it was passed on meanwhile).
func (e *Endpoint) unlendToken(gen uint64) bool {
	e.mu.Lock()
	// A parked token is taken too: a Call in the handler took it and
	// parked it when done.
	kept := !e.lentSince.IsZero() && (e.parked || e.lendGen == gen)
	if kept {
		e.lentSince, e.parked = time.Time{}, false
	}
	e.mu.Unlock()
	return kept
}

// reclaimTokenLocked passes a lent or parked read token on to the next
// reader (a worker or the spare reader idle in select), if there is one.
func (e *Endpoint) reclaimTokenLocked() {
	if e.lentSince.IsZero() {
		return
	}
	e.lentSince, e.parked = time.Time{}, false
	e.readTok <- struct{}{} // never blocks: the token was not in the channel
}

// takeTokenLocked takes a lent or parked read token for the caller and
// reports whether there was one.
func (e *Endpoint) takeTokenLocked() bool {
	if e.lentSince.IsZero() {
		return false
	}
	e.lentSince, e.parked = time.Time{}, false
	return true
}

// parkTokenLocked parks the read token held by the caller, which stops
// reading, if nothing waits for a datagram: no Call, no unfinished
// message, no partial or undelivered message, nothing in the inbox. It
// reports whether it did. A parked token is taken by the next Call
// (which reads its own response), a worker whose handler returns, or
// passed on by the next Send or by the timer after lendTimeout: a request
// arriving meanwhile waits in the socket buffer at most that long.
func (e *Endpoint) parkTokenLocked(now time.Time) bool {
	if e.closed || len(e.calls) > 0 || e.unfinished.Load() > 0 || e.reasmBytes > 0 || len(e.inbox) > 0 {
		return false
	}
	e.lentSince, e.parked = now, true
	e.wakeLocked(now.Add(lendTimeout))
	return true
}

// interruptRead makes the socket's current or next read return at once
// (a read deadline in the past); the reader clears it (clearReadDeadline).
func (e *Endpoint) interruptRead() { e.pc.SetReadDeadline(time.Unix(1, 0)) }

// clearReadDeadline removes the socket's read deadline.
func (e *Endpoint) clearReadDeadline() { e.pc.SetReadDeadline(time.Time{}) }

// spareReader takes its turn with the read token like a worker but never
// runs a handler: it queues messages for the workers (blocking while the
// inbox is full, still holding the token) and then passes the token on. So while every worker is
// in a handler, even one waiting for a Call's response or a Send's ack,
// the socket is still read.
func (e *Endpoint) spareReader(ctx context.Context, fail func(error)) {
	buf := make([]byte, readBufSize)
	var ds []delivery
	for {
		select {
		case <-e.readTok:
		case <-ctx.Done():
			return
		}
		n, from, done, err := e.readOne(buf)
		if done {
			if err != nil {
				fail(err)
			}
			return
		}
		if n >= 0 {
			ds = e.applyDatagram(buf[:n], from, ds[:0])
		} else {
			e.clearReadDeadline() // interrupted (readForCall)
		}
		// Deliver before passing the token: only its holder adds to the
		// inbox (see worker).
		woke := e.deliver(ds)
		e.readTok <- struct{}{}
		e.flush()
		if woke {
			runtime.Gosched() // as in worker
		}
		clear(ds)
		ds = ds[:0]
	}
}

func (e *Endpoint) handle(ctx context.Context, d delivery) {
	var reply []byte
	if h := e.cfg.Handler; h != nil {
		reply = h(ctx, d.m)
	}
	if d.release > 0 {
		e.mu.Lock()
		d.p.reasmBytes -= d.release
		e.reasmBytes -= d.release
		e.mu.Unlock()
	}
	if c := d.m.call; c != nil && !c.deferred.Load() {
		if err := c.send(reply); err != nil && !errors.Is(err, ErrReplied) {
			e.log.Debug("rudp: reply not sent", "peer", d.m.From, "err", err)
		}
	}
}
