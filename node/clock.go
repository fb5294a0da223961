package node

import (
	"slices"
	"sync"
	"time"
)

// clockFreshness is how recently a peer's clock must have been seen to
// count in clusterClock.Now (heartbeats bring one every heartbeat
// interval).
const clockFreshness = 10 * time.Second

// clusterClock is the time a leader stamps on the writes it proposes
// (kvstore.Command.Time). The store's log clock is the largest stamp ever
// applied and never goes back, and session expiry runs on it: one write
// stamped by a leader whose wall clock is hours ahead would expire every
// session and refuse new ones (their start is "too old") until real time
// caught up. So the leader does not trust its own clock alone: every Raft
// message carries its sender's wall clock (raft.Message.WallTime), each
// node keeps the offset of every peer's clock to its own, and the stamp is
// the lower median of its own clock and its peers' recent ones. A minority
// of skewed clocks, the leader's included, moves it by at most the
// network delay; when the clocks disagree evenly the lower one wins,
// because a log clock that runs slow only keeps sessions longer, while one
// that runs fast refuses clients.
type clusterClock struct {
	now  func() time.Time
	mu   sync.Mutex
	offs map[uint64]peerOffset
}

type peerOffset struct {
	off time.Duration // the peer's clock minus ours when its message came
	at  time.Time     // when, on our clock (monotonic)
}

func newClusterClock(now func() time.Time) *clusterClock {
	if now == nil {
		now = time.Now
	}
	return &clusterClock{now: now, offs: map[uint64]peerOffset{}}
}

// wall is this node's own clock, sent on every Raft message.
func (c *clusterClock) wall() int64 { return c.now().UnixNano() }

// observe records peer id's clock reading wall (Unix nanoseconds; 0 = the
// sender did not say).
func (c *clusterClock) observe(id uint64, wall int64) {
	if wall == 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	c.offs[id] = peerOffset{off: time.Duration(wall - now.UnixNano()), at: now}
	c.mu.Unlock()
}

// Now is the lower median of this node's clock and the clocks of the peers
// heard from within clockFreshness.
func (c *clusterClock) Now() time.Time {
	now := c.now()
	offs := make([]time.Duration, 1, 8) // our own offset: 0
	c.mu.Lock()
	for id, o := range c.offs {
		if now.Sub(o.at) > clockFreshness {
			delete(c.offs, id)
			continue
		}
		offs = append(offs, o.off)
	}
	c.mu.Unlock()
	slices.Sort(offs)
	return now.Add(offs[(len(offs)-1)/2])
}
