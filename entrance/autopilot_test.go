package entrance

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/raftkv/raftkv/internal/proto"
)

// removalSafeRef is the dumb reference for removalSafe: by brute force
// over subsets, is there a set of live voters that is a majority of the
// current configuration, and one among the remaining voters that is a
// majority of the configuration without id?
func removalSafeRef(voters map[uint64]bool, id uint64) bool {
	if _, ok := voters[id]; !ok {
		return true
	}
	var cur, after []uint64
	for v := range voters {
		cur = append(cur, v)
		if v != id {
			after = append(after, v)
		}
	}
	liveMajority := func(set []uint64) bool {
		for mask := 0; mask < 1<<len(set); mask++ {
			size, allLive := 0, true
			for i, v := range set {
				if mask&(1<<i) != 0 {
					size++
					allLive = allLive && voters[v]
				}
			}
			if allLive && 2*size > len(set) {
				return true
			}
		}
		return false
	}
	return liveMajority(cur) && liveMajority(after)
}

func TestRemovalSafeProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 9).Draw(t, "voters")
		voters := make(map[uint64]bool, n)
		for i := range n {
			voters[uint64(i+1)] = rapid.Bool().Draw(t, "live")
		}
		id := uint64(rapid.IntRange(1, n+1).Draw(t, "id")) // n+1: a learner
		if got, want := removalSafe(voters, id), removalSafeRef(voters, id); got != want {
			t.Fatalf("removalSafe(%v, %d) = %v, reference says %v", voters, id, got, want)
		}
	})
}

func TestRemovalSafeExamples(t *testing.T) {
	tests := []struct {
		voters map[uint64]bool
		id     uint64
		want   bool
	}{
		{map[uint64]bool{1: true, 2: true, 3: false}, 3, true},                    // 2 of 3 live; 2 of 2 after
		{map[uint64]bool{1: true, 2: false, 3: false}, 3, false},                  // no live quorum now
		{map[uint64]bool{1: true, 2: true, 3: true, 4: false}, 4, true},           // 3 of 4; 3 of 3
		{map[uint64]bool{1: true, 2: true, 3: false, 4: false}, 4, false},         // 2 of 4 is no quorum
		{map[uint64]bool{1: true, 2: true, 3: true, 4: false, 5: false}, 5, true}, // 3 of 5; 3 of 4
		{map[uint64]bool{1: true}, 1, false},                                      // the last voter
		{map[uint64]bool{1: true, 2: false}, 9, true},                             // a learner
	}
	for _, tt := range tests {
		if got := removalSafe(tt.voters, tt.id); got != tt.want {
			t.Errorf("removalSafe(%v, %d) = %v, want %v", tt.voters, tt.id, got, tt.want)
		}
	}
}

func removeCalls(f *fakeLeader) []uint64 {
	var ids []uint64
	for _, c := range f.callsSnapshot() {
		if c.Op == proto.AdminRemove {
			ids = append(ids, c.NodeID)
		}
	}
	return ids
}

// TestAutopilotRemovesDownNode: 4 voters (the limit) and a caught-up
// learner; a voter dies; it is removed through the leader once down for
// DownGrace, not before, shows removed, and the learner is promoted in
// its place; one membership call at a time.
func TestAutopilotRemovesDownNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fakeCluster(4, 1)
		e := newTest(t, t.TempDir(), nil, f, func(c *Config) { c.Voters, c.DownGrace = 4, 10*time.Second })
		reportEvery(t, e, f)
		runDriver(t, e)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if calls := f.callsSnapshot(); len(calls) != 0 {
			t.Fatalf("calls with a settled cluster: %+v", calls)
		}

		f.set(func() { f.down[nodeAddr(4)], f.dead[4] = true, true })
		// Last seen at most one ping interval ago; down 6 s later; removal
		// 10 s after that.
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if ids := removeCalls(f); len(ids) != 0 {
			t.Fatalf("removed %v before the grace period ended", ids)
		}
		if p := peer(t, e, "n4"); p.Liveness != "down" {
			t.Fatalf("n4 %+v, want down", p)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if ids := removeCalls(f); !slices.Equal(ids, []uint64{4}) {
			t.Fatalf("remove calls %v, want [4]", ids)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if p := peer(t, e, "n4"); p.Liveness != "removed" {
			t.Fatalf("n4 %+v, want removed", p)
		}
		if v, l := f.counts(); v != 4 || l != 0 {
			t.Fatalf("%d voters, %d learners; want n5 promoted in n4's place", v, l)
		}
		f.mu.Lock()
		overlap := f.overlap
		f.mu.Unlock()
		if overlap != 0 {
			t.Fatalf("%d overlapping admin calls", overlap)
		}
		if got := metricValue(t, e, "raftkv_entrance_removals_total", ""); got != 1 {
			t.Fatalf("raftkv_entrance_removals_total = %v, want 1", got)
		}
	})
}

