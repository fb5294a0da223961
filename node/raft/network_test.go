package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
)

// testNode is one member of the in-package test network: a core, its
// "disk" and what its application applied.
type testNode struct {
	id      uint64
	n       *Node
	storage *MemoryStorage
	cfg     Config
	// applied lists applied normal entries with data, in order.
	applied []Entry
	// appliedIndex is the last index applied (entries or snapshot).
	appliedIndex uint64
	readStates   []ReadState
	snapshots    int // snapshots installed
}

type connem struct{ from, to uint64 }

// network is a tiny synchronous network for unit tests (in the spirit of
// etcd-io/raft's test network): messages are delivered breadth-first until
// nothing is left, with per-link drop and per-type filters.
type network struct {
	t      testing.TB
	nodes  map[uint64]*testNode
	dropm  map[connem]bool
	ignore map[MessageType]bool
	// hook, if set, may drop (return false) or observe each message.
	hook func(m *Message) bool
	// sent counts delivered messages by type.
	sent map[MessageType]int
}

// testLogger logs to the test output when RAFT_TEST_LOG=1, else discards.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("RAFT_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// bootstrapStorage returns a storage prepared like a founding member's.
func bootstrapStorage(voters ...uint64) *MemoryStorage {
	ms := NewMemoryStorage()
	if err := ms.ApplySnapshot(Snapshot{Meta: SnapshotMeta{Index: 1, Term: 1, ConfState: ConfState{Voters: slices.Clone(voters)}}}); err != nil {
		panic(err)
	}
	if err := ms.SetHardState(HardState{Term: 1, Commit: 1}); err != nil {
		panic(err)
	}
	return ms
}

func testConfig(t testing.TB, id uint64, s *MemoryStorage) Config {
	return Config{
		ID:              id,
		Storage:         s,
		ElectionTicks:   10,
		HeartbeatTicks:  1,
		MaxSizePerMsg:   1 << 20,
		MaxInflightMsgs: 256,
		Rand:            rand.New(rand.NewPCG(id, 42)),
		Logger:          testLogger(t),
	}
}

// newNetwork builds a cluster of founding voters ids.
func newNetwork(t testing.TB, ids ...uint64) *network {
	return newNetworkWithConfig(t, nil, ids...)
}

func newNetworkWithConfig(t testing.TB, mod func(*Config), ids ...uint64) *network {
	nw := &network{t: t, nodes: map[uint64]*testNode{}, dropm: map[connem]bool{}, ignore: map[MessageType]bool{}, sent: map[MessageType]int{}}
	for _, id := range ids {
		s := bootstrapStorage(ids...)
		cfg := testConfig(t, id, s)
		if mod != nil {
			mod(&cfg)
		}
		nw.addNode(cfg)
	}
	return nw
}

// addNode starts a node from cfg (its storage may be empty: a joiner).
func (nw *network) addNode(cfg Config) *testNode {
	n, err := NewNode(cfg)
	if err != nil {
		nw.t.Fatalf("NewNode(%d): %v", cfg.ID, err)
	}
	s := cfg.Storage.(*MemoryStorage)
	snap, _ := s.Snapshot()
	tn := &testNode{id: cfg.ID, n: n, storage: s, cfg: cfg, appliedIndex: max(cfg.Applied, snap.Meta.Index)}
	nw.nodes[cfg.ID] = tn
	return tn
}

// restart simulates a crash of id (unpersisted state lost) and a restart.
func (nw *network) restart(id uint64) *testNode {
	old := nw.nodes[id]
	cfg := old.cfg
	st := old.storage.Clone()
	cfg.Storage = st
	// The application restarts from its snapshot (its state machine as
	// of the snapshot index) and re-applies committed entries after it.
	snap, _ := st.Snapshot()
	cfg.Applied = snap.Meta.Index
	tn := nw.addNode(cfg)
	tn.applied = nil
	return tn
}

