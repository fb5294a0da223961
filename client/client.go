package client

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout        = 5 * time.Second
	DefaultAttemptTimeout = 500 * time.Millisecond
	DefaultMinBackoff     = 20 * time.Millisecond
	DefaultMaxBackoff     = 500 * time.Millisecond
)

// Transport carries one request to one address and returns its reply.
// The default is rudp over a UDP socket on an ephemeral loopback or
// wildcard port; tests may plug in their own.
type Transport interface {
	// Call sends payload to addr and waits for the reply until ctx ends.
	// An error means no reply arrived: the request may or may not have
	// been delivered.
	Call(ctx context.Context, addr string, payload []byte) ([]byte, error)
	// Close releases the transport; it is called by Client.Close.
	Close() error
}

// Config configures a Client. The zero value of every field but one of
// Entrance and Endpoints means its default.
type Config struct {
	// Entrance is the entrance's UDP address (host:port). The client asks
	// it who leads and which nodes exist.
	Entrance string
	// Endpoints are node addresses (host:port) to use directly, with or
	// without an entrance; with no entrance the client probes them to find
	// the leader.
	Endpoints []string
	// Secret is the cluster secret (nil: no authentication).
	Secret []byte
	// Timeout bounds one operation (all its attempts) when the caller's
	// context has no earlier deadline. 0 means DefaultTimeout.
	Timeout time.Duration
	// AttemptTimeout bounds one attempt against one node before the client
	// tries again (the same node or another). 0 means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the randomized exponential pause
	// between attempts that found no leader. 0 means the defaults.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives debug lines about redirects and retries (nil: discard).
	Logger *slog.Logger
	// Transport overrides the default rudp transport (tests).
	Transport Transport
}

func (c *Config) validate() error {
	if c.Entrance == "" && len(c.Endpoints) == 0 {
		return errors.New("client: config: need an entrance address or at least one endpoint")
	}
	for _, e := range c.Endpoints {
		if e == "" {
			return errors.New("client: config: empty endpoint")
		}
	}
	if c.Timeout < 0 || c.AttemptTimeout < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 {
		return errors.New("client: config: negative duration")
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Client talks to a raftkv cluster. It is safe for concurrent use; each
// concurrent write uses its own session, so writes are exactly-once even
// when retried.
type Client struct {
	cfg Config
	tr  Transport
	log *slog.Logger

	mu     sync.Mutex
	closed bool
	leader string   // last known leader address ("" unknown)
	addrs  []string // every node address known (endpoints, entrance answers, redirects)
	next   int      // rotation index into addrs
	free   []*session
	// entranceDownUntil: the entrance did not answer; use the known node
	// addresses without asking it until then.
	entranceDownUntil time.Time
	rng               *rand.Rand
}

// session is one exactly-once write stream: at most one write in flight,
// Seq strictly increasing; a retry re-sends the same (id, seq). The
// cluster opens its session with the first write (Seq 1) and drops it
// after it has been idle for its session TTL (kvstore.DefaultSessionTTL,
// an hour, by default).
type session struct {
	id       uint64
	start    int64 // when id was chosen (Unix nanoseconds): proto.ClientRequest.SessionStart
	seq      uint64
	lastUsed time.Time
}

func (c *Client) newSession() *session {
	return &session{id: c.newSessionID(), start: time.Now().UnixNano()}
}

// sessionMaxIdle is how long a pooled session may stay unused before the
// client drops it rather than risk the cluster having expired it (which
// would cost a refused attempt), well below the cluster's session TTL.
const sessionMaxIdle = 10 * time.Minute

// New returns a Client for the cluster named by cfg. It validates cfg and
// opens the transport; it does not contact the cluster (leader discovery
// happens on the first request), so New succeeds while the cluster is
// down. ctx bounds the setup.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("client: new: %w", err)
	}
	tr := cfg.Transport
	if tr == nil {
		var err error
		if tr, err = newRUDPTransport(cfg.Secret, cfg.Logger); err != nil {
			return nil, fmt.Errorf("client: new: %w", err)
		}
	}
	var seed [16]byte
	_, _ = crand.Read(seed[:])
	c := &Client{
		cfg:   cfg,
		tr:    tr,
		log:   cfg.Logger,
		addrs: slices.Clone(cfg.Endpoints),
		rng:   rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))),
	}
	return c, nil
}

