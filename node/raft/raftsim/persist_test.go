package raftsim

import (
	"bytes"
	"testing"

	"github.com/raftkv/raftkv/node/raft"
)

// id maps a 0-based ring position to a node ID in a cluster of n.
func ring(lead uint64, k, n int) uint64 { return (lead-1+uint64(k))%uint64(n) + 1 }

// crashSoon crashes id inside one of its next Readies at point p (or
// plainly, if no Ready comes within two ticks).
func (h *harness) crashSoon(id uint64, p CrashPoint) {
	h.t.Helper()
	h.CrashAt(id, p)
	h.RunUntil(func() bool { return !h.IsUp(id) }, 2*h.Config().TickInterval)
	h.ok()
	h.Crash(id)
}

func (h *harness) restart(id uint64) {
	h.t.Helper()
	if err := h.Restart(id); err != nil {
		h.fatalf("restart %d: %v", id, err)
	}
	h.ok()
}

func TestPersist1(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	h.one(cmd("11"), 3, true)
	// Crash and restart everyone.
	for _, id := range h.IDs() {
		h.Crash(id)
	}
	for _, id := range h.IDs() {
		h.restart(id)
	}
	h.one(cmd("12"), 3, true)
	l1 := h.checkOneLeader()
	h.Crash(l1)
	h.restart(l1)
	h.one(cmd("13"), 3, true)
	l2 := h.checkOneLeader()
	h.crashSoon(l2, CrashBeforePersist)
	h.one(cmd("14"), 2, true)
	h.restart(l2)
	idx := h.one(cmd("14b"), 3, true)
	h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
	l3 := h.checkOneLeader()
	f := ring(l3, 1, 3)
	h.crashSoon(f, CrashBeforeSend)
	h.one(cmd("15"), 2, true)
	h.restart(f)
	idx = h.one(cmd("16"), 3, true)
	h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
}

func TestPersist2(t *testing.T) {
	const n = 5
	h := newHarness(t, Config{Nodes: n})
	points := []CrashPoint{CrashBeforePersist, CrashBeforeSend, CrashBeforeApply}
	index := 1
	for iter := range 5 {
		h.one(cmd("%d", 10+index), n, true)
		index++
		l1 := h.checkOneLeader()
		h.crashSoon(ring(l1, 1, n), points[iter%3])
		h.Crash(ring(l1, 2, n))
		h.one(cmd("%d", 10+index), n-2, true)
		index++
		h.Crash(l1)
		h.crashSoon(ring(l1, 3, n), points[(iter+1)%3])
		h.Crash(ring(l1, 4, n))
		h.restart(ring(l1, 1, n))
		h.restart(ring(l1, 2, n))
		h.ticks(h.Config().ElectionTicks)
		h.restart(ring(l1, 3, n))
		h.one(cmd("%d", 10+index), n-2, true)
		index++
		h.restart(ring(l1, 4, n))
		h.restart(l1)
	}
	idx := h.one(cmd("1000"), n, true)
	h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
}

func TestPersist3(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	h.one(cmd("101"), 3, false)
	lead := h.checkOneLeader()
	h.Isolate(ring(lead, 2, 3))
	h.one(cmd("102"), 2, false)
	// The partitioned follower and the leader's partner crash; the
	// leader too; they come back in an awkward order.
	h.Crash(lead)
	h.Crash(ring(lead, 1, 3))
	h.Reconnect(ring(lead, 2, 3))
	h.restart(lead)
	h.one(cmd("103"), 2, true)
	h.restart(ring(lead, 1, 3))
	idx := h.one(cmd("104"), 3, true)
	h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
	// 102 was committed before the crashes: it must still be there.
	for i := uint64(1); i <= idx; i++ {
		if d, _, _ := h.CommittedData(i); bytes.Equal(d, cmd("102")) {
			return
		}
	}
	h.fatalf("committed command 102 was lost")
}