func (nw *network) ids() []uint64 {
	ids := make([]uint64, 0, len(nw.nodes))
	for id := range nw.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (nw *network) node(id uint64) *Node { return nw.nodes[id].n }
func (nw *network) raft(id uint64) *raft { return nw.nodes[id].n.r }

// handleReady processes one Ready of tn like an application would and
// returns the messages to send.
func (nw *network) handleReady(tn *testNode) []Message {
	rd := tn.n.Ready()
	msgs := nw.handleReadyNoAdvance(tn, rd)
	tn.n.Advance(rd)
	return msgs
}

// handleReadyNoAdvance persists and applies rd without calling Advance.
func (nw *network) handleReadyNoAdvance(tn *testNode, rd Ready) []Message {
	if !rd.Snapshot.IsEmpty() {
		if err := tn.storage.ApplySnapshot(rd.Snapshot); err != nil {
			nw.t.Fatalf("node %d: apply snapshot %d: %v", tn.id, rd.Snapshot.Meta.Index, err)
		}
		tn.appliedIndex = rd.Snapshot.Meta.Index
		tn.snapshots++
	}
	if err := tn.storage.Append(rd.Entries); err != nil {
		nw.t.Fatalf("node %d: append: %v", tn.id, err)
	}
	if !rd.HardState.IsEmpty() {
		_ = tn.storage.SetHardState(rd.HardState)
	}
	for _, e := range rd.CommittedEntries {
		if e.Index != tn.appliedIndex+1 {
			nw.t.Fatalf("node %d: applying %d after %d", tn.id, e.Index, tn.appliedIndex)
		}
		tn.appliedIndex = e.Index
		switch e.Type {
		case EntryConfChange:
			var cc ConfChange
			if err := cc.Unmarshal(e.Data); err != nil {
				nw.t.Fatalf("node %d: conf change at %d: %v", tn.id, e.Index, err)
			}
			cs := tn.n.ApplyConfChange(cc)
			_ = tn.storage.SetConfState(cs)
		case EntryNormal:
			if len(e.Data) > 0 {
				tn.applied = append(tn.applied, e)
			}
		}
	}
	tn.readStates = append(tn.readStates, rd.ReadStates...)
	return rd.Messages
}

// send steps msgs into their targets and keeps going until no node has
// anything to do.
func (nw *network) send(msgs ...Message) {
	queue := msgs
	for {
		for len(queue) > 0 {
			m := queue[0]
			queue = queue[1:]
			if nw.filter(&m) {
				continue
			}
			tn, ok := nw.nodes[m.To]
			if !ok {
				continue
			}
			nw.sent[m.Type]++
			if err := tn.n.Step(m); err != nil && !errors.Is(err, ErrProposalDropped) {
				nw.t.Fatalf("node %d: step %s from %d: %v", m.To, m.Type, m.From, err)
			}
		}
		for _, id := range nw.ids() {
			tn := nw.nodes[id]
			for tn.n.HasReady() {
				queue = append(queue, nw.handleReady(tn)...)
			}
		}
		if len(queue) == 0 {
			return
		}
	}
}

// stabilize delivers everything pending.
func (nw *network) stabilize() { nw.send() }

func (nw *network) filter(m *Message) bool {
	if nw.dropm[connem{m.From, m.To}] || nw.ignore[m.Type] {
		return true
	}
	if nw.hook != nil && !nw.hook(m) {
		return true
	}
	return false
}

func (nw *network) cut(a, b uint64) {
	nw.dropm[connem{a, b}] = true
	nw.dropm[connem{b, a}] = true
}

func (nw *network) isolate(id uint64) {
	for other := range nw.nodes {
		if other != id {
			nw.cut(id, other)
		}
	}
}

func (nw *network) recover() {
	nw.dropm = map[connem]bool{}
	nw.ignore = map[MessageType]bool{}
	nw.hook = nil
}

// campaign makes id campaign and delivers everything.
func (nw *network) campaign(id uint64) {
	if err := nw.node(id).Campaign(); err != nil {
		nw.t.Fatalf("campaign %d: %v", id, err)
	}
	nw.stabilize()
}

// elect makes id campaign and checks it won.
func (nw *network) elect(id uint64) {
	nw.t.Helper()
	nw.campaign(id)
	if st := nw.raft(id).state; st != StateLeader {
		nw.t.Fatalf("node %d is %s after campaigning, want leader", id, st)
	}
}

func (nw *network) propose(id uint64, data string) error {
	err := nw.node(id).Propose([]byte(data))
	nw.stabilize()
	return err
}

// tickAll ticks every node n times, delivering after each tick.
func (nw *network) tickAll(n int) {
	for range n {
		for _, id := range nw.ids() {
			nw.node(id).Tick()
		}
		nw.stabilize()
	}
}

// tickOne ticks id n times, delivering after each tick.
func (nw *network) tickOne(id uint64, n int) {
	for range n {
		nw.node(id).Tick()
		nw.stabilize()
	}
}

func (nw *network) appliedData(id uint64) []string {
	var out []string
	for _, e := range nw.nodes[id].applied {
		out = append(out, string(e.Data))
	}
	return out
}

// checkLogsMatch verifies that all nodes' stable logs agree on every index
// they all hold and that committed prefixes are identical.
func (nw *network) checkLogsMatch() {
	nw.t.Helper()
	ids := nw.ids()
	for i, a := range ids {
		for _, b := range ids[i+1:] {
			ra, rb := nw.raft(a).raftLog, nw.raft(b).raftLog
			lo := max(ra.firstIndex(), rb.firstIndex())
			hi := min(ra.committed, rb.committed)
			for idx := lo; idx <= hi; idx++ {
				ta, _ := ra.term(idx)
				tb, _ := rb.term(idx)
				if ta != tb {
					nw.t.Fatalf("committed entry %d differs: node %d term %d, node %d term %d", idx, a, ta, b, tb)
				}
			}
		}
	}
}

func (nw *network) String() string {
	s := ""
	for _, id := range nw.ids() {
		r := nw.raft(id)
		s += fmt.Sprintf("%d: %s term=%d lead=%d %s\n", id, r.state, r.Term, r.lead, r.raftLog)
	}
	return s
}

// leaderID returns the node that is leader in the highest term, or 0.
func (nw *network) leaderID() uint64 {
	var lead, term uint64
	for _, id := range nw.ids() {
		r := nw.raft(id)
		if r.state == StateLeader && r.Term >= term {
			lead, term = id, r.Term
		}
	}
	return lead
}

// compact makes id's application snapshot its state at its applied index
// (data is the state machine image) and compact the log up to there.
func (nw *network) compact(id uint64, data []byte) Snapshot {
	nw.t.Helper()
	tn := nw.nodes[id]
	cs := tn.n.r.cs
	snap, err := tn.storage.CreateSnapshot(tn.appliedIndex, &cs, data)
	if err != nil {
		nw.t.Fatalf("node %d: create snapshot at %d: %v", id, tn.appliedIndex, err)
	}
	if err := tn.storage.Compact(tn.appliedIndex); err != nil {
		nw.t.Fatalf("node %d: compact %d: %v", id, tn.appliedIndex, err)
	}
	return snap
}
