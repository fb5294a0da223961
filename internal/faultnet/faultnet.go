package faultnet

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Link is the behaviour of one directed link. The zero value is a perfect
// link. Probabilities are in [0, 1].
type Link struct {
	Drop    float64 // probability that a datagram is lost
	Dup     float64 // probability that a datagram is delivered twice
	Corrupt float64 // probability that one random bit of a copy is flipped
	Reorder float64 // probability that a copy is held back by ReorderDelay

	Delay        time.Duration // fixed delay added to every copy
	Jitter       time.Duration // random extra delay in [0, Jitter)
	ReorderDelay time.Duration // hold-back for reordered copies; 0 means 1ms
}

// Stats counts what the network did. Every datagram written to a link is
// counted once in Sent; copies are counted in Delivered or Overflow.
type Stats struct {
	Sent       uint64 // datagrams written (per receiving link for broadcasts)
	Blocked    uint64 // lost to a partition
	Dropped    uint64 // lost to Link.Drop
	Duplicated uint64 // extra copies made by Link.Dup
	Corrupted  uint64 // copies with a flipped bit
	Reordered  uint64 // copies held back by Link.Reorder
	Delivered  uint64 // copies handed to a receiver
	Overflow   uint64 // copies lost because the receiver's queue was full
}

// DefaultQueueLen is the default capacity of an in-memory receive queue.
const DefaultQueueLen = 4096

// ErrAddrInUse is returned by Listen for an address already listening.
var ErrAddrInUse = errors.New("faultnet: address already in use")

type linkKey struct{ from, to netip.AddrPort }

// Network is a set of links with faults. It is safe for concurrent use.
type Network struct {
	// QueueLen is the receive queue capacity of connections created by
	// later Listen calls; 0 means DefaultQueueLen.
	QueueLen int

	mu       sync.Mutex
	seed     uint64
	def      Link
	links    map[linkKey]Link
	rngs     map[linkKey]*rand.Rand
	blocked  map[linkKey]bool
	isolated map[netip.AddrPort]bool
	group    map[netip.AddrPort]int
	conns    map[netip.AddrPort]*memConn
	queues   map[linkKey]*linkQueue // delayed copies per link
	seq      uint64
	nextPort uint16
	closed   bool
	stats    Stats
}

// New returns a perfect network whose random decisions derive from seed.
func New(seed uint64) *Network {
	return &Network{
		seed:     seed,
		links:    make(map[linkKey]Link),
		rngs:     make(map[linkKey]*rand.Rand),
		blocked:  make(map[linkKey]bool),
		isolated: make(map[netip.AddrPort]bool),
		group:    make(map[netip.AddrPort]int),
		conns:    make(map[netip.AddrPort]*memConn),
		queues:   make(map[linkKey]*linkQueue),
		nextPort: 40000,
	}
}

// SetDefault sets the behaviour of every link that has no SetLink rule.
func (n *Network) SetDefault(l Link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.def = l
}

// SetLink sets the behaviour of the directed link from -> to.
func (n *Network) SetLink(from, to netip.AddrPort, l Link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.links[linkKey{from, to}] = l
}

// Block drops every datagram from -> to (a one-way partition) until Heal.
func (n *Network) Block(from, to netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blocked[linkKey{from, to}] = true
}

// Isolate drops every datagram to or from a until Heal.
func (n *Network) Isolate(a netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[a] = true
}

// Partition splits the listed addresses into groups that cannot reach each
// other in either direction, until Heal. Addresses not listed are not
// affected. A later Partition replaces an earlier one.
func (n *Network) Partition(groups ...[]netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.group)
	for i, g := range groups {
		for _, a := range g {
			n.group[a] = i
		}
	}
}

// Heal removes every partition (Block, Isolate, Partition). Link faults set
// with SetDefault and SetLink stay.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.blocked)
	clear(n.isolated)
	clear(n.group)
}

// Stats returns a snapshot of the counters.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Close stops every delayed delivery and closes every in-memory connection.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	for _, q := range n.queues {
		if q.timer != nil {
			q.timer.Stop()
		}
	}
	clear(n.queues)
	conns := make([]*memConn, 0, len(n.conns))
	for _, c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// copyPlan is one copy of a datagram to hand over after delay.
type copyPlan struct {
	b     []byte
	delay time.Duration
}