// Close releases the transport. Operations in flight fail with ErrClosed
// or a transport error. Close is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	if err := c.tr.Close(); err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	return nil
}

// Leader returns the address of the leader as last seen by this client
// ("" when unknown).
func (c *Client) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

func (c *Client) newSessionID() uint64 {
	for {
		var b [8]byte
		_, _ = crand.Read(b[:])
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

func (c *Client) acquireSession() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n := len(c.free); n > 0; n = len(c.free) {
		s := c.free[n-1]
		c.free = c.free[:n-1]
		if time.Since(s.lastUsed) < sessionMaxIdle {
			return s
		}
	}
	return c.newSession()
}

func (c *Client) releaseSession(s *session) {
	s.lastUsed = time.Now()
	c.mu.Lock()
	c.free = append(c.free, s)
	c.mu.Unlock()
}

func (c *Client) setLeader(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leader = addr
	c.learnLocked(addr)
}

func (c *Client) forgetLeader(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == addr {
		c.leader = ""
	}
}

func (c *Client) learnLocked(addrs ...string) {
	for _, a := range addrs {
		if a != "" && !slices.Contains(c.addrs, a) {
			c.addrs = append(c.addrs, a)
		}
	}
}

// rotate returns the next known address in round-robin order ("" when
// none is known).
func (c *Client) rotate() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.addrs) == 0 {
		return ""
	}
	a := c.addrs[c.next%len(c.addrs)]
	c.next++
	return a
}

func (c *Client) backoff(ctx context.Context, d *time.Duration) error {
	c.mu.Lock()
	j := time.Duration(c.rng.Int64N(int64(*d)/2 + 1))
	c.mu.Unlock()
	t := time.NewTimer(*d/2 + j)
	defer t.Stop()
	*d = min(*d*2, c.cfg.MaxBackoff)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func isWrite(op proto.Op) bool {
	switch op {
	case proto.OpPut, proto.OpDelete, proto.OpDeletePrefix, proto.OpCAS, proto.OpCompact:
		return true
	}
	return false
}

// decodeReply decodes a reply body into v. A reply may come as a bare
// msgpack body or, like a request, prefixed by its Kind byte; a msgpack
// map never starts with a byte below 0x80, so both forms are accepted.
func decodeReply(p []byte, v any) error {
	if len(p) > 0 && p[0] < 0x80 {
		p = p[1:]
	}
	return proto.Decode(p, v)
}

// checkSize refuses a request no node could receive, before anything is
// sent: it is not retried, and a write so refused did not happen.
func checkSize(payload []byte) error {
	if len(payload) > proto.MaxMessageBytes {
		return fmt.Errorf("%w: the request is %d bytes, over the largest message of %d bytes (values are limited to 1 MiB by default)", ErrInvalid, len(payload), proto.MaxMessageBytes)
	}
	return nil
}

// call sends one request to one address and decodes the reply.
func (c *Client) call(ctx context.Context, addr string, kind proto.Kind, req, resp any) error {
	payload, err := proto.Encode(kind, req)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if err := checkSize(payload); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()
	reply, err := c.tr.Call(actx, addr, payload)
	if err != nil {
		return authRefused(err)
	}
	if err := decodeReply(reply, resp); err != nil {
		return fmt.Errorf("client: reply from %s: %w", addr, err)
	}
	return nil
}

// discover asks the entrance who leads and learns every node address it
// names. It returns the leader's address ("" when the entrance knows none).
func (c *Client) discover(ctx context.Context) (string, error) {
	var resp proto.WhoLeadsResponse
	if err := c.call(ctx, c.cfg.Entrance, proto.KindWhoLeads, &proto.WhoLeadsRequest{}, &resp); err != nil {
		return "", fmt.Errorf("client: ask entrance %s who leads: %w", c.cfg.Entrance, err)
	}
	c.mu.Lock()
	c.learnLocked(resp.Addrs...)
	c.learnLocked(resp.LeaderAddr)
	if resp.LeaderAddr != "" {
		c.leader = resp.LeaderAddr
	}
	c.mu.Unlock()
	return resp.LeaderAddr, nil
}

// entranceRetryAfter is how long the client routes without the entrance
// after it failed to answer.
const entranceRetryAfter = 2 * time.Second

func (c *Client) entranceUsable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().After(c.entranceDownUntil) || len(c.addrs) == 0
}

