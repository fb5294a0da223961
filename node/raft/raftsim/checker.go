package raftsim

import (
	"bytes"
	"errors"

	"github.com/raftkv/raftkv/node/raft"
)

// checker holds what the whole run has observed and checks every node's
// new state against it:
//
//   - election safety: at most one leader per term;
//   - log matching: an (index, term) pair names the same entry, with the
//     same previous term, on every node's disk;
//   - leader completeness: a new leader's disk holds every entry known
//     committed in an earlier term;
//   - state machine safety: entries are applied in order, without gaps,
//     only once committed, and equal to the committed record; snapshots of
//     the state at the same index are equal;
//   - durability: a persisted commit index never exceeds the last index,
//     never regresses, and a committed entry never changes (also after a
//     crash and restart); votes, MsgApp acks and vote grants are sent only
//     once durable; the commit index a MsgApp or MsgHeartbeat announces is
//     durable on its sender (its entries need not be: early send);
//   - reads: a ReadIndex answer is never below what was known committed
//     when the read was issued.
type checker struct {
	c       *Cluster
	leaders map[uint64]uint64 // term -> leader
	logs    map[[2]uint64]logRec
	// committed[i] is the entry known committed at index i.
	committed    []commitRec
	maxCommitted uint64
	snaps        map[uint64]snapRec // index -> state machine snapshot
}

type logRec struct {
	dig      uint64
	prevTerm uint64 // 0 = unknown (compacted)
	node     uint64
}

type commitRec struct {
	known bool
	term  uint64
	dig   uint64
	data  []byte // payload without envelope
	// commitTerm bounds the term in which the entry was committed: the
	// term of the first node seen persisting a commit index covering it.
	commitTerm uint64
	node       uint64
}

type snapRec struct {
	dig  uint64
	node uint64
}

func newChecker(c *Cluster) *checker {
	return &checker{
		c:         c,
		leaders:   map[uint64]uint64{},
		logs:      map[[2]uint64]logRec{},
		committed: make([]commitRec, 1, 1024),
		snaps:     map[uint64]snapRec{},
	}
}

func entryDigest(e raft.Entry) uint64 { return digest([]byte{byte(e.Type)}, e.Data) }

// onPersist runs after a Ready was written to sn's disk.
func (k *checker) onPersist(sn *simNode, rd raft.Ready) {
	first, _ := sn.disk.FirstIndex()
	for i, e := range rd.Entries {
		if e.Index < first {
			continue // at or below the disk's snapshot
		}
		var prev uint64
		if i > 0 {
			prev = rd.Entries[i-1].Term
		} else if t, err := sn.disk.Term(e.Index - 1); err == nil {
			prev = t
		}
		key := [2]uint64{e.Index, e.Term}
		rec := logRec{dig: entryDigest(e), prevTerm: prev, node: sn.id}
		if old, ok := k.logs[key]; ok {
			if old.dig != rec.dig {
				k.c.fail(sn.id, "log matching: entry %d/%d differs from node %d's", e.Index, e.Term, old.node)
				return
			}
			if old.prevTerm != 0 && prev != 0 && old.prevTerm != prev {
				k.c.fail(sn.id, "log matching: entry %d/%d follows term %d here but term %d on node %d", e.Index, e.Term, prev, old.prevTerm, old.node)
				return
			}
		} else {
			k.logs[key] = rec
		}
	}
	k.recordCommit(sn)
}

// recordCommit compares sn's durable log up to its persisted commit index
// with the committed record, extending the record.
func (k *checker) recordCommit(sn *simNode) {
	hs, _, _ := sn.disk.InitialState()
	last, _ := sn.disk.LastIndex()
	first, _ := sn.disk.FirstIndex()
	if hs.Commit > last {
		k.c.fail(sn.id, "persisted commit %d > last index %d", hs.Commit, last)
		return
	}
	from := max(sn.recorded+1, first)
	if hs.Commit < from {
		sn.recorded = max(sn.recorded, hs.Commit)
		return
	}
	ents, err := sn.disk.Entries(from, hs.Commit+1, 1<<62)
	if err != nil {
		k.c.fail(sn.id, "read committed entries [%d,%d]: %v", from, hs.Commit, err)
		return
	}
	for _, e := range ents {
		k.commit(sn, e, hs.Term)
	}
	sn.recorded = hs.Commit
}

func (k *checker) commit(sn *simNode, e raft.Entry, term uint64) {
	for uint64(len(k.committed)) <= e.Index {
		k.committed = append(k.committed, commitRec{})
	}
	r := &k.committed[e.Index]
	d := entryDigest(e)
	if r.known {
		if r.term != e.Term || r.dig != d {
			k.c.fail(sn.id, "committed entry %d changed: term %d on node %d, now term %d here (committed entry lost)", e.Index, r.term, r.node, e.Term)
			return
		}
		r.commitTerm = min(r.commitTerm, term)
		return
	}
	_, payload := unwrap(e.Data)
	if e.Type != raft.EntryNormal {
		payload = e.Data
	}
	*r = commitRec{known: true, term: e.Term, dig: d, data: bytes.Clone(payload), commitTerm: term, node: sn.id}
	k.maxCommitted = max(k.maxCommitted, e.Index)
}

