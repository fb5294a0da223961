package raft

import (
	"bytes"
	"hash/crc32"
	"slices"
	"testing"
)

func snapData(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// laggingFollowerNetwork: node 3 misses entries a..e, the leader compacts
// with a snapshot of 10000 bytes in 1000-byte chunks.
func laggingFollowerNetwork(t *testing.T) (*network, Snapshot) {
	nw := newNetworkWithConfig(t, func(c *Config) { c.SnapshotChunkBytes = 1000 }, 1, 2, 3)
	nw.elect(1)
	nw.isolate(3)
	for _, d := range []string{"a", "b", "c", "d", "e"} {
		if err := nw.propose(1, d); err != nil {
			t.Fatal(err)
		}
	}
	snap := nw.compact(1, snapData(10000))
	nw.recover()
	return nw, snap
}

func TestSnapshotChunkBasic(t *testing.T) {
	nw, snap := laggingFollowerNetwork(t)
	chunks := 0
	nw.hook = func(m *Message) bool {
		if m.Type == MsgSnap {
			chunks++
			if m.Snapshot.Checksum != crc32.Checksum(snap.Data, castagnoli) || m.Snapshot.Total != 10000 {
				t.Errorf("chunk header %+v", m.Snapshot)
			}
			if len(m.Snapshot.Data) > 1000 {
				t.Errorf("chunk of %d bytes exceeds SnapshotChunkBytes", len(m.Snapshot.Data))
			}
		}
		return true
	}
	_ = nw.propose(1, "f")
	nw.tickAll(3)
	tn := nw.nodes[3]
	if tn.snapshots != 1 {
		t.Fatalf("node 3 installed %d snapshots, want 1", tn.snapshots)
	}
	if chunks != 10 {
		t.Fatalf("%d chunks sent, want exactly 10 on a reliable network", chunks)
	}
	got, _ := tn.storage.Snapshot()
	if got.Meta.Index != snap.Meta.Index || !bytes.Equal(got.Data, snap.Data) {
		t.Fatalf("installed snapshot (index %d, %d bytes) differs from the leader's (index %d)", got.Meta.Index, len(got.Data), snap.Meta.Index)
	}
	if !slices.Equal(got.Meta.ConfState.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("conf state %+v not carried by the snapshot", got.Meta.ConfState)
	}
	if got := nw.appliedData(3); !slices.Equal(got, []string{"f"}) {
		t.Fatalf("node 3 applied %v after the snapshot, want [f]", got)
	}
	if nw.raft(1).prs[3].State != ProgressReplicate {
		t.Fatalf("leader's progress for 3: %s", nw.raft(1).prs[3])
	}
	nw.checkLogsMatch()
}

// TestSnapshotChunkLoss: lost chunks are resent from the acknowledged
// offset after a stalled heartbeat round; the transfer completes and does
// not restart from zero.
func TestSnapshotChunkLoss(t *testing.T) {
	nw, snap := laggingFollowerNetwork(t)
	dropped := map[uint64]bool{}
	offsets := map[uint64]int{}
	nw.hook = func(m *Message) bool {
		if m.Type == MsgSnap {
			off := m.Snapshot.Offset
			offsets[off]++
			if (off == 3000 || off == 7000) && !dropped[off] {
				dropped[off] = true
				return false
			}
		}
		return true
	}
	_ = nw.propose(1, "f")
	nw.tickAll(12)
	tn := nw.nodes[3]
	if tn.snapshots != 1 {
		t.Fatalf("node 3 installed %d snapshots, want 1", tn.snapshots)
	}
	got, _ := tn.storage.Snapshot()
	if !bytes.Equal(got.Data, snap.Data) {
		t.Fatal("snapshot data differs")
	}
	if offsets[0] != 1 {
		t.Fatalf("chunk 0 sent %d times: the transfer restarted instead of resuming", offsets[0])
	}
	if !slices.Equal(nw.appliedData(3), []string{"f"}) {
		t.Fatalf("node 3 applied %v", nw.appliedData(3))
	}
}

func chunkMsg(meta SnapshotMeta, data []byte, off, n uint64) Message {
	end := min(off+n, uint64(len(data)))
	return Message{From: 1, To: 2, Term: 2, Type: MsgSnap, Snapshot: &SnapshotChunk{
		Meta: meta, Offset: off, Total: uint64(len(data)),
		Checksum: crc32.Checksum(data, castagnoli), Data: data[off:end],
	}}
}

// TestSnapshotChunkOutOfOrder: the follower accepts chunks only in order
// and tells the leader where to continue.
func TestSnapshotChunkOutOfOrder(t *testing.T) {
	r := newTestRaft(t, 2, []uint64{1, 2, 3}, nil)
	data := snapData(3000)
	meta := SnapshotMeta{Index: 20, Term: 2, ConfState: ConfState{Voters: []uint64{1, 2, 3}}}
	// A middle chunk of an unknown transfer: restart.
	mustStep(t, r, chunkMsg(meta, data, 1000, 1000))
	if m := readMessages(r); len(m) != 1 || m[0].Type != MsgSnapResp || !m[0].Reject {
		t.Fatalf("unknown transfer at offset 1000: %+v, want reject", m)
	}
	mustStep(t, r, chunkMsg(meta, data, 0, 1000))
	// Skip 1000: answered with the expected offset, not applied.
	mustStep(t, r, chunkMsg(meta, data, 2000, 1000))
	msgs := readMessages(r)
	if len(msgs) != 2 || msgs[0].Index != 1000 || msgs[1].Index != 1000 || msgs[1].Reject {
		t.Fatalf("responses %+v, want acks of 1000, 1000", msgs)
	}
	// Duplicate of chunk 0: same answer.
	mustStep(t, r, chunkMsg(meta, data, 0, 1000))
	mustStep(t, r, chunkMsg(meta, data, 1000, 1000))
	mustStep(t, r, chunkMsg(meta, data, 2000, 1000))
	msgs = readMessages(r)
	if len(msgs) != 3 || msgs[0].Index != 1000 || msgs[1].Index != 2000 || msgs[2].Type != MsgAppResp || msgs[2].Index != 20 {
		t.Fatalf("responses %+v, want 1000, 2000, then MsgAppResp 20", msgs)
	}
	if r.raftLog.unstable.snapshot == nil || !bytes.Equal(r.raftLog.unstable.snapshot.Data, data) {
		t.Fatal("snapshot not restored with the right data")
	}
	if r.raftLog.committed != 20 || r.raftLog.lastIndex() != 20 {
		t.Fatalf("committed %d last %d, want 20 20", r.raftLog.committed, r.raftLog.lastIndex())
	}
}

// TestSnapshotChunkBadChecksum: a corrupted transfer is not installed and
// the follower asks for a restart.
func TestSnapshotChunkBadChecksum(t *testing.T) {
	r := newTestRaft(t, 2, []uint64{1, 2, 3}, nil)
	data := snapData(2000)
	meta := SnapshotMeta{Index: 20, Term: 2, ConfState: ConfState{Voters: []uint64{1, 2, 3}}}
	mustStep(t, r, chunkMsg(meta, data, 0, 1000))
	bad := chunkMsg(meta, data, 1000, 1000)
	bad.Snapshot.Data = slices.Clone(bad.Snapshot.Data)
	bad.Snapshot.Data[10] ^= 0xff
	mustStep(t, r, bad)
	msgs := readMessages(r)
	if last := msgs[len(msgs)-1]; last.Type != MsgSnapResp || !last.Reject {
		t.Fatalf("last response %+v, want a rejecting MsgSnapResp", last)
	}
	if r.raftLog.unstable.snapshot != nil || r.raftLog.committed != 1 {
		t.Fatal("corrupted snapshot was installed")
	}
	// The transfer starts again cleanly.
	mustStep(t, r, chunkMsg(meta, data, 0, 1000))
	mustStep(t, r, chunkMsg(meta, data, 1000, 1000))
	if r.raftLog.unstable.snapshot == nil {
		t.Fatal("clean retransfer not installed")
	}
}

// TestSnapshotLeaderRestartsOnReject: a rejecting MsgSnapResp makes the
// leader resend from offset 0.
func TestSnapshotLeaderRestartsOnReject(t *testing.T) {
	nw, _ := laggingFollowerNetwork(t)
	corrupt := true
	var offsets []uint64
	nw.hook = func(m *Message) bool {
		if m.Type == MsgSnap {
			offsets = append(offsets, m.Snapshot.Offset)
			if corrupt && m.Snapshot.Offset == 9000 {
				corrupt = false
				m.Snapshot.Data = slices.Clone(m.Snapshot.Data)
				m.Snapshot.Data[0] ^= 1
			}
		}
		return true
	}
	_ = nw.propose(1, "f")
	nw.tickAll(3)
	if nw.nodes[3].snapshots != 1 {
		t.Fatalf("snapshot not installed after a corrupted first transfer (offsets %v)", offsets)
	}
	if n := len(offsets); n != 20 || offsets[10] != 0 {
		t.Fatalf("offsets sent %v, want two full transfers", offsets)
	}
}

// TestSnapshotStaleIgnored: a snapshot at or below the commit index is
// ignored, and the follower reports its commit index (etcd #1837).
func TestSnapshotStaleIgnored(t *testing.T) {
	r := newTestRaft(t, 2, []uint64{1, 2, 3}, nil)
	mustStep(t, r, Message{From: 1, To: 2, Term: 2, Type: MsgApp, Index: 1, LogTerm: 1, Commit: 3,
		Entries: []Entry{{Index: 2, Term: 2}, {Index: 3, Term: 2}}})
	readMessages(r)
	data := snapData(10)
	mustStep(t, r, chunkMsg(SnapshotMeta{Index: 3, Term: 2}, data, 0, 1000))
	msgs := readMessages(r)
	if len(msgs) != 1 || msgs[0].Type != MsgAppResp || msgs[0].Index != 3 {
		t.Fatalf("responses %+v, want MsgAppResp{Index: 3}", msgs)
	}
	if r.raftLog.unstable.snapshot != nil {
		t.Fatal("stale snapshot installed")
	}
	if r.restore(Snapshot{Meta: SnapshotMeta{Index: 2, Term: 2}}) {
		t.Fatal("restore accepted a snapshot below the commit index")
	}
}

// TestSnapshotKeepsMatchingSuffix: if the log has the snapshot's last entry
// with the same term, only the commit index moves; the suffix is kept.
func TestSnapshotKeepsMatchingSuffix(t *testing.T) {
	r := newTestRaft(t, 2, []uint64{1, 2, 3}, nil)
	mustStep(t, r, Message{From: 1, To: 2, Term: 2, Type: MsgApp, Index: 1, LogTerm: 1, Commit: 1,
		Entries: []Entry{{Index: 2, Term: 2}, {Index: 3, Term: 2}, {Index: 4, Term: 2}}})
	readMessages(r)
	if r.restore(Snapshot{Meta: SnapshotMeta{Index: 3, Term: 2, ConfState: ConfState{Voters: []uint64{1, 2, 3}}}}) {
		t.Fatal("restore replaced a log that already holds the snapshot's last entry")
	}
	if r.raftLog.committed != 3 || r.raftLog.lastIndex() != 4 {
		t.Fatalf("committed %d last %d, want 3 4", r.raftLog.committed, r.raftLog.lastIndex())
	}
	// A snapshot whose last entry conflicts replaces the whole log.
	if !r.restore(Snapshot{Meta: SnapshotMeta{Index: 4, Term: 3, ConfState: ConfState{Voters: []uint64{1, 2, 3}}}}) {
		t.Fatal("restore refused a newer conflicting snapshot")
	}
	if r.raftLog.lastIndex() != 4 || r.raftLog.lastTerm() != 3 || r.raftLog.firstIndex() != 5 {
		t.Fatalf("after restore: first %d last %d term %d", r.raftLog.firstIndex(), r.raftLog.lastIndex(), r.raftLog.lastTerm())
	}
}

// TestSnapshotRestoreAppliesConfState: the membership comes with the
// snapshot, and the node does not campaign until it is persisted.
func TestSnapshotRestoreAppliesConfState(t *testing.T) {
	n, err := NewNode(testConfig(t, 4, NewMemoryStorage()))
	if err != nil {
		t.Fatal(err)
	}
	r := n.r
	data := snapData(100)
	meta := SnapshotMeta{Index: 10, Term: 3, ConfState: ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}}
	m := chunkMsg(meta, data, 0, 1000)
	m.To, m.Term = 4, 3
	if err := n.Step(m); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.cs.Learners, []uint64{4}) || !r.prs[4].IsLearner {
		t.Fatalf("conf state after restore: %+v", r.cs)
	}
	rd := n.Ready()
	if rd.Snapshot.Meta.Index != 10 || !bytes.Equal(rd.Snapshot.Data, data) {
		t.Fatalf("Ready.Snapshot = %+v", rd.Snapshot.Meta)
	}
	if !rd.MustSync || rd.HardState.Commit != 10 {
		t.Fatalf("Ready MustSync %t hard state %+v", rd.MustSync, rd.HardState)
	}
	_ = r.raftLog.storage.(*MemoryStorage).ApplySnapshot(rd.Snapshot)
	n.Advance(rd)
	if st := n.BasicStatus(); st.Applied != 10 {
		t.Fatalf("applied %d after the snapshot, want 10", st.Applied)
	}
}

