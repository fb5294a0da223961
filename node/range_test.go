package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/kvstore"
)

// client returns a real client.Client that knows every node of c.
func (c *cluster) client(t *testing.T) *client.Client {
	t.Helper()
	var eps []string
	for _, tn := range c.nodes {
		eps = append(eps, tn.addr.String())
	}
	cl, err := client.New(t.Context(), client.Config{Endpoints: eps, Timeout: 20 * time.Second, AttemptTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// TestRangeReplyBudgetFitsMessage: a read reply whose key-values fill
// rangeReplyBytes (by kvstore's EncodedSizeBound) encodes within
// proto.MaxMessageBytes, whatever the shape of its keys, and so does one
// key-value at the store's largest key and value sizes, alone.
func TestRangeReplyBudgetFitsMessage(t *testing.T) {
	fill := func(keyLen, valueLen int) []proto.KeyValue {
		var kvs []proto.KeyValue
		var used uint64
		for {
			kv := kvstore.KeyValue{Key: bytes.Repeat([]byte{'k'}, keyLen), Value: bytes.Repeat([]byte{'v'}, valueLen)}
			if used+kv.EncodedSizeBound() > rangeReplyBytes && len(kvs) > 0 {
				return kvs
			}
			used += kv.EncodedSizeBound()
			kvs = append(kvs, proto.KeyValue{Key: kv.Key, Value: kv.Value,
				CreateRevision: math.MaxInt64, ModRevision: math.MaxInt64, Version: math.MinInt64})
		}
	}
	tests := []struct {
		name string
		kvs  []proto.KeyValue
	}{
		{"tiny keys, empty values", fill(1, 0)},
		{"small keys and values", fill(16, 100)},
		{"values at a bin16 boundary", fill(8, 65536)},
		{"largest key, small values", fill(kvstore.DefaultMaxKeyBytes, 1)},
		{"largest key and value alone", fill(kvstore.DefaultMaxKeyBytes, kvstore.DefaultMaxValueBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := proto.ClientResponse{Revision: math.MaxInt64, LeaderID: math.MaxUint64, More: true, KVs: tt.kvs}
			if n := len(proto.MustEncode(proto.KindClient, resp)); n > proto.MaxMessageBytes {
				t.Fatalf("%d key-values encode in %d bytes > proto.MaxMessageBytes %d", len(tt.kvs), n, proto.MaxMessageBytes)
			}
		})
	}
}

// TestRangeOverOneMessage: a prefix holding more than proto.MaxMessageBytes
// of key-values (keys at the largest value size among many small ones)
// reads back whole, in order, through the real client: with Get --prefix,
// Range, Scan and a Limit that spans pages.
func TestRangeOverOneMessage(t *testing.T) {
	c := newCluster(t, 3, func(c *cluster) { c.tune = func(cfg *Config) { cfg.TickInterval = 100 * time.Millisecond } })
	cl := c.client(t)
	ctx := context.Background()
	want := map[string][]byte{}
	// The largest values one at a time: several 1 MiB requests at once
	// from one client can outlast the attempt timeout on a loaded machine.
	putAll(t, cl, 1, func(yield func(string, []byte)) {
		for i := range 3 {
			yield(fmt.Sprintf("r/big/%d", i), bytes.Repeat([]byte{byte('a' + i)}, kvstore.DefaultMaxValueBytes))
		}
	}, want)
	putAll(t, cl, 8, func(yield func(string, []byte)) {
		for i := range 400 {
			yield(fmt.Sprintf("r/big/%d/small%03d", i%3, i), []byte(strings.Repeat("s", i)))
		}
	}, want)
	if _, err := cl.Put(ctx, "r/bif", []byte("outside the prefix")); err != nil {
		t.Fatal(err)
	}
	keys := sortedKeys(want)

	check := func(what string, got []client.KeyValue, wantKeys []string) {
		t.Helper()
		if len(got) != len(wantKeys) {
			t.Fatalf("%s: %d keys, want %d", what, len(got), len(wantKeys))
		}
		for i, kv := range got {
			if kv.Key != wantKeys[i] || !bytes.Equal(kv.Value, want[kv.Key]) {
				t.Fatalf("%s: key %d is %q (%d bytes), want %q (%d bytes)", what, i, kv.Key, len(kv.Value), wantKeys[i], len(want[wantKeys[i]]))
			}
		}
	}
	res, err := cl.Get(ctx, "r/big/", client.GetOptions{Prefix: true})
	if err != nil {
		t.Fatalf("get r/big/ --prefix: %v", err)
	}
	check("get --prefix", res.KVs, keys)
	if res.More {
		t.Fatal("get --prefix without a limit: More")
	}
	res, err = cl.Range(ctx, "r/big/0", "r/big/2", client.GetOptions{Serializable: true})
	if err != nil {
		t.Fatalf("range: %v", err)
	}
	var inRange []string
	for _, k := range keys {
		if k < "r/big/2" {
			inRange = append(inRange, k)
		}
	}
	check("serializable range", res.KVs, inRange)
	var scanned []client.KeyValue
	for kv, err := range cl.Scan(ctx, "r/big/", client.GetOptions{}) {
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		scanned = append(scanned, kv)
	}
	check("scan", scanned, keys)
	// The big keys sort first in their groups: a limit of 140 takes pages
	// of one big key and the small ones after it.
	res, err = cl.Get(ctx, "r/big/", client.GetOptions{Prefix: true, Limit: 140})
	if err != nil {
		t.Fatalf("get --prefix --limit: %v", err)
	}
	check("get --prefix --limit 140", res.KVs, keys[:140])
	if !res.More {
		t.Fatal("get --prefix --limit 140 of 403: not More")
	}
}

// putAll writes the key-values gen yields with writers concurrent clients'
// worth of puts (one client, concurrent sessions), recording them in into.
func putAll(t *testing.T, cl *client.Client, writers int, gen func(yield func(string, []byte)), into map[string][]byte) {
	t.Helper()
	type kv struct {
		k string
		v []byte
	}
	work := make(chan kv)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for w := range work {
				if _, err := cl.Put(context.Background(), w.k, w.v); err != nil {
					errs <- fmt.Errorf("put %q: %w", w.k, err)
					for range work {
					}
					return
				}
			}
		})
	}
	gen(func(k string, v []byte) {
		into[k] = v
		work <- kv{k, v}
	})
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// write is one acknowledged write of TestRangePinnedWhileWriting.
type write struct {
	rev   int64
	key   string
	value []byte // nil: a delete
}

// TestRangePinnedWhileWriting: while writers put, overwrite and delete keys
// under the prefix, a range read in many pages equals the store's content
// at the revision of its first page: the state that replaying every
// acknowledged write up to that revision gives, and what a Get at that
// revision answers for each key.
func TestRangePinnedWhileWriting(t *testing.T) {
	c := newCluster(t, 3, func(c *cluster) { c.tune = func(cfg *Config) { cfg.TickInterval = 100 * time.Millisecond } })
	cl := c.client(t)
	ctx := context.Background()

	var (
		mu     sync.Mutex
		writes []write
	)
	record := func(w write) {
		mu.Lock()
		writes = append(writes, w)
		mu.Unlock()
	}
	// 2.4 MiB under the prefix before the writers start.
	initial := map[string][]byte{}
	putAll(t, cl, 8, func(yield func(string, []byte)) {
		for i := range 300 {
			yield(fmt.Sprintf("w/%03d", i), bytes.Repeat([]byte{byte(i)}, 8<<10))
		}
	}, initial)
	for k, v := range initial {
		record(write{rev: 0, key: k, value: v}) // before every later write
	}

	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w/%03d", rng.IntN(320)) // some keys beyond the initial ones
				if rng.IntN(4) == 0 {
					res, err := cl.Delete(ctx, key)
					if err != nil {
						errs <- err
						return
					}
					if res.Deleted > 0 {
						record(write{rev: res.Revision, key: key})
					}
					continue
				}
				value := fmt.Appendf(nil, "writer %d write %d", w, i)
				res, err := cl.Put(ctx, key, value)
				if err != nil {
					errs <- err
					return
				}
				record(write{rev: res.Revision, key: key, value: value})
			}
		})
	}
	var reads []*client.GetResult
	for _, pageBytes := range []int64{0, 32 << 10, 8 << 10} { // 3, ~75 and ~300 pages
		res, err := cl.Get(ctx, "w/", client.GetOptions{Prefix: true, PageBytes: pageBytes})
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("get w/ --prefix in pages of %d bytes: %v", pageBytes, err)
		}
		reads = append(reads, res)
	}
	close(stop)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("writer: %v", err)
	}

	for i, res := range reads {
		want := replay(writes, res.Revision)
		var got []string
		for _, kv := range res.KVs {
			got = append(got, fmt.Sprintf("%s=%x", kv.Key, kv.Value))
		}
		var wantS []string
		for _, k := range sortedKeys(want) {
			wantS = append(wantS, fmt.Sprintf("%s=%x", k, want[k]))
		}
		if !slices.Equal(got, wantS) {
			t.Fatalf("read %d at revision %d: %d keys differ from the replay's %d (first difference %s)",
				i, res.Revision, len(got), len(wantS), firstDiff(got, wantS))
		}
		// The store agrees key by key at that revision.
		for _, k := range []string{"w/000", "w/150", "w/299", "w/310"} {
			kv, err := cl.Get(ctx, k, client.GetOptions{Revision: res.Revision})
			wv, present := want[k]
			switch {
			case errors.Is(err, client.ErrNotFound) && !present:
			case err != nil:
				t.Fatalf("get %s at %d: %v (replay: present %v)", k, res.Revision, err, present)
			case !present || !bytes.Equal(kv.KVs[0].Value, wv):
				t.Fatalf("get %s at %d: %q, replay %q (present %v)", k, res.Revision, kv.KVs[0].Value, wv, present)
			}
		}
	}
	mu.Lock()
	t.Logf("%d writes; reads at revisions %d, %d, %d; last write at %d", len(writes),
		reads[0].Revision, reads[1].Revision, reads[2].Revision, slices.MaxFunc(writes, func(a, b write) int { return int(a.rev - b.rev) }).rev)
	mu.Unlock()
}

