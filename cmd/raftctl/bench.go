package main

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

type benchOptions struct {
	op           string
	clients      int
	requests     int
	valueSize    int
	keys         int
	serializable bool
	prefill      bool
}

func newBenchCommand(f *factory) *cobra.Command {
	var opts benchOptions
	cmd := &cobra.Command{
		Use:   "bench put|get",
		Short: "Measure put or get throughput and latency",
		Long: `Run --requests operations from --clients concurrent clients (each its own
client and socket), on keys bench/00000000 .. bench/K-1 chosen at random,
and print the rate (ops/s) and latency percentiles (p50, p90, p99, max) of
the operations that succeeded.

put writes values of --value-size random bytes. get reads linearizably
(--serializable: from any node's local state); before the timed run it
writes every key once (--prefill=false skips that, and a missing key then
counts as an answer). An operation that fails is counted; if any failed,
raftctl prints the results and exits with the status of the first failure.`,
		Example: `  raftctl bench put
  raftctl bench put --clients 64 --requests 10000 --value-size 1024
  raftctl bench get --clients 16 --keys 100 --serializable
  raftctl -o json bench get`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || (args[0] != "put" && args[0] != "get") {
				return usagef("bench needs one operation: put or get")
			}
			return nil
		},
		ValidArgs: []string{"put", "get"},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.op = args[0]
			switch {
			case opts.clients < 1:
				return usagef("--clients must be at least 1")
			case opts.requests < 1:
				return usagef("--requests must be at least 1")
			case opts.valueSize < 0:
				return usagef("--value-size must not be negative")
			case opts.keys < 1:
				return usagef("--keys must be at least 1")
			case opts.serializable && opts.op != "get":
				return usagef("--serializable applies to get only")
			}
			return runBench(cmd.Context(), f, cmd, opts)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&opts.clients, "clients", 16, "concurrent clients")
	fl.IntVar(&opts.requests, "requests", 1000, "operations in total")
	fl.IntVar(&opts.valueSize, "value-size", 256, "bytes per value (put, and the prefill of get)")
	fl.IntVar(&opts.keys, "keys", 1000, "how many distinct keys")
	fl.BoolVar(&opts.serializable, "serializable", false, "get: read any node's local state")
	fl.BoolVar(&opts.prefill, "prefill", true, "get: write every key once before the run")
	return cmd
}

// benchResult is what bench prints (-o json as is).
type benchResult struct {
	Op        string       `json:"op"`
	Clients   int          `json:"clients"`
	Requests  int          `json:"requests"`
	ValueSize int          `json:"value_size"`
	Keys      int          `json:"keys"`
	OK        int          `json:"ok"`
	Errors    int          `json:"errors"`
	ElapsedMS float64      `json:"elapsed_ms"`
	OpsPerSec float64      `json:"ops_per_sec"`
	LatencyMS latencyStats `json:"latency_ms"`
	FirstErr  string       `json:"first_error,omitempty"`
}

type latencyStats struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// percentiles summarises latencies (sorted in place); nearest-rank.
func percentiles(lats []time.Duration) latencyStats {
	if len(lats) == 0 {
		return latencyStats{}
	}
	slices.Sort(lats)
	at := func(q float64) float64 {
		i := int(q*float64(len(lats))+0.999999) - 1
		return ms(lats[min(max(i, 0), len(lats)-1)])
	}
	return latencyStats{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(lats[len(lats)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func benchKey(i int) string { return fmt.Sprintf("bench/%08d", i) }

func runBench(ctx context.Context, f *factory, cmd *cobra.Command, opts benchOptions) error {
	clients := make([]kv, 0, opts.clients)
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	for range opts.clients {
		c, err := f.connect(ctx)
		if err != nil {
			return err
		}
		clients = append(clients, c)
	}
	value := make([]byte, opts.valueSize)
	_, _ = crand.Read(value)

	if opts.op == "get" && opts.prefill {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make([]error, len(clients))
		for i, c := range clients {
			wg.Go(func() {
				for k := int(next.Add(1)) - 1; k < opts.keys && errs[i] == nil; k = int(next.Add(1)) - 1 {
					if _, err := c.Put(ctx, benchKey(k), value); err != nil {
						errs[i] = fmt.Errorf("bench: prefill %s: %w", benchKey(k), err)
					}
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}

	var (
		next     atomic.Int64
		mu       sync.Mutex
		lats     = make([]time.Duration, 0, opts.requests)
		failed   int
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for _, c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			var mine []time.Duration
			var nerr int
			var ferr error
			for next.Add(1) <= int64(opts.requests) {
				key := benchKey(rng.IntN(opts.keys))
				s := time.Now()
				var err error
				if opts.op == "put" {
					_, err = c.Put(ctx, key, value)
				} else {
					_, err = c.Get(ctx, key, client.GetOptions{Serializable: opts.serializable})
					if errors.Is(err, client.ErrNotFound) {
						err = nil
					}
				}
				if err != nil {
					nerr++
					if ferr == nil {
						ferr = err
					}
					if ctx.Err() != nil {
						break
					}
					continue
				}
				mine = append(mine, time.Since(s))
			}
			mu.Lock()
			lats = append(lats, mine...)
			failed += nerr
			if firstErr == nil {
				firstErr = ferr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := benchResult{Op: opts.op, Clients: opts.clients, Requests: opts.requests, ValueSize: opts.valueSize,
		Keys: opts.keys, OK: len(lats), Errors: failed, ElapsedMS: ms(elapsed),
		OpsPerSec: float64(len(lats)) / elapsed.Seconds(), LatencyMS: percentiles(lats)}
	if firstErr != nil {
		res.FirstErr = firstErr.Error()
	}
	if err := printBench(cmd, f.opts.output, res); err != nil {
		return err
	}
	if firstErr != nil {
		return fmt.Errorf("bench: %d of %d operations failed; first: %w", failed, res.OK+failed, firstErr)
	}
	return nil
}

func printBench(cmd *cobra.Command, output string, r benchResult) error {
	if output == "json" {
		return writeJSON(cmd.OutOrStdout(), r)
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(),
		"%s: %d clients, %d requests, %d keys, %d-byte values\n"+
			"ok %d, errors %d in %v: %.1f ops/s\n"+
			"latency p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms\n",
		r.Op, r.Clients, r.Requests, r.Keys, r.ValueSize,
		r.OK, r.Errors, (time.Duration(r.ElapsedMS*1000) * time.Microsecond).Round(time.Millisecond), r.OpsPerSec,
		r.LatencyMS.P50, r.LatencyMS.P90, r.LatencyMS.P99, r.LatencyMS.Max)
	return err
}