// pick chooses the address for the next attempt: a redirect target, the
// known leader, the entrance's answer, or the next known node, skipping
// the addresses that failed during this operation (until all have).
// When it finds no address, err says why the entrance did not help.
func (c *Client) pick(ctx context.Context, redirect string, avoid map[string]bool) (addr string, err error) {
	if redirect != "" {
		return redirect, nil
	}
	if l := c.Leader(); l != "" && !avoid[l] {
		return l, nil
	}
	if c.cfg.Entrance != "" && c.entranceUsable() {
		var l string
		if l, err = c.discover(ctx); err == nil && l != "" && !avoid[l] {
			return l, nil
		} else if err != nil {
			c.log.Debug("entrance unreachable", "entrance", c.cfg.Entrance, "err", err)
			c.mu.Lock()
			c.entranceDownUntil = time.Now().Add(entranceRetryAfter)
			c.mu.Unlock()
		}
	}
	n := len(c.snapshotAddrs())
	for range n {
		if a := c.rotate(); !avoid[a] {
			return a, nil
		}
	}
	clear(avoid)
	return c.rotate(), err
}

// do runs req against the cluster until a definitive answer or the
// deadline. Writes take a session; every retry of the write re-sends the
// same (ClientID, Seq).
func (c *Client) do(ctx context.Context, what string, req *proto.ClientRequest) (*proto.ClientResponse, error) {
	resp, _, err := c.doAt(ctx, what, req, "")
	return resp, err
}

