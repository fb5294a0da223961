package kvstore

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/node/raft"
)

// itNode is one member of an in-process cluster: the real Raft core over a
// LogStore, applying to a Store, driven by the documented Ready loop.
type itNode struct {
	id       uint64
	dir      string
	log      *LogStore
	kv       *Store
	node     *raft.Node
	cs       raft.ConfState
	up       bool
	results  map[uint64]Result // by log index
	installs int               // snapshots received through Ready
}

type itCluster struct {
	t      *testing.T
	nodes  map[uint64]*itNode
	queue  []raft.Message
	snapAt uint64 // take a snapshot and compact every snapAt applied entries
}

func newITCluster(t *testing.T, ids ...uint64) *itCluster {
	c := &itCluster{t: t, nodes: map[uint64]*itNode{}, snapAt: 40}
	for _, id := range ids {
		n := &itNode{id: id, dir: t.TempDir(), results: map[uint64]Result{}}
		l, err := OpenLog(filepath.Join(n.dir, "raft.db"), LogOptions{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		// The bootstrap convention: a snapshot at index 1 naming the founders.
		if err := l.ApplySnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: 1, Term: 1, ConfState: raft.ConfState{Voters: ids}}}); err != nil {
			t.Fatal(err)
		}
		if err := l.SetHardState(raft.HardState{Term: 1, Commit: 1}); err != nil {
			t.Fatal(err)
		}
		l.Close()
		c.nodes[id] = n
		c.start(id)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			c.stop(n.id)
		}
	})
	return c
}

func (c *itCluster) start(id uint64) {
	n := c.nodes[id]
	var err error
	if n.log, err = OpenLog(filepath.Join(n.dir, "raft.db"), LogOptions{NoSync: true}); err != nil {
		c.t.Fatal(err)
	}
	if n.kv, err = Open(filepath.Join(n.dir, "kv.db"), Config{NoSync: true}); err != nil {
		c.t.Fatal(err)
	}
	if err := Recover(n.log, n.kv); err != nil {
		c.t.Fatal(err)
	}
	_, n.cs, _ = n.log.InitialState()
	n.node, err = raft.NewNode(raft.Config{ID: id, Storage: n.log, Applied: n.kv.Applied(),
		Rand: rand.New(rand.NewPCG(id, 7)), SnapshotChunkBytes: 4096})
	if err != nil {
		c.t.Fatal(err)
	}
	n.up = true
}

func (c *itCluster) stop(id uint64) {
	n := c.nodes[id]
	if !n.up {
		return
	}
	n.up = false
	n.log.Close()
	n.kv.Close()
}

// process runs one node's Ready loop until it has nothing to do.
func (c *itCluster) process(n *itNode) {
	t := c.t
	for n.node.HasReady() {
		rd := n.node.Ready()
		if err := n.log.Save(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync); err != nil {
			t.Fatalf("node %d: save: %v", n.id, err)
		}
		c.queue = append(c.queue, rd.Messages...)
		if !rd.Snapshot.IsEmpty() {
			if err := n.kv.InstallSnapshot(rd.Snapshot); err != nil {
				t.Fatalf("node %d: install snapshot: %v", n.id, err)
			}
			n.cs = rd.Snapshot.Meta.ConfState
			n.installs++
		}
		rs, err := n.kv.Apply(rd.CommittedEntries)
		if err != nil {
			t.Fatalf("node %d: apply: %v", n.id, err)
		}
		for _, r := range rs {
			n.results[r.Index] = r
		}
		if a := n.kv.Applied(); a >= n.log.SnapshotMeta().Index+c.snapAt {
			data, info, err := n.kv.SnapshotBytes()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := n.log.CreateSnapshot(info.Applied, &n.cs, data); err != nil {
				t.Fatalf("node %d: create snapshot at %d: %v", n.id, info.Applied, err)
			}
			if err := n.log.Compact(info.Applied - 2); err != nil && err != raft.ErrCompacted {
				t.Fatalf("node %d: compact: %v", n.id, err)
			}
		}
		n.node.Advance(rd)
	}
}

