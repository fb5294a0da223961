package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
)

// BenchmarkSnapshotLoopStall measures how long the Raft loop stops serving
// while a snapshot of a store of about 50 MB (kv.db) is taken, with the
// snapshot written in the background (the default) and written on the
// loop (Config.syncSnapshot, what raftkv did before: the whole store
// copied and written with an fsync before the loop went on). A probe
// keeps running an empty function on the loop (Node.do) and records the
// longest wait; each of the b.N rounds takes one snapshot on each of the
// two one-node clusters (real fsync) in turn. Reported: the longest stall
// of each (max-stall-ms-async, max-stall-ms-sync), their ratio, and the
// longest stall of the same writes on the async cluster without a
// snapshot (max-stall-ms-nosnap: the loop's own fsyncs).
//
//	go test ./node -run '^$' -bench BenchmarkSnapshotLoopStall -benchtime 3x
func BenchmarkSnapshotLoopStall(b *testing.B) {
	const (
		values     = 48
		valueBytes = 512 << 10
	)
	type side struct {
		c     *cluster
		seq   uint64
		stall time.Duration
		size  int64
	}
	var sides [2]*side // async, sync
	for i := range sides {
		c := newCluster(b, 1, func(c *cluster) {
			c.tune = func(cfg *Config) {
				cfg.NoSync = false
				cfg.syncSnapshot = i == 1
				cfg.SnapshotEntries = 1 << 20 // none while filling
				cfg.TickInterval = 100 * time.Millisecond
			}
		})
		s := &side{c: c}
		value := make([]byte, valueBytes)
		for k := range values {
			for j := range value {
				value[j] = byte(k*31 + j*7)
			}
			s.seq++
			mustOK(b, c.do(proto.ClientRequest{ClientID: 51, Seq: s.seq, Op: proto.OpPut, Key: fmt.Appendf(nil, "big%03d", k), Value: value}))
		}
		st, err := c.node(1).n.kv.Status()
		if err != nil {
			b.Fatal(err)
		}
		s.size = st.SizeBytes
		n := c.node(1).n
		if err := n.do(context.Background(), func() { n.cfg.SnapshotEntries, n.cfg.SnapshotCatchUpEntries = 1, 1 }); err != nil {
			b.Fatal(err)
		}
		sides[i] = s
	}
	// probe runs work while a goroutine keeps running an empty function
	// on n's loop, and returns the longest wait.
	probe := func(n *Node, work func()) time.Duration {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var longest time.Duration
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				if err := n.do(context.Background(), func() {}); err != nil {
					return
				}
				longest = max(longest, time.Since(start))
			}
		})
		work()
		close(stop)
		wg.Wait()
		return longest
	}
	var baseline time.Duration // the async cluster, the same writes, no snapshot
	b.ResetTimer()
	for range b.N {
		for i, s := range sides {
			n := s.c.node(1).n
			before := n.snapIndexForTest()
			writes := 0
			s.stall = max(s.stall, probe(n, func() {
				// Small writes: a Ready after one of them was applied
				// starts a snapshot (a one-node cluster has no other
				// Readies).
				waitFor(b, "the snapshot to be recorded", func() bool {
					s.seq++
					writes++
					mustOK(b, s.c.do(put(51, s.seq, "tick", fmt.Sprint(s.seq))))
					return n.snapIndexForTest() > before
				})
			}))
			if i == 0 {
				setEntries := func(e uint64) {
					if err := n.do(context.Background(), func() { n.cfg.SnapshotEntries = e }); err != nil {
						b.Fatal(err)
					}
				}
				setEntries(1 << 20)
				baseline = max(baseline, probe(n, func() {
					for range writes {
						s.seq++
						mustOK(b, s.c.do(put(51, s.seq, "tick", fmt.Sprint(s.seq))))
					}
				}))
				setEntries(1)
			}
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 }
	b.ReportMetric(float64(sides[0].size)/(1<<20), "store-MiB")
	b.ReportMetric(ms(baseline), "max-stall-ms-nosnap")
	b.ReportMetric(ms(sides[0].stall), "max-stall-ms-async")
	b.ReportMetric(ms(sides[1].stall), "max-stall-ms-sync")
	b.ReportMetric(ms(sides[1].stall)/ms(sides[0].stall), "sync/async")
}
