package raftsim

import (
	"fmt"
	"slices"

	"github.com/raftkv/raftkv/node/raft"
)

// NemesisConfig says which faults a Nemesis injects. Every choice is drawn
// from the cluster's random source.
type NemesisConfig struct {
	// Interval is the mean virtual time between two faults
	// (0 = one election timeout).
	Interval Time
	// Partitions: symmetric splits, isolating a node (often the leader),
	// one-way link cuts, and heals.
	Partitions bool
	// Crashes: crash nodes, at once or at a point of their next Ready,
	// and restart them.
	Crashes bool
	// Unreliable: switch the whole network between Reliable and
	// Unreliable links, or make single links lossy.
	Unreliable bool
	// TickRates: change how fast single nodes tick.
	TickRates bool
	// Membership: add learners (new IDs), promote them, remove voters
	// (the leader too) and learners.
	Membership bool
	// Transfers: ask the leader to hand leadership to another voter
	// (sometimes a crashed one).
	Transfers bool
	// MinVoters and MaxVoters bound membership changes (0 = 3 and 7).
	MinVoters, MaxVoters int
}

// Nemesis injects random faults into a Cluster until Stop.
type Nemesis struct {
	c       *Cluster
	cfg     NemesisConfig
	running bool
	nextID  uint64
	base    LinkConfig
	actions []func()
	// removed are nodes taken out of the membership: removed from the
	// simulation once the change is applied.
	Faults int // number of faults injected
}

// StartNemesis starts injecting faults. The first comes after about one
// Interval.
func (c *Cluster) StartNemesis(cfg NemesisConfig) *Nemesis {
	if cfg.Interval == 0 {
		cfg.Interval = c.ElectionTimeout()
	}
	if cfg.MinVoters == 0 {
		cfg.MinVoters = 3
	}
	if cfg.MaxVoters == 0 {
		cfg.MaxVoters = 7
	}
	n := &Nemesis{c: c, cfg: cfg, running: true, base: c.net.def}
	for _, id := range c.ids {
		n.nextID = max(n.nextID, id)
	}
	n.nextID += 100 // never reuse an ID
	if cfg.Partitions {
		n.actions = append(n.actions, n.partition, n.isolate, n.oneWay, n.heal)
	}
	if cfg.Crashes {
		n.actions = append(n.actions, n.crash, n.crash, n.restart)
	}
	if cfg.Unreliable {
		n.actions = append(n.actions, n.flakyNet)
	}
	if cfg.TickRates {
		n.actions = append(n.actions, n.tickRate)
	}
	if cfg.Membership {
		n.actions = append(n.actions, n.membership)
	}
	if cfg.Transfers {
		n.actions = append(n.actions, n.transfer)
	}
	n.schedule()
	return n
}

func (n *Nemesis) schedule() {
	iv := int64(n.cfg.Interval)
	d := Time(iv/2 + n.c.rng.Int64N(iv+1))
	n.c.After(d, "", func() {
		if !n.running || len(n.actions) == 0 {
			return
		}
		n.actions[n.c.rng.IntN(len(n.actions))]()
		n.Faults++
		n.schedule()
	})
}

// Stop ends the faults: links heal and become reliable again, crashed
// nodes restart and every node ticks at the base rate. Membership changes
// already proposed may still complete.
func (n *Nemesis) Stop() error {
	n.running = false
	c := n.c
	c.Heal()
	c.SetNetwork(n.base)
	for _, id := range c.IDs() {
		if sn := c.nodes[id]; sn != nil {
			sn.crashAt = 0
		}
		c.SetTickInterval(id, c.cfg.TickInterval)
		if !c.IsUp(id) {
			if err := c.Restart(id); err != nil {
				return fmt.Errorf("raftsim: nemesis stop: %w", err)
			}
		}
	}
	return nil
}

func (n *Nemesis) pick(ids []uint64) uint64 {
	if len(ids) == 0 {
		return 0
	}
	return ids[n.c.rng.IntN(len(ids))]
}

