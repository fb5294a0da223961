package kvsim

import (
	"errors"
	"math"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/kvstore"
	"github.com/raftkv/raftkv/node/raft"
	"github.com/raftkv/raftkv/node/raft/raftsim"
)

// Client is a simulated client. It has one operation in flight at a time,
// sends it to the node it believes leads, follows redirects, and retries
// on timeouts (ClientTimeout) and lost answers. Writes carry its ClientID
// and a sequence number: every retry of a write reuses them, so the store
// applies it once however many copies commit. The first write of a
// ClientID opens its session in the store; there is no registration.
type Client struct {
	s  *Sim
	ID int

	sess  uint64 // the ClientID of its writes (0: pick a new one)
	start int64  // when it picked sess (virtual Unix nanoseconds)
	gen   uint64 // ClientIDs used so far
	seq   uint64
	guess uint64   // the node it believes leads
	nodes []uint64 // the nodes it can reach (nil: all)

	cur     *pending
	attempt uint64 // bumped by every send; a timeout only fires for the latest

	// Completed and Unknown count this client's recorded operations.
	Completed, Unknown int
}

type pending struct {
	in      Input
	call    int64
	done    func(Output)
	sess    uint64 // writes: the ClientID, its start and the sequence number every copy carries
	start   int64
	seq     uint64
	logRead bool
}

// answer is what a node sends back to a client.
type answer struct {
	redirect bool   // not served here: try hint (or another node)
	hint     uint64 // the leader the node knows, 0 if none
	res      kvstore.Result
	out      Output // gets
}

// Restrict makes the client reach only the given nodes (nil or empty: all).
func (c *Client) Restrict(nodes []uint64) {
	c.nodes = nil
	if len(nodes) > 0 {
		c.nodes = slices.Clone(nodes)
	}
	if len(nodes) > 0 && !slices.Contains(nodes, c.guess) {
		c.guess = nodes[0]
	}
}

// Busy reports whether an operation is in flight.
func (c *Client) Busy() bool { return c.cur != nil }

// Do starts an operation; done (which may be nil) is called with its
// answer. The operation is recorded in the history when it completes, or
// when the clients are stopped (writes, with an unknown outcome). Do
// panics if an operation is in flight, and does nothing once the clients
// are stopped (Settle, StopClients).
func (c *Client) Do(in Input, done func(Output)) {
	if c.cur != nil {
		panic("kvsim: client has an operation in flight")
	}
	if c.s.stopped {
		return
	}
	p := &pending{in: in, call: c.s.stamp(), done: done}
	if in.Op == OpGet {
		p.logRead = c.s.cfg.LogReads > 0 && c.s.C.Rand().Float64() < c.s.cfg.LogReads
		c.cur = p
		c.send()
		return
	}
	if c.sess == 0 {
		// A new ClientID, unique per client and deterministic per seed.
		c.gen++
		c.sess, c.seq = uint64(c.ID+1)<<32|c.gen, 0
		c.start = int64(c.s.C.Now()) * int64(time.Millisecond)
	}
	c.seq++
	p.sess, p.start, p.seq = c.sess, c.start, c.seq
	c.cur = p
	c.send()
}

func (c *Client) delay() raftsim.Time {
	return 1 + raftsim.Time(c.s.C.Rand().Int64N(int64(c.s.cfg.ClientDelay)))
}

func (c *Client) reachable(id uint64) bool { return c.nodes == nil || slices.Contains(c.nodes, id) }

// send sends the current operation to the node the client believes leads
// and arms the timeout.
func (c *Client) send() {
	p := c.cur
	c.attempt++
	att := c.attempt
	node := c.guess
	c.s.C.After(c.delay(), "", func() { c.arrive(p, node) })
	c.s.C.After(c.s.cfg.ClientTimeout, "", func() {
		if c.cur == p && c.attempt == att {
			c.s.stats.Timeouts++
			c.next(0)
			c.send()
		}
	})
}

// next moves the client's guess: to hint if it is reachable, else to the
// next reachable node.
func (c *Client) next(hint uint64) {
	if hint != 0 && hint != c.guess && c.reachable(hint) {
		c.guess = hint
		return
	}
	ids := c.s.C.IDs()
	if c.nodes != nil {
		ids = c.nodes
	}
	i := slices.Index(ids, c.guess)
	c.guess = ids[(i+1)%len(ids)]
}

