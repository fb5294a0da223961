package kvsim

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kvstore"
	"github.com/raftkv/raftkv/node/raft"
)

// The checks must be able to fail: each test plants a bug and requires
// the check to catch it.

// requireIllegal checks that the history is rejected and that the
// visualization was written.
func requireIllegal(t *testing.T, s *Sim) {
	t.Helper()
	res, err := s.CheckLinearizable(t.TempDir(), 30*time.Second)
	if err == nil {
		t.Fatalf("the checker accepted a history of %d operations from a buggy store", res.Ops)
	}
	if !strings.Contains(err.Error(), "not linearizable") || !strings.Contains(err.Error(), "KV_SIM_SEED=") {
		t.Fatalf("unexpected error: %v", err)
	}
	fi, serr := os.Stat(res.HTML)
	if serr != nil || fi.Size() == 0 {
		t.Fatalf("no visualization at %q: %v", res.HTML, serr)
	}
	t.Logf("caught, as expected: %v", err)
}

// Every replica acknowledges some puts without applying them.
func TestCheckerCatchesLostWrite(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 11), Nodes: 3, Clients: 2})
	s.dropWrite = func(_ uint64, e raft.Entry) bool {
		cmd, err := kvstore.DecodeCommand(e.Data)
		return err == nil && cmd.Op == kvstore.OpPut && e.Index%3 == 0
	}
	s.Start(Workload{Keys: 2})
	run(t, s, 1500)
	if err := s.Settle(10_000); err != nil {
		t.Fatal(s.Report(err))
	}
	s.StopClients()
	requireIllegal(t, s)
}

// Gets are served from the local store of whatever node the client
// reaches, without ReadIndex: a follower cut off from the leader answers
// with a value older than a write that already completed.
func TestCheckerCatchesStaleRead(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 12), Nodes: 3, Clients: 2})
	s.staleReads = true
	lead := waitLeader(t, s)
	lag := lead%3 + 1
	reader, writer := s.Clients()[0], s.Clients()[1]
	var others []uint64
	for _, id := range s.C.IDs() {
		if id != lag {
			others = append(others, id)
		}
	}
	writer.Restrict(others)
	reader.Restrict([]uint64{lag})
	do := func(c *Client, in Input) Output {
		t.Helper()
		var out *Output
		c.Do(in, func(o Output) { out = &o })
		if !s.C.RunUntil(func() bool { return out != nil || s.Err() != nil }, 10_000) || s.Err() != nil {
			t.Fatal(s.Report(simError("operation did not complete")))
		}
		return *out
	}
	do(writer, Input{Op: OpPut, Key: "k", Value: "old"})
	if !s.C.RunUntil(func() bool { return s.Store(lag).Applied() >= s.Store(lead).Applied() }, 5000) {
		t.Fatal("follower did not catch up")
	}
	s.C.Isolate(lag)
	do(writer, Input{Op: OpPut, Key: "k", Value: "new"})
	if got := do(reader, Input{Op: OpGet, Key: "k"}); got.Value != "old" {
		t.Fatalf("the isolated follower read %+v, want the stale value (the planted bug did not trigger)", got)
	}
	requireIllegal(t, s)
}

// One replica skips some writes: its fingerprint must differ from the
// others' at the same applied index.
func TestCheckerCatchesDivergence(t *testing.T) {
	s := newSim(t, Config{Seed: envSeed(t, 13), Nodes: 3, Clients: 2, SnapshotEvery: 10})
	s.dropWrite = func(node uint64, e raft.Entry) bool {
		cmd, err := kvstore.DecodeCommand(e.Data)
		return node == 3 && err == nil && cmd.Op == kvstore.OpPut && e.Index%5 == 0
	}
	s.Start(Workload{Keys: 2})
	s.C.RunFor(1000)
	err := s.Err()
	if err == nil {
		err = s.Settle(10_000)
	}
	if err == nil {
		s.StopClients()
		err = s.CheckReplicas(10_000)
	}
	if err == nil || !strings.Contains(err.Error(), "diverged") {
		t.Fatalf("divergent replicas not detected: %v", err)
	}
	t.Logf("caught, as expected: %v", err)
}
