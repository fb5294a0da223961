package kvsim

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node/raft"
	"github.com/raftkv/raftkv/node/raft/raftsim"
)

// The kvraft scenarios of raft-anchors.md section 2.2, on the real
// kvstore: each runs clients through faults, then heals, checks liveness,
// the replicas' fingerprints and the history with porcupine.

func TestKVOneClient(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 1), Nodes: 3, Clients: 1})
	s.Start(Workload{})
	run(t, s, 2000)
	finish(t, s, 50)
}

func TestKVManyClients(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 2), Nodes: 5, Clients: 6, LogReads: 0.2, ViaFollower: 0.2})
	s.Start(Workload{})
	run(t, s, 1200)
	finish(t, s, 200)
}

func TestKVUnreliable(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 3), Nodes: 3, Clients: 5, Network: raftsim.Unreliable(), ReplyLoss: 0.1, LogReads: 0.1, ViaFollower: 0.3})
	s.Start(Workload{})
	run(t, s, 3000)
	finish(t, s, 100)
	if st := s.Stats(); st.Duplicates == 0 || st.Timeouts == 0 || st.ViaFollower == 0 {
		t.Fatalf("the faults were not exercised: %+v", st)
	}
}

// A leader cut off with a minority keeps believing it leads for a while;
// a client that can reach only that side must get no answer until the
// partition heals, while the majority serves its own clients.
func TestKVLeaderInMinorityPartition(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 4), Nodes: 5, Clients: 3})
	old := waitLeader(t, s)
	minority := []uint64{old}
	var majority []uint64
	for _, id := range s.C.IDs() {
		switch {
		case id == old:
		case len(minority) < 2:
			minority = append(minority, id)
		default:
			majority = append(majority, id)
		}
	}
	if len(minority) != 2 || !slices.Contains(minority, old) {
		t.Fatalf("bad split: minority %v majority %v", minority, majority)
	}
	cs := s.Clients()
	a, b := cs[0], cs[1]
	// A value everyone saw before the partition.
	putDone := false
	b.Do(Input{Op: OpPut, Key: "k0", Value: "before"}, func(Output) { putDone = true })
	if !s.C.RunUntil(func() bool { return putDone }, 5000) {
		t.Fatal(s.Report(simError("put before the partition did not complete")))
	}

	s.C.Partition(minority, majority)
	a.Restrict(minority)
	a.guess = old
	b.Restrict(majority)
	cs[2].Restrict(majority)
	var aDone []int64 // when a's operations returned
	aOps := []Input{{Op: OpPut, Key: "k0", Value: "minority"}, {Op: OpGet, Key: "k0"}}
	var issue func(i int)
	issue = func(i int) {
		if i < len(aOps) {
			a.Do(aOps[i], func(Output) { aDone = append(aDone, s.stamp()); issue(i + 1) })
		}
	}
	issue(0)
	for _, c := range cs[1:] {
		for i := range 15 {
			in := Input{Op: OpPut, Key: fmt.Sprintf("k%d", i%2), Value: fmt.Sprintf("maj%d.%d", c.ID, i)}
			if i%3 == 2 {
				in = Input{Op: OpGet, Key: "k0"}
			}
			done := false
			c.Do(in, func(Output) { done = true })
			if !s.C.RunUntil(func() bool { return done || s.Err() != nil }, 5000) {
				t.Fatal(s.Report(simError(fmt.Sprintf("majority client %d: operation %d did not complete", c.ID, i))))
			}
		}
	}
	run(t, s, 1000)
	if len(aDone) != 0 {
		t.Fatalf("a request through the minority leader completed during the partition (at %v)\n%s", aDone, s.Report(simError("minority progress")))
	}
	if !a.Busy() {
		t.Fatal("the minority client is not waiting")
	}
	healedAt := s.stamp()
	s.C.Heal()
	a.Restrict(nil)
	if !s.C.RunUntil(func() bool { return len(aDone) == len(aOps) || s.Err() != nil }, 10_000) {
		t.Fatal(s.Report(simError("the minority client's requests did not complete after the heal")))
	}
	for _, at := range aDone {
		if at < healedAt {
			t.Fatalf("minority request returned at %d, before the heal at %d", at, healedAt)
		}
	}
	finish(t, s, 30)
}

// Random partitions every 200 ms; each client is confined to a random side.
func TestKVManyPartitions(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 5), Nodes: 5, Clients: 5})
	s.Start(Workload{})
	rng := s.C.Rand()
	for range 10 {
		ids := s.C.IDs()
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		k := 1 + rng.IntN(len(ids)-1)
		g1, g2 := slices.Clone(ids[:k]), slices.Clone(ids[k:])
		slices.Sort(g1)
		slices.Sort(g2)
		s.C.Partition(g1, g2)
		for _, c := range s.Clients() {
			if rng.IntN(2) == 0 {
				c.Restrict(g1)
			} else {
				c.Restrict(g2)
			}
		}
		run(t, s, raftsim.Time(150+rng.IntN(100)))
		if rng.IntN(3) == 0 {
			s.C.Heal()
			for _, c := range s.Clients() {
				c.Restrict(nil)
			}
			run(t, s, 200)
		}
	}
	finish(t, s, 100)
}

