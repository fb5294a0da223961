package entrance

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
)

// pingState is what the pinger knows of one node. It lives in memory only.
type pingState struct {
	inFlight bool      // a ping to the node is outstanding (at most one)
	sentAt   time.Time // when the latest ping started (rounds go oldest first)
	pongAt   time.Time // the latest pong; zero: none since start
	role     string    // the node's own role word in that pong
	term     uint64    // the node's term in that pong
	misses   int       // pings in a row that went unanswered
	word     State     // the liveness last logged (transitions are logged)
}

// pingTarget is one ping to make.
type pingTarget struct {
	id   uint64
	to   netip.AddrPort
	prev time.Time // the previous ping's start, restored when skipped
}

// pingLoop is the liveness loop: once per PingInterval it notes the
// round (see observe) and pings every registered node that is not
// removed, at most MaxPings at a time and at most one per node: a node
// whose previous ping is still outstanding, or that finds no free slot,
// is skipped this round, so slow or dead nodes never pile pings up. With
// pings off it only notes rounds and liveness changes, every
// SuspectAfter/4.
func (e *Entrance) pingLoop(ctx context.Context, c Caller) {
	sem := make(chan struct{}, e.cfg.MaxPings)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(e.roundInterval())
	defer t.Stop()
	for {
		stalled := e.observe()
		for _, tg := range e.pingTargets() {
			select {
			case sem <- struct{}{}:
			default:
				e.pingSkipped(tg)
				continue
			}
			wg.Go(func() {
				defer func() { <-sem }()
				e.ping(ctx, c, tg)
			})
		}
		if !stalled { // the words are stale until this round's pongs are in
			e.noteLiveness()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// roundInterval is the liveness loop's period.
func (e *Entrance) roundInterval() time.Duration {
	if e.cfg.PingInterval > 0 {
		return e.cfg.PingInterval
	}
	return max(e.cfg.SuspectAfter/4, time.Millisecond)
}

// stallGap is how late a liveness round may be before the entrance
// counts itself as stalled: SuspectAfter, or two rounds when that is
// longer. A live node's last sign of life is at most about one round old
// while the entrance runs; a stall (a long GC or scheduling pause, CPU
// starvation, a paused VM or process) ages every node's alike, because
// the entrance saw nothing meanwhile, not because the nodes were silent.
func (e *Entrance) stallGap() time.Duration {
	return max(e.cfg.SuspectAfter, 2*e.roundInterval())
}

// observe notes a round of the liveness loop and reports whether it
// comes after a stall: more than stallGap after the previous round. A
// stall restarts the observation: the time before it does not count
// towards a down node's grace period (see removalLocked).
func (e *Entrance) observe() (stalled bool) {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if gap := now.Sub(e.lastRound); !e.lastRound.IsZero() && gap > e.stallGap() {
		e.log.Warn("entrance stalled: liveness rounds were late, the grace periods of down nodes restart",
			"gap", gap, "round_interval", e.roundInterval())
		e.observedSince, stalled = now, true
	}
	e.lastRound = now
	return stalled
}

// observingLocked reports whether the liveness loop is on time at now
// (or not running: a liveness check without Run). When a round is
// overdue the entrance is (or just was) stalled, and its liveness words
// are stale.
func (e *Entrance) observingLocked(now time.Time) bool {
	return e.lastRound.IsZero() || now.Sub(e.lastRound) <= e.stallGap()
}

// pingTargets returns the nodes to ping now, the longest unpinged
// first (so that a full MaxPings starves nobody), and marks them in
// flight. It returns none when pings are off.
func (e *Entrance) pingTargets() []pingTarget {
	if e.cfg.PingInterval <= 0 {
		return nil
	}
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	recs := e.sortedLocked()
	slices.SortStableFunc(recs, func(a, b *Record) int {
		return e.pingStateLocked(a.ID).sentAt.Compare(e.pingStateLocked(b.ID).sentAt)
	})
	var out []pingTarget
	for _, r := range recs {
		if r.State == StateRemoved {
			continue
		}
		ap, err := netip.ParseAddrPort(r.Addr)
		if err != nil {
			continue
		}
		ps := e.pingStateLocked(r.ID)
		if ps.inFlight {
			e.pingsSkipped++
			continue
		}
		out = append(out, pingTarget{id: r.ID, to: ap, prev: ps.sentAt})
		ps.inFlight, ps.sentAt = true, now
	}
	return out
}

func (e *Entrance) pingStateLocked(id uint64) *pingState {
	ps := e.pings[id]
	if ps == nil {
		ps = &pingState{word: StateAlive}
		e.pings[id] = ps
	}
	return ps
}

func (e *Entrance) pingSkipped(tg pingTarget) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pingsSkipped++
	if ps := e.pings[tg.id]; ps != nil {
		ps.inFlight, ps.sentAt = false, tg.prev
	}
}

// ping makes one ping and records the answer or its absence.
func (e *Entrance) ping(ctx context.Context, c Caller, tg pingTarget) {
	nonce := e.nonce()
	sent := e.cfg.Now()
	cctx, cancel := context.WithTimeout(ctx, e.cfg.PingTimeout)
	reply, err := c.Call(cctx, tg.to, proto.MustEncode(proto.KindPing, &proto.Ping{Nonce: nonce}))
	cancel()
	var pong proto.Pong
	if err == nil {
		err = decodePong(reply, &pong)
	}
	if err == nil && pong.Nonce != nonce {
		err = fmt.Errorf("pong nonce %x, want %x", pong.Nonce, nonce)
	}
	if err == nil && pong.ID != tg.id {
		// Another node answers at this address (or this one lost its
		// identity): no sign of life of the registered node.
		err = fmt.Errorf("pong from node %016x", pong.ID)
	}
	e.mu.Lock()
	if ps := e.pings[tg.id]; ps != nil {
		// The ping is over, whatever came back: a node removed meanwhile
		// (whose pong is ignored) may be listed again, and is pinged then.
		ps.inFlight = false
		if err != nil && ctx.Err() == nil {
			ps.misses++
		}
	}
	e.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		e.log.Debug("ping unanswered", "node_id", fmt.Sprintf("%016x", tg.id), "addr", tg.to.String(), "err", err)
		return
	}
	e.pong(tg.id, pong, sent)
}

func (e *Entrance) nonce() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg.Rand.Uint64()
}