// doAt is do whose first attempt goes to prefer (when not empty; later
// attempts route as usual), and that also returns the address that gave
// the answer.
func (c *Client) doAt(ctx context.Context, what string, req *proto.ClientRequest, prefer string) (*proto.ClientResponse, string, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, "", fmt.Errorf("client: %s: %w", what, ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	write := isWrite(req.Op)
	var sess *session
	if write {
		sess = c.acquireSession()
		defer func() {
			if sess != nil {
				c.releaseSession(sess)
			}
		}()
		sess.seq++
		req.ClientID, req.Seq, req.SessionStart = sess.id, sess.seq, sess.start
	}
	payload, err := proto.Encode(proto.KindClient, req)
	if err != nil {
		return nil, "", fmt.Errorf("client: %s: %w", what, err)
	}
	if err := checkSize(payload); err != nil {
		return nil, "", fmt.Errorf("client: %s: %w", what, err)
	}

	var (
		copies     int   // attempts of this (ClientID, Seq) that may have reached a node
		restarted  bool  // the write started over under a new ClientID
		sent       bool  // a copy may have reached a node
		lastErr    error // why the last attempt failed
		redirect   = prefer
		hops       int // redirects followed since the last pause
		avoid      = map[string]bool{}
		pause      = c.cfg.MinBackoff
		refused    error // the last error that wraps ErrUnauthorized
		answered   error // the last "no leader" or "unavailable" answer of a node
		silent     []string
		refusedBy  = map[string]bool{} // addresses (and the entrance) that could not verify our datagrams
		reached    bool                // a copy went to a node (not the entrance), which may have applied it
		allRefused error               // set when every address refused: the operation ends
	)
loop:
	for ctx.Err() == nil {
		if errors.Is(lastErr, ErrUnauthorized) {
			refused = lastErr
		}
		addr, perr := c.pick(ctx, redirect, avoid)
		redirect = ""
		if errors.Is(perr, ErrUnauthorized) {
			refusedBy[c.cfg.Entrance] = true
			if c.everyoneRefused(refusedBy) {
				allRefused = fmt.Errorf("%w: %w", ErrUnavailable, perr)
				break loop
			}
		}
		if addr == "" {
			lastErr = ErrNoLeader
			if perr != nil {
				lastErr = fmt.Errorf("%w: %w", ErrUnavailable, perr)
			}
			if c.backoff(ctx, &pause) != nil {
				break loop
			}
			continue
		}
		actx, acancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		reply, err := c.tr.Call(actx, addr, payload)
		acancel()
		sent = true
		copies++
		err = authRefused(err)
		if addr != c.cfg.Entrance {
			// Even a copy this node refused may have been applied: "auth
			// failed" notices are not authenticated (anyone on the path
			// can forge one), and a node restarted with another secret
			// refuses what it accepted before.
			reached = true
		}
		if err != nil {
			c.log.Debug("attempt failed", "op", what, "addr", addr, "err", err)
			lastErr = fmt.Errorf("%s: %w", addr, err)
			if errors.Is(err, ErrUnauthorized) {
				refusedBy[addr] = true
				if c.everyoneRefused(refusedBy) {
					// Every address refused our secret: waiting for the
					// deadline would not change that.
					allRefused = lastErr
					break loop
				}
			}
			if !slices.Contains(silent, addr) {
				silent = append(silent, addr)
			}
			c.forgetLeader(addr)
			avoid[addr] = true
			if c.Leader() == "" && c.cfg.Entrance == "" {
				// Probe the next endpoint right away; pause only after a full round.
				hops++
				if hops >= max(1, len(c.snapshotAddrs())) {
					hops = 0
					if c.backoff(ctx, &pause) != nil {
						break loop
					}
				}
			} else if c.backoff(ctx, &pause) != nil {
				break loop
			}
			continue
		}
		var resp proto.ClientResponse
		if err := decodeReply(reply, &resp); err != nil {
			lastErr = fmt.Errorf("client: reply from %s: %w", addr, err)
			c.forgetLeader(addr)
			avoid[addr] = true
			if c.backoff(ctx, &pause) != nil {
				break loop
			}
			continue
		}
		switch resp.Code {
		case proto.CodeOK:
			if !req.Serializable {
				c.setLeader(addr)
			}
			c.log.Debug("answered", "op", what, "addr", addr, "client_id", fmt.Sprintf("%016x", req.ClientID),
				"seq", req.Seq, "revision", resp.Revision, "succeeded", resp.Succeeded)
			return &resp, addr, nil
		case proto.CodeNotLeader:
			c.forgetLeader(addr)
			if resp.LeaderAddr != "" && resp.LeaderAddr != addr && !avoid[resp.LeaderAddr] {
				c.log.Debug("redirected", "op", what, "from", addr, "to", resp.LeaderAddr)
				c.setLeader(resp.LeaderAddr)
				redirect = resp.LeaderAddr
				lastErr = fmt.Errorf("%s redirected to %s: %w", addr, resp.LeaderAddr, ErrNoLeader)
				if hops++; hops < 3 {
					continue
				}
			} else {
				// This node knows no leader (or names one that failed):
				// the next attempt rotates on.
				lastErr = fmt.Errorf("%w: %s knows none (no quorum of voters, or an election is under way)", ErrNoLeader, addr)
				answered = lastErr
				avoid[addr] = true
			}
			hops = 0
			if c.backoff(ctx, &pause) != nil {
				break loop
			}
		case proto.CodeSessionExpired:
			// The cluster no longer knows this ClientID: it refused this
			// copy. The session is dead either way.
			serr := &ServerError{Code: resp.Code, Message: resp.Message}
			sess = nil
			if copies > 1 {
				// An earlier copy may have been applied before the
				// session was dropped: only "unknown" is honest.
				return nil, "", fmt.Errorf("client: %s: %w: %w", what, ErrOutcomeUnknown, serr)
			}
			if restarted {
				// A brand-new session refused too: not applied, and
				// retrying will not help (a clock far behind the cluster's).
				return &resp, addr, fmt.Errorf("client: %s: new session refused (is this machine's clock behind the cluster's?): %w", what, serr)
			}
			// This was the only copy, and it was not applied: the write
			// starts over under a new ClientID.
			c.log.Debug("session expired; new session", "op", what, "client_id", fmt.Sprintf("%016x", req.ClientID))
			sess, restarted = c.newSession(), true
			sess.seq = 1
			req.ClientID, req.Seq, req.SessionStart = sess.id, sess.seq, sess.start
			if payload, err = proto.Encode(proto.KindClient, req); err != nil {
				return nil, "", fmt.Errorf("client: %s: %w", what, err)
			}
			copies = 0
			lastErr = fmt.Errorf("%s: %w", addr, serr)
		case proto.CodeUnavailable:
			lastErr = fmt.Errorf("%s: %w", addr, &ServerError{Code: resp.Code, Message: resp.Message})
			answered = lastErr
			c.forgetLeader(addr)
			if c.backoff(ctx, &pause) != nil {
				break loop
			}
		default:
			return &resp, addr, fmt.Errorf("client: %s: %w", what, &ServerError{Code: resp.Code, Message: resp.Message})
		}
	}

	if allRefused != nil {
		if write && reached {
			return nil, "", fmt.Errorf("client: %s: %w: %w", what, ErrOutcomeUnknown, allRefused)
		}
		// Only the entrance saw it, and the entrance applies nothing.
		return nil, "", fmt.Errorf("client: %s: %w", what, allRefused)
	}
	cause := ErrTimeout
	if errors.Is(ctx.Err(), context.Canceled) {
		cause = context.Canceled
	}
	if lastErr == nil {
		lastErr = cause
	}
	lastErr = keepRefusal(keepAnswer(lastErr, answered, silent), refused)
	if write && sent {
		return nil, "", fmt.Errorf("client: %s: %w: %w (last error: %w)", what, ErrOutcomeUnknown, cause, lastErr)
	}
	if errors.Is(lastErr, cause) {
		return nil, "", fmt.Errorf("client: %s: %w", what, lastErr)
	}
	return nil, "", fmt.Errorf("client: %s: %w (last error: %w)", what, cause, lastErr)
}

func (c *Client) snapshotAddrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.addrs)
}

// everyoneRefused reports whether every node address this client knows,
// and its entrance if it has one, could not verify our datagrams during
// one operation (refused holds those that could not): the cluster secret
// differs, and retrying until the deadline would not change that.
func (c *Client) everyoneRefused(refused map[string]bool) bool {
	if c.cfg.Entrance != "" && !refused[c.cfg.Entrance] {
		return false
	}
	for _, a := range c.snapshotAddrs() {
		if !refused[a] {
			return false
		}
	}
	return true
}

// keepAnswer returns last, or answered (a node's answer that it knows no
// leader or cannot serve) when last is only a failure to reach a node:
// that a live node finds no quorum explains a failure better than that a
// dead node did not answer. The nodes that did not answer are named.
func keepAnswer(last, answered error, silent []string) error {
	if answered == nil {
		return last
	}
	if !errors.Is(last, ErrNoLeader) && !errors.As(last, new(*ServerError)) {
		last = answered
	}
	if len(silent) == 0 {
		return last
	}
	return fmt.Errorf("%w; %s did not answer", last, strings.Join(silent, ", "))
}
