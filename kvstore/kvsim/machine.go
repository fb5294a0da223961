package kvsim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/raftkv/raftkv/kvstore"
	"github.com/raftkv/raftkv/node/raft"
)

// Answers of machine.Apply to the proposer (the first byte).
const (
	applyOK      byte = 0 // a msgpack kvstore.Result follows
	applySkipped byte = 1 // the store had applied the entry already: outcome unknown here
	applyFailed  byte = 2 // Apply failed (I/O): the run fails
)

// machine is a simulated node's kvstore.Store as a raftsim.StateMachine.
// Each incarnation of a node opens the node's file again, so a crash keeps
// exactly what the store committed (what the real runtime fsyncs on every
// apply), and Raft re-applies the log above it.
type machine struct {
	sim   *Sim
	id    uint64
	store *kvstore.Store
}

func (s *Sim) openMachine(id uint64) (*machine, error) {
	st, err := kvstore.Open(filepath.Join(s.dir, fmt.Sprintf("n%d", id), "kv.db"), kvstore.Config{
		NoSync:           true,
		SessionTTL:       s.cfg.SessionTTL,
		InitialMmapBytes: 1 << 22,
		Logger:           s.cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("kvsim: node %d: %w", id, err)
	}
	return &machine{sim: s, id: id, store: st}, nil
}

func (m *machine) close() error { return m.store.Close() }

// Apply applies one entry. raftsim hands over only entries with data, so
// the no-ops and configuration changes in between are given to the store
// as empty entries (which only advance its applied index), as the real
// runtime would hand them over. An entry the store applied before a crash
// is skipped by the store: its outcome is unknown to this proposer, which
// retries (and the session answers the retry).
func (m *machine) Apply(e raft.Entry) []byte {
	applied := m.store.Applied()
	if e.Index <= applied {
		m.sim.stats.Skipped++
		return []byte{applySkipped}
	}
	ents := make([]raft.Entry, 0, e.Index-applied)
	for i := applied + 1; i < e.Index; i++ {
		ents = append(ents, raft.Entry{Index: i, Term: e.Term, Type: raft.EntryNormal})
	}
	if m.sim.dropWrite != nil && m.sim.dropWrite(m.id, e) {
		// Planted bug: the command is not applied, but its proposer is
		// told it was.
		ents = append(ents, raft.Entry{Index: e.Index, Term: e.Term, Type: raft.EntryNormal})
		if _, err := m.store.Apply(ents); err != nil {
			m.sim.failf("node %d: apply %d: %v", m.id, e.Index, err)
			return []byte{applyFailed}
		}
		b, _ := msgpack.Marshal(&kvstore.Result{Index: e.Index, Op: kvstore.OpPut})
		return append([]byte{applyOK}, b...)
	}
	ents = append(ents, e)
	res, err := m.store.Apply(ents)
	if err != nil {
		m.sim.failf("node %d: apply %d: %v", m.id, e.Index, err)
		return []byte{applyFailed}
	}
	if len(res) == 0 || res[len(res)-1].Index != e.Index {
		m.sim.failf("node %d: apply %d: no result for the entry", m.id, e.Index)
		return []byte{applyFailed}
	}
	if res[len(res)-1].Duplicate {
		m.sim.stats.Duplicates++
	}
	b, err := msgpack.Marshal(&res[len(res)-1])
	if err != nil {
		m.sim.failf("node %d: encode result %d: %v", m.id, e.Index, err)
		return []byte{applyFailed}
	}
	return append([]byte{applyOK}, b...)
}

// decodeApply reads what Apply returned: the result, or ok=false when the
// outcome is unknown to this proposer.
func decodeApply(b []byte) (r kvstore.Result, ok bool, err error) {
	if len(b) == 0 || b[0] != applyOK {
		return r, false, nil
	}
	if err := msgpack.Unmarshal(b[1:], &r); err != nil {
		return r, false, fmt.Errorf("kvsim: decode result: %w", err)
	}
	r.Err = r.Code.Err()
	return r, true, nil
}

// Snapshot returns the store's snapshot with the store's applied index in
// front (8 bytes, big endian). After a restart the store can be ahead of
// the index raftsim labels the snapshot with (raftsim re-applies from its
// last snapshot); the data is then a later committed state, which is
// harmless: the store skips what it has applied. Each snapshot also
// records the store's fingerprint, compared with every other replica's at
// the same applied index.
func (m *machine) Snapshot() []byte {
	data, info, err := m.store.SnapshotBytes()
	if err != nil {
		m.sim.failf("node %d: snapshot: %v", m.id, err)
		return nil
	}
	m.sim.checkFingerprint(m)
	return append(binary.BigEndian.AppendUint64(nil, info.Applied), data...)
}

// Restore installs a snapshot unless the store has applied its index
// already (the store's own state is then a later committed state, as
// kvstore.Recover decides after a real restart). Empty data is the
// bootstrap snapshot: an empty store at index 1.
func (m *machine) Restore(data []byte) error {
	if len(data) == 0 {
		return m.store.InstallSnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: 1, Term: 1}})
	}
	if len(data) < 8 {
		return errors.New("kvsim: snapshot too short")
	}
	idx := binary.BigEndian.Uint64(data)
	if idx <= m.store.Applied() {
		return nil
	}
	if err := m.store.Restore(bytes.NewReader(data[8:]), idx); err != nil {
		return fmt.Errorf("kvsim: node %d: %w", m.id, err)
	}
	m.sim.checkFingerprint(m)
	return nil
}