// Every node crashes at once, repeatedly; the stores reopen from their
// files and Raft re-applies the log above their applied indexes.
func TestKVAllServersCrash(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 6), Nodes: 3, Clients: 4, Network: raftsim.Reordering(), SnapshotEvery: 30, SnapshotKeep: 5})
	s.Start(Workload{})
	rng := s.C.Rand()
	for range 5 {
		run(t, s, raftsim.Time(300+rng.IntN(300)))
		for _, id := range s.C.IDs() {
			if rng.IntN(3) == 0 {
				s.CrashAt(id, raftsim.CrashPoint(1+rng.IntN(3)))
				continue
			}
			s.Crash(id)
		}
		run(t, s, 20) // armed nodes crash inside their next Ready
		for _, id := range s.C.IDs() {
			s.Crash(id)
		}
		run(t, s, raftsim.Time(50+rng.IntN(200)))
		if err := s.RestartAll(); err != nil {
			t.Fatal(s.Report(err))
		}
	}
	finish(t, s, 100)
	if s.Stats().Skipped == 0 {
		t.Fatalf("no restarted store skipped a re-applied entry: the crashes were not exercised (%+v)", s.Stats())
	}
}

// A follower cut off while the others compact their logs must catch up
// from a snapshot of the real store (streamed as raft snapshot chunks),
// also after crashing while it lagged.
func TestKVSnapshotsLaggingFollower(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 7), Nodes: 3, Clients: 4, SnapshotEvery: 10, SnapshotKeep: 2, SnapshotChunkBytes: 8 << 10})
	lead := waitLeader(t, s)
	lag := lead%3 + 1
	s.Start(Workload{Keys: 5})
	run(t, s, 300)
	for round := range 3 {
		s.C.Isolate(lag)
		for _, c := range s.Clients() {
			c.Restrict(slices.DeleteFunc(s.C.IDs(), func(id uint64) bool { return id == lag }))
		}
		run(t, s, 800)
		if round == 1 {
			s.Crash(lag)
			run(t, s, 100)
			if err := s.Restart(lag); err != nil {
				t.Fatal(s.Report(err))
			}
		}
		behind := s.Store(lag).Applied()
		lead := waitLeader(t, s)
		first, err := s.C.Storage(lead).FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		if first <= behind+1 {
			t.Fatalf("round %d: leader %d log starts at %d, follower %d applied %d: no snapshot needed, the test is vacuous",
				round, lead, first, lag, behind)
		}
		target := s.Store(lead).Applied()
		s.C.Reconnect(lag)
		for _, c := range s.Clients() {
			c.Restrict(nil)
		}
		if !s.C.RunUntil(func() bool { return s.Err() != nil || s.Store(lag).Applied() >= target }, 5000) {
			t.Fatal(s.Report(simError(fmt.Sprintf("round %d: follower %d stuck at %d, leader applied %d", round, lag, s.Store(lag).Applied(), target))))
		}
		run(t, s, 200)
	}
	finish(t, s, 100)
}

// Clients append to one key with read-then-compare-and-swap over a lossy
// network whose answers get lost too: every append lands exactly once and
// each client's appends stay in order. A retried compare-and-swap whose
// first copy was applied must be answered from the session table; were it
// applied again (or answered "compare failed"), the client would append
// its token a second time.
func TestKVUnreliableOneKey(t *testing.T) {
	const perClient = 8
	s := newSim(t, Config{Seed: envSeed(t, 8), Nodes: 3, Clients: 5, Network: raftsim.Unreliable(), ReplyLoss: 0.15, ViaFollower: 0.3})
	cs := s.Clients()
	ready := false
	cs[0].Do(Input{Op: OpPut, Key: "x", Value: ""}, func(Output) { ready = true })
	if !s.C.RunUntil(func() bool { return ready || s.Err() != nil }, 10_000) || s.Err() != nil {
		t.Fatal(s.Report(simError("initial put did not complete")))
	}
	finished := 0
	for _, c := range cs {
		i := 0
		var step func()
		step = func() {
			if i == perClient {
				finished++
				return
			}
			tok := fmt.Sprintf("%d.%d;", c.ID, i)
			c.Do(Input{Op: OpGet, Key: "x"}, func(o Output) {
				c.Do(Input{Op: OpCAS, Key: "x", Expect: o.Value, Value: o.Value + tok}, func(o Output) {
					if o.Unknown {
						t.Errorf("client %d: append %q has an unknown outcome", c.ID, tok)
					}
					if o.OK {
						i++
					}
					step()
				})
			})
		}
		step()
	}
	if !s.C.RunUntil(func() bool { return finished == len(cs) || s.Err() != nil }, 60_000) || s.Err() != nil {
		t.Fatal(s.Report(simError(fmt.Sprintf("only %d of %d clients finished their appends", finished, len(cs)))))
	}
	finish(t, s, len(cs)*perClient)
	if s.Stats().Duplicates == 0 {
		t.Fatalf("no retried command was answered from the session table: the test is vacuous (%+v)", s.Stats())
	}
	kv, err := s.Store(1).Get([]byte("x"), 0)
	if err != nil {
		t.Fatal(err)
	}
	toks := strings.Split(strings.TrimSuffix(string(kv.Value), ";"), ";")
	if len(toks) != len(cs)*perClient {
		t.Fatalf("x has %d appends, want %d: %q", len(toks), len(cs)*perClient, kv.Value)
	}
	next := make([]int, len(cs))
	for _, tok := range toks {
		var c, i int
		if _, err := fmt.Sscanf(tok, "%d.%d", &c, &i); err != nil || c < 0 || c >= len(cs) {
			t.Fatalf("bad token %q in %q", tok, kv.Value)
		}
		if i != next[c] {
			t.Fatalf("client %d: append %d found where %d was expected (lost, doubled or reordered): %q", c, i, next[c], kv.Value)
		}
		next[c]++
	}
}