// replay applies the writes up to rev in revision order.
func replay(writes []write, rev int64) map[string][]byte {
	ws := slices.Clone(writes)
	slices.SortStableFunc(ws, func(a, b write) int { return int(a.rev - b.rev) })
	state := map[string][]byte{}
	for _, w := range ws {
		if w.rev > rev {
			break
		}
		if w.value == nil {
			delete(state, w.key)
		} else {
			state[w.key] = w.value
		}
	}
	return state
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("at %d: got %.40s, want %.40s", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}

// TestRangePinnedAcrossInterleavedWrites: writes made between the pages of
// a read, to keys behind and ahead of it, never show in it: the read
// returns exactly the content before them.
func TestRangePinnedAcrossInterleavedWrites(t *testing.T) {
	c := newCluster(t, 3)
	cl := c.client(t)
	ctx := context.Background()
	before := map[string][]byte{}
	putAll(t, cl, 4, func(yield func(string, []byte)) {
		for i := range 60 {
			yield(fmt.Sprintf("i/%02d", i), []byte(strings.Repeat("x", 200)))
		}
	}, before)
	var got []string
	n := 0
	for kv, err := range cl.Scan(ctx, "i/", client.GetOptions{PageBytes: 1 << 10}) { // 3 or 4 keys a page
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, kv.Key)
		if !bytes.Equal(kv.Value, before[kv.Key]) {
			t.Fatalf("%s read as %q, written before the read as %q", kv.Key, kv.Value, before[kv.Key])
		}
		if n++; n%3 != 0 {
			continue
		}
		// Behind, ahead and after the end of the read: overwrite, delete,
		// create.
		for _, w := range []struct {
			key string
			del bool
		}{{kv.Key, false}, {fmt.Sprintf("i/%02d", min(n+5, 59)), false}, {fmt.Sprintf("i/%02d", min(n+7, 59)), true},
			{fmt.Sprintf("i/%02dnew", n), false}, {fmt.Sprintf("i/%03d", 900+n), false}} {
			var err error
			if w.del {
				_, err = cl.Delete(ctx, w.key)
			} else {
				_, err = cl.Put(ctx, w.key, []byte("during the read"))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := sortedKeys(before); !slices.Equal(got, want) {
		t.Fatalf("read %d keys %v, want the %d written before it", len(got), got, len(want))
	}
	res, err := cl.Get(ctx, "i/", client.GetOptions{Prefix: true})
	if err != nil || len(res.KVs) == len(before) {
		t.Fatalf("after the read: %v, %d keys: the writes during it did not happen", err, len(res.KVs))
	}
}

// TestRangeCompactedBetweenPagesOnCluster: a compaction of the revision a
// read is pinned at, between two of its pages, fails it with
// client.RangeCompactedError; the read started again succeeds.
func TestRangeCompactedBetweenPagesOnCluster(t *testing.T) {
	c := newCluster(t, 1)
	cl := c.client(t)
	ctx := context.Background()
	for i := range 10 {
		if _, err := cl.Put(ctx, fmt.Sprintf("c/%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	n := 0
	for _, err = range cl.Scan(ctx, "c/", client.GetOptions{PageBytes: 1}) { // one key a page
		if err != nil {
			break
		}
		if n++; n == 2 {
			w, perr := cl.Put(ctx, "c/1", []byte("w"))
			if perr != nil {
				t.Fatal(perr)
			}
			if cerr := cl.Compact(ctx, w.Revision); cerr != nil {
				t.Fatal(cerr)
			}
		}
	}
	rc, ok := errors.AsType[*client.RangeCompactedError](err)
	if !ok || !errors.Is(err, client.ErrCompacted) || rc.Read != 2 {
		t.Fatalf("scan across a compaction: %d keys, err %v; want a RangeCompactedError after 2", n, err)
	}
	if res, err := cl.Get(ctx, "c/", client.GetOptions{Prefix: true, PageBytes: 1}); err != nil || len(res.KVs) != 10 {
		t.Fatalf("the read again: %v", err)
	}
}