func (n *Nemesis) partition() {
	ids := n.c.IDs()
	if n.c.rng.IntN(3) == 0 && len(ids) >= 3 {
		// A bridge: two sides that cannot talk, one node that hears both.
		n.c.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		bridge, rest := ids[0], ids[1:]
		half := len(rest) / 2
		n.c.Heal()
		for _, a := range rest[:half] {
			for _, b := range rest[half:] {
				n.c.Block(a, b)
				n.c.Block(b, a)
			}
		}
		n.c.logf("bridge through %d", bridge)
		return
	}
	groups := make([][]uint64, 2+n.c.rng.IntN(2))
	for _, id := range ids {
		g := n.c.rng.IntN(len(groups))
		groups[g] = append(groups[g], id)
	}
	n.c.Partition(groups...)
}

func (n *Nemesis) isolate() {
	id := n.c.Leader()
	if id == 0 || n.c.rng.IntN(3) == 0 {
		id = n.pick(n.c.IDs())
	}
	n.c.Isolate(id)
}

func (n *Nemesis) oneWay() {
	ids := n.c.IDs()
	for range 1 + n.c.rng.IntN(3) {
		a, b := n.pick(ids), n.pick(ids)
		if a != b {
			n.c.Block(a, b)
		}
	}
}

func (n *Nemesis) heal() { n.c.Heal() }

func (n *Nemesis) crash() {
	id := n.pick(n.c.UpIDs())
	if id == 0 {
		return
	}
	if n.c.rng.IntN(2) == 0 {
		n.c.Crash(id)
	} else {
		n.c.CrashAt(id, CrashPoint(1+n.c.rng.IntN(3)))
		// If no Ready comes soon, crash anyway.
		n.c.After(2*n.c.cfg.TickInterval, "", func() {
			if n.running {
				n.c.Crash(id)
			} else if sn := n.c.nodes[id]; sn != nil {
				sn.crashAt = 0 // faults are over
			}
		})
	}
	// Most crashed nodes come back after a while.
	if n.c.rng.IntN(4) != 0 {
		n.c.After(Time(n.c.rng.Int64N(int64(4*n.cfg.Interval))), "", func() {
			if n.running {
				_ = n.c.Restart(id)
			}
		})
	}
}

func (n *Nemesis) restart() {
	var down []uint64
	for _, id := range n.c.IDs() {
		if !n.c.IsUp(id) {
			down = append(down, id)
		}
	}
	if id := n.pick(down); id != 0 {
		_ = n.c.Restart(id)
	}
}

func (n *Nemesis) flakyNet() {
	c := n.c
	switch c.rng.IntN(3) {
	case 0:
		c.SetNetwork(Unreliable())
	case 1:
		c.SetNetwork(n.base)
	default:
		ids := c.IDs()
		a, b := n.pick(ids), n.pick(ids)
		if a != b {
			l := Unreliable()
			l.Drop = 0.5
			c.SetLink(a, b, l)
		}
	}
}

func (n *Nemesis) tickRate() {
	id := n.pick(n.c.IDs())
	base := float64(n.c.cfg.TickInterval)
	n.c.SetTickInterval(id, Time(base*(0.5+1.5*n.c.rng.Float64())))
}

func (n *Nemesis) transfer() {
	c := n.c
	lead := c.Leader()
	if lead == 0 {
		return
	}
	voters := slices.DeleteFunc(slices.Clone(c.ConfState(lead).Voters), func(id uint64) bool { return id == lead })
	if to := n.pick(voters); to != 0 {
		_ = c.Do(lead, fmt.Sprintf("transfer leadership to %d", to), func(rn *raft.Node) error {
			rn.TransferLeader(to)
			return nil
		})
	}
}