// planLocked decides the fate of one datagram on the link from -> to.
func (n *Network) planLocked(from, to netip.AddrPort, b []byte) []copyPlan {
	n.stats.Sent++
	if n.closed || n.blocked[linkKey{from, to}] || n.isolated[from] || n.isolated[to] {
		n.stats.Blocked++
		return nil
	}
	if gf, ok := n.group[from]; ok {
		if gt, ok := n.group[to]; ok && gf != gt {
			n.stats.Blocked++
			return nil
		}
	}
	k := linkKey{from, to}
	l, ok := n.links[k]
	if !ok {
		l = n.def
	}
	r := n.rngs[k]
	if r == nil {
		h := fnv.New64a()
		fmt.Fprintf(h, "%v>%v", from, to)
		r = rand.New(rand.NewPCG(n.seed, h.Sum64()))
		n.rngs[k] = r
	}
	if l.Drop > 0 && r.Float64() < l.Drop {
		n.stats.Dropped++
		return nil
	}
	copies := 1
	if l.Dup > 0 && r.Float64() < l.Dup {
		copies = 2
		n.stats.Duplicated++
	}
	plans := make([]copyPlan, copies)
	for i := range plans {
		p := append([]byte(nil), b...)
		if l.Corrupt > 0 && len(p) > 0 && r.Float64() < l.Corrupt {
			bit := r.IntN(8 * len(p))
			p[bit/8] ^= 1 << (bit % 8)
			n.stats.Corrupted++
		}
		d := l.Delay
		if l.Jitter > 0 {
			d += time.Duration(r.Int64N(int64(l.Jitter)))
		}
		if l.Reorder > 0 && r.Float64() < l.Reorder {
			rd := l.ReorderDelay
			if rd <= 0 {
				rd = time.Millisecond
			}
			d += rd
			n.stats.Reordered++
		}
		plans[i] = copyPlan{b: p, delay: d}
	}
	return plans
}

// delayed is a copy waiting for its delivery time.
type delayed struct {
	at      time.Time
	seq     uint64 // tie-break: equal times deliver in write order
	deliver func() // called with n.mu held
}

// linkQueue holds a link's delayed copies in (at, seq) order.
type linkQueue struct {
	items []delayed // min-heap
	timer *time.Timer
}

func (q *linkQueue) less(i, j int) bool {
	a, b := q.items[i], q.items[j]
	return a.at.Before(b.at) || (a.at.Equal(b.at) && a.seq < b.seq)
}

func (q *linkQueue) push(d delayed) {
	q.items = append(q.items, d)
	for i := len(q.items) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q.items[i], q.items[p] = q.items[p], q.items[i]
		i = p
	}
}

func (q *linkQueue) pop() delayed {
	top := q.items[0]
	last := len(q.items) - 1
	q.items[0] = q.items[last]
	q.items[last] = delayed{}
	q.items = q.items[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(q.items) && q.less(l, m) {
			m = l
		}
		if r < len(q.items) && q.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top
}

// scheduleLocked delivers a copy on link k after d. Copies of one link
// with equal delivery times keep their write order, so a fixed Delay alone
// never reorders.
func (n *Network) scheduleLocked(k linkKey, d time.Duration, deliver func()) {
	q := n.queues[k]
	if q == nil {
		q = &linkQueue{}
		n.queues[k] = q
	}
	n.seq++
	q.push(delayed{at: time.Now().Add(d), seq: n.seq, deliver: deliver})
	n.armLocked(k, q)
}

func (n *Network) armLocked(k linkKey, q *linkQueue) {
	if len(q.items) == 0 {
		return
	}
	d := time.Until(q.items[0].at)
	if q.timer == nil {
		q.timer = time.AfterFunc(d, func() { n.fire(k) })
	} else {
		q.timer.Reset(d)
	}
}

// fire delivers every due copy of link k, in order, under the lock.
func (n *Network) fire(k linkKey) {
	n.mu.Lock()
	defer n.mu.Unlock()
	q := n.queues[k]
	if n.closed || q == nil {
		return
	}
	now := time.Now()
	for len(q.items) > 0 && !q.items[0].at.After(now) {
		q.pop().deliver()
	}
	n.armLocked(k, q)
}

// Listen returns an in-memory connection bound to addr. Port 0 picks a free
// port.
func (n *Network) Listen(addr netip.AddrPort) (net.PacketConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("faultnet: listen %v: %w", addr, net.ErrClosed)
	}
	if addr.Port() == 0 {
		for {
			n.nextPort++
			a := netip.AddrPortFrom(addr.Addr(), n.nextPort)
			if _, used := n.conns[a]; !used {
				addr = a
				break
			}
		}
	}
	if _, used := n.conns[addr]; used {
		return nil, fmt.Errorf("faultnet: listen %v: %w", addr, ErrAddrInUse)
	}
	ql := n.QueueLen
	if ql <= 0 {
		ql = DefaultQueueLen
	}
	c := &memConn{
		n:       n,
		addr:    addr,
		udpAddr: net.UDPAddrFromAddrPort(addr),
		q:       make(chan packet, ql),
		done:    make(chan struct{}),
		dlChg:   make(chan struct{}),
	}
	n.conns[addr] = c
	return c, nil
}

