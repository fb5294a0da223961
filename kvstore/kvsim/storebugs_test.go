package kvsim

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/kvstore"
	"github.com/raftkv/raftkv/node/raft"
)

// Regression test for a kvstore bug the simulation found (seed 0x3 of
// TestKVUnreliable, see /work/notes/kvstore-bugs.md): a command that
// failed (here a compare-and-swap whose compare failed) and is retried
// twice with the same session and sequence number must be answered with
// the same failure both times. The session table's answer lost its error
// code on the first duplicate, so the second duplicate reported success.
func TestStoreRetriedFailureKeepsItsError(t *testing.T) {
	st, err := kvstore.Open(filepath.Join(t.TempDir(), "kv.db"), kvstore.Config{NoSync: true, InitialMmapBytes: 1 << 22})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	enc := func(cmd kvstore.Command) []byte {
		b, err := kvstore.EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	apply := func(i uint64, data []byte) kvstore.Result {
		t.Helper()
		res, err := st.Apply([]raft.Entry{{Index: i, Term: 1, Type: raft.EntryNormal, Data: data}})
		if err != nil || len(res) != 1 {
			t.Fatalf("apply %d: %v %v", i, res, err)
		}
		return res[0]
	}
	cas := enc(kvstore.Command{Op: kvstore.OpCAS, ClientID: 0x5e55, Seq: 1, Time: 2, Key: []byte("k"), Value: []byte("v"),
		Compare: &kvstore.Compare{Target: kvstore.CompareValue, Value: []byte("x")}, Then: kvstore.OpPut})
	for i := uint64(1); i <= 3; i++ {
		r := apply(i, cas)
		if !errors.Is(r.Err, kvstore.ErrCompareFailed) {
			t.Errorf("copy %d of the same command (duplicate=%v): err %v, want %v", i, r.Duplicate, r.Err, kvstore.ErrCompareFailed)
		}
	}
	if _, err := st.Get([]byte("k"), 0); !errors.Is(err, kvstore.ErrKeyNotFound) {
		t.Errorf("the failed cas wrote the key: %v", err)
	}
}
