package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/client"
)

type kvOpKind uint8

const (
	opGet kvOpKind = iota
	opPut
	opCAS
)

type kvInput struct {
	op       kvOpKind
	key      string
	value    string // put, cas: the new value
	expected string // cas: the value compared
}

type kvOutput struct {
	value   string // get: the value read ("" and !exists when missing)
	exists  bool
	ok      bool // cas: the swap happened
	unknown bool // a write without an answer: may have happened or not
}

// kvModel is a map of registers, checked one key at a time.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "\x00absent" },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(string), input.(kvInput), output.(kvOutput)
		absent := st == "\x00absent"
		switch in.op {
		case opGet:
			if !out.exists {
				return absent, st
			}
			return !absent && out.value == st, st
		case opPut:
			return true, in.value
		case opCAS:
			holds := !absent && st == in.expected
			if out.unknown {
				if holds {
					return true, in.value
				}
				return true, st
			}
			if out.ok {
				return holds, in.value
			}
			return !holds, st
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch in.op {
		case opGet:
			if !out.exists {
				return fmt.Sprintf("get(%s) -> missing", in.key)
			}
			return fmt.Sprintf("get(%s) -> %s", in.key, out.value)
		case opPut:
			if out.unknown {
				return fmt.Sprintf("put(%s, %s) -> ?", in.key, in.value)
			}
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		default:
			r := fmt.Sprint(out.ok)
			if out.unknown {
				r = "?"
			}
			return fmt.Sprintf("cas(%s, %s -> %s) -> %s", in.key, in.expected, in.value, r)
		}
	},
	DescribeState: func(state any) string {
		if state.(string) == "\x00absent" {
			return "missing"
		}
		return state.(string)
	},
}