// Wrap returns pc with the network's faults applied to every datagram it
// writes. The link's from-address is pc.LocalAddr(). Closing the returned
// connection closes pc.
func (n *Network) Wrap(pc net.PacketConn) net.PacketConn {
	return &wrapConn{PacketConn: pc, n: n, self: toAddrPort(pc.LocalAddr())}
}

func toAddrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func isBroadcast(a netip.AddrPort) bool {
	ip := a.Addr().Unmap()
	return ip.Is4() && ip.As4()[3] == 255
}

type packet struct {
	b    []byte
	from *net.UDPAddr
}

// memConn is an in-memory net.PacketConn.
type memConn struct {
	n       *Network
	addr    netip.AddrPort
	udpAddr *net.UDPAddr
	q       chan packet
	done    chan struct{}

	mu       sync.Mutex
	closed   bool
	deadline time.Time     // read deadline; zero means none
	dlChg    chan struct{} // closed and replaced when deadline changes
}

func (c *memConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		dl, chg := c.deadline, c.dlChg
		c.mu.Unlock()
		var timeout <-chan time.Time
		var t *time.Timer
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t = time.NewTimer(d)
			timeout = t.C
		}
		n, from, err, again := c.wait(p, timeout, chg)
		if t != nil {
			t.Stop()
		}
		if !again {
			return n, from, err
		}
	}
}

// wait is one blocking step of ReadFrom; again reports a deadline change.
func (c *memConn) wait(p []byte, timeout <-chan time.Time, chg chan struct{}) (n int, from net.Addr, err error, again bool) {
	select {
	case pk := <-c.q:
		return copy(p, pk.b), pk.from, nil, false
	case <-c.done:
		return 0, nil, net.ErrClosed, false
	case <-timeout:
		return 0, nil, os.ErrDeadlineExceeded, false
	case <-chg:
		return 0, nil, nil, true
	}
}

func (c *memConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	to := toAddrPort(addr)
	n := c.n
	n.mu.Lock()
	var targets []*memConn
	if isBroadcast(to) {
		for a, t := range n.conns {
			if a.Port() == to.Port() {
				targets = append(targets, t)
			}
		}
	} else if t := n.conns[to]; t != nil {
		targets = append(targets, t)
	} else {
		n.stats.Sent++ // nobody listens: lost, like UDP to a closed port
		n.stats.Dropped++
	}
	for _, t := range targets {
		for _, pl := range n.planLocked(c.addr, t.addr, p) {
			if pl.delay <= 0 {
				n.deliverLocked(t, pl.b, c.udpAddr)
				continue
			}
			t, b := t, pl.b
			n.scheduleLocked(linkKey{c.addr, t.addr}, pl.delay, func() { n.deliverLocked(t, b, c.udpAddr) })
		}
	}
	n.mu.Unlock()
	return len(p), nil
}

func (n *Network) deliverLocked(t *memConn, b []byte, from *net.UDPAddr) {
	if n.conns[t.addr] != t { // closed meanwhile (possibly replaced by a restart)
		n.stats.Dropped++
		return
	}
	select {
	case t.q <- packet{b: b, from: from}:
		n.stats.Delivered++
	default:
		n.stats.Overflow++
	}
}

func (c *memConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	c.n.mu.Lock()
	if c.n.conns[c.addr] == c {
		delete(c.n.conns, c.addr)
	}
	c.n.mu.Unlock()
	return nil
}

func (c *memConn) LocalAddr() net.Addr { return c.udpAddr }

func (c *memConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	close(c.dlChg)
	c.dlChg = make(chan struct{})
	return nil
}

// SetWriteDeadline is accepted and ignored: in-memory writes never block.
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// wrapConn applies a Network's faults to a real connection's writes.
type wrapConn struct {
	net.PacketConn
	n    *Network
	self netip.AddrPort
}

func (c *wrapConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	to := toAddrPort(addr)
	n := c.n
	n.mu.Lock()
	plans := n.planLocked(c.self, to, p)
	var now [][]byte
	for _, pl := range plans {
		if pl.delay <= 0 {
			now = append(now, pl.b)
			continue
		}
		b := pl.b
		n.scheduleLocked(linkKey{c.self, to}, pl.delay, func() { _, _ = c.PacketConn.WriteTo(b, addr) })
	}
	n.stats.Delivered += uint64(len(plans)) // handed to the kernel
	n.mu.Unlock()
	for _, b := range now {
		if _, err := c.PacketConn.WriteTo(b, addr); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}
