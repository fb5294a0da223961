package raft

import (
	"errors"
	"fmt"
	"hash/crc32"
)

// Snapshot transfer protocol (Raft paper figure 13, chunked):
//
//	leader                                  follower
//	MsgSnap{Offset 0, Total, Checksum}  ->  start accumulating
//	MsgSnap{Offset k, ...}              ->  append if k == bytes held
//	                                    <-  MsgSnapResp{Index: bytes held}
//	MsgSnap{last chunk}                 ->  verify CRC-32C, restore
//	                                    <-  MsgAppResp{Index: last index}
//
// The leader keeps up to snapWindowChunks chunks unacknowledged. A chunk
// that does not start where the follower's buffer ends is answered with the
// offset it expects; a chunk of an unknown snapshot at a non-zero offset,
// or a bad checksum, is answered with Reject (start again from 0). If a
// whole heartbeat round passes without the acknowledged offset moving, the
// leader resends from the acknowledged offset (lost chunks). A snapshot at
// or below the follower's commit index is answered with
// MsgAppResp{Index: committed}, which ends the transfer.
//
// Memory: the sender holds the whole snapshot (snapshotSend.snap.Data, read
// from Storage.Snapshot, which kvstore.LogStore loads from its snapshot
// file) and the receiver accumulates it (snapshotRecv.buf) until the last
// chunk, so a snapshot must fit in memory on both sides. This is the limit
// of snapshot size; streaming from and into the file is not done yet.
const snapWindowChunks = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshotSend is the leader's state for one snapshot transfer.
type snapshotSend struct {
	snap     Snapshot
	checksum uint32
	// acked is the offset the follower confirmed it holds.
	// Invariant: acked <= sent <= len(snap.Data).
	acked uint64
	sent  uint64
	// sentAll is set once the last chunk went out (needed for empty data).
	sentAll bool
	// ackedAtBeat and stalledBeats detect a transfer that stopped moving.
	ackedAtBeat  uint64
	stalledBeats int
}

// rewind makes the next send start at the acknowledged offset.
func (s *snapshotSend) rewind() {
	s.sent = s.acked
	s.sentAll = false
}

// snapshotRecv is the follower's buffer for one incoming snapshot.
type snapshotRecv struct {
	meta     SnapshotMeta
	total    uint64
	checksum uint32
	buf      []byte
}

func (rv *snapshotRecv) matches(c *SnapshotChunk) bool {
	return rv.meta.Index == c.Meta.Index && rv.meta.Term == c.Meta.Term &&
		rv.total == c.Total && rv.checksum == c.Checksum
}

// startSnapshot moves pr to ProgressSnapshot and sends the first chunks.
func (r *raft) startSnapshot(to uint64, pr *Progress) bool {
	snap, err := r.raftLog.snapshot()
	if err != nil {
		if errors.Is(err, ErrSnapshotTemporarilyUnavailable) {
			r.logger.Debug("snapshot temporarily unavailable", "peer", to)
			return false
		}
		panic(fmt.Sprintf("raft: reading snapshot for %d: %v", to, err))
	}
	if snap.IsEmpty() {
		panic(fmt.Sprintf("raft: peer %d needs a snapshot but none exists (first index %d)", to, r.raftLog.firstIndex()))
	}
	pr.becomeSnapshot(snap.Meta.Index)
	pr.snap = &snapshotSend{snap: snap, checksum: crc32.Checksum(snap.Data, castagnoli)}
	r.logger.Info("sending snapshot", "peer", to, "term", r.Term, "index", snap.Meta.Index,
		"snap_term", snap.Meta.Term, "bytes", len(snap.Data))
	r.sendSnapChunks(to, pr)
	return true
}

func (r *raft) sendSnapChunks(to uint64, pr *Progress) {
	s := pr.snap
	total := uint64(len(s.snap.Data))
	window := snapWindowChunks * r.snapChunkSize
	for !s.sentAll && s.sent-s.acked < window {
		end := min(s.sent+r.snapChunkSize, total)
		r.send(Message{To: to, Type: MsgSnap, Snapshot: &SnapshotChunk{
			Meta:     s.snap.Meta,
			Offset:   s.sent,
			Total:    total,
			Checksum: s.checksum,
			Data:     s.snap.Data[s.sent:end],
		}})
		s.sent = end
		if s.sent == total {
			s.sentAll = true
		}
	}
}

