package raftsim

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// fixedSeeds run in every `go test`; RAFT_SIM_SEEDS=N adds N random ones.
var fixedSeeds = []uint64{
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	17, 18, 19, 20, 21, 22, 23, 24,
}

// simVirtualTime is how long the nemesis runs per seed (virtual ms);
// RAFT_SIM_TIME overrides it for soak runs.
const simVirtualTime Time = 8_000

func simTime(t *testing.T) Time {
	if v := os.Getenv("RAFT_SIM_TIME"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("RAFT_SIM_TIME=%q: want virtual milliseconds", v)
		}
		return Time(n)
	}
	return simVirtualTime
}

func simSeeds(t *testing.T) []uint64 {
	if s, ok := replaySeed(t); ok {
		return []uint64{s}
	}
	seeds := fixedSeeds
	if v := os.Getenv("RAFT_SIM_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("RAFT_SIM_SEEDS=%q: want a count", v)
		}
		for range n {
			seeds = append(seeds, rand.Uint64()) // a different set each run
		}
	}
	return seeds
}

// TestSimulation runs randomized clusters of 3, 5 and 7 nodes under every
// fault the simulator has (partitions symmetric and one-way, crashes at
// any point of a Ready, lossy/duplicating/reordering links, skewed
// clocks, membership changes, leadership transfers) with clients writing
// and reading, checking every invariant after every step, then liveness
// once the faults stop.
func TestSimulation(t *testing.T) {
	for _, seed := range simSeeds(t) {
		t.Run(fmt.Sprintf("seed=%#x", seed), func(t *testing.T) { runSimulation(t, seed) })
	}
}

// simConfig derives a cluster configuration from the seed.
func simConfig(seed uint64) Config {
	r := rand.New(rand.NewPCG(seed, 0x51d))
	cfg := Config{
		Seed:     seed,
		Nodes:    []int{3, 5, 7}[r.IntN(3)],
		TickSkew: 0.3 * r.Float64(),
		Network:  []LinkConfig{Reliable(), Reordering(), Unreliable()}[r.IntN(3)],
	}
	if r.IntN(3) != 0 {
		cfg.SnapshotEvery = []uint64{3, 10, 40}[r.IntN(3)]
		cfg.SnapshotKeep = []uint64{0, 0, 5}[r.IntN(3)]
	}
	if r.IntN(2) == 0 {
		cfg.NewStateMachine = PaddedHashMachine(200 + r.IntN(2000))
		cfg.SnapshotChunkBytes = uint64(64 + r.IntN(512))
	}
	if r.IntN(3) == 0 {
		cfg.MaxSizePerMsg = uint64(32 + r.IntN(256))
		cfg.MaxInflightMsgs = 1 + r.IntN(8)
	}
	if r.IntN(4) == 0 {
		cfg.ElectionTicks = []int{4, 10, 20}[r.IntN(3)]
		cfg.HeartbeatTicks = 1 + r.IntN(cfg.ElectionTicks/2)
	}
	// Safety must hold without PreVote and CheckQuorum too.
	cfg.DisablePreVote = r.IntN(6) == 0
	cfg.DisableCheckQuorum = r.IntN(6) == 0
	return cfg
}

func runSimulation(t *testing.T, seed uint64) {
	cfg := simConfig(seed)
	h := newHarness(t, cfg)
	var stop bool
	var acks []ack
	h.startClients(3, &stop, &acks)
	reads := 0
	var reader func()
	reader = func() {
		if stop {
			return
		}
		if ups := h.UpIDs(); len(ups) > 0 {
			_ = h.ReadIndex(ups[h.Rand().IntN(len(ups))], func(r ReadResult) {
				if r.Err == nil {
					reads++
				}
			})
		}
		h.After(Time(5+h.Rand().Int64N(40)), "", reader)
	}
	h.After(1, "", reader)
	// Faults every 0.3 to 1.5 election timeouts on average.
	r := rand.New(rand.NewPCG(seed, 0xfa17))
	nem := h.StartNemesis(NemesisConfig{
		Interval:   Time(float64(h.ElectionTimeout()) * (0.3 + 1.2*r.Float64())),
		Partitions: true, Crashes: true, Unreliable: true, TickRates: true,
		Membership: true, Transfers: true,
	})
	h.RunFor(simTime(t))
	h.ok()
	stop = true
	if err := nem.Stop(); err != nil {
		h.fatalf("%v", err)
	}
	if err := h.CheckLiveness(100 * h.ElectionTimeout()); err != nil {
		h.fatalf("%v", err)
	}
	// Every write a client saw applied is in the final log, where it saw it.
	for _, a := range acks {
		if d, _, ok := h.CommittedData(a.index); !ok || !bytes.Equal(d, a.val) {
			h.fatalf("client saw %q applied at %d, the log has %q", a.val, a.index, d)
		}
	}
	// A harsh schedule may let no write through while the faults last
	// (liveness is only promised once they stop), but it must have faults.
	if nem.Faults == 0 {
		h.fatalf("vacuous run: no faults injected")
	}
	if h.Stats().EarlyMsgs == 0 {
		h.fatalf("no message was sent before its Ready was written: the early-send rule went unexercised")
	}
	t.Logf("nodes=%d prevote=%v checkquorum=%v faults=%d writes=%d reads=%d committed=%d msgs=%d early=%d virtual=%dms",
		cfg.Nodes, !cfg.DisablePreVote, !cfg.DisableCheckQuorum, nem.Faults, len(acks), reads, h.Committed(),
		h.Stats().Msgs, h.Stats().EarlyMsgs, h.Now())
}
