package e2e

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

func requireBench(t *testing.T) {
	if os.Getenv("RAFTKV_E2E_BENCH") != "1" {
		t.Skip("measurement; run with RAFTKV_E2E_BENCH=1")
	}
}

// TestMeasureFailover reports the time from a leader's SIGKILL to the first
// acknowledged write afterwards, over several runs.
func TestMeasureFailover(t *testing.T) {
	requireBench(t)
	c := startCluster(t, 3)
	cl := c.client(client.Config{Timeout: 30 * time.Second, AttemptTimeout: 200 * time.Millisecond})
	defer cl.Close()
	var samples []time.Duration
	for run := range 7 {
		if _, err := cl.Put(t.Context(), "warm", []byte(fmt.Sprint(run))); err != nil {
			t.Fatal(err)
		}
		old := c.leader(20 * time.Second)
		c.nodes[old].Kill()
		start := time.Now()
		if _, err := cl.Put(t.Context(), "failover", []byte(fmt.Sprint(run))); err != nil {
			t.Fatalf("run %d: first write after the kill: %v", run, err)
		}
		d := time.Since(start)
		samples = append(samples, d)
		t.Logf("run %d: killed %s, first write after %v", run, c.nodes[old].Name, d)
		c.nodes[old].Start()
		only := c.client(client.Config{Endpoints: []string{c.addrs[old]}, Timeout: 2 * time.Second})
		waitFor(t, 30*time.Second, func() bool {
			res, err := only.Get(t.Context(), "failover", client.GetOptions{Serializable: true})
			return err == nil && string(res.KVs[0].Value) == fmt.Sprint(run)
		}, func() string { return "restarted node did not catch up" })
		only.Close()
	}
	slices.Sort(samples)
	t.Logf("leader SIGKILL -> first write: median %v, min %v, max %v over %d runs",
		samples[len(samples)/2], samples[0], samples[len(samples)-1], len(samples))
}

// TestMeasureThroughput reports put and get rates of a 3-node loopback
// cluster at 1 and 64 concurrent clients (one client.Client each).
func TestMeasureThroughput(t *testing.T) {
	requireBench(t)
	c := startCluster(t, 3)
	const dur = 3 * time.Second
	for _, n := range []int{1, 64} {
		clients := make([]*client.Client, n)
		for i := range clients {
			clients[i] = c.client(client.Config{Timeout: 10 * time.Second})
			defer clients[i].Close()
		}
		written := make([]int, n) // keys bench/i/0..written[i]-1 exist after the puts
		for _, op := range []string{"put", "get"} {
			var ops, errs atomic.Int64
			var lat sync.Mutex
			var lats []time.Duration
			stop := time.Now().Add(dur)
			var wg sync.WaitGroup
			for i, cl := range clients {
				wg.Go(func() {
					var mine []time.Duration
					for j := 0; time.Now().Before(stop); j++ {
						s := time.Now()
						var err error
						if op == "put" {
							_, err = cl.Put(t.Context(), fmt.Sprintf("bench/%d/%d", i, j%100), []byte("0123456789abcdef0123456789abcdef"))
							if err == nil {
								written[i] = max(written[i], min(j+1, 100))
							}
						} else {
							_, err = cl.Get(t.Context(), fmt.Sprintf("bench/%d/%d", i, j%max(written[i], 1)), client.GetOptions{})
						}
						if err != nil {
							errs.Add(1)
							continue
						}
						mine = append(mine, time.Since(s))
						ops.Add(1)
					}
					lat.Lock()
					lats = append(lats, mine...)
					lat.Unlock()
				})
			}
			wg.Wait()
			slices.Sort(lats)
			p := func(q float64) time.Duration {
				if len(lats) == 0 {
					return 0
				}
				return lats[min(len(lats)-1, int(q*float64(len(lats))))]
			}
			t.Logf("%s with %d clients: %.0f ops/s (%d errors), latency p50 %v p99 %v",
				op, n, float64(ops.Load())/dur.Seconds(), errs.Load(), p(0.5), p(0.99))
			if ops.Load() == 0 {
				t.Fatalf("%s with %d clients: nothing succeeded", op, n)
			}
		}
	}
}
