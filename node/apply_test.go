package node

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/kvstore"
)

var errCrashBeforeCommit = errors.New("test: crash between answer and state machine commit")

// TestAnswerBeforeStateCommitThenCrash: the leader answers a write once the
// state machine's transaction has applied it, before that transaction
// commits (the test holds the commit until the answer is in); the store's
// applied index does not move meanwhile. Then the node dies before the
// commit: the restarted node re-applies the entry from its log, and the
// client's retry gets the answer it already had from the session table,
// with the write applied once.
func TestAnswerBeforeStateCommitThenCrash(t *testing.T) {
	var armed atomic.Bool
	held := make(chan uint64, 1) // the held batch's last index
	release := make(chan error, 1)
	stop := make(chan struct{})
	c := newCluster(t, 1, func(c *cluster) {
		c.tune = func(cfg *Config) {
			cfg.beforeStateCommit = func(rs []kvstore.Result) error {
				if !armed.Load() {
					return nil
				}
				for _, r := range rs {
					// The second put of k: not the first put's batch, whose
					// callback may still run when its answer is in.
					if r.Op != kvstore.OpPut || r.KV == nil || string(r.KV.Key) != "k" || r.KV.Version != 2 {
						continue
					}
					armed.Store(false)
					held <- rs[len(rs)-1].Index
					select {
					case err := <-release:
						return err
					case <-stop:
						return errors.New("test ended")
					}
				}
				return nil
			}
		}
	})
	t.Cleanup(func() { close(stop) }) // runs before the cluster stops
	tn := c.node(1)
	armed.Store(true) // until the held batch; the restarted node re-applies it
	mustOK(t, c.do(put(61, 1, "k", "v1")))
	answer := mustOK(t, c.do(put(61, 2, "k", "v2"))) // returns while the commit is held
	idx := <-held
	if applied := tn.n.kv.Applied(); applied >= idx {
		t.Fatalf("store applied %d while the commit of %d is held", applied, idx)
	}
	// A serializable read may be stale: it sees the committed state.
	if v, code := localValue(tn, "k"); code != proto.CodeOK || v != "v1" {
		t.Fatalf("serializable read during the held commit: %q (%v), want the committed v1", v, code)
	}

	release <- errCrashBeforeCommit
	err := <-tn.done
	tn.n = nil
	if !errors.Is(err, errCrashBeforeCommit) {
		t.Fatalf("Run returned %v, want the simulated crash", err)
	}
	c.start(tn, tn.addr)
	if applied := tn.n.kv.Applied(); applied >= idx {
		t.Fatalf("restarted store applied %d: the uncommitted batch ending at %d reached the file", applied, idx)
	}
	retry := mustOK(t, c.do(put(61, 2, "k", "v2")))
	if retry.Revision != answer.Revision {
		t.Fatalf("retry after the crash answered revision %d, the first answer had %d", retry.Revision, answer.Revision)
	}
	kv := mustOK(t, c.do(get("k"))).KVs[0]
	if string(kv.Value) != "v2" || kv.Version != 2 || kv.ModRevision != answer.Revision {
		t.Fatalf("k = %q version %d mod %d, want v2 version 2 mod %d: applied once", kv.Value, kv.Version, kv.ModRevision, answer.Revision)
	}
}
