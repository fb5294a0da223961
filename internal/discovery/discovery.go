package discovery

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/rudp"
)

// DefaultPort is the UDP port discovery broadcasts go to.
const DefaultPort = 7799

// Defaults of Finder.
const (
	DefaultMinInterval = 250 * time.Millisecond
	DefaultMaxInterval = 4 * time.Second
)

var (
	// ErrMalformed means a discovery datagram's payload could not be
	// decoded or carried an unusable address.
	ErrMalformed = errors.New("discovery: malformed message")
	// ErrNoBroadcastAddr means no broadcast address was configured and no
	// interface has one.
	ErrNoBroadcastAddr = errors.New("discovery: no broadcast address")
	// ErrStale means a well-formed beacon echoed another nonce than the
	// finder's: a replay of an answer to an earlier Discover (or one
	// from an entrance that predates nonces, which echoes none).
	ErrStale = errors.New("discovery: beacon answers another discover (replayed?)")
)

// limitedBroadcast is 255.255.255.255, which is never used: it leaves only
// through the interface of the default route (onto the real LAN of a test
// machine); subnet broadcast addresses are used instead.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// Listen opens the socket a Responder reads: 0.0.0.0:port with
// SO_REUSEADDR, so that several processes on one host can share the
// discovery port (each receives every broadcast). A socket bound to a
// unicast address would receive no broadcasts. port 0 means DefaultPort.
func Listen(ctx context.Context, port int) (*net.UDPConn, error) {
	if port == 0 {
		port = DefaultPort
	}
	pc, err := rudp.ListenUDP(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port), rudp.SocketOptions{ReuseAddr: true})
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	return pc, nil
}

// ResponderConfig configures a Responder.
type ResponderConfig struct {
	// Addr is the entrance's address sent in every beacon; required. An
	// unspecified IP (0.0.0.0:7700) tells finders to use the IP the beacon
	// came from.
	Addr netip.AddrPort
	// PacketConn is the socket to read Discover broadcasts on (see Listen);
	// required. The Responder owns it from Run on.
	PacketConn net.PacketConn
	// Secret authenticates datagrams (rudp's MAC); it must be the cluster
	// secret of the nodes. Empty: unauthenticated.
	Secret []byte
	// Logger receives events; nil discards them.
	Logger *slog.Logger
}

// Responder answers Discover broadcasts with the entrance's address. It
// runs in the entrance.
type Responder struct {
	cfg  ResponderConfig
	log  *slog.Logger
	addr string // cfg.Addr, as beacons carry it
	ep   *rudp.Endpoint

	answered, ignored atomic.Uint64
}

// ResponderStats counts a Responder's work.
type ResponderStats struct {
	Answered uint64 // Discover broadcasts answered with a beacon
	Ignored  uint64 // authenticated datagrams that were not a Discover broadcast
	Rudp     rudp.Stats
}

// NewResponder validates cfg and returns a Responder. It starts nothing:
// call Run.
func NewResponder(cfg ResponderConfig) (*Responder, error) {
	switch {
	case !cfg.Addr.IsValid() || cfg.Addr.Port() == 0:
		return nil, fmt.Errorf("discovery: responder: invalid entrance address %v", cfg.Addr)
	case cfg.PacketConn == nil:
		return nil, errors.New("discovery: responder: PacketConn is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Responder{cfg: cfg, log: log, addr: cfg.Addr.String()}
	ep, err := rudp.New(cfg.PacketConn, rudp.Config{
		Secret: cfg.Secret, Handler: r.handle, Logger: log, HandlerWorkers: 2, InboxLen: 16,
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: responder: %w", err)
	}
	r.ep = ep
	return r, nil
}

// Run answers Discover broadcasts until ctx is done or Close is called.
// It closes the socket when it returns.
func (r *Responder) Run(ctx context.Context) error {
	r.log.Info("discovery responder listening", "addr", r.cfg.PacketConn.LocalAddr().String(),
		"entrance", r.cfg.Addr.String())
	if err := r.ep.Run(ctx); err != nil {
		return fmt.Errorf("discovery: responder: %w", err)
	}
	return nil
}

// Close stops Run; it is idempotent.
func (r *Responder) Close() error {
	if err := r.ep.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("discovery: responder: %w", err)
	}
	return nil
}

// Stats returns the Responder's counters.
func (r *Responder) Stats() ResponderStats {
	return ResponderStats{Answered: r.answered.Load(), Ignored: r.ignored.Load(), Rudp: r.ep.Stats()}
}

func (r *Responder) handle(_ context.Context, m rudp.Message) []byte {
	if !m.Broadcast {
		r.ignored.Add(1)
		return nil
	}
	d, err := DecodeDiscover(m.Payload)
	if err != nil {
		r.ignored.Add(1)
		r.log.Debug("discovery: ignored datagram", "from", m.From.String(), "err", err)
		return nil
	}
	// The beacon echoes the Discover's nonce: the finder accepts it only
	// in answer to its own Discover.
	beacon := proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: r.addr, Nonce: d.Nonce})
	if err := r.ep.Broadcast(m.From, beacon); err != nil {
		r.log.Warn("discovery: answer failed", "to", m.From.String(), "err", err)
		return nil
	}
	r.answered.Add(1)
	r.log.Debug("discovery: answered", "to", m.From.String(), "asker", d.Name)
	return nil
}