// round processes every node and delivers every queued message once.
func (c *itCluster) round(tick bool) {
	for id := uint64(1); id <= uint64(len(c.nodes)); id++ {
		if n := c.nodes[id]; n.up {
			if tick {
				n.node.Tick()
			}
			c.process(n)
		}
	}
	msgs := c.queue
	c.queue = nil
	for _, m := range msgs {
		if to := c.nodes[m.To]; to != nil && to.up {
			to.node.Step(m)
		}
	}
}

func (c *itCluster) leader() *itNode {
	for _, n := range c.nodes {
		if n.up && n.node.BasicStatus().SoftState.RaftState == raft.StateLeader {
			return n
		}
	}
	return nil
}

// waitFor runs rounds (ticking every 5th) until cond holds.
func (c *itCluster) waitFor(what string, cond func() bool) {
	for i := 0; i < 5000; i++ {
		if cond() {
			return
		}
		c.round(i%5 == 0)
	}
	c.t.Fatalf("timed out waiting for %s", what)
}

// TestClusterWithRaftCore drives three real Raft cores over LogStore and
// Store: writes through the log, a node that is down while the others
// snapshot and compact past it, its restart and catch-up by snapshot, and
// exactly-once retries; every replica must end byte-identical.
func TestClusterWithRaftCore(t *testing.T) {
	c := newITCluster(t, 1, 2, 3)
	c.waitFor("a leader", func() bool { return c.leader() != nil })
	propose := func(cmd Command) {
		t.Helper()
		data, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		c.waitFor("a leader to accept a proposal", func() bool {
			l := c.leader()
			return l != nil && l.node.Propose(data) == nil
		})
	}
	allApplied := func() bool {
		l := c.leader()
		if l == nil {
			return false
		}
		last := l.node.Status().LastIndex
		for _, n := range c.nodes {
			if n.up && n.kv.Applied() < last {
				return false
			}
		}
		return true
	}
	const session = 0x5e55 // the client's own ID: its first command opens the session
	for i := range 60 {
		propose(Command{Op: OpPut, Key: fmt.Appendf(nil, "k%02d", i%17), Value: fmt.Appendf(nil, "v%d", i), ClientID: session, Seq: uint64(i + 1), Time: 2})
		if i%10 == 9 {
			c.waitFor("apply", allApplied)
		}
	}
	c.waitFor("apply", allApplied)

	// Node 3 goes down; the others move on and compact past it.
	c.stop(3)
	for i := range 120 {
		propose(Command{Op: OpPut, Key: fmt.Appendf(nil, "k%02d", i%23), Value: fmt.Appendf(nil, "w%d", i), ClientID: session, Seq: uint64(100 + i), Time: 3})
		if i%10 == 9 {
			c.waitFor("apply", allApplied)
		}
	}
	// A retry of the last command is answered, not applied again.
	propose(Command{Op: OpPut, Key: []byte("k00"), Value: []byte("dup"), ClientID: session, Seq: 219, Time: 3})
	c.waitFor("apply", allApplied)
	first, _ := c.nodes[1].log.FirstIndex()
	if first <= 60 {
		t.Fatalf("the log was not compacted past the down node (first index %d)", first)
	}

	c.start(3)
	c.waitFor("node 3 to catch up", allApplied)
	if c.nodes[3].installs == 0 {
		t.Fatal("node 3 caught up without a snapshot although the log was compacted past it")
	}
	want := dumpStore(t, c.leader().kv)
	wantFP, err := c.leader().kv.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		if got := dumpStore(t, n.kv); got != want {
			t.Fatalf("node %d differs from the leader", n.id)
		}
		if fp, err := n.kv.Fingerprint(); err != nil || fp != wantFP {
			t.Fatalf("node %d fingerprint %x@%d, leader %x@%d (%v)", n.id, fp.Sum, fp.Applied, wantFP.Sum, wantFP.Applied, err)
		}
	}
	// The fingerprint sees a difference.
	c.nodes[1].kv.Apply([]raft.Entry{{Index: c.nodes[1].kv.Applied() + 1, Term: 99}})
	if fp, _ := c.nodes[1].kv.Fingerprint(); fp == wantFP {
		t.Fatal("fingerprint unchanged after applying one more entry")
	}
	kv, err := c.leader().kv.Get([]byte("k00"), 0)
	if err != nil || string(kv.Value) == "dup" {
		t.Fatalf("k00 = %q, %v: the retried command was applied again", kv.Value, err)
	}
}
