package raftsim

import (
	"bytes"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"testing"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/node/raft"
)

var seedFlag = flag.String("seed", "", "replay this seed (hex 0x... or decimal); same as RAFT_SIM_SEED")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// replaySeed returns the seed given by -seed or RAFT_SIM_SEED, if any.
func replaySeed(t testing.TB) (uint64, bool) {
	s := *seedFlag
	if s == "" {
		s = os.Getenv("RAFT_SIM_SEED")
	}
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Fatalf("bad seed %q: %v", s, err)
	}
	return v, true
}

// nameSeed is a scenario's default seed: a hash of its name.
func nameSeed(name string) uint64 {
	f := fnv.New64a()
	f.Write([]byte(name))
	return f.Sum64()
}

// harness wraps a Cluster for a test: every failure prints the report.
type harness struct {
	t testing.TB
	*Cluster
}

// newHarness builds a cluster for the running test; the seed is the
// replay seed if one was given, else a hash of the test name.
func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	cfg.Name = t.Name()
	if s, ok := replaySeed(t); ok {
		cfg.Seed = s
	} else if cfg.Seed == 0 {
		cfg.Seed = nameSeed(t.Name())
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, Cluster: c}
	t.Cleanup(func() {
		if c.Err() != nil && !t.Failed() {
			t.Errorf("simulation stopped on a violation:\n%s", c.Report())
		}
	})
	return h
}

// fatalf fails the test with the cluster report.
func (h *harness) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("%s\n%s", fmt.Sprintf(format, args...), h.Report())
}

// ok fails the test if the simulation hit a violation.
func (h *harness) ok() {
	h.t.Helper()
	if h.Err() != nil {
		h.fatalf("violation")
	}
}

func (h *harness) ticks(n int) {
	h.t.Helper()
	h.RunTicks(n)
	h.ok()
}

// checkOneLeader waits for exactly one running leader among connected
// nodes with the highest term and returns it (6.824 checkOneLeader).
func (h *harness) checkOneLeader() uint64 {
	h.t.Helper()
	for range 10 {
		h.ticks(h.Config().ElectionTicks * 3)
		leaders := map[uint64][]uint64{}
		var top uint64
		for _, id := range h.UpIDs() {
			if st := h.Node(id).BasicStatus(); st.RaftState == raft.StateLeader {
				leaders[st.Term] = append(leaders[st.Term], id)
				top = max(top, st.Term)
			}
		}
		if len(leaders[top]) > 1 {
			h.fatalf("term %d has leaders %v", top, leaders[top])
		}
		if top != 0 {
			return leaders[top][0]
		}
	}
	h.fatalf("expected one leader, got none")
	return 0
}

// checkNoLeader fails if a node not cut off from everyone thinks it leads.
func (h *harness) checkNoLeader(connected ...uint64) {
	h.t.Helper()
	for _, id := range connected {
		if n := h.Node(id); n != nil && n.BasicStatus().RaftState == raft.StateLeader {
			h.fatalf("node %d is leader, expected none", id)
		}
	}
}

// nCommitted returns how many running nodes applied index i, and the
// committed payload there.
func (h *harness) nCommitted(i uint64) (int, []byte) {
	n := 0
	for _, id := range h.UpIDs() {
		if h.Applied(id) >= i {
			n++
		}
	}
	data, _, _ := h.CommittedData(i)
	return n, data
}

// one submits cmd to a leader and waits until at least expected running
// nodes applied it (6.824 one()). With retry, it re-submits if a leader
// loses it. It returns the index.
func (h *harness) one(cmd []byte, expected int, retry bool) uint64 {
	h.t.Helper()
	deadline := h.Now() + 40*h.ElectionTimeout()
	for h.Now() < deadline {
		var idx uint64
		for _, id := range h.UpIDs() {
			n := h.Node(id)
			if n.BasicStatus().RaftState != raft.StateLeader {
				continue
			}
			if err := h.Propose(id, cmd, func(r ProposeResult) {
				if r.Err == nil {
					idx = r.Index
				}
			}); err == nil {
				break
			}
		}
		// Wait for the leader to apply, then for the others.
		got := h.RunUntil(func() bool {
			if idx == 0 {
				return false
			}
			n, data := h.nCommitted(idx)
			return n >= expected && bytes.Equal(data, cmd)
		}, 4*h.ElectionTimeout())
		h.ok()
		if got {
			return idx
		}
		if idx != 0 && !retry {
			n, _ := h.nCommitted(idx)
			h.fatalf("one(%q): index %d applied by %d nodes, want %d", cmd, idx, n, expected)
		}
		h.ticks(h.Config().ElectionTicks / 2)
	}
	h.fatalf("one(%q) failed to reach agreement on %d nodes", cmd, expected)
	return 0
}

// proposeOn proposes cmd on id and returns a pointer to its outcome.
type outcome struct {
	done bool
	r    ProposeResult
}

func (h *harness) proposeOn(id uint64, cmd []byte) (*outcome, error) {
	o := &outcome{}
	err := h.Propose(id, cmd, func(r ProposeResult) { o.done, o.r = true, r })
	return o, err
}

// waitApplied waits until every id applied at least index.
func (h *harness) waitApplied(index uint64, limit Time, ids ...uint64) {
	h.t.Helper()
	if !h.RunUntil(func() bool {
		for _, id := range ids {
			if h.Applied(id) < index {
				return false
			}
		}
		return true
	}, limit) {
		h.ok()
		var got []uint64
		for _, id := range ids {
			got = append(got, h.Applied(id))
		}
		h.fatalf("nodes %v applied %v, want all >= %d", ids, got, index)
	}
}

// others returns ids without x.
func others(ids []uint64, x ...uint64) []uint64 {
	var out []uint64
next:
	for _, id := range ids {
		for _, y := range x {
			if id == y {
				continue next
			}
		}
		out = append(out, id)
	}
	return out
}

func cmd(format string, args ...any) []byte { return fmt.Appendf(nil, format, args...) }

// transfer asks lead to hand leadership to to.
func (h *harness) transfer(lead, to uint64) {
	h.t.Helper()
	_ = h.Do(lead, fmt.Sprintf("transfer leadership to %d", to), func(n *raft.Node) error {
		n.TransferLeader(to)
		return nil
	})
	h.ok()
}