// DecodeDiscover decodes a Discover payload (kind byte included).
func DecodeDiscover(p []byte) (proto.Discover, error) {
	var d proto.Discover
	k, body, err := proto.Split(p)
	switch {
	case err != nil:
		return d, fmt.Errorf("%w: %w", ErrMalformed, err)
	case k != proto.KindDiscover:
		return d, fmt.Errorf("%w: kind %d is not discover", ErrMalformed, k)
	}
	if err := proto.Decode(body, &d); err != nil {
		return d, fmt.Errorf("%w: discover: %w", ErrMalformed, err)
	}
	return d, nil
}

// DecodeBeacon decodes an EntranceBeacon payload (kind byte included) that
// came from from in answer to a Discover carrying nonce, and returns the
// entrance address it names. An unspecified IP in the beacon is replaced
// by from's IP. A beacon echoing another nonce is ErrStale; one that does
// not decode or names no usable address is ErrMalformed.
func DecodeBeacon(p []byte, from netip.AddrPort, nonce uint64) (netip.AddrPort, error) {
	k, body, err := proto.Split(p)
	switch {
	case err != nil:
		return netip.AddrPort{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	case k != proto.KindEntranceBeacon:
		return netip.AddrPort{}, fmt.Errorf("%w: kind %d is not a beacon", ErrMalformed, k)
	}
	var b proto.EntranceBeacon
	if err := proto.Decode(body, &b); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: beacon: %w", ErrMalformed, err)
	}
	if b.Nonce != nonce {
		return netip.AddrPort{}, fmt.Errorf("%w: nonce %016x, want %016x", ErrStale, b.Nonce, nonce)
	}
	ap, err := netip.ParseAddrPort(b.Addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: beacon address %q: %w", ErrMalformed, b.Addr, err)
	}
	ip := ap.Addr().Unmap()
	if ip.IsUnspecified() {
		ip = from.Addr().Unmap()
	}
	if ap.Port() == 0 || !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip == limitedBroadcast {
		return netip.AddrPort{}, fmt.Errorf("%w: beacon address %q is not a unicast ip:port", ErrMalformed, b.Addr)
	}
	return netip.AddrPortFrom(ip, ap.Port()), nil
}

// Finder finds the entrance by broadcasting Discover until a Responder
// answers. The zero value broadcasts on DefaultPort to every interface's
// subnet broadcast address, unauthenticated.
type Finder struct {
	// Port is the discovery port. Default DefaultPort.
	Port int
	// Broadcast are the addresses to send to; nil means BroadcastAddrs().
	// A unicast address works too (the entrance's host). 255.255.255.255
	// is refused: use subnet broadcast addresses.
	Broadcast []netip.Addr
	// Secret authenticates datagrams; it must match the entrance's.
	Secret []byte
	// Name is sent in Discover (for the entrance's logs).
	Name string
	// MinInterval is the first wait for an answer; it doubles up to
	// MaxInterval (±20% jitter). Defaults DefaultMinInterval and
	// DefaultMaxInterval.
	MinInterval, MaxInterval time.Duration
	// Logger receives events; nil discards them.
	Logger *slog.Logger
	// PacketConn, if set, is the socket to use (closed when Find returns);
	// nil opens 0.0.0.0:0.
	PacketConn net.PacketConn

	malformed, stale atomic.Uint64
}

// FinderStats counts the datagrams a Finder ignored, over all its Find
// calls.
type FinderStats struct {
	// Malformed counts authenticated datagrams that were no usable beacon.
	Malformed uint64
	// Stale counts well-formed beacons that echoed another nonce than the
	// Find call's (replayed answers; see ErrStale).
	Stale uint64
}

// Stats returns the Finder's counters.
func (f *Finder) Stats() FinderStats {
	return FinderStats{Malformed: f.malformed.Load(), Stale: f.stale.Load()}
}

// newNonce returns a random nonce, never 0 (0 means "no nonce" on the
// wire). It comes from crypto/rand: a nonce an attacker could predict
// would let a beacon captured now be replayed to that future finder.
func newNonce() uint64 {
	var b [8]byte
	for {
		crand.Read(b[:]) // never fails (Go 1.24+: crashes instead)
		if n := binary.LittleEndian.Uint64(b[:]); n != 0 {
			return n
		}
	}
}