// TestSnapshotToJoiningLearner: a node that joins with empty storage is
// added as a learner and caught up by the (empty-data) bootstrap snapshot.
func TestSnapshotToJoiningLearner(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	_ = nw.propose(1, "a")
	nw.compact(1, nil)
	nw.addNode(testConfig(t, 4, NewMemoryStorage()))
	if err := nw.node(1).ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 4}); err != nil {
		t.Fatal(err)
	}
	nw.stabilize()
	_ = nw.propose(1, "b")
	nw.tickAll(3)
	if nw.nodes[4].snapshots != 1 {
		t.Fatalf("joiner installed %d snapshots", nw.nodes[4].snapshots)
	}
	if got := nw.appliedData(4); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("joiner applied %v, want [b] (a is inside the snapshot)", got)
	}
	if r4 := nw.raft(4); !r4.prs[4].IsLearner {
		t.Fatalf("joiner's own view: %+v", r4.cs)
	}
}

// TestSnapshotChunkFollowerRestartMidTransfer: a follower that lost its
// partial snapshot (restart) and started it again reports a lower offset
// than it once acknowledged; the leader resends from there instead of
// waiting forever for an offset that will never come.
func TestSnapshotChunkFollowerRestartMidTransfer(t *testing.T) {
	nw, snap := laggingFollowerNetwork(t)
	nw.hook = func(m *Message) bool { return m.Type != MsgSnap }
	_ = nw.propose(1, "f")
	r := nw.raft(1)
	pr := r.prs[3]
	if pr.State != ProgressSnapshot {
		t.Fatalf("setup: %s", pr)
	}
	meta := SnapshotMeta{Index: snap.Meta.Index, Term: snap.Meta.Term}
	resp := func(off uint64) Message {
		return Message{From: 3, To: 1, Term: r.Term, Type: MsgSnapResp, Index: off, Snapshot: &SnapshotChunk{Meta: meta, Offset: off}}
	}
	mustStep(t, r, resp(3000))
	readMessages(r)
	mustStep(t, r, resp(1000))
	msgs := msgsOfType(readMessages(r), MsgSnap)
	if len(msgs) == 0 || msgs[0].Snapshot.Offset != 1000 {
		t.Fatalf("after a lower ack: %d chunks, first at %v; want a resend from 1000", len(msgs), msgs)
	}
}