// Sessions expire on the log clock while their clients think: a write
// retried after its session expired gets ErrSessionExpired, never a
// second apply, and its outcome is unknown to the client, which goes on
// under a new ClientID. Every replica expires the same sessions at the same index
// (fingerprints).
func TestKVSessionExpiry(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 9), Nodes: 3, Clients: 4, SessionTTL: 150 * time.Millisecond,
		Network: raftsim.Reordering(), ReplyLoss: 0.2, SnapshotEvery: 20})
	s.Start(Workload{Think: 200})
	run(t, s, 3000)
	res := finish(t, s, 20)
	if s.Stats().Expired == 0 {
		t.Fatalf("no session expired: the test is vacuous (%d ops)", res.Ops)
	}
}

// confChange proposes cc on the leader until some leader applies it.
func confChange(t *testing.T, s *Sim, cc raft.ConfChange) {
	t.Helper()
	deadline := s.C.Now() + 40*s.C.ElectionTimeout()
	for s.C.Now() < deadline {
		lead := waitLeader(t, s)
		var res *raftsim.ConfChangeResult
		if s.C.ProposeConfChange(lead, cc, func(r raftsim.ConfChangeResult) { res = &r }) == nil {
			s.C.RunUntil(func() bool { return res != nil || s.Err() != nil }, 4*s.C.ElectionTimeout())
			if err := s.Err(); err != nil {
				t.Fatal(s.Report(err))
			}
			if res != nil && res.Err == nil {
				return
			}
		}
		run(t, s, 5*s.C.Config().TickInterval)
	}
	t.Fatal(s.Report(simError(fmt.Sprintf("conf change %v %d never applied", cc.Type, cc.NodeID))))
}

// Membership changes under load: a new node joins as a learner, is caught
// up from a snapshot of the store and promoted; the leader is removed; a
// second node joins. Clients keep going throughout.
func TestKVMembership(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 10), Nodes: 3, Clients: 3, Network: raftsim.Reordering(), SnapshotEvery: 15, SnapshotKeep: 3})
	s.Start(Workload{})
	run(t, s, 500)
	for _, id := range []uint64{4, 5} {
		if err := s.AddNode(id); err != nil {
			t.Fatal(err)
		}
		lead := waitLeader(t, s)
		if first, _ := s.C.Storage(lead).FirstIndex(); first <= 2 {
			t.Fatalf("leader %d has its whole log (first index %d): the learner would not need a snapshot", lead, first)
		}
		confChange(t, s, raft.ConfChange{Type: raft.ConfChangeAddLearner, NodeID: id})
		lead = waitLeader(t, s)
		target := s.Store(lead).Applied()
		if !s.C.RunUntil(func() bool { return s.Err() != nil || s.Store(id).Applied() >= target }, 5000) {
			t.Fatal(s.Report(simError(fmt.Sprintf("learner %d not caught up", id))))
		}
		confChange(t, s, raft.ConfChange{Type: raft.ConfChangeAddVoter, NodeID: id})
		run(t, s, 300)
		old := waitLeader(t, s)
		confChange(t, s, raft.ConfChange{Type: raft.ConfChangeRemoveNode, NodeID: old})
		run(t, s, 100)
		s.Remove(old)
		run(t, s, 400)
	}
	if got := len(s.C.IDs()); got != 3 {
		t.Fatalf("%d nodes at the end, want 3", got)
	}
	finish(t, s, 50)
}
