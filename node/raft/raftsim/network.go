package raftsim

import (
	"fmt"
	"slices"
)

// Time is virtual time in milliseconds since the start of a simulation.
type Time int64

// LinkConfig is how one directed link treats each message. Every decision
// is drawn from the simulation's single seeded source.
type LinkConfig struct {
	// Drop is the probability that a message is lost.
	Drop float64
	// Dup is the probability that a message is delivered twice (the copy
	// gets its own latency, so it may overtake the original).
	Dup float64
	// MinDelay and MaxDelay bound the uniform latency of a message.
	// Messages with different latencies overtake each other.
	MinDelay, MaxDelay Time
	// LongDelay is the probability of a long delay, uniform in
	// [MaxDelay, LongDelayMax]: the "long reordering" of the 6.824 tests.
	LongDelay    float64
	LongDelayMax Time
	// FIFO keeps the link in order: a message is never delivered before
	// one sent earlier on the same link (duplicates excepted).
	FIFO bool
}

// Reliable is a LAN: no loss, 1-3 ms latency (ticks are 10 ms by default),
// in order.
func Reliable() LinkConfig { return LinkConfig{MinDelay: 1, MaxDelay: 3, FIFO: true} }

// Reordering is Reliable without the ordering: messages overtake each
// other freely.
func Reordering() LinkConfig { return LinkConfig{MinDelay: 1, MaxDelay: 5} }

// Unreliable is the 6.824 unreliable network: 10% loss, some duplication,
// 0-27 ms latency and occasional long delays of up to 20 ticks.
func Unreliable() LinkConfig {
	return LinkConfig{Drop: 0.1, Dup: 0.05, MinDelay: 0, MaxDelay: 27, LongDelay: 0.02, LongDelayMax: 200}
}

func (l LinkConfig) String() string {
	return fmt.Sprintf("drop=%.2f dup=%.2f delay=[%d,%d] long=%.2f/%d fifo=%v", l.Drop, l.Dup, l.MinDelay, l.MaxDelay, l.LongDelay, l.LongDelayMax, l.FIFO)
}

type link struct{ from, to uint64 }

// network holds per-link behaviour and the blocked (partitioned) links.
// A message is dropped when its link is blocked at send time or at
// delivery time.
type network struct {
	def     LinkConfig
	links   map[link]LinkConfig
	blocked map[link]bool
	// lastAt is the latest delivery time scheduled on each link (FIFO).
	lastAt map[link]Time
}

func newNetwork(def LinkConfig) *network {
	return &network{def: def, links: map[link]LinkConfig{}, blocked: map[link]bool{}, lastAt: map[link]Time{}}
}

func (n *network) config(from, to uint64) LinkConfig {
	if l, ok := n.links[link{from, to}]; ok {
		return l
	}
	return n.def
}

// SetNetwork sets the behaviour of every link and forgets per-link
// settings (blocks stay).
func (c *Cluster) SetNetwork(l LinkConfig) {
	c.net.def = l
	clear(c.net.links)
	c.logf("network %v", l)
}

// SetLink sets the behaviour of the directed link from -> to.
func (c *Cluster) SetLink(from, to uint64, l LinkConfig) {
	c.net.links[link{from, to}] = l
	c.logf("link %d->%d %v", from, to, l)
}

// Block cuts the directed link from -> to (a one-way partition).
func (c *Cluster) Block(from, to uint64) {
	c.net.blocked[link{from, to}] = true
	c.logf("block %d->%d", from, to)
}

// Unblock restores the directed link from -> to.
func (c *Cluster) Unblock(from, to uint64) {
	delete(c.net.blocked, link{from, to})
	c.logf("unblock %d->%d", from, to)
}

// Blocked reports whether the directed link from -> to is cut.
func (c *Cluster) Blocked(from, to uint64) bool { return c.net.blocked[link{from, to}] }

// Partition splits the nodes into groups that cannot talk to each other;
// links inside a group are restored. Nodes in no group are isolated.
func (c *Cluster) Partition(groups ...[]uint64) {
	group := map[uint64]int{}
	for gi, g := range groups {
		for _, id := range g {
			group[id] = gi + 1
		}
	}
	ids := c.IDs()
	for _, a := range ids {
		for _, b := range ids {
			if a == b {
				continue
			}
			ga, gb := group[a], group[b]
			if ga != 0 && ga == gb {
				delete(c.net.blocked, link{a, b})
			} else {
				c.net.blocked[link{a, b}] = true
			}
		}
	}
	c.logf("partition %v", groups)
}

// Isolate cuts every link to and from id.
func (c *Cluster) Isolate(id uint64) {
	for _, o := range c.IDs() {
		if o != id {
			c.net.blocked[link{id, o}] = true
			c.net.blocked[link{o, id}] = true
		}
	}
	c.logf("isolate %d", id)
}

// Reconnect restores every link to and from id.
func (c *Cluster) Reconnect(id uint64) {
	for _, o := range c.IDs() {
		delete(c.net.blocked, link{id, o})
		delete(c.net.blocked, link{o, id})
	}
	c.logf("reconnect %d", id)
}

// Heal restores every link (link behaviour settings stay).
func (c *Cluster) Heal() {
	clear(c.net.blocked)
	c.logf("heal")
}

// blockedPairs lists the cut links, sorted, for reports.
func (n *network) blockedPairs() []link {
	var out []link
	for l := range n.blocked {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b link) int {
		if a.from != b.from {
			return cmpU64(a.from, b.from)
		}
		return cmpU64(a.to, b.to)
	})
	return out
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