// history collects operations from concurrent clients.
type history struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// runKVClient does random gets, puts and CASes on keys until stop.
func runKVClient(cl *client.Client, id int, seed uint64, keys []string, h *history, stop <-chan struct{}) (done, unknown int) {
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	for i := 0; ; i++ {
		select {
		case <-stop:
			return done, unknown
		default:
		}
		in := kvInput{key: keys[rng.IntN(len(keys))], value: fmt.Sprintf("c%d-%d", id, i)}
		switch r := rng.IntN(10); {
		case r < 5:
			in.op = opGet
		case r < 8:
			in.op = opPut
		default:
			in.op = opCAS
			in.expected = fmt.Sprintf("c%d-%d", rng.IntN(5), max(0, i-rng.IntN(4)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		call := h.now()
		var (
			out kvOutput
			err error
		)
		switch in.op {
		case opGet:
			var res *client.GetResult
			res, err = cl.Get(ctx, in.key, client.GetOptions{})
			if err == nil {
				out.exists, out.value = true, string(res.KVs[0].Value)
			} else if errors.Is(err, client.ErrNotFound) {
				err = nil
			}
		case opPut:
			_, err = cl.Put(ctx, in.key, []byte(in.value))
		case opCAS:
			_, err = cl.CAS(ctx, in.key, client.Compare{Target: client.CompareValue, Value: []byte(in.expected)}, []byte(in.value), false)
			out.ok = err == nil
			if errors.Is(err, client.ErrCompareFailed) {
				err = nil
			}
		}
		ret := h.now()
		cancel()
		done++
		if err != nil {
			if in.op == opGet {
				continue // a read without an answer constrains nothing
			}
			// A write without a definitive answer may take effect at any
			// time after its call.
			out, ret = kvOutput{unknown: true}, math.MaxInt64
			unknown++
		}
		h.add(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
	}
}

// TestLinearizableUnderCrashes: concurrent clients while a nemesis SIGKILLs
// and restarts random nodes; the history must be linearizable.
func TestLinearizableUnderCrashes(t *testing.T) {
	c := startCluster(t, 3)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	keys := []string{"x", "y", "z"}
	h := &history{start: time.Now()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	total, unknown := 0, 0
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("raftkv-e2e-clients-%d.log", seed))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	clientLog := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for id := range 5 {
		cl := c.client(client.Config{AttemptTimeout: 300 * time.Millisecond, Logger: clientLog.With("client", id)})
		defer cl.Close()
		wg.Go(func() {
			d, u := runKVClient(cl, id, seed, keys, h, stop)
			mu.Lock()
			total, unknown = total+d, unknown+u
			mu.Unlock()
		})
	}

	// Nemesis: kill a random node, restart it a moment later, repeat.
	pause := func(d time.Duration) { time.Sleep(d) } // pacing the fault load, not for correctness
	kills := 0
	deadline := time.Now().Add(12 * time.Second)
	for time.Now().Before(deadline) {
		pause(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
		victim := c.nodes[rng.IntN(len(c.nodes))]
		victim.Kill()
		kills++
		pause(time.Duration(200+rng.IntN(1000)) * time.Millisecond)
		victim.Start()
	}
	pause(2 * time.Second) // let the clients finish against a healed cluster
	close(stop)
	wg.Wait()
	t.Logf("%d operations (%d writes without an answer), %d kills", total, unknown, kills)
	if len(h.ops) < 50 {
		t.Fatalf("only %d operations completed: the cluster made too little progress", len(h.ops))
	}
	res, info := porcupine.CheckOperationsVerbose(kvModel, h.ops, 60*time.Second)
	if res != porcupine.Ok {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("raftkv-e2e-porcupine-%d.html", seed))
		if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
			t.Errorf("write visualization: %v", err)
		}
		t.Fatalf("history of %d operations is not linearizable (result %v); visualization: %s; client debug log: %s",
			len(h.ops), res, path, logPath)
	}
	logFile.Close()
	os.Remove(logPath)
}

// TestKVModel checks the model itself on small histories, without processes.
func TestKVModel(t *testing.T) {
	op := func(client int, in kvInput, call int64, out kvOutput, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	put := func(k, v string) kvInput { return kvInput{op: opPut, key: k, value: v} }
	get := func(k string) kvInput { return kvInput{op: opGet, key: k} }
	cas := func(k, from, to string) kvInput { return kvInput{op: opCAS, key: k, expected: from, value: to} }
	val := func(v string) kvOutput { return kvOutput{exists: true, value: v} }
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"read your write", []porcupine.Operation{
			op(0, put("x", "1"), 0, kvOutput{}, 10), op(1, get("x"), 20, val("1"), 30)}, porcupine.Ok},
		{"stale read", []porcupine.Operation{
			op(0, put("x", "1"), 0, kvOutput{}, 10), op(0, put("x", "2"), 11, kvOutput{}, 19),
			op(1, get("x"), 20, val("1"), 30)}, porcupine.Illegal},
		{"missing after write", []porcupine.Operation{
			op(0, put("x", "1"), 0, kvOutput{}, 10), op(1, get("x"), 20, kvOutput{}, 30)}, porcupine.Illegal},
		{"unknown write may land late", []porcupine.Operation{
			op(0, put("x", "1"), 0, kvOutput{unknown: true}, math.MaxInt64), op(1, get("x"), 20, kvOutput{}, 30),
			op(1, get("x"), 40, val("1"), 50)}, porcupine.Ok},
		{"unknown write never seen", []porcupine.Operation{
			op(0, put("x", "1"), 0, kvOutput{unknown: true}, math.MaxInt64), op(1, get("x"), 20, kvOutput{}, 30)}, porcupine.Ok},
		{"cas", []porcupine.Operation{
			op(0, put("x", "1"), 0, kvOutput{}, 10), op(1, cas("x", "1", "2"), 20, kvOutput{ok: true}, 30),
			op(2, cas("x", "1", "3"), 40, kvOutput{ok: true}, 50)}, porcupine.Illegal},
		{"cas failure is definitive", []porcupine.Operation{
			op(0, put("x", "1"), 0, kvOutput{}, 10), op(1, cas("x", "1", "2"), 20, kvOutput{}, 30)}, porcupine.Illegal},
		{"keys are independent", []porcupine.Operation{
			op(0, put("x", "1"), 0, kvOutput{}, 10), op(1, get("y"), 20, kvOutput{}, 30),
			op(1, get("x"), 40, val("1"), 50)}, porcupine.Ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(kvModel, tt.ops, 10*time.Second); got != tt.want {
				t.Fatalf("check: %v, want %v", got, tt.want)
			}
		})
	}
}
