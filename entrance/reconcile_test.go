package entrance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
)

// runDriver starts e.Run in the bubble and stops it when the test ends.
func runDriver(t *testing.T, e *Entrance) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestDriverAdmitsAndPromotes: eight nodes join a cluster founded by n1
// (the second before any leader is known); the driver adds each as a
// learner and promotes caught-up ones until five voters (never more), one
// call at a time, through refusals; a learner that never catches up is
// never promoted.
func TestDriverAdmitsAndPromotes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeLeader(0, "", "", 2)
		f.refuseNext = 3
		e := newTest(t, t.TempDir(), nil, f, nil)
		runDriver(t, e)

		r1 := mustJoin(t, e, "n1", "127.0.0.1:7701", 0)
		f.mu.Lock()
		f.id, f.name, f.addr = r1.NodeID, "n1", "127.0.0.1:7701"
		f.members = map[uint64]*proto.Member{r1.NodeID: {ID: r1.NodeID, Name: "n1", Addr: "127.0.0.1:7701"}}
		f.mu.Unlock()
		mustJoin(t, e, "n2", "127.0.0.1:7702", 0)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if calls := f.callsSnapshot(); len(calls) != 0 {
			t.Fatalf("admin calls before any leader report: %+v", calls)
		}

		e.Report(f.report(), src)
		ids := map[string]uint64{"n1": r1.NodeID}
		for i := 3; i <= 8; i++ {
			name := fmt.Sprintf("n%d", i)
			ids[name] = mustJoin(t, e, name, fmt.Sprintf("127.0.0.1:77%02d", i), 0).NodeID
		}
		f.mu.Lock()
		f.dead[ids["n8"]] = true
		f.mu.Unlock()
		rounds := 0
		for ; rounds < 300; rounds++ {
			time.Sleep(300 * time.Millisecond)
			e.Report(f.report(), src)
			synctest.Wait()
			if v, l := f.counts(); v == 5 && v+l == 8 {
				break
			}
		}
		v, l := f.counts()
		if v != 5 || l != 3 {
			t.Fatalf("after %d reports: %d voters, %d learners; want 5 and 3", rounds, v, l)
		}
		f.mu.Lock()
		overlap, deadLearner, maxVoters := f.overlap, f.members[ids["n8"]].Learner, f.maxVoters
		f.mu.Unlock()
		if overlap != 0 || maxVoters != 5 {
			t.Fatalf("%d overlapping admin calls, at most %d voters; want none and 5", overlap, maxVoters)
		}
		if !deadLearner {
			t.Fatalf("n8, which never caught up, was promoted")
		}
		for _, c := range f.callsSnapshot() {
			if c.NodeID == r1.NodeID {
				t.Fatalf("admin call for the bootstrap node: %+v", c)
			}
		}
		// Settled: more reports bring no more calls.
		n := len(f.callsSnapshot())
		for range 10 {
			time.Sleep(300 * time.Millisecond)
			e.Report(f.report(), src)
			synctest.Wait()
		}
		if calls := f.callsSnapshot(); len(calls) != n {
			t.Fatalf("calls after the membership settled: %+v", calls[n:])
		}
		roles := map[string]int{}
		for _, p := range e.Peers() {
			roles[p.Role]++
		}
		if roles["leader"] != 1 || roles["follower"] != 4 || roles["learner"] != 3 {
			t.Fatalf("roles %v, want 1 leader, 4 followers, 3 learners", roles)
		}
	})
}

func TestDriverVoterLimit(t *testing.T) {
	for _, limit := range []int{1, 3} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeLeader(0, "", "", 2)
				e := newTest(t, t.TempDir(), nil, f, func(c *Config) { c.Voters = limit })
				runDriver(t, e)
				r1 := mustJoin(t, e, "n1", "127.0.0.1:7701", 0)
				f.mu.Lock()
				f.id, f.name, f.addr = r1.NodeID, "n1", "127.0.0.1:7701"
				f.members = map[uint64]*proto.Member{r1.NodeID: {ID: r1.NodeID, Name: "n1", Addr: "127.0.0.1:7701"}}
				f.mu.Unlock()
				for i := 2; i <= 4; i++ {
					mustJoin(t, e, fmt.Sprintf("n%d", i), fmt.Sprintf("127.0.0.1:77%02d", i), 0)
				}
				for range 60 {
					e.Report(f.report(), src)
					time.Sleep(300 * time.Millisecond)
					synctest.Wait()
				}
				if v, l := f.counts(); v != limit || v+l != 4 {
					t.Fatalf("%d voters, %d learners; want %d voters of 4", v, l, limit)
				}
			})
		})
	}
}