// TestAutopilotKeepsQuorum: with two of three voters down nothing is
// removed (one live voter is no quorum); when one comes back the other is
// removed. With DownGrace 0 nothing is ever removed.
func TestAutopilotKeepsQuorum(t *testing.T) {
	t.Run("quorum", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := fakeCluster(3, 0)
			e := newTest(t, t.TempDir(), nil, f, func(c *Config) { c.DownGrace = time.Second })
			reportEvery(t, e, f)
			runDriver(t, e)
			f.set(func() {
				f.down[nodeAddr(2)], f.dead[2] = true, true
				f.down[nodeAddr(3)], f.dead[3] = true, true
			})
			time.Sleep(30 * time.Second)
			synctest.Wait()
			if ids := removeCalls(f); len(ids) != 0 {
				t.Fatalf("removed %v with only one live voter of three", ids)
			}
			f.set(func() { f.down[nodeAddr(3)], f.dead[3] = false, false })
			time.Sleep(2 * time.Second)
			synctest.Wait()
			if ids := removeCalls(f); !slices.Equal(ids, []uint64{2}) {
				t.Fatalf("remove calls %v, want [2] once n3 is back", ids)
			}
		})
	})
	t.Run("off", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := fakeCluster(3, 0)
			e := newTest(t, t.TempDir(), nil, f, nil)
			reportEvery(t, e, f)
			runDriver(t, e)
			f.set(func() { f.down[nodeAddr(3)], f.dead[3] = true, true })
			time.Sleep(60 * time.Second)
			synctest.Wait()
			if p := peer(t, e, "n3"); p.Liveness != "down" || len(removeCalls(f)) != 0 {
				t.Fatalf("DownGrace 0: n3 %+v, remove calls %v", p, removeCalls(f))
			}
		})
	})
}

// stallClock is Config.Now for a process that stalls: synctest's clock
// plus the stalls so far, time that passed while no goroutine of the
// entrance ran (a long GC or scheduling pause, CPU starvation, a paused
// VM), so that every node's last sign of life aged at once.
type stallClock struct{ skew atomic.Int64 }

func (c *stallClock) Now() time.Time        { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *stallClock) stall(d time.Duration) { c.skew.Add(int64(d)) }

// TestAutopilotIgnoresOwnStall: when the entrance itself stalls, every
// node looks silent for the length of the stall; that is no sign of a
// dead node, so nothing is removed (a learner may always be removed, so
// it would be the first to go), and a node really down is removed only
// DownAfter + DownGrace after the entrance's latest stall, not counting
// the stall. (A 7 s stall under the race detector on a loaded CI machine
// made the autopilot remove a live learner in TestAutopilotWithNodes.)
func TestAutopilotIgnoresOwnStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := &stallClock{}
		f := fakeCluster(3, 1) // n4 stays a learner (Voters 3)
		e := newTest(t, t.TempDir(), nil, f, func(c *Config) {
			c.Now, c.Voters, c.DownGrace = clk.Now, 3, time.Second // removal 6 s + 1 s after the last sign of life
		})
		e.Report(f.report(), src)
		runDriver(t, e)
		time.Sleep(2 * time.Second) // a ping round and a driver look just happened
		synctest.Wait()
		if got, want := livenessWords(e), "n1:alive n2:alive n3:alive n4:alive "; got != want {
			t.Fatalf("liveness %q, want %q", got, want)
		}

		// The driver looks 250 ms after the stall, before the next ping
		// round: every node looks down for 10 s, but the round is overdue.
		clk.stall(10 * time.Second)
		time.Sleep(time.Second)
		synctest.Wait()
		if ids := removeCalls(f); len(ids) != 0 {
			t.Fatalf("removed %v after the entrance itself stalled", ids)
		}
		if got, want := livenessWords(e), "n1:alive n2:alive n3:alive n4:alive "; got != want {
			t.Fatalf("one round after the stall: liveness %q, want %q", got, want)
		}

		// n4 dies (last pong just now); 2 s later the entrance stalls for
		// 3 s. Its grace period counts from the end of the stall: 7 s
		// after it, not 7 s after n4's last pong.
		f.set(func() { f.down[nodeAddr(4)] = true })
		time.Sleep(2 * time.Second)
		synctest.Wait()
		clk.stall(3 * time.Second)
		time.Sleep(4 * time.Second) // 9 s after n4's last pong, 3.5 s after the stall
		synctest.Wait()
		if ids := removeCalls(f); len(ids) != 0 {
			t.Fatalf("removed %v counting the stall as observed downtime", ids)
		}
		if p := peer(t, e, "n4"); p.Liveness != "down" {
			t.Fatalf("n4 %+v, want down", p)
		}
		time.Sleep(4 * time.Second) // 7.5 s after the stall
		synctest.Wait()
		if ids := removeCalls(f); !slices.Equal(ids, []uint64{4}) {
			t.Fatalf("remove calls %v, want [4] 7 s after the stall", ids)
		}
	})
}

