package raft

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
)

// chaos is a small randomized harness for this package's own tests
// (the full simulator with crashes of unsynced state, porcupine checks and
// scenario tests is package raftsim). Messages are delivered in random
// order, duplicated, dropped and partitioned; nodes crash and restart from
// their storage, compact their logs, and ReadIndex requests are issued.
// After every step it checks election safety and that no two nodes apply
// different entries at one index; after healing, liveness.
type chaos struct {
	t    *testing.T
	rng  *rand.Rand
	nw   *network
	pool []Message
	// leaders maps term -> leader seen in that term.
	leaders map[uint64]uint64
	// applied maps index -> "term/data" of the entry applied there.
	applied map[uint64]string
	// snaps maps snapshot index -> the applied history it contains.
	snaps map[uint64][]Entry
	// history is each node's applied history (including from snapshots).
	history map[uint64][]Entry
	down    map[uint64]bool
	part    map[uint64]int // partition group per node
	nextVal int
	// membership churn: joiners start with empty storage; a node whose
	// removal was proposed is never added again (IDs are not reused).
	membership bool
	removed    map[uint64]bool
	// reads maps a ReadIndex context to the highest commit index any node
	// knew when it was issued: the answer must not be below it.
	reads map[string]uint64
	// readsAnswered counts ReadStates checked.
	readsAnswered int
}

func newChaos(t *testing.T, seed uint64, n int) *chaos {
	return newChaosWith(t, seed, n, 0, false)
}

// newChaosWith starts n founding voters and `joiners` nodes with empty
// storage that membership churn may add.
func newChaosWith(t *testing.T, seed uint64, n, joiners int, noCheckQuorum bool) *chaos {
	var ids []uint64
	for i := 1; i <= n; i++ {
		ids = append(ids, uint64(i))
	}
	c := &chaos{
		t: t, rng: rand.New(rand.NewPCG(seed, 7)),
		leaders: map[uint64]uint64{}, applied: map[uint64]string{}, snaps: map[uint64][]Entry{},
		history: map[uint64][]Entry{}, down: map[uint64]bool{}, part: map[uint64]int{},
		membership: joiners > 0, removed: map[uint64]bool{}, reads: map[string]uint64{},
	}
	mod := func(cfg *Config) {
		cfg.Rand = rand.New(rand.NewPCG(seed, cfg.ID))
		cfg.SnapshotChunkBytes = 64
		cfg.MaxSizePerMsg = 256
		cfg.MaxInflightMsgs = 4
		cfg.DisableCheckQuorum = noCheckQuorum
	}
	c.nw = newNetworkWithConfig(t, mod, ids...)
	c.snaps[1] = []Entry{} // the bootstrap snapshot: nothing applied
	for i := n + 1; i <= n+joiners; i++ {
		cfg := testConfig(t, uint64(i), NewMemoryStorage())
		mod(&cfg)
		c.nw.addNode(cfg)
	}
	return c
}

// churn proposes a membership change or a leadership transfer on the
// current leader.
func (c *chaos) churn() {
	lead := c.nw.leaderID()
	if lead == 0 || c.down[lead] {
		return
	}
	r := c.nw.raft(lead)
	n := c.nw.node(lead)
	ids := c.nw.ids()
	id := ids[c.rng.IntN(len(ids))]
	switch c.rng.IntN(4) {
	case 0: // transfer
		n.TransferLeader(id)
	case 1: // remove a voter or learner, keeping at least 3 voters
		if _, ok := r.prs[id]; ok && (r.prs[id].IsLearner || len(r.cs.Voters) > 3) {
			if n.ProposeConfChange(ConfChange{Type: ConfChangeRemoveNode, NodeID: id}) == nil {
				c.removed[id] = true
			}
		}
	default: // add a learner or promote one
		if c.removed[id] {
			return
		}
		pr, ok := r.prs[id]
		switch {
		case !ok:
			_ = n.ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: id})
		case pr.IsLearner:
			_ = n.ProposeConfChange(ConfChange{Type: ConfChangeAddVoter, NodeID: id})
		}
	}
}

