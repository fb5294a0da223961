package node

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
)

// BenchmarkEarlySend compares puts (100-byte values) on two 3-node
// loopback clusters with real fsync, one with the leader's early send
// (its MsgApps leave while it writes its log: Raft thesis §10.2.1) and
// one without (Config.lateSend: every message waits for the write). The
// two take turns in rounds of a few puts per writer, so that both see the
// same machine load; each reports its own numbers: writers=1 is one
// client's put latency (ms/put-early, ms/put-late), writers=64 the
// throughput of 64 clients with one put in flight each (ops/s-early,
// ops/s-late); late/early is the ratio of the times the same number of
// puts took. b.N puts go to each cluster. The nodes of a test share one
// disk, whose fsync may be fast (or serialize parallel fsyncs); the
// disk=local+5ms variants add 5ms to every log fsync of each node, as an
// independent slower disk per machine would.
//
//	go test ./node -run '^$' -bench BenchmarkEarlySend -benchtime 2000x
func BenchmarkEarlySend(b *testing.B) {
	for _, bc := range []struct {
		writers  int
		slowSync time.Duration
	}{{1, 0}, {64, 0}, {1, 5 * time.Millisecond}, {64, 5 * time.Millisecond}} {
		writers := bc.writers
		name := fmt.Sprintf("writers=%d/disk=local", writers)
		if bc.slowSync > 0 {
			name = fmt.Sprintf("writers=%d/disk=local+%v", writers, bc.slowSync)
		}
		b.Run(name, func(b *testing.B) {
			var vs [2]*putBench // early, late
			for i := range vs {
				late := i == 1
				c := newCluster(b, 3, func(c *cluster) {
					c.tune = func(cfg *Config) {
						cfg.NoSync = false
						cfg.lateSend = late
						cfg.slowSync = bc.slowSync
						cfg.TickInterval = 100 * time.Millisecond
					}
				})
				vs[i] = newPutBench(b, c, writers)
			}
			round := 4 * writers
			for _, v := range vs {
				v.syncs0 = v.logSyncs(b)
			}
			b.ResetTimer()
			for done := 0; done < b.N; done += round {
				n := min(round, b.N-done)
				for _, v := range vs {
					if err := v.run(n); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			early, late := vs[0].took.Seconds(), vs[1].took.Seconds()
			if writers == 1 {
				b.ReportMetric(1000*early/float64(b.N), "ms/put-early")
				b.ReportMetric(1000*late/float64(b.N), "ms/put-late")
			} else {
				b.ReportMetric(float64(b.N)/early, "ops/s-early")
				b.ReportMetric(float64(b.N)/late, "ops/s-late")
			}
			b.ReportMetric(late/early, "late/early")
			b.ReportMetric(float64(vs[0].logSyncs(b)-vs[0].syncs0)/float64(b.N), "log-fsyncs/put-early")
			b.ReportMetric(float64(vs[1].logSyncs(b)-vs[1].syncs0)/float64(b.N), "log-fsyncs/put-late")
			b.ReportMetric(float64(vs[0].retries.Load()+vs[1].retries.Load()), "retries")
		})
	}
}

// putBench runs puts through one cluster from a fixed set of writers,
// each with its own ClientID and one put in flight.
type putBench struct {
	c       *cluster
	cl      *clientEndpoint
	seq     []uint64 // per writer: the last sequence number used
	value   []byte
	took    time.Duration // total time of the rounds run
	syncs0  uint64        // logSyncs before the first round
	retries atomic.Int64  // puts retried (leader change, timeout)
}

func newPutBench(b *testing.B, c *cluster, writers int) *putBench {
	c.waitLeader()
	return &putBench{c: c, cl: newClientEndpoint(b), seq: make([]uint64, writers), value: make([]byte, 100)}
}

// logSyncs returns the number of Raft log writes that fsynced on all nodes
// (raftkv_disk_log_fsync_duration_seconds).
func (p *putBench) logSyncs(b *testing.B) uint64 {
	var total uint64
	for _, tn := range p.c.nodes {
		mfs, err := tn.n.Registry().Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "raftkv_disk_log_fsync_duration_seconds" {
				for _, m := range mf.GetMetric() {
					total += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return total
}

// leaderAddr returns the address of a node that believes it leads.
func (p *putBench) leaderAddr() (netip.AddrPort, bool) {
	for _, tn := range p.c.nodes {
		if tn.n != nil && tn.n.IsLeader() {
			return tn.addr, true
		}
	}
	return netip.AddrPort{}, false
}

// run makes n puts and adds the time they took to took.
func (p *putBench) run(n int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(p.seq))
	start := time.Now()
	for w := range p.seq {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				p.seq[w]++
				if err := p.put(uint64(1000+w), p.seq[w], fmt.Appendf(nil, "bench/%d/%d", w, p.seq[w])); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	p.took += time.Since(start)
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// put retries (same session sequence number: applied at most once) until
// the cluster's leader answers OK, for at most 30s.
func (p *putBench) put(client, seq uint64, key []byte) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		to, ok := p.leaderAddr()
		var r proto.ClientResponse
		var err error
		if ok {
			r, err = p.cl.try(to, proto.ClientRequest{ClientID: client, Seq: seq, Op: proto.OpPut, Key: key, Value: p.value})
			if err == nil && r.Code == proto.CodeOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("put %s: code %v %s, err %v, leader known %v", key, r.Code, r.Message, err, ok)
		}
		p.retries.Add(1)
		time.Sleep(10 * time.Millisecond)
	}
}