// busySnapshotStorage answers Snapshot with "temporarily unavailable"
// while busy is set.
type busySnapshotStorage struct {
	*MemoryStorage
	busy bool
}

func (s *busySnapshotStorage) Snapshot() (Snapshot, error) {
	if s.busy {
		return Snapshot{}, ErrSnapshotTemporarilyUnavailable
	}
	return s.MemoryStorage.Snapshot()
}

// TestSnapshotTemporarilyUnavailable: the leader retries later instead of
// failing when the application is still making the snapshot.
func TestSnapshotTemporarilyUnavailable(t *testing.T) {
	nw, _ := laggingFollowerNetwork(t)
	tn := nw.nodes[1]
	busy := &busySnapshotStorage{MemoryStorage: tn.storage, busy: true}
	tn.n.r.raftLog.storage = busy
	_ = nw.propose(1, "f")
	nw.tickAll(2)
	if nw.nodes[3].snapshots != 0 || nw.raft(1).prs[3].State == ProgressSnapshot {
		t.Fatal("snapshot sent while unavailable")
	}
	busy.busy = false
	nw.tickAll(3)
	if nw.nodes[3].snapshots != 1 {
		t.Fatal("snapshot not sent once available")
	}
	if got := nw.appliedData(3); !slices.Equal(got, []string{"f"}) {
		t.Fatalf("node 3 applied %v", got)
	}
}