// pump processes every node's Ready and collects messages into the pool.
func (c *chaos) pump() {
	for _, id := range c.nw.ids() {
		if c.down[id] {
			continue
		}
		tn := c.nw.nodes[id]
		for tn.n.HasReady() {
			rd := tn.n.Ready()
			if !rd.Snapshot.IsEmpty() {
				h, ok := c.snaps[rd.Snapshot.Meta.Index]
				if !ok {
					c.t.Fatalf("node %d installs unknown snapshot %d", id, rd.Snapshot.Meta.Index)
				}
				c.history[id] = slices.Clone(h)
				c.checkHistory(id)
			}
			for _, rs := range rd.ReadStates {
				want, ok := c.reads[string(rs.RequestCtx)]
				if !ok {
					c.t.Fatalf("node %d: read state for unknown context %q", id, rs.RequestCtx)
				}
				if rs.Index < want {
					c.t.Fatalf("linearizability: node %d read %q answered at index %d, but %d was committed before it was issued", id, rs.RequestCtx, rs.Index, want)
				}
				c.readsAnswered++
			}
			before := len(tn.applied)
			c.nw.t = c.t
			// Reuse the network's application logic, then record.
			msgs := c.nw.handleReadyNoAdvance(tn, rd)
			for _, e := range tn.applied[before:] {
				c.history[id] = append(c.history[id], e)
			}
			if len(rd.CommittedEntries) > 0 {
				c.checkHistory(id)
			}
			tn.n.Advance(rd)
			c.pool = append(c.pool, msgs...)
		}
	}
}

// checkHistory verifies the node's applied data entries agree with what
// every other node applied at the same index.
func (c *chaos) checkHistory(id uint64) {
	for _, e := range c.history[id] {
		v := fmt.Sprintf("%d/%s", e.Term, e.Data)
		if old, ok := c.applied[e.Index]; ok && old != v {
			c.t.Fatalf("state machine safety: node %d applied %s at %d, another node applied %s", id, v, e.Index, old)
		}
		c.applied[e.Index] = v
	}
}

func (c *chaos) checkLeaders() {
	for _, id := range c.nw.ids() {
		r := c.nw.raft(id)
		if r.state != StateLeader {
			continue
		}
		if l, ok := c.leaders[r.Term]; ok && l != id {
			c.t.Fatalf("election safety: nodes %d and %d both lead term %d", l, id, r.Term)
		}
		c.leaders[r.Term] = id
	}
}

func (c *chaos) connected(a, b uint64) bool {
	return !c.down[a] && !c.down[b] && c.part[a] == c.part[b]
}

func (c *chaos) step(faults bool) {
	ids := c.nw.ids()
	id := ids[c.rng.IntN(len(ids))]
	switch x := c.rng.IntN(100); {
	case x < 35 && len(c.pool) > 0:
		// Deliver a few random messages; more when many are in flight,
		// so delays stay bounded (a network, not an ever-growing queue).
		for range 1 + len(c.pool)/8 {
			c.deliver(faults)
		}
	case x < 70:
		if !c.down[id] {
			c.nw.nodes[id].n.Tick()
		}
	case x < 80:
		if !c.down[id] {
			c.nextVal++
			_ = c.nw.nodes[id].n.Propose([]byte(strconv.Itoa(c.nextVal)))
		}
	case x < 85:
		if !c.down[id] {
			// Half of the reads go to a node that believes it leads
			// (possibly a deposed one).
			if c.rng.IntN(2) == 0 {
				for _, l := range ids {
					if c.nw.raft(l).state == StateLeader && !c.down[l] && c.rng.IntN(2) == 0 {
						id = l
					}
				}
			}
			ctx := fmt.Sprintf("%d-%d", id, c.rng.Uint64())
			var maxCommit uint64
			for _, other := range ids {
				maxCommit = max(maxCommit, c.nw.raft(other).raftLog.committed)
			}
			c.reads[ctx] = maxCommit
			c.nw.nodes[id].n.ReadIndex([]byte(ctx))
		}
	case x < 87:
		if !c.down[id] {
			c.compact(id)
		}
	case x < 90 && faults:
		// Crash or restart (rarely: a node stays up or down for a few
		// election timeouts).
		if c.rng.IntN(6) != 0 {
			break
		}
		if c.down[id] {
			c.down[id] = false
			tn := c.nw.restart(id)
			snap, _ := tn.storage.Snapshot()
			c.history[id] = slices.Clone(c.snaps[snap.Meta.Index])
		} else if c.downCount() < (len(ids)-1)/2 {
			c.down[id] = true
		}
	case x < 93 && faults:
		// New random partition (or heal), lasting a few hundred steps on
		// average: long enough for elections on either side.
		if c.rng.IntN(8) != 0 {
			break
		}
		k := 1 + c.rng.IntN(2)
		for _, n := range ids {
			c.part[n] = c.rng.IntN(k)
		}
	case x < 95 && faults:
		c.pool = nil // lose everything in flight
	case x < 97 && c.membership:
		c.churn()
	}
	c.pump()
	c.checkLeaders()
}

func isDropped(err error) bool {
	return err == ErrProposalDropped
}

func (c *chaos) downCount() int {
	n := 0
	for _, d := range c.down {
		if d {
			n++
		}
	}
	return n
}

