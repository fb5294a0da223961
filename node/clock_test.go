package node

import (
	"context"
	"testing"
	"time"
)

func TestClusterClockLowerMedian(t *testing.T) {
	base := time.Now()
	own := base
	c := newClusterClock(func() time.Time { return own })
	const h = time.Hour
	check := func(what string, want time.Duration) {
		t.Helper()
		if got := c.Now().Sub(own); got != want {
			t.Fatalf("%s: Now is own clock %+v, want %+v", what, got, want)
		}
	}
	check("alone", 0)
	c.observe(2, own.Add(-2*h).UnixNano())
	check("two nodes, the peer behind: the lower one", -2*h)
	c.observe(2, own.Add(2*h).UnixNano())
	check("two nodes, the peer ahead: the lower one", 0)
	c.observe(2, own.Add(-2*h).UnixNano())
	c.observe(3, own.Add(-2*h).UnixNano())
	check("own clock 2h ahead of two peers", -2*h)
	c.observe(2, own.UnixNano())
	c.observe(3, own.Add(2*h).UnixNano())
	check("one peer 2h ahead", 0)
	c.observe(4, 0) // a sender that did not say: ignored
	check("a zero reading", 0)
	// Readings older than clockFreshness no longer count.
	c.observe(2, own.Add(-2*h).UnixNano())
	c.observe(3, own.Add(-2*h).UnixNano())
	own = own.Add(clockFreshness + time.Second)
	check("stale readings", 0)
}

// TestSkewedLeaderClockDoesNotLockOutSessions: a leader whose wall clock
// is two hours ahead must not push the store's log clock ahead: that would
// expire every session and refuse new ones (their start would look more
// than SessionTTL/2 old) until real time caught up.
func TestSkewedLeaderClockDoesNotLockOutSessions(t *testing.T) {
	c := newCluster(t, 3, func(c *cluster) {
		c.tune = func(cfg *Config) {
			if cfg.NodeID == 1 {
				cfg.wallClock = func() time.Time { return time.Now().Add(2 * time.Hour) }
			}
		}
	})
	lead := c.waitLeader()
	if lead.id != 1 {
		t.Fatalf("leader %s, want the skewed n1", lead.name)
	}
	// The followers' clocks reach the leader with their heartbeat replies.
	waitFor(t, "the leader to hear its followers' clocks", func() bool {
		return time.Until(lead.n.clock.Now()) < time.Minute
	})
	mustOK(t, c.do(put(91, 1, "k", "v")))
	mustOK(t, c.do(get("k")))
	st, err := lead.n.kv.Status()
	if err != nil {
		t.Fatal(err)
	}
	if skew := time.Duration(st.Clock - time.Now().UnixNano()); skew > time.Minute {
		t.Fatalf("log clock %v ahead of real time after a write through the skewed leader", skew)
	}
	// A client whose clock is right opens a session.
	req := put(92, 1, "k2", "v2")
	req.SessionStart = time.Now().UnixNano()
	mustOK(t, lead.n.Do(context.Background(), req))
	if r := mustOK(t, c.do(get("k2"))); len(r.KVs) != 1 || string(r.KVs[0].Value) != "v2" {
		t.Fatalf("k2 = %v after the new client's write", r.KVs)
	}
}