// TestDriverRedirect: a NotLeader answer naming another address sends the
// next try there at once.
func TestDriverRedirect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeLeader(1, "n1", "127.0.0.1:7701", 2)
		f.redirect = map[netip.AddrPort]string{netip.MustParseAddrPort("127.0.0.1:7701"): "127.0.0.1:7709"}
		e := newTest(t, t.TempDir(), nil, f, nil)
		e.Report(f.report(), src)
		mustJoin(t, e, "n2", "127.0.0.1:7702", 0)
		runDriver(t, e)
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		f.mu.Lock()
		tos := fmt.Sprint(f.tos)
		f.mu.Unlock()
		if tos != "[127.0.0.1:7701 127.0.0.1:7709]" {
			t.Fatalf("calls went to %s, want the leader then the redirect", tos)
		}
		if _, l := f.counts(); l != 1 {
			t.Fatalf("learners %d, want 1", l)
		}
	})
}

// TestDriverBackoff: an unreachable leader is retried with growing
// pauses, and the change goes through once it answers.
func TestDriverBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeLeader(1, "n1", "127.0.0.1:7701", 2)
		f.callErr = errors.New("rudp: peer unreachable")
		e := newTest(t, t.TempDir(), nil, f, nil)
		e.Report(f.report(), src)
		mustJoin(t, e, "n2", "127.0.0.1:7702", 0)
		runDriver(t, e)
		time.Sleep(20 * time.Second)
		synctest.Wait()
		// 250ms, 500ms, 1s, 2s, then every 4s: 0, .25, .75, 1.75, 3.75, 7.75, 11.75, 15.75, 19.75.
		if n := len(f.callsSnapshot()); n < 7 || n > 10 {
			t.Fatalf("%d calls in 20s to an unreachable leader, want 7..10", n)
		}
		f.mu.Lock()
		f.callErr = nil
		f.mu.Unlock()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if _, l := f.counts(); l != 1 {
			t.Fatalf("learners %d after the leader came back, want 1", l)
		}
	})
}

// TestDriverResendsUnconfirmed: a change the leader applied but that no
// report shows is asked again after ConfirmTimeout (and the leader treats
// the repeat as done), not before.
func TestDriverResendsUnconfirmed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeLeader(1, "n1", "127.0.0.1:7701", 2)
		e := newTest(t, t.TempDir(), nil, f, func(c *Config) { c.ConfirmTimeout = 2 * time.Second })
		e.Report(f.report(), src)
		mustJoin(t, e, "n2", "127.0.0.1:7702", 0)
		runDriver(t, e)
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(f.callsSnapshot()); n != 1 {
			t.Fatalf("%d calls before the confirm timeout, want 1", n)
		}
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		calls := f.callsSnapshot()
		if len(calls) != 2 || calls[1].Op != proto.AdminAddLearner || calls[1].NodeID != calls[0].NodeID {
			t.Fatalf("calls %+v, want the add sent twice", calls)
		}
	})
}

// TestDriverAfterRestart: a node admitted just before the entrance
// stopped is added after the restart, through the leader the registry
// remembers, before any new report arrives; no promotion happens until a
// report does.
func TestDriverAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		f := newFakeLeader(1, "n1", "127.0.0.1:7701", 2)
		e1, err := New(Config{DataDir: dir, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		e1.Report(f.report(), src)
		id2 := mustJoin(t, e1, "n2", "127.0.0.1:7702", 0).NodeID
		if err := e1.Close(); err != nil {
			t.Fatal(err)
		}

		e2 := newTest(t, dir, nil, f, nil)
		runDriver(t, e2)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		calls := f.callsSnapshot()
		if len(calls) != 1 || calls[0].Op != proto.AdminAddLearner || calls[0].NodeID != id2 {
			t.Fatalf("calls after restart %+v, want one add-learner of %016x", calls, id2)
		}
		e2.Report(f.report(), src)
		time.Sleep(time.Second)
		synctest.Wait()
		if v, l := f.counts(); v != 2 || l != 0 {
			t.Fatalf("after a report: %d voters, %d learners; want n2 promoted", v, l)
		}
	})
}