// Find broadcasts Discover, retrying with backoff, until a beacon arrives
// (it returns the entrance's address) or ctx is done (it returns ctx's
// error). The first valid beacon wins. Every Discover of one Find call
// carries the same random nonce and only beacons echoing it count, so a
// beacon answering an earlier Find (of this or another node), replayed,
// is ignored (counted in FinderStats.Stale).
func (f *Finder) Find(ctx context.Context) (netip.AddrPort, error) {
	port := f.Port
	if port == 0 {
		port = DefaultPort
	}
	if port < 1 || port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("discovery: port %d out of range", port)
	}
	minI, maxI := f.MinInterval, f.MaxInterval
	if minI <= 0 {
		minI = DefaultMinInterval
	}
	if maxI <= 0 {
		maxI = DefaultMaxInterval
	}
	maxI = max(minI, maxI)
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addrs := f.Broadcast
	if addrs == nil {
		var err error
		if addrs, err = BroadcastAddrs(); err != nil {
			return netip.AddrPort{}, err
		}
	}
	var dsts []netip.AddrPort
	for _, a := range addrs {
		a = a.Unmap()
		if !a.Is4() || a == limitedBroadcast || a.IsUnspecified() {
			return netip.AddrPort{}, fmt.Errorf("discovery: broadcast address %v: want an IPv4 subnet broadcast or unicast address", a)
		}
		dsts = append(dsts, netip.AddrPortFrom(a, uint16(port)))
	}
	if len(dsts) == 0 {
		return netip.AddrPort{}, ErrNoBroadcastAddr
	}

	pc := f.PacketConn
	if pc == nil {
		var err error
		if pc, err = rudp.ListenUDP(ctx, "udp4", "0.0.0.0:0", rudp.SocketOptions{ReadBuffer: 64 << 10, WriteBuffer: 64 << 10}); err != nil {
			return netip.AddrPort{}, fmt.Errorf("discovery: %w", err)
		}
	}
	nonce := newNonce()
	var staleWarned atomic.Bool
	found := make(chan netip.AddrPort, 1)
	ep, err := rudp.New(pc, rudp.Config{
		Secret: f.Secret, Logger: log, HandlerWorkers: 2, InboxLen: 16,
		Handler: func(_ context.Context, m rudp.Message) []byte {
			if !m.Broadcast {
				return nil
			}
			a, err := DecodeBeacon(m.Payload, m.From, nonce)
			if err != nil {
				if errors.Is(err, ErrStale) {
					f.stale.Add(1)
					if staleWarned.CompareAndSwap(false, true) {
						// Once per Find: a replay attempt, or an entrance
						// too old to echo the nonce (it echoes 0).
						log.Warn("discovery: ignored a beacon that does not answer our discover (replayed, or an entrance older than this node: upgrade the entrance)",
							"from", m.From.String(), "err", err)
						return nil
					}
				} else {
					f.malformed.Add(1)
				}
				log.Debug("discovery: ignored datagram", "from", m.From.String(), "err", err)
				return nil
			}
			select {
			case found <- a:
			default:
			}
			return nil
		},
	})
	if err != nil {
		pc.Close()
		return netip.AddrPort{}, fmt.Errorf("discovery: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() { defer close(runDone); ep.Run(rctx) }()
	defer func() {
		cancel()
		ep.Close()
		<-runDone
	}()

	msg := proto.MustEncode(proto.KindDiscover, proto.Discover{Name: f.Name, Nonce: nonce})
	wait := minI
	timer := time.NewTimer(0)
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		select {
		case a := <-found:
			return a, nil
		case <-ctx.Done():
			return netip.AddrPort{}, fmt.Errorf("discovery: no entrance answered: %w", ctx.Err())
		case <-timer.C:
		}
		for _, d := range dsts {
			if err := ep.Broadcast(d, msg); err != nil {
				log.Warn("discovery: broadcast failed", "to", d.String(), "err", err)
			}
		}
		if attempt == 1 || attempt%5 == 0 {
			log.Info("looking for the entrance", "broadcast", dsts, "attempt", attempt)
		}
		jitter := time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		timer.Reset(jitter)
		wait = min(2*wait, maxI)
	}
}

// BroadcastAddrs returns the subnet broadcast address of every IPv4
// address of every interface that is up (127.255.255.255 for loopback's
// 127.0.0.0/8). Point-to-point links and /31, /32 addresses have none.
func BroadcastAddrs() ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("discovery: interfaces: %w", err)
	}
	var out []netip.Addr
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagPointToPoint != 0 {
			continue
		}
		as, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			if b, ok := SubnetBroadcast(netip.PrefixFrom(ip.Unmap(), ones)); ok {
				out = append(out, b)
			}
		}
	}
	if len(out) == 0 {
		return nil, ErrNoBroadcastAddr
	}
	return out, nil
}

// SubnetBroadcast returns the broadcast address of an IPv4 prefix (host
// bits all ones); false for IPv6 and for /31 and /32.
func SubnetBroadcast(p netip.Prefix) (netip.Addr, bool) {
	if !p.Addr().Is4() || p.Bits() < 0 || p.Bits() > 30 {
		return netip.Addr{}, false
	}
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= ^uint32(0) >> p.Bits()
	b := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	return b, b != limitedBroadcast
}
