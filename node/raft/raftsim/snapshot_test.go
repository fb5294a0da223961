package raftsim

import (
	"testing"

	"github.com/raftkv/raftkv/node/raft"
)

// snapCfg is a cluster that snapshots every 10 applied entries, with
// snapshots big enough to need several chunks.
func snapCfg(n int) Config {
	return Config{
		Nodes: n, SnapshotEvery: 10,
		NewStateMachine: PaddedHashMachine(1000), SnapshotChunkBytes: 256,
	}
}

func (h *harness) firstIndex(id uint64) uint64 {
	f, _ := h.Storage(id).FirstIndex()
	return f
}

func (h *harness) logLen(id uint64) uint64 {
	f, _ := h.Storage(id).FirstIndex()
	l, _ := h.Storage(id).LastIndex()
	return l + 1 - f
}

func TestSnapshotBasic(t *testing.T) {
	h := newHarness(t, snapCfg(3))
	var idx uint64
	for i := range 100 {
		idx = h.one(cmd("s%d", i), 3, true)
	}
	h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
	for _, id := range h.IDs() {
		if n := h.logLen(id); n > 2*h.Config().SnapshotEvery+5 {
			h.fatalf("node %d keeps %d log entries with snapshots every %d", id, n, h.Config().SnapshotEvery)
		}
		if h.firstIndex(id) < idx-2*h.Config().SnapshotEvery {
			h.fatalf("node %d log starts at %d, applied %d: not compacted", id, h.firstIndex(id), idx)
		}
	}
	// Everybody kept up: no snapshot had to travel.
	if s := h.Stats().ByType[raft.MsgSnap].Msgs; s != 0 {
		h.fatalf("%d MsgSnap sent although no follower fell behind", s)
	}
}

// snapshotInstall cuts a follower off (or crashes it) while the others
// compact their logs far beyond it, then brings it back: it can only
// catch up by InstallSnapshot.
func snapshotInstall(t *testing.T, net LinkConfig, crash bool) {
	cfg := snapCfg(3)
	cfg.Network = net
	h := newHarness(t, cfg)
	h.one(cmd("first"), 3, true)
	for iter := range 5 {
		lead := h.checkOneLeader()
		victim := ring(lead, 1+iter%2, 3)
		if crash {
			h.crashSoon(victim, CrashPoint(1+iter%3))
		} else {
			h.Isolate(victim)
		}
		for i := range 25 {
			h.one(cmd("i%d-%d", iter, i), 2, true)
		}
		if crash {
			h.restart(victim)
		} else {
			h.Reconnect(victim)
		}
		idx := h.one(cmd("back%d", iter), 3, true)
		h.waitApplied(idx, 4*h.ElectionTimeout(), h.IDs()...)
	}
	if h.Stats().ByType[raft.MsgSnap].Msgs == 0 {
		h.fatalf("no snapshot was sent: the test did not exercise InstallSnapshot")
	}
	for _, id := range h.IDs() {
		if s, _ := h.Storage(id).Snapshot(); s.Meta.Index <= 1 {
			h.fatalf("node %d has no snapshot", id)
		}
	}
}

func TestSnapshotInstall(t *testing.T) { snapshotInstall(t, Reliable(), false) }

func TestSnapshotInstallUnreliable(t *testing.T) { snapshotInstall(t, Unreliable(), false) }

func TestSnapshotInstallCrash(t *testing.T) { snapshotInstall(t, Reliable(), true) }

func TestSnapshotInstallUnreliableCrash(t *testing.T) { snapshotInstall(t, Unreliable(), true) }

func TestSnapshotAllCrash(t *testing.T) {
	h := newHarness(t, snapCfg(3))
	var last uint64
	for iter := range 5 {
		for i := range 15 {
			h.one(cmd("a%d-%d", iter, i), 3, true)
		}
		idx := h.one(cmd("mark%d", iter), 3, true)
		h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
		for _, id := range h.IDs() {
			h.crashSoon(id, CrashPoint(1+(iter+int(id))%3))
		}
		for _, id := range h.IDs() {
			h.restart(id)
			if s, _ := h.Storage(id).Snapshot(); s.Meta.Index <= 1 || h.Applied(id) != s.Meta.Index {
				h.fatalf("node %d restarted at applied %d, snapshot %d", id, h.Applied(id), s.Meta.Index)
			}
		}
		idx2 := h.one(cmd("after%d", iter), 3, true)
		if idx2 <= idx || idx2 <= last {
			h.fatalf("index went backwards after a full restart: %d then %d", idx, idx2)
		}
		last = idx2
	}
}

func TestSnapshotInit(t *testing.T) {
	h := newHarness(t, snapCfg(3))
	var idx uint64
	for i := range 25 {
		idx = h.one(cmd("x%d", i), 3, true)
	}
	h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
	// Restart from the snapshot, write one entry (no new snapshot), and
	// restart again: the state must still come from the snapshot plus the
	// log tail, equal on every node.
	for round := range 2 {
		for _, id := range h.IDs() {
			h.Crash(id)
		}
		for _, id := range h.IDs() {
			h.restart(id)
		}
		idx = h.one(cmd("after-%d", round), 3, true)
		h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
		if err := h.compareStates(); err != nil {
			h.fatalf("%v", err)
		}
	}
}

// TestSnapshotStaleChunkAckAfterFollowerRestart is the regression test for
// raft-bugs.md #1: a follower restarts mid-transfer (its chunk buffer is
// gone), and a delayed acknowledgement from before the restart reaches the
// leader after the follower asked to start over. The leader must not
// believe the follower holds more than it does: the transfer has to
// finish.
func TestSnapshotStaleChunkAckAfterFollowerRestart(t *testing.T) {
	cfg := snapCfg(3)
	cfg.NewStateMachine = PaddedHashMachine(3000)
	cfg.SnapshotChunkBytes = 100
	h := newHarness(t, cfg)
	lead := h.checkOneLeader()
	f := ring(lead, 1, 3)
	h.Isolate(f)
	for i := range 30 {
		h.one(cmd("far%d", i), 2, true)
	}
	lead = h.checkOneLeader()
	// Watch the transfer: keep the highest chunk ack the leader got.
	var stale *raft.Message
	var sawReject, restarted, fresh bool
	h.tapDeliver = func(m raft.Message) {
		if m.Type != raft.MsgSnapResp || m.From != f || m.To != lead {
			return
		}
		switch {
		case m.Reject:
			sawReject = true
		case !restarted && (stale == nil || m.Index > stale.Index):
			mc := m
			stale = &mc
		case restarted && sawReject:
			fresh = true // the new attempt is under way
		}
	}
	h.Reconnect(f)
	if !h.RunUntil(func() bool { return stale != nil && stale.Index >= 800 }, 4*h.ElectionTimeout()) {
		h.fatalf("snapshot transfer to %d never got past 800 bytes", f)
	}
	// The follower restarts: its partial snapshot is lost. The leader's
	// next chunk gets a Reject (start again from 0)...
	h.Crash(f)
	h.restart(f)
	restarted = true
	if !h.RunUntil(func() bool { return fresh }, 4*h.ElectionTimeout()) {
		h.fatalf("follower %d never restarted the transfer (reject seen: %v)", f, sawReject)
	}
	// ...and once the new attempt is acknowledged, the old
	// acknowledgement arrives late.
	old := *stale
	h.tapDeliver = nil
	_ = h.Do(lead, "deliver a stale MsgSnapResp", func(n *raft.Node) error { return n.Step(old) })
	idx := h.one(cmd("after"), 2, true)
	h.waitApplied(idx, 20*h.ElectionTimeout(), f)
}
