package main

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runOptions are the flags of `vsetcd run`.
type runOptions struct {
	system    string
	name      string
	label     string
	round     int
	endpoints []string
	entrance  string
	etcdMode  string
	ops       []string
	clients   []int
	duration  time.Duration
	warmup    time.Duration
	idle      time.Duration
	keys      int
	valueSize int
	opTimeout time.Duration
	pids      []int
	metrics   []string
	out       string
}

// result is one workload on one cluster: one JSON line of the results file.
type result struct {
	Label  string `json:"label,omitempty"`
	System string `json:"system"`
	// Name tells two sides of the same system apart (e.g. raftkv@main
	// against raftkv); empty means System.
	Name      string  `json:"name,omitempty"`
	Round     int     `json:"round"`
	Op        string  `json:"op"`
	Clients   int     `json:"clients"`
	Keys      int     `json:"keys"`
	ValueSize int     `json:"value_size"`
	Start     string  `json:"start"`
	ElapsedS  float64 `json:"elapsed_s"`
	OK        int     `json:"ok"`
	Errors    int     `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50MS     float64 `json:"p50_ms"`
	P90MS     float64 `json:"p90_ms"`
	P99MS     float64 `json:"p99_ms"`
	MaxMS     float64 `json:"max_ms"`
	// CPU during the measured phase: the cluster's processes (all of them:
	// three members, plus raftkv's entrance), this generator, and the
	// whole machine (from /proc/stat; "other" is the machine less the two,
	// i.e. noise from everything else running).
	ServerCPUMSPerOp float64 `json:"server_cpu_ms_per_op"`
	ClientCPUMSPerOp float64 `json:"client_cpu_ms_per_op"`
	ServerCores      float64 `json:"server_cores"`
	ClientCores      float64 `json:"client_cores"`
	OtherCores       float64 `json:"other_cores"`
	// From the members' /metrics: the leader's log fsyncs (etcd: WAL
	// fsync; raftkv: Raft log save with fsync) and backend commits per
	// operation, their mean latency, and the followers' log fsyncs per op.
	LeaderFsyncsPerOp     float64 `json:"leader_fsyncs_per_op"`
	LeaderFsyncMeanMS     float64 `json:"leader_fsync_mean_ms"`
	FollowerFsyncsPerOp   float64 `json:"follower_fsyncs_per_op"`
	LeaderCommitsPerOp    float64 `json:"leader_backend_commits_per_op"`
	LeaderCommitMeanMS    float64 `json:"leader_backend_commit_mean_ms"`
	LeaderDatagramsPerOp  float64 `json:"leader_datagrams_sent_per_op,omitempty"`
	LeaderRetransmitPerOp float64 `json:"leader_retransmits_per_op,omitempty"`
	Target                string  `json:"target"`
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o runOptions
	var endpoints, ops, clients, pids, metrics string
	fs.StringVar(&o.system, "system", "", "etcd or raftkv")
	fs.StringVar(&o.name, "name", "", "name of this side in the report (default: --system), e.g. raftkv@main")
	fs.StringVar(&o.label, "label", "", "free text stored with every result (e.g. a commit)")
	fs.IntVar(&o.round, "round", 1, "round number stored with every result")
	fs.StringVar(&endpoints, "endpoints", "", "members' addresses host:port, comma-separated (etcd: client URLs; raftkv: nodes)")
	fs.StringVar(&o.entrance, "entrance", "", "raftkv: the entrance's UDP address")
	fs.StringVar(&o.etcdMode, "etcd-mode", "leader", "etcd: clients dial the leader's endpoint only (leader) or every endpoint (all)")
	fs.StringVar(&ops, "ops", "put,get", "workloads, in order: put, get")
	fs.StringVar(&clients, "clients", "1,16,64", "concurrent clients of each workload, comma-separated")
	fs.DurationVar(&o.duration, "duration", 6*time.Second, "measured time of each workload")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured time before each workload, same clients")
	fs.DurationVar(&o.idle, "idle", 3*time.Second, "first measure the idle cluster's CPU this long (0: skip)")
	fs.IntVar(&o.keys, "keys", 1000, "distinct keys (bench/00000000 ..)")
	fs.IntVar(&o.valueSize, "value-size", 256, "bytes per value")
	fs.DurationVar(&o.opTimeout, "op-timeout", 5*time.Second, "deadline of one operation")
	fs.StringVar(&pids, "pids", "", "the cluster's process ids, comma-separated (CPU accounting)")
	fs.StringVar(&metrics, "metrics", "", "the members' Prometheus URLs, comma-separated")
	fs.StringVar(&o.out, "out", "", "append results as JSON lines to this file (also printed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.endpoints = splitList(endpoints)
	o.ops = splitList(ops)
	o.metrics = splitList(metrics)
	var err error
	if o.clients, err = intList(clients); err != nil {
		return fmt.Errorf("--clients: %w", err)
	}
	if o.pids, err = intList(pids); err != nil {
		return fmt.Errorf("--pids: %w", err)
	}
	var cl cluster
	switch o.system {
	case "etcd":
		if o.etcdMode != "leader" && o.etcdMode != "all" {
			return errors.New("--etcd-mode must be leader or all")
		}
		cl = &etcdCluster{endpoints: o.endpoints, mode: o.etcdMode}
	case "raftkv":
		if o.entrance == "" {
			return errors.New("raftkv needs --entrance")
		}
		cl = &raftkvCluster{entrance: o.entrance, endpoints: o.endpoints}
	default:
		return errors.New("--system must be etcd or raftkv")
	}
	if len(o.endpoints) == 0 {
		return errors.New("--endpoints is required")
	}
	for _, op := range o.ops {
		if op != "put" && op != "get" {
			return fmt.Errorf("unknown op %q (put or get)", op)
		}
	}
	if o.keys < 1 || o.valueSize < 0 || o.duration <= 0 || len(o.clients) == 0 || slices.Min(o.clients) < 1 {
		return errors.New("need --keys >= 1, --value-size >= 0, --duration > 0 and every --clients >= 1")
	}

	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = cl.Wait(wctx)
	cancel()
	if err != nil {
		return err
	}
	target := cl.Describe()
	fmt.Fprintf(stderr, "%s round %d: %s\n", o.system, o.round, target)

	var out *os.File
	if o.out != "" {
		if out, err = os.OpenFile(o.out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
			return err
		}
		defer func() { _ = out.Close() }()
	}
	value := make([]byte, o.valueSize)
	_, _ = crand.Read(value)
	if o.idle > 0 {
		res, err := measureIdle(ctx, o)
		if err != nil {
			return err
		}
		res.Target = target
		if err := emit(out, stdout, res); err != nil {
			return err
		}
	}
	prefilled := false
	for _, op := range o.ops {
		if op == "get" && !prefilled {
			if err := prefill(ctx, cl, o, value); err != nil {
				return err
			}
			prefilled = true
		}
		for _, n := range o.clients {
			res, err := runWorkload(ctx, cl, o, op, n, value)
			if err != nil {
				return err
			}
			res.Target = target
			if err := emit(out, stdout, res); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return nil
}

// emit appends res to the results file (if any) and prints a summary line.
func emit(out *os.File, stdout io.Writer, res result) error {
	if out != nil {
		line, _ := json.Marshal(res)
		if _, err := fmt.Fprintf(out, "%s\n", line); err != nil {
			return err
		}
	}
	if res.Op == "idle" {
		fmt.Fprintf(stdout, "%-6s round %d idle   %.3f server cores, other load %.2f cores\n",
			res.side(), res.Round, res.ServerCores, res.OtherCores)
		return nil
	}
	fmt.Fprintf(stdout, "%-6s round %d %s c=%-3d %9.1f ops/s  p50 %7.3f ms  p99 %7.3f ms  errors %d  server %.3f cpu-ms/op  leader fsyncs/op %.3f  other load %.2f cores\n",
		res.side(), res.Round, res.Op, res.Clients, res.OpsPerSec, res.P50MS, res.P99MS, res.Errors,
		res.ServerCPUMSPerOp, res.LeaderFsyncsPerOp, res.OtherCores)
	return nil
}

// measureIdle records the CPU the cluster uses with no client at all
// (timers, heartbeats, the entrance's pings).
func measureIdle(ctx context.Context, o runOptions) (result, error) {
	before := takeSample(o)
	startWall := time.Now()
	select {
	case <-ctx.Done():
		return result{}, ctx.Err()
	case <-time.After(o.idle):
	}
	after := takeSample(o)
	res := result{Label: o.label, System: o.system, Name: o.name, Round: o.round, Op: "idle", Keys: o.keys, ValueSize: o.valueSize,
		Start: startWall.UTC().Format(time.RFC3339), ElapsedS: after.at.Sub(before.at).Seconds()}
	fillCosts(&res, o.system, before, after)
	return res, nil
}

// side is the result's name in reports.
func (r *result) side() string {
	if r.Name != "" {
		return r.Name
	}
	return r.System
}

func benchKey(i int) string { return fmt.Sprintf("bench/%08d", i) }

// dialAll opens n clients; on error it closes those already open.
func dialAll(ctx context.Context, cl cluster, n int) ([]kv, error) {
	kvs := make([]kv, 0, n)
	for range n {
		k, err := cl.Dial(ctx)
		if err != nil {
			closeAll(kvs)
			return nil, err
		}
		kvs = append(kvs, k)
	}
	return kvs, nil
}

func closeAll(kvs []kv) {
	for _, k := range kvs {
		_ = k.Close()
	}
}

// prefill writes every key once (16 clients), so that gets find a value.
func prefill(ctx context.Context, cl cluster, o runOptions, value []byte) error {
	kvs, err := dialAll(ctx, cl, 16)
	if err != nil {
		return err
	}
	defer closeAll(kvs)
	var next atomic.Int64
	errs := make([]error, len(kvs))
	var wg sync.WaitGroup
	for i, k := range kvs {
		wg.Go(func() {
			for j := int(next.Add(1)) - 1; j < o.keys && errs[i] == nil; j = int(next.Add(1)) - 1 {
				octx, cancel := context.WithTimeout(ctx, o.opTimeout)
				if err := k.Put(octx, benchKey(j), value); err != nil {
					errs[i] = fmt.Errorf("prefill %s: %w", benchKey(j), err)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// phase is what the workers of one phase (warm-up or measured) did.
type phase struct {
	elapsed  time.Duration
	lats     []time.Duration
	errors   int
	firstErr error
}

// drive runs op from every client until d has passed.
func drive(ctx context.Context, kvs []kv, o runOptions, op string, value []byte, d time.Duration) phase {
	var (
		mu  sync.Mutex
		p   phase
		wg  sync.WaitGroup
		end = time.Now().Add(d)
	)
	start := time.Now()
	for _, k := range kvs {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			lats := make([]time.Duration, 0, 1024)
			var nerr int
			var ferr error
			for ctx.Err() == nil && time.Now().Before(end) {
				key := benchKey(rng.IntN(o.keys))
				octx, cancel := context.WithTimeout(ctx, o.opTimeout)
				s := time.Now()
				var err error
				if op == "put" {
					err = k.Put(octx, key, value)
				} else {
					var n int
					n, err = k.Get(octx, key)
					if err == nil && n != len(value) {
						err = fmt.Errorf("get %s: %d-byte value, want %d", key, n, len(value))
					}
				}
				lat := time.Since(s)
				cancel()
				if err != nil {
					nerr++
					if ferr == nil {
						ferr = err
					}
					continue
				}
				lats = append(lats, lat)
			}
			mu.Lock()
			p.lats = append(p.lats, lats...)
			p.errors += nerr
			if p.firstErr == nil {
				p.firstErr = ferr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	return p
}

func runWorkload(ctx context.Context, cl cluster, o runOptions, op string, n int, value []byte) (result, error) {
	kvs, err := dialAll(ctx, cl, n)
	if err != nil {
		return result{}, err
	}
	defer closeAll(kvs)
	if o.warmup > 0 {
		drive(ctx, kvs, o, op, value, o.warmup)
	}
	before := takeSample(o)
	startWall := time.Now()
	p := drive(ctx, kvs, o, op, value, o.duration)
	after := takeSample(o)

	res := result{Label: o.label, System: o.system, Name: o.name, Round: o.round, Op: op, Clients: n, Keys: o.keys,
		ValueSize: o.valueSize, Start: startWall.UTC().Format(time.RFC3339), ElapsedS: p.elapsed.Seconds(),
		OK: len(p.lats), Errors: p.errors}
	if p.firstErr != nil {
		res.FirstErr = p.firstErr.Error()
	}
	if res.OK > 0 {
		res.OpsPerSec = float64(res.OK) / p.elapsed.Seconds()
		q := quantiles(p.lats, 0.50, 0.90, 0.99, 1)
		res.P50MS, res.P90MS, res.P99MS, res.MaxMS = q[0], q[1], q[2], q[3]
	}
	fillCosts(&res, o.system, before, after)
	return res, nil
}

// quantiles returns the nearest-rank quantiles of lats (sorted in place),
// in milliseconds.
func quantiles(lats []time.Duration, qs ...float64) []float64 {
	out := make([]float64, len(qs))
	if len(lats) == 0 {
		return out
	}
	slices.Sort(lats)
	for i, q := range qs {
		rank := int(q*float64(len(lats))+0.999999) - 1
		out[i] = float64(lats[min(max(rank, 0), len(lats)-1)]) / float64(time.Millisecond)
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