// checkSend checks that a message only promises what is durable.
func (k *checker) checkSend(sn *simNode, m raft.Message) {
	hs, _, _ := sn.disk.InitialState()
	switch m.Type {
	case raft.MsgVote:
		if hs.Term != m.Term || hs.Vote != sn.id {
			k.c.fail(sn.id, "MsgVote for term %d sent before its own vote was durable (disk term=%d vote=%d)", m.Term, hs.Term, hs.Vote)
		}
	case raft.MsgVoteResp:
		if !m.Reject && (hs.Term != m.Term || hs.Vote != m.To) {
			k.c.fail(sn.id, "vote for %d in term %d sent before it was durable (disk term=%d vote=%d)", m.To, m.Term, hs.Term, hs.Vote)
		}
	case raft.MsgAppResp:
		if m.Reject {
			break
		}
		last, _ := sn.disk.LastIndex()
		if m.Index > last {
			k.c.fail(sn.id, "MsgAppResp acks index %d but the disk ends at %d", m.Index, last)
		}
	case raft.MsgApp, raft.MsgHeartbeat:
		// The entries of a MsgApp may leave before they are durable on
		// the leader (raft.Ready.SplitMessages), the commit index it
		// announces may not.
		last, _ := sn.disk.LastIndex()
		if m.Commit > last {
			k.c.fail(sn.id, "%v announces commit %d but the disk ends at %d", m.Type, m.Commit, last)
		}
	}
}

// checkNode runs after every step of sn.
func (k *checker) checkNode(sn *simNode) {
	st := sn.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || st.Term == sn.leaderTerm {
		return
	}
	sn.leaderTerm = st.Term
	if other, ok := k.leaders[st.Term]; ok && other != sn.id {
		k.c.fail(sn.id, "election safety: two leaders in term %d: %d and %d", st.Term, other, sn.id)
		return
	}
	k.leaders[st.Term] = sn.id
	k.c.logf("node %d: became leader in term %d", sn.id, st.Term)
	// Leader completeness: everything committed in an earlier term.
	snap, _ := sn.disk.Snapshot()
	for i := uint64(1); i <= k.maxCommitted; i++ {
		r := k.committed[i]
		if !r.known || r.commitTerm >= st.Term {
			continue
		}
		if i < snap.Meta.Index {
			continue
		}
		t, err := sn.disk.Term(i)
		if err != nil {
			if errors.Is(err, raft.ErrCompacted) {
				continue
			}
			k.c.fail(sn.id, "leader completeness: leader of term %d lacks entry %d committed by term %d (%v)", st.Term, i, r.commitTerm, err)
			return
		}
		if t != r.term {
			k.c.fail(sn.id, "leader completeness: leader of term %d has term %d at %d, committed term %d", st.Term, t, i, r.term)
			return
		}
	}
}

// onApply checks one committed entry before sn applies it.
func (k *checker) onApply(sn *simNode, e raft.Entry) bool {
	if e.Index != sn.applied+1 {
		k.c.fail(sn.id, "applied index %d after %d (gap or reorder)", e.Index, sn.applied)
		return false
	}
	hs, _, _ := sn.disk.InitialState()
	if e.Index > max(hs.Commit, sn.lastSnap) {
		k.c.fail(sn.id, "applied index %d beyond the persisted commit %d", e.Index, hs.Commit)
		return false
	}
	if e.Index >= uint64(len(k.committed)) || !k.committed[e.Index].known {
		k.c.fail(sn.id, "applied entry %d/%d that no node recorded as committed", e.Index, e.Term)
		return false
	}
	r := k.committed[e.Index]
	if r.term != e.Term || r.dig != entryDigest(e) {
		k.c.fail(sn.id, "state machine safety: applied %d/%d (digest %x) but committed was %d/%d (digest %x, node %d)",
			e.Index, e.Term, entryDigest(e), e.Index, r.term, r.dig, r.node)
		return false
	}
	return true
}

// onRestore checks a snapshot sn is about to install in its state machine.
func (k *checker) onRestore(sn *simNode, s raft.Snapshot) {
	i := s.Meta.Index
	if i < uint64(len(k.committed)) && k.committed[i].known && k.committed[i].term != s.Meta.Term {
		k.c.fail(sn.id, "snapshot %d/%d does not match committed term %d", i, s.Meta.Term, k.committed[i].term)
		return
	}
	if k.c.cfg.SkipSnapshotCompare {
		return
	}
	if r, ok := k.snaps[i]; ok && r.dig != digest(s.Data) {
		k.c.fail(sn.id, "snapshot %d received differs from the state node %d snapshotted at %d", i, r.node, i)
	}
}

// recordSnapshot records (and compares) the state machine state at index.
func (k *checker) recordSnapshot(node, index uint64, data []byte) {
	if k.c.cfg.SkipSnapshotCompare {
		return
	}
	d := digest(data)
	if r, ok := k.snaps[index]; ok {
		if r.dig != d {
			k.c.fail(node, "state machines diverged: snapshot at %d differs from node %d's", index, r.node)
		}
		return
	}
	k.snaps[index] = snapRec{dig: d, node: node}
}
