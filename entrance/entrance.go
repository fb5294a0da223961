package entrance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/rudp"
)

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("entrance: closed")

// Caller makes request/response calls to nodes. *rudp.Endpoint satisfies
// it; tests pass a fake leader.
type Caller interface {
	Call(ctx context.Context, to netip.AddrPort, payload []byte) ([]byte, error)
}

// Config configures an Entrance. Zero durations and limits take their
// defaults.
type Config struct {
	// DataDir holds the registry (entrance.db). Required.
	DataDir string
	// Voters is the most voters the entrance promotes learners to. Default 5.
	Voters int
	// MaxNodes bounds the records that are not removed; joins beyond it
	// are refused. Default 1000.
	MaxNodes int

	// PacketConn is the UDP socket Run serves rudp on (joins, leader
	// reports, who-leads, list-peers) and calls leaders from. Optional:
	// without it Run serves nothing over UDP and Handle is the way in.
	PacketConn net.PacketConn
	// Secret is the cluster secret rudp authenticates datagrams with;
	// empty means unauthenticated.
	Secret []byte
	// Caller replaces the rudp endpoint for calls to leaders (tests).
	// Default: the endpoint on PacketConn.
	Caller Caller
	// HTTPListener is where Run serves HTTP (/healthz, /v1/cluster).
	// Optional.
	HTTPListener net.Listener

	// SuspectAfter and DownAfter are the ages of a node's last sign of life
	// (a pong, see PingInterval) after which it is shown suspect and down.
	// Defaults 2s and 6s: 4 and 12 missed pings at the default interval.
	SuspectAfter, DownAfter time.Duration
	// PingInterval is how often Run pings every node that is not removed;
	// negative turns pings off (liveness then comes from leader reports
	// only, and the liveness loop runs every SuspectAfter/4). Default
	// 500ms.
	PingInterval time.Duration
	// PingTimeout bounds one ping. Default 4/5 of PingInterval, so a
	// node's unanswered ping is over before its next one is due.
	PingTimeout time.Duration
	// MaxPings bounds the pings in flight at once. Default 64.
	MaxPings int
	// DownGrace is how long a member may stay down (beyond DownAfter, as
	// observed since this start) before the driver removes it from the
	// configuration through the leader, when that keeps a live quorum
	// (package doc, "Autopilot"). 0 (the default) turns removal off.
	DownGrace time.Duration
	// Version is reported by the raftkv_build_info metric.
	Version string
	// AdminTimeout bounds one admin call to the leader. Default 2s.
	AdminTimeout time.Duration
	// ConfirmTimeout is how long a change the leader applied may take to
	// show in its reports before the entrance asks again. Default 5s.
	ConfirmTimeout time.Duration
	// RetryInterval is the first wait after a failed or refused admin call;
	// it doubles per consecutive failure up to 16 times itself. Default
	// 250ms.
	RetryInterval time.Duration
	// PromoteLag is how many entries a learner's Match may be behind the
	// leader's commit index and still be promoted. Default 64.
	PromoteLag uint64

	// Logger receives events; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand draws node and cluster IDs; nil means a random seed.
	Rand *rand.Rand
}

func (c *Config) setDefaults() {
	if c.Voters == 0 {
		c.Voters = 5
	}
	if c.MaxNodes == 0 {
		c.MaxNodes = 1000
	}
	d := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	d(&c.SuspectAfter, 2*time.Second)
	d(&c.DownAfter, 6*time.Second)
	d(&c.AdminTimeout, 2*time.Second)
	d(&c.ConfirmTimeout, 5*time.Second)
	d(&c.RetryInterval, 250*time.Millisecond)
	d(&c.PingInterval, 500*time.Millisecond)
	d(&c.PingTimeout, max(c.PingInterval*4/5, 0))
	if c.PingTimeout == 0 {
		c.PingTimeout = time.Second // pings are off; unused
	}
	if c.MaxPings == 0 {
		c.MaxPings = 64
	}
	if c.Version == "" {
		c.Version = "unknown"
	}
	if c.PromoteLag == 0 {
		c.PromoteLag = 64
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
}

func (c *Config) validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("entrance: DataDir is required")
	case c.Voters < 1:
		return fmt.Errorf("entrance: Voters %d must be at least 1", c.Voters)
	case c.MaxNodes < c.Voters:
		return fmt.Errorf("entrance: MaxNodes %d below Voters %d", c.MaxNodes, c.Voters)
	case c.SuspectAfter <= 0 || c.DownAfter < c.SuspectAfter:
		return fmt.Errorf("entrance: need 0 < SuspectAfter %v <= DownAfter %v", c.SuspectAfter, c.DownAfter)
	case c.AdminTimeout <= 0 || c.ConfirmTimeout <= 0 || c.RetryInterval <= 0 || c.PingTimeout <= 0:
		return errors.New("entrance: timeouts must be positive")
	case c.MaxPings < 1:
		return fmt.Errorf("entrance: MaxPings %d must be at least 1", c.MaxPings)
	case c.DownGrace < 0:
		return fmt.Errorf("entrance: DownGrace %v must not be negative", c.DownGrace)
	}
	return nil
}