// figure8 is 6.824's Figure 8 test: leaders crash (or are cut off) soon
// after proposing, random nodes come back, for iters rounds.
func figure8(t *testing.T, iters int, unreliable bool) {
	cfg := Config{Nodes: 5}
	if unreliable {
		cfg.Network = Unreliable()
	}
	h := newHarness(t, cfg)
	rng := h.Rand()
	h.one(cmd("start"), 1, true)
	up := map[uint64]bool{}
	for _, id := range h.IDs() {
		up[id] = true
	}
	nup := 5
	for iter := range iters {
		if unreliable && iter == iters/3 {
			l := Unreliable()
			l.LongDelay, l.LongDelayMax = 0.3, 300
			h.SetNetwork(l)
		}
		var leader uint64
		for _, id := range h.IDs() {
			if !up[id] || !h.IsUp(id) {
				continue
			}
			if h.Node(id).BasicStatus().RaftState == raft.StateLeader {
				if h.Propose(id, cmd("f8-%d", iter), nil) == nil {
					leader = id
				}
			}
		}
		if rng.IntN(1000) < 100 {
			h.RunFor(Time(rng.Int64N(int64(h.ElectionTimeout() * 2))))
		} else {
			h.RunFor(Time(rng.Int64N(13)))
		}
		h.ok()
		if leader != 0 && up[leader] {
			if unreliable {
				h.Isolate(leader)
			} else {
				h.Crash(leader)
			}
			up[leader] = false
			nup--
		}
		if nup < 3 {
			s := h.IDs()[rng.IntN(5)]
			if !up[s] {
				if unreliable {
					h.Reconnect(s)
				} else {
					h.restart(s)
				}
				up[s] = true
				nup++
			}
		}
	}
	h.SetNetwork(Reliable())
	h.Heal()
	for _, id := range h.IDs() {
		if !h.IsUp(id) {
			h.restart(id)
		}
	}
	idx := h.one(cmd("end"), 5, true)
	h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
}

func TestFigure8(t *testing.T)           { figure8(t, 600, false) }
func TestFigure8Unreliable(t *testing.T) { figure8(t, 600, true) }

func TestUnreliableAgree(t *testing.T) {
	h := newHarness(t, Config{Nodes: 5, Network: Unreliable()})
	for iter := 1; iter < 50; iter++ {
		for j := range 4 {
			if lead := h.Leader(); lead != 0 {
				_ = h.Propose(lead, cmd("%d", 100*iter+j), nil)
			}
		}
		h.one(cmd("%d", iter), 1, true)
	}
	h.SetNetwork(Reliable())
	idx := h.one(cmd("100"), 5, true)
	h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
}

// ack is a value a client saw applied at an index.
type ack struct {
	val   []byte
	index uint64
}

// startClients runs n clients that each propose a fresh value every 1-3
// ticks to the leader (or a random node) until *stop, recording every
// value they saw applied.
func (h *harness) startClients(n int, stop *bool, acks *[]ack) {
	tick := h.Config().TickInterval
	for cl := range n {
		seq := 0
		var loop func()
		loop = func() {
			if *stop {
				return
			}
			target := h.Leader()
			if ups := h.UpIDs(); target == 0 || h.Rand().IntN(4) == 0 {
				if len(ups) > 0 {
					target = ups[h.Rand().IntN(len(ups))]
				}
			}
			seq++
			val := cmd("client%d-%d", cl, seq)
			if target != 0 {
				_ = h.Propose(target, val, func(r ProposeResult) {
					if r.Err == nil {
						*acks = append(*acks, ack{val: val, index: r.Index})
					}
				})
			}
			h.After(tick+Time(h.Rand().Int64N(int64(2*tick))), "", loop)
		}
		h.After(Time(cl), "", loop)
	}
}

func churn(t *testing.T, unreliable bool) {
	cfg := Config{Nodes: 5}
	if unreliable {
		cfg.Network = Unreliable()
	}
	h := newHarness(t, cfg)
	rng := h.Rand()
	var stop bool
	var acks []ack
	h.startClients(3, &stop, &acks)
	for range 20 {
		if rng.IntN(1000) < 200 {
			h.Isolate(h.IDs()[rng.IntN(5)])
		}
		if rng.IntN(1000) < 500 {
			var down []uint64
			for _, id := range h.IDs() {
				if !h.IsUp(id) {
					down = append(down, id)
				}
			}
			if len(down) > 0 {
				h.restart(down[rng.IntN(len(down))])
			}
			h.Reconnect(h.IDs()[rng.IntN(5)])
		}
		if rng.IntN(1000) < 200 {
			id := h.IDs()[rng.IntN(5)]
			if h.IsUp(id) {
				h.crashSoon(id, CrashPoint(1+rng.IntN(3)))
			}
		}
		// 6.824 keeps at most ~3 nodes in trouble at a time.
		h.RunFor(Time(rng.Int64N(int64(h.ElectionTimeout()))))
		h.ok()
	}
	stop = true
	h.SetNetwork(Reliable())
	h.Heal()
	for _, id := range h.IDs() {
		if !h.IsUp(id) {
			h.restart(id)
		}
	}
	idx := h.one(cmd("end"), 5, true)
	h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
	if len(acks) < 20 {
		h.fatalf("only %d client commands applied during churn", len(acks))
	}
	for _, a := range acks {
		if d, _, ok := h.CommittedData(a.index); !ok || !bytes.Equal(d, a.val) {
			h.fatalf("client saw %q applied at %d, final log has %q", a.val, a.index, d)
		}
	}
}

func TestReliableChurn(t *testing.T)   { churn(t, false) }
func TestUnreliableChurn(t *testing.T) { churn(t, true) }