// decodePong decodes a ping's reply: Kind byte KindPing, then a Pong.
func decodePong(p []byte, pong *proto.Pong) error {
	kind, body, err := proto.Split(p)
	if err != nil {
		return err
	}
	if kind != proto.KindPing {
		return fmt.Errorf("reply kind %d to a ping", kind)
	}
	return proto.Decode(body, pong)
}

// Pong takes in node id's answer to a ping: the node is alive now, and
// its own view (role, term, leader) may show a leader change before any
// leader report does. Pongs of unknown or removed nodes are ignored.
func (e *Entrance) Pong(id uint64, pong proto.Pong) { e.pong(id, pong, e.cfg.Now()) }

// pong is Pong for a ping sent at sent: a pong to a ping sent before the
// current leader was learned may predate its election (a candidate's
// pong), so it cannot tell that the leader stepped down.
func (e *Entrance) pong(id uint64, pong proto.Pong, sent time.Time) {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.nodes[id]
	if e.closed || r == nil || r.State == StateRemoved {
		return
	}
	ps := e.pingStateLocked(id)
	ps.misses = 0
	ps.pongAt, ps.role, ps.term = now, pong.Role, pong.Term
	r.LastSeenMS = now.UnixMilli()
	e.seenTerm = max(e.seenTerm, pong.Term)

	switch {
	case pong.Role == "leader" && pong.Term > e.meta.Term:
		e.pongLeaderLocked(id, r.Addr, pong.Term, "pong of the new leader")
	case pong.Leader != 0 && pong.Term > e.meta.Term:
		// A node follows a leader of a newer term (one leader per term).
		if lr := e.nodes[pong.Leader]; lr != nil && lr.State != StateRemoved && lr.Addr != "" {
			e.pongLeaderLocked(pong.Leader, lr.Addr, pong.Term, "pong of a follower")
		}
	case id == e.meta.LeaderID && pong.Term >= e.meta.Term && pong.Role != "leader" && !sent.Before(e.leaderSince):
		// The leader stepped down (check quorum) or an election began.
		if !e.leaderLost {
			e.log.Info("leader stepped down", "leader", fmt.Sprintf("%016x", id), "name", r.Name,
				"role", pong.Role, "term", pong.Term)
			e.leaderLost = true
		}
	case id == e.meta.LeaderID && pong.Term == e.meta.Term && pong.Role == "leader":
		e.leaderLost = false
	}
}

// pongLeaderLocked makes id the leader of term from a pong. The
// membership waits for its first report: promotions and removals wait
// for a report from the new leader.
func (e *Entrance) pongLeaderLocked(id uint64, addr string, term uint64, via string) {
	m := e.meta
	e.setLeaderLocked(&m, id, addr, term, via)
	e.lastReport, e.commit, e.hintAddr = time.Time{}, 0, ""
	if err := e.st.save(&m); err != nil {
		e.log.Error("registry write failed", "err", err)
	}
	e.meta = m
	e.poke()
}

// setLeaderLocked records a new leader in m (the caller persists it and
// installs it) and resets the membership driver for it.
func (e *Entrance) setLeaderLocked(m *Meta, id uint64, addr string, term uint64, via string) {
	m.LeaderID, m.LeaderAddr, m.Term = id, addr, term
	e.leaderSince = e.cfg.Now()
	// Decide again with the new leader (changes are idempotent there).
	clear(e.applied)
	e.failures, e.notBefore = 0, time.Time{}
	e.leaderLost = false
	e.metrics.leaderChanges.Inc()
	name := ""
	if r := e.nodes[id]; r != nil {
		name = r.Name
	}
	e.log.Info("leader changed", "leader", fmt.Sprintf("%016x", id), "name", name, "addr", addr, "term", term, "via", via)
}

// hasLeaderLocked: a leader is known, it has not stepped down, no node
// has shown a newer term, and it is alive.
func (e *Entrance) hasLeaderLocked(now time.Time) bool {
	if e.meta.LeaderID == 0 || e.leaderLost || e.seenTerm > e.meta.Term {
		return false
	}
	r := e.nodes[e.meta.LeaderID]
	return r != nil && e.livenessLocked(r, now) == StateAlive
}

// noteLiveness logs every node whose liveness word changed since the
// previous look.
func (e *Entrance) noteLiveness() {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.sortedLocked() {
		ps := e.pings[r.ID]
		if ps == nil {
			continue
		}
		w := e.livenessLocked(r, now)
		if w == ps.word {
			continue
		}
		e.log.Info("node liveness changed", "name", r.Name, "node_id", fmt.Sprintf("%016x", r.ID), "addr", r.Addr,
			"from", ps.word.String(), "to", w.String(), "missed_pings", ps.misses)
		ps.word = w
	}
}

// PingsSkipped returns how many times a node was not pinged in a round
// because its previous ping was outstanding or MaxPings were in flight.
func (e *Entrance) PingsSkipped() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pingsSkipped
}
