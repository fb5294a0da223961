package raftsim

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"

	"github.com/raftkv/raftkv/node/raft"
)

// StateMachine is the application replicated by the simulated cluster. Each
// simulated node owns one instance, created by Config.NewStateMachine; a
// crash throws it away and a restart builds a fresh one and Restores the
// snapshot on disk before the log tail is re-applied.
//
// All methods run on the simulator's single goroutine.
type StateMachine interface {
	// Apply applies one committed entry of type EntryNormal with non-empty
	// Data (no-ops and configuration changes never reach the state
	// machine). e.Data is the payload given to Cluster.Propose, without the
	// simulator's envelope. The result is handed to the proposer.
	Apply(e raft.Entry) []byte
	// Snapshot returns the state as of the last applied entry. Unless
	// Config.SkipSnapshotCompare is set it must be a deterministic
	// function of the applied sequence: the checker compares snapshots of
	// different nodes taken at the same index byte for byte.
	Snapshot() []byte
	// Restore replaces the state with a Snapshot's output.
	Restore(data []byte) error
}

// HashMachine is the default StateMachine: its whole state is the number of
// entries applied and a running FNV-64a hash over (index, data) of each
// one, so two nodes have the same state exactly when they applied the same
// sequence. Apply returns the new hash (8 bytes, big endian). Snapshots
// carry Pad extra bytes derived from the hash (to make snapshots big
// enough to travel in several chunks); Restore verifies them, so a
// snapshot damaged in transfer is detected.
type HashMachine struct {
	Count uint64 // entries applied
	Hash  uint64 // running hash over (index, data)
	Pad   int    // extra snapshot bytes
}

// NewHashMachine returns an empty HashMachine as a StateMachine.
func NewHashMachine() StateMachine { return &HashMachine{} }

// PaddedHashMachine returns a constructor of HashMachines whose snapshots
// are pad bytes longer.
func PaddedHashMachine(pad int) func() StateMachine {
	return func() StateMachine { return &HashMachine{Pad: pad} }
}

// Apply implements StateMachine.
func (h *HashMachine) Apply(e raft.Entry) []byte {
	f := fnv.New64a()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], h.Hash)
	binary.BigEndian.PutUint64(b[8:], e.Index)
	f.Write(b[:])
	f.Write(e.Data)
	h.Hash = f.Sum64()
	h.Count++
	return binary.BigEndian.AppendUint64(nil, h.Hash)
}

// Snapshot implements StateMachine.
func (h *HashMachine) Snapshot() []byte {
	b := make([]byte, 16, 16+h.Pad)
	binary.BigEndian.PutUint64(b, h.Count)
	binary.BigEndian.PutUint64(b[8:], h.Hash)
	return h.pad(b)
}

func (h *HashMachine) pad(b []byte) []byte {
	x := h.Hash | 1
	for range h.Pad {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b = append(b, byte(x))
	}
	return b
}

// Restore implements StateMachine.
func (h *HashMachine) Restore(data []byte) error {
	if len(data) == 0 { // the bootstrap snapshot: nothing applied yet
		h.Count, h.Hash = 0, 0
		return nil
	}
	if len(data) != 16+h.Pad {
		return fmt.Errorf("raftsim: hash machine snapshot of %d bytes, want %d", len(data), 16+h.Pad)
	}
	h.Count = binary.BigEndian.Uint64(data[:8])
	h.Hash = binary.BigEndian.Uint64(data[8:])
	if want := h.pad(data[:16:16]); string(want) != string(data) {
		return fmt.Errorf("raftsim: hash machine snapshot padding damaged")
	}
	return nil
}

// digest is a short fingerprint of bytes used by the checker.
func digest(parts ...[]byte) uint64 {
	f := fnv.New64a()
	for _, p := range parts {
		f.Write(p)
	}
	return f.Sum64()
}