func (c *chaos) compact(id uint64) {
	tn := c.nw.nodes[id]
	snap, _ := tn.storage.Snapshot()
	if tn.appliedIndex <= snap.Meta.Index+2 {
		return
	}
	idx := tn.appliedIndex
	data := make([]byte, 8+c.rng.IntN(300))
	binary.BigEndian.PutUint64(data, idx)
	h := c.history[id]
	if old, ok := c.snaps[idx]; ok && !slices.EqualFunc(old, h, func(a, b Entry) bool { return a.Index == b.Index && a.Term == b.Term }) {
		c.t.Fatalf("two different histories at snapshot index %d", idx)
	}
	c.snaps[idx] = slices.Clone(h)
	cs := tn.n.r.cs
	if _, err := tn.storage.CreateSnapshot(idx, &cs, data); err != nil {
		c.t.Fatalf("create snapshot: %v", err)
	}
	// Keep a few entries so not every lagging follower needs a snapshot.
	if idx > 3 {
		if err := tn.storage.Compact(idx - 2); err != nil {
			c.t.Fatalf("compact: %v", err)
		}
	}
}

func (c *chaos) heal() {
	for _, id := range c.nw.ids() {
		if c.down[id] {
			c.down[id] = false
			tn := c.nw.restart(id)
			snap, _ := tn.storage.Snapshot()
			c.history[id] = slices.Clone(c.snaps[snap.Meta.Index])
		}
		c.part[id] = 0
	}
	c.pump()
}

// converge runs without faults until all nodes applied a fresh proposal.
func (c *chaos) converge(maxSteps int) {
	c.heal()
	c.nextVal++
	want := strconv.Itoa(c.nextVal)
	proposed := false
	for i := 0; i < maxSteps; i++ {
		if !proposed || i%500 == 0 {
			if lead := c.nw.leaderID(); lead != 0 {
				proposed = c.nw.nodes[lead].n.Propose([]byte(want)) == nil
			}
		}
		c.step(false)
		done := true
		lead := c.nw.leaderID()
		if lead == 0 {
			continue
		}
		for _, id := range c.nw.ids() {
			if _, member := c.nw.raft(lead).prs[id]; !member {
				continue
			}
			if !slices.ContainsFunc(c.history[id], func(e Entry) bool { return string(e.Data) == want }) {
				done = false
				break
			}
		}
		if done {
			return
		}
	}
	c.t.Fatalf("no convergence within %d steps after healing:\n%s", maxSteps, c.nw)
}

func TestChaos(t *testing.T) {
	var seeds []uint64
	for s := uint64(1); s <= 10; s++ {
		seeds = append(seeds, s)
	}
	steps := 4000
	if s := os.Getenv("RAFT_CHAOS_STEPS"); s != "" {
		steps, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("RAFT_CHAOS_SEED"); s != "" {
		n, _ := strconv.ParseUint(s, 10, 64)
		seeds = []uint64{n}
	}
	if s := os.Getenv("RAFT_CHAOS_SEEDS"); s != "" {
		n, _ := strconv.Atoi(s)
		seeds = nil
		for range n {
			seeds = append(seeds, rand.Uint64())
		}
	}
	for _, seed := range seeds {
		for _, size := range []int{3, 5} {
			t.Run(fmt.Sprintf("seed=%d/n=%d", seed, size), func(t *testing.T) {
				c := newChaos(t, seed, size)
				for range steps {
					c.step(true)
				}
				c.converge(20000)
				// Logs agree on every committed index.
				c.nw.checkLogsMatch()
			})
		}
		// Without CheckQuorum a deposed leader keeps believing it leads:
		// only the ReadIndex quorum round keeps its reads linearizable.
		t.Run(fmt.Sprintf("seed=%d/n=5/no-check-quorum", seed), func(t *testing.T) {
			c := newChaosWith(t, seed, 5, 0, true)
			for range steps {
				c.step(true)
			}
			c.converge(20000)
			c.nw.checkLogsMatch()
		})
		t.Run(fmt.Sprintf("seed=%d/membership", seed), func(t *testing.T) {
			c := newChaosWith(t, seed, 3, 2, false)
			for range steps {
				c.step(true)
			}
			c.converge(20000)
			c.nw.checkLogsMatch()
		})
	}
}

func (c *chaos) deliver(faults bool) {
	if len(c.pool) == 0 {
		return
	}
	i := c.rng.IntN(len(c.pool))
	m := c.pool[i]
	if !faults || c.rng.IntN(10) != 0 { // 10% duplicated under faults
		c.pool = slices.Delete(c.pool, i, i+1)
	}
	if faults && c.rng.IntN(10) == 0 {
		return // dropped
	}
	if !c.connected(m.From, m.To) {
		return
	}
	if err := c.nw.nodes[m.To].n.Step(m); err != nil && !isDropped(err) {
		c.t.Fatalf("node %d step %s from %d: %v", m.To, m.Type, m.From, err)
	}
}