// arrive is the request reaching node: the node's server serves it if it
// is leader, else redirects (or, with Config.ViaFollower, serves it
// through the core, which forwards the proposal or the ReadIndex to the
// leader). A request to an unreachable node is lost.
func (c *Client) arrive(p *pending, node uint64) {
	if !c.reachable(node) || c.s.halted {
		return
	}
	s := c.s
	if !s.C.IsUp(node) {
		c.reply(p, answer{redirect: true}) // connection refused
		return
	}
	if s.staleReads && p.in.Op == OpGet {
		c.reply(p, answer{out: readStore(s, s.machines[node], p.in.Key)}) // planted bug: no ReadIndex
		return
	}
	st := s.C.Status(node)
	viaFollower := st.Lead != 0 && s.cfg.ViaFollower > 0 && s.C.Rand().Float64() < s.cfg.ViaFollower
	if st.RaftState != raft.StateLeader {
		if !viaFollower {
			c.reply(p, answer{redirect: true, hint: st.Lead})
			return
		}
		s.stats.ViaFollower++
	}
	if p.in.Op == OpGet && !p.logRead {
		err := s.C.ReadIndex(node, func(r raftsim.ReadResult) {
			if r.Err != nil {
				c.reply(p, answer{redirect: true})
				return
			}
			c.reply(p, answer{out: readStore(s, r.SM.(*machine), p.in.Key)})
		})
		if err != nil {
			c.reply(p, answer{redirect: true})
		}
		return
	}
	cmd := kvstore.Command{Time: int64(s.C.Now()) * int64(time.Millisecond), Key: []byte(p.in.Key)}
	switch {
	case p.in.Op == OpGet:
		cmd.Op = kvstore.OpRange
	case p.in.Op == OpPut:
		cmd.Op, cmd.Value = kvstore.OpPut, []byte(p.in.Value)
	case p.in.Op == OpDelete:
		cmd.Op = kvstore.OpDelete
	case p.in.Op == OpCAS:
		cmd.Op, cmd.Value, cmd.Then = kvstore.OpCAS, []byte(p.in.Value), kvstore.OpPut
		cmd.Compare = &kvstore.Compare{Target: kvstore.CompareValue, Value: []byte(p.in.Expect)}
	}
	if p.seq != 0 {
		// The pending's own ClientID: a copy still on its way after the
		// client moved to a new one must not lose it.
		cmd.ClientID, cmd.SessionStart, cmd.Seq = p.sess, p.start, p.seq
	}
	data, err := kvstore.EncodeCommand(cmd)
	if err != nil {
		s.failf("client %d: encode: %v", c.ID, err)
		return
	}
	err = s.C.Propose(node, data, func(r raftsim.ProposeResult) {
		if r.Err != nil {
			c.reply(p, answer{redirect: true})
			return
		}
		res, ok, err := decodeApply(r.Result)
		if err != nil {
			s.failf("client %d: %v", c.ID, err)
			return
		}
		if !ok {
			c.reply(p, answer{redirect: true}) // outcome unknown here: retry, the session answers
			return
		}
		c.reply(p, answer{res: res})
	})
	if err != nil {
		c.reply(p, answer{redirect: true})
	}
}

// readStore serves a get from a store.
func readStore(s *Sim, m *machine, key string) Output {
	if m == nil {
		return Output{Unknown: true}
	}
	kv, err := m.store.Get([]byte(key), 0)
	switch {
	case errors.Is(err, kvstore.ErrKeyNotFound):
		return Output{}
	case err != nil:
		s.failf("node %d: get %q: %v", m.id, key, err)
		return Output{Unknown: true}
	}
	return Output{Found: true, Value: string(kv.Value)}
}

// reply sends an answer back to the client, unless the network loses it.
func (c *Client) reply(p *pending, a answer) {
	if !a.redirect && c.s.cfg.ReplyLoss > 0 && c.s.C.Rand().Float64() < c.s.cfg.ReplyLoss {
		return
	}
	c.s.C.After(c.delay(), "", func() { c.receive(p, a) })
}

// receive handles an answer: a redirect or a retry moves on after a short
// back-off; a result completes the operation (an answer to any attempt of
// the current operation will do).
func (c *Client) receive(p *pending, a answer) {
	if c.cur != p {
		return
	}
	if a.redirect || (a.out.Unknown && p.in.Op == OpGet) {
		c.s.stats.Redirects++
		c.attempt++ // cancel the timeout
		c.next(a.hint)
		backoff := raftsim.Time(5)
		if a.hint == 0 {
			backoff = c.s.C.Config().TickInterval * raftsim.Time(2+c.s.C.Rand().IntN(4))
		}
		c.s.C.After(backoff, "", func() {
			if c.cur == p {
				c.send()
			}
		})
		return
	}
	out := a.out
	if p.in.Op != OpGet || p.logRead {
		var ok bool
		if out, ok = c.output(p, a.res); !ok {
			return
		}
	}
	c.complete(p, out, c.s.stamp())
}

// output turns a store result into the client's answer.
func (c *Client) output(p *pending, r kvstore.Result) (Output, bool) {
	switch {
	case errors.Is(r.Err, kvstore.ErrSessionExpired):
		// An earlier copy may have been applied before the session
		// expired: the outcome is unknown. Continue under a new ClientID.
		c.sess, c.seq = 0, 0
		c.s.stats.Expired++
		return Output{Unknown: true}, true
	case p.in.Op == OpCAS && errors.Is(r.Err, kvstore.ErrCompareFailed):
		return Output{OK: false}, true
	case r.Err != nil:
		c.s.failf("client %d: %v %q (session %d, seq %d): unexpected result %v", c.ID, p.in.Op, p.in.Key, p.sess, p.seq, r.Err)
		return Output{}, false
	}
	switch p.in.Op {
	case OpGet:
		for _, kv := range r.KVs {
			if string(kv.Key) == p.in.Key {
				return Output{Found: true, Value: string(kv.Value)}, true
			}
		}
		return Output{}, true
	case OpDelete:
		return Output{Deleted: r.Deleted}, true
	case OpCAS:
		return Output{OK: true}, true
	}
	return Output{}, true
}

func (c *Client) complete(p *pending, out Output, ret int64) {
	c.cur = nil
	c.attempt++
	if out.Unknown {
		ret = math.MaxInt64
		c.Unknown++
	} else {
		c.Completed++
	}
	c.s.record(porcupine.Operation{ClientId: c.ID, Input: p.in, Call: p.call, Output: out, Return: ret})
	if p.done != nil {
		p.done(out)
	}
}

// abandon gives up the operation in flight: a write is recorded with an
// unknown outcome, a read is dropped.
func (c *Client) abandon() {
	p := c.cur
	if p == nil {
		return
	}
	if p.in.Op == OpGet {
		c.cur = nil
		c.attempt++
		return
	}
	c.complete(p, Output{Unknown: true}, math.MaxInt64)
}