// Entrance is the cluster's front door: the registry, admission, the
// membership driver and leader tracking. Its methods are safe for
// concurrent use.
type Entrance struct {
	cfg Config
	log *slog.Logger
	st  *store

	wake chan struct{} // cap 1: something changed, the driver should look

	mu    sync.Mutex
	meta  Meta
	nodes map[uint64]*Record
	// lastReport is when the accepted leader report arrived (zero: none
	// since start); commit is that report's commit index.
	lastReport time.Time
	commit     uint64
	// Membership driver state; see reconcile.go.
	applied   map[uint64]*change // by node ID
	hintAddr  string             // a NotLeader answer's leader address, until the next report
	notBefore time.Time          // backoff after a failed admin call
	failures  int                // consecutive failed admin calls
	dropped   uint64             // stale or malformed reports and requests
	// Liveness and leader tracking by pings; see liveness.go.
	pings        map[uint64]*pingState
	pingsSkipped uint64
	seenTerm     uint64    // the highest term any pong or report showed
	leaderLost   bool      // the leader's own pong says it no longer leads
	leaderSince  time.Time // when the current leader was learned
	started      time.Time
	// lastRound is when the liveness loop (liveness.go) last ran; zero
	// before Run starts it. observedSince is when its current unbroken
	// run of rounds began (zero: since started): a round far later than
	// due means the entrance itself stalled and saw nobody meanwhile.
	lastRound     time.Time
	observedSince time.Time
	unsafeLogged  map[uint64]bool // down nodes kept for quorum, logged once
	metrics       *metrics
	running       bool
	closed        bool
	runCancel     context.CancelFunc
	runDone       chan struct{}
}

// New opens (or creates) the registry under cfg.DataDir. It starts no
// goroutine; Run does.
func New(cfg Config) (*Entrance, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	st, err := openStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	meta, nodes, err := st.load()
	if err != nil {
		st.close()
		return nil, err
	}
	e := &Entrance{cfg: cfg, log: cfg.Logger, st: st, meta: meta, nodes: nodes, wake: make(chan struct{}, 1),
		applied: make(map[uint64]*change), pings: make(map[uint64]*pingState), seenTerm: meta.Term,
		started: cfg.Now(), unsafeLogged: make(map[uint64]bool)}
	e.metrics = newMetrics(e)
	e.log.Info("registry loaded", "dir", cfg.DataDir, "nodes", len(nodes),
		"cluster_id", fmt.Sprintf("%016x", meta.ClusterID), "leader", fmt.Sprintf("%016x", meta.LeaderID), "term", meta.Term)
	return e, nil
}