func (r *raft) handleSnapshotResponse(m Message, pr *Progress) {
	pr.RecentActive = true
	s := pr.snap
	if pr.State != ProgressSnapshot || s == nil || m.Snapshot == nil ||
		m.Snapshot.Meta.Index != s.snap.Meta.Index || m.Snapshot.Meta.Term != s.snap.Meta.Term {
		return // stale
	}
	if m.Reject {
		r.logger.Info("snapshot transfer restarted by follower", "peer", m.From, "index", s.snap.Meta.Index)
		s.acked = 0
		s.rewind()
	} else if m.Index <= uint64(len(s.snap.Data)) {
		if m.Index < s.acked {
			// The follower holds less than it once confirmed: it restarted
			// and began this snapshot again (or the ack is a reordered old
			// one, in which case resending a few chunks is harmless).
			s.acked = m.Index
			s.rewind()
		} else {
			s.acked = m.Index
			s.sent = max(s.sent, s.acked)
		}
	}
	r.sendSnapChunks(m.From, pr)
}

// maybeResumeSnapshot resends from the acknowledged offset when the
// transfer made no progress over two heartbeat rounds.
func (r *raft) maybeResumeSnapshot(to uint64, pr *Progress) {
	s := pr.snap
	if s == nil {
		return
	}
	if s.acked != s.ackedAtBeat {
		s.ackedAtBeat = s.acked
		s.stalledBeats = 0
		return
	}
	s.stalledBeats++
	if s.stalledBeats < 2 {
		return
	}
	s.stalledBeats = 0
	r.logger.Debug("snapshot transfer stalled: resending", "peer", to, "offset", s.acked)
	s.rewind()
	r.sendSnapChunks(to, pr)
}

// handleSnapshot accumulates one chunk (follower side).
func (r *raft) handleSnapshot(m Message) error {
	c := m.Snapshot
	if c == nil {
		return fmt.Errorf("raft: MsgSnap from %d without a chunk", m.From)
	}
	if c.Meta.Index <= r.raftLog.committed {
		// Stale: we have it already. Tell the leader where we are.
		r.snapRecv = nil
		r.send(Message{To: m.From, Type: MsgAppResp, Index: r.raftLog.committed})
		return nil
	}
	ack := func(offset uint64, reject bool) {
		r.send(Message{To: m.From, Type: MsgSnapResp, Index: offset, Reject: reject,
			Snapshot: &SnapshotChunk{Meta: SnapshotMeta{Index: c.Meta.Index, Term: c.Meta.Term}, Offset: offset}})
	}
	rv := r.snapRecv
	if rv == nil || !rv.matches(c) {
		if c.Offset != 0 {
			ack(0, true)
			return nil
		}
		rv = &snapshotRecv{meta: c.Meta, total: c.Total, checksum: c.Checksum}
		r.snapRecv = rv
	}
	held := uint64(len(rv.buf))
	if c.Offset != held {
		ack(held, false) // duplicate or out of order
		return nil
	}
	if held+uint64(len(c.Data)) > rv.total {
		r.snapRecv = nil
		ack(0, true)
		return fmt.Errorf("raft: snapshot chunk from %d overflows total %d", m.From, rv.total)
	}
	rv.buf = append(rv.buf, c.Data...)
	if uint64(len(rv.buf)) < rv.total {
		ack(uint64(len(rv.buf)), false)
		return nil
	}
	r.snapRecv = nil
	if sum := crc32.Checksum(rv.buf, castagnoli); sum != rv.checksum {
		r.logger.Warn("snapshot checksum mismatch: restarting transfer", "peer", m.From, "index", c.Meta.Index,
			"want", rv.checksum, "got", sum)
		ack(0, true)
		return nil
	}
	s := Snapshot{Meta: c.Meta, Data: rv.buf}
	s.Meta.ConfState = cloneConfState(c.Meta.ConfState)
	if r.restore(s) {
		r.send(Message{To: m.From, Type: MsgAppResp, Index: r.raftLog.lastIndex()})
	} else {
		r.send(Message{To: m.From, Type: MsgAppResp, Index: r.raftLog.committed})
	}
	return nil
}