// TestAutopilotIgnoresOwnStallWithoutPings: with pings off (liveness from
// reports only) the liveness loop still runs, so a stall of the entrance
// removes nobody either.
func TestAutopilotIgnoresOwnStallWithoutPings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := &stallClock{}
		f := fakeCluster(3, 1)
		e := newTest(t, t.TempDir(), nil, f, func(c *Config) {
			c.Now, c.Voters, c.DownGrace, c.PingInterval = clk.Now, 3, time.Second, -1
		})
		reportEvery(t, e, f) // at 0, 0.3, ... 2.1, 2.4 s
		runDriver(t, e)      // the driver looks every 250 ms, the liveness loop every 500 ms
		time.Sleep(2 * time.Second)
		synctest.Wait()
		clk.stall(10 * time.Second) // the driver's look at 2.25 s comes first
		time.Sleep(time.Second)
		synctest.Wait()
		if ids := removeCalls(f); len(ids) != 0 {
			t.Fatalf("removed %v after the entrance itself stalled", ids)
		}
		if got, want := livenessWords(e), "n1:alive n2:alive n3:alive n4:alive "; got != want {
			t.Fatalf("liveness %q, want %q", got, want)
		}
		f.mu.Lock()
		pings := f.pingCount
		f.mu.Unlock()
		if pings != 0 {
			t.Fatalf("%d pings with pings off", pings)
		}
	})
}

// TestAutopilotAfterRestart: a last seen time from before the entrance
// started (it was not watching) does not count towards the grace period.
func TestAutopilotAfterRestart(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	f := fakeCluster(3, 0)
	mod := func(c *Config) { c.DownGrace = 10 * time.Second }
	e1 := newTest(t, dir, clk, f, mod)
	e1.Report(f.report(), src)
	if err := e1.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	f.set(func() { f.dead[3] = true })
	e2 := newTest(t, dir, clk, f, mod)
	e2.Report(f.report(), src)
	if p := peer(t, e2, "n3"); p.Liveness != "down" {
		t.Fatalf("n3 %+v, want down", p)
	}
	if req, _, ok := e2.next(); ok {
		t.Fatalf("next() = %+v just after the start", req)
	}
	clk.Advance(15 * time.Second)
	e2.Report(f.report(), src)
	if req, _, ok := e2.next(); ok {
		t.Fatalf("next() = %+v 15 s after the start", req)
	}
	clk.Advance(time.Second)
	e2.Report(f.report(), src)
	req, to, ok := e2.next()
	if !ok || req.Op != proto.AdminRemove || req.NodeID != 3 || to != nodeAddr(1) {
		t.Fatalf("next() = %+v to %s ok %v, want remove 3 at the leader", req, to, ok)
	}
}

// metricValue gathers e's metrics and returns the value of the series
// name whose labels render as labels ("" for none, e.g. `state="down"`).
func metricValue(t *testing.T, e *Entrance, name, labels string) float64 {
	t.Helper()
	mfs, err := e.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			if strings.Join(ls, ",") != labels {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{%s}", name, labels)
	return 0
}