// Run serves rudp on cfg.PacketConn and HTTP on cfg.HTTPListener (when
// set) and drives membership changes until ctx is done or Close is
// called. It owns both and closes them before it returns. It returns nil
// after ctx is done, ErrClosed after Close.
func (e *Entrance) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	if e.running {
		e.mu.Unlock()
		return errors.New("entrance: Run called twice")
	}
	e.running = true
	ctx, cancel := context.WithCancel(ctx)
	e.runCancel = cancel
	e.runDone = make(chan struct{})
	e.mu.Unlock()
	defer close(e.runDone)
	defer cancel()

	caller := e.cfg.Caller
	var ep *rudp.Endpoint
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if e.cfg.PacketConn != nil {
		var err error
		ep, err = rudp.New(e.cfg.PacketConn, rudp.Config{
			Secret: e.cfg.Secret,
			Logger: e.log.With("component", "rudp"),
			Handler: func(ctx context.Context, m rudp.Message) []byte {
				return e.Handle(ctx, m.From, m.Payload)
			},
		})
		if err != nil {
			e.cfg.PacketConn.Close()
			if e.cfg.HTTPListener != nil {
				e.cfg.HTTPListener.Close()
			}
			return fmt.Errorf("entrance: rudp: %w", err)
		}
		if caller == nil {
			caller = ep
		}
		wg.Go(func() {
			if err := ep.Run(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, rudp.ErrClosed) {
				errc <- fmt.Errorf("entrance: rudp: %w", err)
				cancel()
			}
		})
		e.log.Info("serving rudp", "addr", e.cfg.PacketConn.LocalAddr().String())
	}
	var srv *http.Server
	if e.cfg.HTTPListener != nil {
		srv = &http.Server{Handler: e.HTTPHandler(), ReadHeaderTimeout: 5 * time.Second}
		ln := e.cfg.HTTPListener
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("entrance: http: %w", err)
				cancel()
			}
		})
		e.log.Info("serving http", "addr", ln.Addr().String())
	}
	if caller != nil {
		e.mu.Lock()
		e.started = e.cfg.Now()
		e.mu.Unlock()
		wg.Go(func() { e.drive(ctx, caller) })
		wg.Go(func() { e.pingLoop(ctx, caller) })
	}

	<-ctx.Done()
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		scancel()
	}
	if ep != nil {
		if err := ep.Close(); err != nil && !errors.Is(err, rudp.ErrClosed) {
			e.log.Warn("rudp close", "err", err)
		}
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return nil
}

// Close stops Run (and waits for it), writes the in-memory parts of the
// registry (last seen, match) and closes it. It is idempotent.
func (e *Entrance) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	cancel, done := e.runCancel, e.runDone
	e.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	recs := make([]*Record, 0, len(e.nodes))
	for _, r := range e.nodes {
		recs = append(recs, r)
	}
	err := e.st.save(&e.meta, recs...)
	if cerr := e.st.close(); err == nil && cerr != nil {
		err = fmt.Errorf("entrance: close registry: %w", cerr)
	}
	return err
}

// poke wakes the membership driver.
func (e *Entrance) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Handle answers one rudp payload from a node or client: joins, leader
// reports, who-leads and list-peers. It returns the reply (the same Kind
// byte, then the msgpack body), or nil for one-way messages and payloads
// it does not understand.
func (e *Entrance) Handle(ctx context.Context, from netip.AddrPort, payload []byte) []byte {
	kind, body, err := proto.Split(payload)
	if err != nil {
		e.countDrop("empty payload", from)
		return nil
	}
	switch kind {
	case proto.KindJoin:
		var req proto.JoinRequest
		if err := proto.Decode(body, &req); err != nil {
			e.countDrop("malformed join", from)
			return proto.MustEncode(kind, &proto.JoinResponse{Code: proto.CodeInvalid, Message: "malformed join request"})
		}
		resp := e.Join(req, from)
		return proto.MustEncode(kind, &resp)
	case proto.KindLeaderReport:
		var r proto.LeaderReport
		if err := proto.Decode(body, &r); err != nil {
			e.countDrop("malformed leader report", from)
			return nil
		}
		e.Report(r, from)
		return nil
	case proto.KindWhoLeads:
		resp := e.WhoLeads()
		return proto.MustEncode(kind, &resp)
	case proto.KindListPeers:
		return proto.MustEncode(kind, &proto.ListPeersResponse{Peers: e.Peers()})
	}
	e.countDrop(fmt.Sprintf("unexpected kind %d", kind), from)
	return nil
}

func (e *Entrance) countDrop(reason string, from netip.AddrPort) {
	e.mu.Lock()
	e.dropped++
	e.mu.Unlock()
	e.log.Debug("payload dropped", "reason", reason, "peer", from.String())
}

// Dropped returns how many payloads were dropped as malformed, unexpected
// or stale since New.
func (e *Entrance) Dropped() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dropped
}
