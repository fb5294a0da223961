package node

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
)

// BenchmarkPut3Nodes measures puts through a 3-node in-process cluster on
// loopback, each put (100-byte value) sent over rudp by a client endpoint
// to the leader and answered once applied, with fsync on (the production
// setting; RAFTKV_BENCH_NOSYNC=1 turns it off). Each writer has its own
// ClientID and one put in flight. cpu-ns/op is the CPU time (user +
// system) of the whole process per put: the three nodes and the client,
// as raftkv's CPU per write on a real cluster is what bounds its
// throughput once the cores are saturated.
func BenchmarkPut3Nodes(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			c := newCluster(b, 3, func(c *cluster) {
				c.tune = func(cfg *Config) {
					cfg.NoSync = os.Getenv("RAFTKV_BENCH_NOSYNC") != ""
					cfg.TickInterval = 100 * time.Millisecond
				}
			})
			lead := c.waitLeader()
			cl := newClientEndpoint(b)
			value := make([]byte, 100)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			cpu0, cpuOK := processCPU()
			for w := range writers {
				wg.Go(func() {
					client := uint64(1000 + w)
					var seq uint64
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						seq++
						r, err := cl.try(lead.addr, proto.ClientRequest{ClientID: client, Seq: seq, Op: proto.OpPut,
							Key: fmt.Appendf(nil, "bench/%d/%d", w, seq), Value: value})
						if err != nil {
							b.Errorf("put: %v", err)
							return
						}
						if r.Code != proto.CodeOK {
							b.Errorf("put: %v %s", r.Code, r.Message)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			cpu1, _ := processCPU()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
			if cpuOK {
				b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
			}
		})
	}
}

// BenchmarkGet3Nodes measures linearizable gets (a ReadIndex round on the
// leader each) over rudp on a 3-node loopback cluster.
func BenchmarkGet3Nodes(b *testing.B) {
	for _, readers := range []int{1, 64} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			c := newCluster(b, 3, func(c *cluster) {
				c.tune = func(cfg *Config) { cfg.TickInterval = 100 * time.Millisecond }
			})
			lead := c.waitLeader()
			mustOK(b, c.do(put(1, 1, "bench", "value")))
			cl := newClientEndpoint(b)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range readers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						r, err := cl.try(lead.addr, proto.ClientRequest{Op: proto.OpGet, Key: []byte("bench")})
						if err != nil || r.Code != proto.CodeOK {
							b.Errorf("get: %v %v", r.Code, err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		})
	}
}
