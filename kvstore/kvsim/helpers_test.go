package kvsim

import (
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/node/raft/raftsim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// envSeed returns KV_SIM_SEED when set (a replay), else def.
func envSeed(t *testing.T, def uint64) uint64 {
	t.Helper()
	v := os.Getenv("KV_SIM_SEED")
	if v == "" {
		return def
	}
	seed, err := strconv.ParseUint(v, 0, 64)
	if err != nil {
		t.Fatalf("KV_SIM_SEED=%q: %v", v, err)
	}
	return seed
}

// newSim builds a Sim for t, named after the test (for the replay command).
func newSim(t *testing.T, cfg Config) *Sim {
	t.Helper()
	cfg.Name = t.Name()
	cfg.Dir = t.TempDir()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// run advances the simulation by d and fails t on any violation.
func run(t *testing.T, s *Sim, d raftsim.Time) {
	t.Helper()
	s.C.RunFor(d)
	if err := s.Err(); err != nil {
		t.Fatal(s.Report(err))
	}
}

// waitLeader waits for a leader and returns it.
func waitLeader(t *testing.T, s *Sim) uint64 {
	t.Helper()
	lead := s.C.WaitLeader(20 * s.C.ElectionTimeout())
	if err := s.Err(); err != nil {
		t.Fatal(s.Report(err))
	}
	if lead == 0 {
		t.Fatal(s.Report(errNoLeader))
	}
	return lead
}

type simError string

func (e simError) Error() string { return string(e) }

const errNoLeader = simError("kvsim test: no leader elected")

// finish ends a run: heal, restart every node and let every operation
// finish (liveness), check the replicas' fingerprints and the history's
// linearizability. It fails t unless at least minOps operations completed.
func finish(t *testing.T, s *Sim, minOps int) CheckResult {
	t.Helper()
	if err := s.Settle(30_000); err != nil {
		t.Fatal(s.Report(err))
	}
	s.StopClients()
	if err := s.CheckReplicas(10_000); err != nil {
		t.Fatal(s.Report(err))
	}
	start := time.Now()
	res, err := s.CheckLinearizable(os.TempDir(), 30*time.Second)
	checkTime := time.Since(start)
	if err != nil {
		t.Fatal(s.Report(err))
	}
	done := res.Ops - res.Unknown
	if done < minOps {
		t.Fatalf("only %d operations completed, want >= %d (seed %#x)", done, minOps, s.Config().Seed)
	}
	t.Logf("seed %#x: %d ops (%d unknown), %d fingerprint checks, t=%dms, porcupine %v, %+v",
		s.Config().Seed, res.Ops, res.Unknown, s.FingerprintChecks(), s.C.Now(), checkTime.Round(time.Millisecond), s.Stats())
	return res
}
