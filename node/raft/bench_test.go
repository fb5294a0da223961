package raft

import (
	"log/slog"
	"math/rand/v2"
	"testing"
)

// benchCluster is a lean 3-node in-memory cluster for benchmarks: Ready
// processing (append to MemoryStorage, send, apply) and delivery in a
// loop, without the test network's bookkeeping.
type benchCluster struct {
	nodes   map[uint64]*Node
	stores  map[uint64]*MemoryStorage
	queue   []Message
	applied map[uint64]uint64
}

func newBenchCluster(b *testing.B, ids ...uint64) *benchCluster {
	c := &benchCluster{nodes: map[uint64]*Node{}, stores: map[uint64]*MemoryStorage{}, applied: map[uint64]uint64{}}
	for _, id := range ids {
		s := bootstrapStorage(ids...)
		n, err := NewNode(Config{ID: id, Storage: s, Rand: rand.New(rand.NewPCG(id, 1)),
			Logger: slog.New(slog.DiscardHandler), MaxInflightMsgs: 256, MaxSizePerMsg: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		c.nodes[id], c.stores[id] = n, s
	}
	return c
}

func (c *benchCluster) run(b *testing.B) {
	for {
		for id, n := range c.nodes {
			for n.HasReady() {
				rd := n.Ready()
				s := c.stores[id]
				if err := s.Append(rd.Entries); err != nil {
					b.Fatal(err)
				}
				if !rd.HardState.IsEmpty() {
					_ = s.SetHardState(rd.HardState)
				}
				c.queue = append(c.queue, rd.Messages...)
				if k := len(rd.CommittedEntries); k > 0 {
					c.applied[id] = rd.CommittedEntries[k-1].Index
				}
				n.Advance(rd)
			}
		}
		if len(c.queue) == 0 {
			return
		}
		q := c.queue
		c.queue = nil
		for _, m := range q {
			if err := c.nodes[m.To].Step(m); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkProposeCommit3Nodes measures committed proposals per second
// through a 3-node in-memory cluster, proposals batched 64 at a time
// between Ready rounds, and allocations per proposal (op = one proposal,
// committed on all three nodes). Log compaction keeps memory flat.
func BenchmarkProposeCommit3Nodes(b *testing.B) {
	for _, size := range []int{16, 256} {
		b.Run(map[int]string{16: "16B", 256: "256B"}[size], func(b *testing.B) {
			c := newBenchCluster(b, 1, 2, 3)
			if err := c.nodes[1].Campaign(); err != nil {
				b.Fatal(err)
			}
			c.run(b)
			if c.nodes[1].BasicStatus().RaftState != StateLeader {
				b.Fatal("no leader")
			}
			data := make([]byte, size)
			const batch = 64
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; {
				for j := 0; j < batch && i < b.N; j, i = j+1, i+1 {
					if err := c.nodes[1].Propose(data); err != nil {
						b.Fatal(err)
					}
				}
				c.run(b)
				if i%(batch*64) == 0 {
					for id, s := range c.stores {
						if a := c.applied[id]; a > 1000 {
							_ = s.Compact(a - 500)
						}
					}
				}
			}
			b.StopTimer()
			last := c.nodes[1].Status().LastIndex
			for id := range c.nodes {
				if c.applied[id] != last {
					b.Fatalf("node %d applied %d of %d", id, c.applied[id], last)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proposals/s")
		})
	}
}
