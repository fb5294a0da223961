package raftsim

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/node/raft"
)

// plantedRun runs a small busy cluster with a planted bug and returns the
// violation the checker reported.
func plantedRun(t *testing.T, plant func(c *Cluster)) *Violation {
	t.Helper()
	c, err := New(Config{Seed: 7, Nodes: 3, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	plant(c)
	var stop bool
	var acks []ack
	h := &harness{t: t, Cluster: c}
	h.startClients(2, &stop, &acks)
	c.RunFor(200 * c.ElectionTimeout())
	var v *Violation
	if !errors.As(c.Err(), &v) {
		t.Fatalf("planted bug not caught: err=%v after %d applied commands", c.Err(), len(acks))
	}
	if rep := c.Report(); !strings.Contains(rep, "replay: RAFT_SIM_SEED=0x7 ") || !strings.Contains(rep, "VIOLATION") {
		t.Fatalf("report lacks the replay command or the violation:\n%s", rep)
	}
	return v
}

func TestCheckerCatchesCorruptApply(t *testing.T) {
	v := plantedRun(t, func(c *Cluster) {
		c.tamperApply = func(id uint64, e *raft.Entry) {
			if id == 2 && e.Index == 7 && len(e.Data) > 0 {
				e.Data = append([]byte(nil), e.Data...)
				e.Data[len(e.Data)-1] ^= 1
			}
		}
	})
	if v.Node != 2 || !strings.Contains(v.What, "state machine safety") {
		t.Fatalf("wrong violation: %v", v)
	}
}

func TestCheckerCatchesSkippedApply(t *testing.T) {
	v := plantedRun(t, func(c *Cluster) {
		c.tamperApply = func(id uint64, e *raft.Entry) {
			if id == 3 && e.Index == 6 {
				e.Index = 7 // as if 6 had been skipped
			}
		}
	})
	if !strings.Contains(v.What, "gap or reorder") {
		t.Fatalf("wrong violation: %v", v)
	}
}

func TestCheckerCatchesUnpersistedVote(t *testing.T) {
	// The application "forgets" to write hard states: the first vote
	// grant leaves before it is durable.
	v := plantedRun(t, func(c *Cluster) {
		c.tamperPersist = func(id uint64, rd *raft.Ready) { rd.HardState = raft.HardState{} }
	})
	if !strings.Contains(v.What, "durable") {
		t.Fatalf("wrong violation: %v", v)
	}
}

func TestCheckerCatchesUnpersistedEntries(t *testing.T) {
	v := plantedRun(t, func(c *Cluster) {
		// One write of node 2's is lost, yet the Ready "succeeds".
		done := false
		c.tamperPersist = func(id uint64, rd *raft.Ready) {
			if !done && id == 2 && len(rd.Entries) > 0 && rd.Entries[0].Index > 5 {
				rd.Entries, done = nil, true
			}
		}
	})
	if !strings.Contains(v.What, "disk ends") && !strings.Contains(v.What, "commit") {
		t.Fatalf("wrong violation: %v", v)
	}
}

func TestCheckerCatchesDivergentLog(t *testing.T) {
	// A node persists a different entry than the leader sent: log
	// matching (or the committed record) must notice.
	v := plantedRun(t, func(c *Cluster) {
		c.tamperPersist = func(id uint64, rd *raft.Ready) {
			if c.Leader() == id {
				return
			}
			rd.Entries = slices.Clone(rd.Entries) // the core's memory stays right
			for i := range rd.Entries {
				if rd.Entries[i].Index == 8 && len(rd.Entries[i].Data) > 0 {
					rd.Entries[i].Data = []byte("forged entry!")
				}
			}
		}
	})
	if !strings.Contains(v.What, "log matching") && !strings.Contains(v.What, "committed") {
		t.Fatalf("wrong violation: %v", v)
	}
}

func TestCheckerCatchesTwoLeaders(t *testing.T) {
	c, err := New(Config{Seed: 9, Nodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	lead := c.WaitLeader(20 * c.ElectionTimeout())
	if lead == 0 {
		t.Fatalf("no leader:\n%s", c.Report())
	}
	// Pretend another node was seen leading the same term.
	c.chk.leaders[c.Term(lead)] = lead + 10
	c.nodes[lead].leaderTerm = 0
	c.chk.checkNode(c.nodes[lead])
	var v *Violation
	if !errors.As(c.Err(), &v) || !strings.Contains(v.What, "two leaders") {
		t.Fatalf("two leaders in a term not caught: %v", c.Err())
	}
}

func TestCheckerCatchesStaleRead(t *testing.T) {
	c, err := New(Config{Seed: 11, Nodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	lead := c.WaitLeader(20 * c.ElectionTimeout())
	if lead == 0 {
		t.Fatalf("no leader:\n%s", c.Report())
	}
	// A read issued when index 1000 was (pretend) known committed must
	// not be answered with a lower index.
	c.chk.maxCommitted = 1000
	if err := c.ReadIndex(lead, func(ReadResult) {}); err != nil {
		t.Fatal(err)
	}
	c.RunFor(c.ElectionTimeout())
	var v *Violation
	if !errors.As(c.Err(), &v) || !strings.Contains(v.What, "stale read") {
		t.Fatalf("stale read not caught: %v", c.Err())
	}
}

func TestDeterministicReplay(t *testing.T) {
	run := func() []string {
		c, err := New(Config{Seed: 0xdead, Nodes: 5, TickSkew: 0.3, Network: Unreliable(), SnapshotEvery: 7})
		if err != nil {
			t.Fatal(err)
		}
		h := &harness{t: t, Cluster: c}
		var stop bool
		var acks []ack
		h.startClients(2, &stop, &acks)
		n := c.StartNemesis(NemesisConfig{Partitions: true, Crashes: true, Unreliable: true, TickRates: true, Membership: true, Transfers: true})
		c.RunFor(40 * c.ElectionTimeout())
		if c.Err() != nil {
			t.Fatalf("%s", c.Report())
		}
		stop = true
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		return append(c.Events(), c.Report())
	}
	a, b := run(), run()
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("same seed, different runs:\n%s\n----\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
}

func TestCheckerCatchesMissingMustSync(t *testing.T) {
	v := plantedRun(t, func(c *Cluster) {
		c.tamperPersist = func(id uint64, rd *raft.Ready) {
			if len(rd.Entries) > 0 {
				rd.MustSync = false
			}
		}
	})
	if !strings.Contains(v.What, "MustSync") {
		t.Fatalf("wrong violation: %v", v)
	}
}
