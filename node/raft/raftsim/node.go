package raftsim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/raftkv/raftkv/node/raft"
)

// simNode is one simulated machine: a core, a disk and a state machine.
type simNode struct {
	id        uint64
	up        bool
	inc       uint64 // incarnation: bumped by every crash, so stale ticks are ignored
	tickEvery Time

	// Lost on crash.
	rn      *raft.Node
	sm      StateMachine
	applied uint64         // Invariant: applied <= persisted commit (or snapshot index)
	conf    raft.ConfState // membership as of applied
	crashAt CrashPoint
	waiting []waitingRead // read states waiting for applied >= Index
	// leaderTerm is the last term in which this incarnation was seen leader.
	leaderTerm uint64
	// recorded is the highest index of this node's committed log that the
	// checker compared with the global committed record.
	recorded uint64

	// Survives crashes: only what a processed Ready wrote.
	disk     *raft.MemoryStorage
	lastSnap uint64 // index of the newest snapshot on disk
}

// boot (re)starts sn from its disk. The state machine is rebuilt from the
// disk's snapshot and the core is told Applied = the snapshot's index, so
// the committed log tail is applied again (the simulated application does
// not persist its applied index separately).
func (c *Cluster) boot(sn *simNode) error {
	disk := sn.disk.Clone()
	sn.disk = disk
	snap, err := disk.Snapshot()
	if err != nil {
		return fmt.Errorf("raftsim: restart %d: snapshot: %w", sn.id, err)
	}
	sm := c.cfg.NewStateMachine()
	if !snap.IsEmpty() {
		if err := sm.Restore(snap.Data); err != nil {
			return fmt.Errorf("raftsim: restart %d: restore snapshot %d: %w", sn.id, snap.Meta.Index, err)
		}
	}
	_, cs, err := disk.InitialState()
	if err != nil {
		return fmt.Errorf("raftsim: restart %d: initial state: %w", sn.id, err)
	}
	rn, err := raft.NewNode(raft.Config{
		ID:                 sn.id,
		Storage:            disk,
		Applied:            snap.Meta.Index,
		ElectionTicks:      c.cfg.ElectionTicks,
		HeartbeatTicks:     c.cfg.HeartbeatTicks,
		MaxSizePerMsg:      c.cfg.MaxSizePerMsg,
		MaxInflightMsgs:    c.cfg.MaxInflightMsgs,
		SnapshotChunkBytes: c.cfg.SnapshotChunkBytes,
		DisablePreVote:     c.cfg.DisablePreVote,
		DisableCheckQuorum: c.cfg.DisableCheckQuorum,
		Rand:               rand.New(rand.NewPCG(c.rng.Uint64(), c.rng.Uint64())),
		Logger:             c.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("raftsim: start node %d: %w", sn.id, err)
	}
	sn.rn, sn.sm, sn.up = rn, sm, true
	sn.applied = snap.Meta.Index
	sn.lastSnap = snap.Meta.Index
	sn.conf = cs
	if !snap.IsEmpty() {
		sn.conf = snap.Meta.ConfState
	}
	sn.crashAt = 0
	sn.waiting = nil
	sn.leaderTerm = 0
	sn.recorded = snap.Meta.Index
	sn.inc++
	c.logf("node %d: start applied=%d", sn.id, sn.applied)
	// Start the clock at a random phase so nodes do not tick in lockstep.
	c.push(&event{at: c.now + 1 + Time(c.rng.Int64N(int64(sn.tickEvery))), kind: evTick, node: sn.id, inc: sn.inc})
	// A restarted node's durable state must agree with what was committed.
	c.chk.recordCommit(sn)
	return nil
}

func (c *Cluster) crash(sn *simNode, why string) {
	c.logf("node %d: %s", sn.id, why)
	sn.up = false
	sn.rn, sn.sm = nil, nil
	sn.crashAt = 0
	sn.waiting = nil
	sn.inc++
	// Map order is random: answer in a fixed order so runs replay.
	var pids []uint64
	for pid, p := range c.props {
		if p.node == sn.id {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	for _, pid := range pids {
		p := c.props[pid]
		delete(c.props, pid)
		c.later(func() { p.done(ProposeResult{Node: sn.id, Err: ErrNodeCrashed}) })
	}
	kept := c.ccProps[:0]
	for _, p := range c.ccProps {
		if p.node == sn.id {
			if p.done != nil {
				c.later(func() { p.done(ConfChangeResult{Node: sn.id, Err: ErrNodeCrashed}) })
			}
			continue
		}
		kept = append(kept, p)
	}
	c.ccProps = kept
	var keys []string
	for k, r := range c.reads {
		if r.node == sn.id {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		r := c.reads[k]
		delete(c.reads, k)
		c.later(func() { r.done(ReadResult{Node: sn.id, Err: ErrNodeCrashed}) })
	}
}

// afterStep runs the application loop on sn and checks the invariants
// that its new state could break.
func (c *Cluster) afterStep(sn *simNode) {
	c.depth++
	c.processReady(sn)
	if sn.up && c.err == nil {
		c.chk.checkNode(sn)
	}
	c.depth--
	c.flush()
}

// later queues a callback to a proposer or reader. Callbacks run once the
// Ready being processed is done (they may call back into the cluster).
func (c *Cluster) later(fn func()) { c.callbacks = append(c.callbacks, fn) }

func (c *Cluster) flush() {
	for c.depth == 0 && len(c.callbacks) > 0 && c.err == nil {
		fn := c.callbacks[0]
		c.callbacks = c.callbacks[1:]
		fn()
	}
}

// maxReadiesPerStep bounds the Readies one input may cause.
const maxReadiesPerStep = 1000

// processReady is the application loop of node.Node.processReady, in its
// order: send the early messages (raft.Ready.SplitMessages: a leader's
// replication overlaps its own write), persist, send the rest, apply,
// answer reads, Advance. A crash before the write may come after some or
// all early messages left: the Ready's entries then survive only on the
// followers that got them.
func (c *Cluster) processReady(sn *simNode) {
	for n := 0; c.err == nil && sn.up && sn.rn.HasReady(); n++ {
		if n == maxReadiesPerStep {
			c.fail(sn.id, "livelock: the core produced %d Readies for one input", n)
			return
		}
		rd := sn.rn.Ready()
		early, late := rd.SplitMessages()
		if sn.crashAt == CrashBeforePersist || sn.crashAt == CrashAfterEarlySend {
			// The sender queues had taken a prefix of the early messages.
			k := len(early)
			if sn.crashAt == CrashBeforePersist && k > 0 {
				k = c.rng.IntN(k + 1)
			}
			for _, m := range early[:k] {
				c.send(sn, m)
			}
			c.crash(sn, fmt.Sprintf("crash before persisting a ready (%d of %d early messages sent)", k, len(early)))
			return
		}
		c.stats.EarlyMsgs += uint64(len(early))
		for _, m := range early {
			c.send(sn, m)
		}
		if c.tamperPersist != nil {
			c.tamperPersist(sn.id, &rd)
		}
		c.persist(sn, rd)
		if c.err != nil {
			return
		}
		if sn.crashAt == CrashBeforeSend {
			c.crash(sn, "crash after persisting, before sending")
			return
		}
		for _, m := range late {
			c.send(sn, m)
		}
		if sn.crashAt == CrashBeforeApply {
			c.crash(sn, "crash after sending, before applying")
			return
		}
		c.apply(sn, rd)
		if c.err != nil {
			return
		}
		for _, rs := range rd.ReadStates {
			c.readState(sn, rs)
		}
		sn.rn.Advance(rd)
		c.maybeSnapshot(sn)
	}
}

// persist writes a Ready to the disk, in the contract's order, and checks
// what the write must never do.
func (c *Cluster) persist(sn *simNode, rd raft.Ready) {
	old, _, _ := sn.disk.InitialState()
	// A Ready that does not ask for fsync may only move the commit index:
	// the application would skip the fsync and a crash would lose it.
	if !rd.MustSync {
		hs := rd.HardState
		if len(rd.Entries) > 0 || !rd.Snapshot.IsEmpty() || (!hs.IsEmpty() && (hs.Term != old.Term || hs.Vote != old.Vote)) {
			c.fail(sn.id, "ready with MustSync=false carries %d entries, snapshot %d, hard state %+v (disk %+v)",
				len(rd.Entries), rd.Snapshot.Meta.Index, hs, old)
			return
		}
	}
	if !rd.Snapshot.IsEmpty() {
		if err := sn.disk.ApplySnapshot(rd.Snapshot); err != nil {
			c.fail(sn.id, "persist ready snapshot %d (disk snapshot %d): %v", rd.Snapshot.Meta.Index, sn.lastSnap, err)
			return
		}
		sn.lastSnap = rd.Snapshot.Meta.Index
		c.logf("node %d: persisted snapshot %d/%d", sn.id, rd.Snapshot.Meta.Index, rd.Snapshot.Meta.Term)
	}
	if len(rd.Entries) > 0 {
		if err := sn.disk.Append(rd.Entries); err != nil {
			c.fail(sn.id, "persist entries [%d..%d]: %v", rd.Entries[0].Index, rd.Entries[len(rd.Entries)-1].Index, err)
			return
		}
	}
	if !rd.HardState.IsEmpty() {
		hs := rd.HardState
		switch {
		case hs.Term < old.Term:
			c.fail(sn.id, "persisted term regressed from %d to %d", old.Term, hs.Term)
		case hs.Term == old.Term && old.Vote != raft.None && hs.Vote != old.Vote:
			c.fail(sn.id, "vote changed within term %d: from %d to %d (double vote)", hs.Term, old.Vote, hs.Vote)
		case hs.Commit < old.Commit:
			c.fail(sn.id, "persisted commit regressed from %d to %d", old.Commit, hs.Commit)
		}
		if err := sn.disk.SetHardState(hs); err != nil {
			c.fail(sn.id, "persist hard state: %v", err)
		}
	}
	if c.err == nil {
		c.chk.onPersist(sn, rd)
	}
}

// send checks that m depends only on durable state, then hands it to the
// network: encoded with msgpack, so nodes share no memory and the wire
// tags are exercised.
func (c *Cluster) send(sn *simNode, m raft.Message) {
	// Followers relay proposals and read requests with the originator's
	// From (as etcd does); everything else must come from the sender.
	relay := m.Type == raft.MsgProp || m.Type == raft.MsgReadIndex
	if (m.From != sn.id && !relay) || m.To == sn.id || m.To == raft.None || m.Type.IsLocal() {
		c.fail(sn.id, "bad outgoing message %v %d->%d", m.Type, m.From, m.To)
		return
	}
	c.chk.checkSend(sn, m)
	b, err := msgpack.Marshal(&m)
	if err != nil {
		c.fail(sn.id, "encode %v: %v", m.Type, err)
		return
	}
	c.stats.Msgs++
	c.stats.Bytes += uint64(len(b))
	if int(m.Type) < len(c.stats.ByType) {
		c.stats.ByType[m.Type].Msgs++
		c.stats.ByType[m.Type].Bytes += uint64(len(b))
	}
	if m.Type == raft.MsgApp {
		c.stats.AppEntries += uint64(len(m.Entries))
		for _, e := range m.Entries {
			c.stats.AppEntryBytes += uint64(len(e.Data))
		}
	}
	if m.Type == raft.MsgAppResp && m.Reject {
		c.stats.AppRejects++
	}
	l := link{sn.id, m.To}
	if c.net.blocked[l] {
		c.dropped(sn.id, m, "link cut")
		return
	}
	lc := c.net.config(sn.id, m.To)
	if lc.Drop > 0 && c.rng.Float64() < lc.Drop {
		c.dropped(sn.id, m, "lost")
		return
	}
	copies := 1
	if lc.Dup > 0 && c.rng.Float64() < lc.Dup {
		copies = 2
	}
	for i := range copies {
		d := lc.MinDelay
		if lc.MaxDelay > lc.MinDelay {
			d += Time(c.rng.Int64N(int64(lc.MaxDelay-lc.MinDelay) + 1))
		}
		if lc.LongDelay > 0 && lc.LongDelayMax > lc.MaxDelay && c.rng.Float64() < lc.LongDelay {
			d = lc.MaxDelay + Time(c.rng.Int64N(int64(lc.LongDelayMax-lc.MaxDelay)+1))
		}
		at := c.now + d
		if lc.FIFO && i == 0 {
			at = max(at, c.net.lastAt[l])
			c.net.lastAt[l] = at
		}
		c.push(&event{at: at, kind: evDeliver, node: m.To, from: sn.id, data: b})
	}
}

func (c *Cluster) dropped(from uint64, m raft.Message, why string) {
	c.stats.Dropped++
	mc := m
	c.record(histEntry{m: &mc, note: "dropped: " + why})
	if why != "link cut" {
		return
	}
	// The real transport gives up after its retries and says so.
	l := link{from, m.To}
	if !c.unreach[l] {
		c.unreach[l] = true
		c.push(&event{at: c.now + c.cfg.UnreachableAfter, kind: evUnreachable, from: from, node: m.To})
	}
}

func (c *Cluster) deliver(ev *event) {
	var m raft.Message
	if err := msgpack.Unmarshal(ev.data, &m); err != nil {
		c.fail(ev.from, "decode message to %d: %v", ev.node, err)
		return
	}
	sn := c.nodes[ev.node]
	if sn == nil || !sn.up {
		c.stats.Dropped++
		c.record(histEntry{m: &m, note: "dropped: receiver down"})
		return
	}
	if c.net.blocked[link{ev.from, ev.node}] {
		c.dropped(ev.from, m, "link cut")
		return
	}
	c.stats.Delivered++
	c.record(histEntry{m: &m})
	if c.tapDeliver != nil {
		c.tapDeliver(m)
	}
	if err := sn.rn.Step(m); err != nil {
		c.record(histEntry{text: fmt.Sprintf("node %d: step %v: %v", sn.id, m.Type, err)})
	}
	c.afterStep(sn)
}

// apply installs a Ready's snapshot into the state machine and applies its
// committed entries, checking order and agreement.
func (c *Cluster) apply(sn *simNode, rd raft.Ready) {
	if s := rd.Snapshot; !s.IsEmpty() {
		if s.Meta.Index <= sn.applied {
			c.fail(sn.id, "snapshot %d installed at or below applied index %d", s.Meta.Index, sn.applied)
			return
		}
		c.chk.onRestore(sn, s)
		if err := sn.sm.Restore(s.Data); err != nil {
			c.fail(sn.id, "restore snapshot %d: %v", s.Meta.Index, err)
			return
		}
		sn.applied = s.Meta.Index
		sn.conf = s.Meta.ConfState
		c.logf("node %d: installed snapshot %d/%d conf=%v", sn.id, s.Meta.Index, s.Meta.Term, s.Meta.ConfState)
		c.answerReads(sn)
	}
	for _, e := range rd.CommittedEntries {
		if c.tamperApply != nil {
			c.tamperApply(sn.id, &e)
		}
		if !c.chk.onApply(sn, e) {
			return
		}
		sn.applied = e.Index
		switch e.Type {
		case raft.EntryConfChange:
			var cc raft.ConfChange
			if err := cc.Unmarshal(e.Data); err != nil {
				c.fail(sn.id, "decode conf change at %d: %v", e.Index, err)
				return
			}
			cs := sn.rn.ApplyConfChange(cc)
			sn.conf = cs
			if err := sn.disk.SetConfState(cs); err != nil {
				c.fail(sn.id, "persist conf state: %v", err)
				return
			}
			c.logf("node %d: applied conf change %v %d at %d -> %v", sn.id, cc.Type, cc.NodeID, e.Index, cs)
			c.confChangeApplied(sn, cc, e)
		case raft.EntryNormal:
			if len(e.Data) == 0 {
				continue // the leader's no-op
			}
			pid, payload := unwrap(e.Data)
			res := sn.sm.Apply(raft.Entry{Term: e.Term, Index: e.Index, Type: e.Type, Data: payload})
			if p := c.props[pid]; p != nil && p.node == sn.id {
				delete(c.props, pid)
				r := ProposeResult{Node: sn.id, Index: e.Index, Term: e.Term, Result: res}
				c.later(func() { p.done(r) })
			}
		default:
			c.fail(sn.id, "unknown entry type %d at %d", e.Type, e.Index)
			return
		}
	}
	c.answerReads(sn)
}

// maybeSnapshot snapshots the state machine every SnapshotEvery applied
// entries and compacts the log, keeping SnapshotKeep entries.
func (c *Cluster) maybeSnapshot(sn *simNode) {
	k := c.cfg.SnapshotEvery
	if k == 0 || !sn.up || sn.applied < sn.lastSnap+k {
		return
	}
	data := sn.sm.Snapshot()
	cs := sn.conf
	if _, err := sn.disk.CreateSnapshot(sn.applied, &cs, data); err != nil {
		if errors.Is(err, raft.ErrSnapOutOfDate) {
			return
		}
		c.fail(sn.id, "create snapshot at %d: %v", sn.applied, err)
		return
	}
	sn.lastSnap = sn.applied
	c.chk.recordSnapshot(sn.id, sn.applied, data)
	if sn.applied > c.cfg.SnapshotKeep {
		ci := sn.applied - c.cfg.SnapshotKeep
		first, _ := sn.disk.FirstIndex()
		if ci >= first {
			if err := sn.disk.Compact(ci); err != nil {
				c.fail(sn.id, "compact to %d: %v", ci, err)
				return
			}
		}
	}
	c.logf("node %d: snapshot at %d", sn.id, sn.applied)
}