func (n *Nemesis) membership() {
	c := n.c
	lead := c.Leader()
	if lead == 0 {
		return
	}
	cs := c.ConfState(lead)
	var cc raft.ConfChange
	switch r := c.rng.IntN(4); {
	case r == 0 && len(cs.Voters)+len(cs.Learners) < n.cfg.MaxVoters+1:
		n.nextID++
		cc = raft.ConfChange{Type: raft.ConfChangeAddLearner, NodeID: n.nextID}
	case r == 1 && len(cs.Learners) > 0 && len(cs.Voters) < n.cfg.MaxVoters:
		cc = raft.ConfChange{Type: raft.ConfChangeAddVoter, NodeID: n.pick(cs.Learners)}
	case r == 2 && len(cs.Voters) > n.cfg.MinVoters:
		cc = raft.ConfChange{Type: raft.ConfChangeRemoveNode, NodeID: n.pick(cs.Voters)}
	case r == 3 && len(cs.Learners) > 0:
		cc = raft.ConfChange{Type: raft.ConfChangeRemoveNode, NodeID: n.pick(cs.Learners)}
	default:
		return
	}
	_ = c.ProposeConfChange(lead, cc, func(res ConfChangeResult) {
		if res.Err != nil {
			return
		}
		switch cc.Type {
		case raft.ConfChangeAddLearner:
			if _, ok := c.nodes[cc.NodeID]; !ok {
				if err := c.AddNode(cc.NodeID); err != nil {
					c.fail(0, "nemesis: %v", err)
				}
			}
		case raft.ConfChangeRemoveNode:
			// The change is committed: the node is gone for good.
			c.After(c.cfg.TickInterval, "", func() { c.Remove(cc.NodeID) })
		}
	})
}

// Members returns the voters and learners in the configuration the
// leader (or, without a leader, the running node with the highest
// applied index) has applied, sorted.
func (c *Cluster) Members() []uint64 {
	src := c.Leader()
	if src == 0 {
		for _, id := range c.UpIDs() {
			if src == 0 || c.nodes[id].applied > c.nodes[src].applied {
				src = id
			}
		}
	}
	if src == 0 {
		return nil
	}
	cs := c.ConfState(src)
	out := append(slices.Clone(cs.Voters), cs.Learners...)
	slices.Sort(out)
	return out
}

// CheckLiveness is the check after faults heal: with the network healed
// and every node up, within limit there must be a leader that commits a
// new proposal, every member must apply it, and all members must end with
// the same state. It returns nil, the first violation, or a liveness
// error naming the stuck state.
func (c *Cluster) CheckLiveness(limit Time) error {
	end := c.now + limit
	for c.err == nil && c.now < end {
		if err := c.startMissingMembers(); err != nil {
			return err
		}
		lead := c.WaitLeader(end - c.now)
		if lead == 0 {
			break
		}
		var applied bool
		var idx uint64
		err := c.Propose(lead, []byte("liveness"), func(r ProposeResult) {
			applied, idx = r.Err == nil, r.Index
		})
		if err != nil {
			c.RunTicks(1)
			continue
		}
		if !c.RunUntil(func() bool { return applied }, min(end-c.now, 4*c.ElectionTimeout())) {
			continue
		}
		ok := c.RunUntil(func() bool {
			if c.startMissingMembers() != nil {
				return true
			}
			for _, id := range c.Members() {
				if c.Applied(id) < idx {
					return false
				}
			}
			return true
		}, end-c.now)
		if !ok {
			break
		}
		return c.compareStates()
	}
	if c.err != nil {
		return c.err
	}
	var b []string
	for _, id := range c.IDs() {
		b = append(b, fmt.Sprintf("%d:up=%v,applied=%d,term=%d", id, c.IsUp(id), c.Applied(id), c.Term(id)))
	}
	return fmt.Errorf("raftsim: liveness: no leader applied a new proposal on all members %v within %dms: %v",
		c.Members(), limit, b)
}

// startMissingMembers starts an empty node for every member of the
// configuration that is not in the simulation: a learner whose addition
// committed while its proposer crashed (so nobody started it), as an
// operator would.
func (c *Cluster) startMissingMembers() error {
	for _, id := range c.Members() {
		if _, ok := c.nodes[id]; !ok && !c.gone[id] {
			if err := c.AddNode(id); err != nil {
				return err
			}
		}
	}
	return nil
}

// compareStates checks that members at the same applied index have the
// same state machine snapshot.
func (c *Cluster) compareStates() error {
	if c.cfg.SkipSnapshotCompare {
		return nil
	}
	seen := map[uint64][]byte{}
	var seenBy = map[uint64]uint64{}
	for _, id := range c.Members() {
		sn := c.nodes[id]
		if sn == nil || !sn.up {
			continue
		}
		s := sn.sm.Snapshot()
		if prev, ok := seen[sn.applied]; ok && string(prev) != string(s) {
			c.fail(id, "state machines diverged: node %d and node %d differ at applied index %d", seenBy[sn.applied], id, sn.applied)
			return c.err
		}
		seen[sn.applied], seenBy[sn.applied] = s, id
	}
	return nil
}
