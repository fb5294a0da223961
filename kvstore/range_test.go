package kvstore

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"
)

// pageAll reads req page by page, each page continuing after the last key
// of the one before (RangeRequest.After) with the keys left of req.Limit,
// as a client pages a range, and returns the pages.
func pageAll(t *testing.T, s *Store, req RangeRequest) [][]KeyValue {
	t.Helper()
	var pages [][]KeyValue
	left := req.Limit
	for {
		p := req
		p.Limit = left
		res, err := s.Range(p)
		if err != nil {
			t.Fatalf("page %d: %v", len(pages)+1, err)
		}
		if res.More && len(res.KVs) == 0 {
			t.Fatalf("page %d: More without a key: no progress", len(pages)+1)
		}
		if len(res.KVs) > 0 && p.After != nil && bytes.Compare(res.KVs[0].Key, p.After) <= 0 {
			t.Fatalf("page %d starts at %q, not after %q", len(pages)+1, res.KVs[0].Key, p.After)
		}
		pages = append(pages, res.KVs)
		if req.Limit > 0 {
			left -= uint64(len(res.KVs))
		}
		if !res.More || (req.Limit > 0 && left == 0) {
			return pages
		}
		req.After = res.KVs[len(res.KVs)-1].Key
	}
}

func pageBytes(kvs []KeyValue) uint64 {
	var n uint64
	for i := range kvs {
		n += kvs[i].EncodedSizeBound()
	}
	return n
}

// TestRangeByteBudget pages ranges with RangeRequest.MaxBytes and checks,
// at the current revision and at an older one (the history path), that the
// pages together are exactly the reference answer in key order, that no
// page of more than one key exceeds MaxBytes, and that every page but the
// last is full: its next key would not have fit (or Limit stopped it).
func TestRangeByteBudget(t *testing.T) {
	k := newTestKV(t, Config{})
	maxValue := bytes.Repeat([]byte{0xa5}, DefaultMaxValueBytes)
	maxKey := "m/" + string(bytes.Repeat([]byte{'k'}, DefaultMaxKeyBytes-2))
	ref := map[string][]byte{}
	putRef := func(key string, value []byte) {
		k.mustApply(Command{Op: OpPut, Key: []byte(key), Value: value})
		ref[key] = value
	}
	for i := range 3000 {
		putRef(fmt.Sprintf("s/%05d", i), bytes.Repeat([]byte{byte(i)}, i%200))
	}
	for i := range 3 {
		putRef(fmt.Sprintf("b/%d", i), maxValue)
	}
	putRef(maxKey, maxValue)
	putRef("z\x00zero", []byte("0")) // a 0x00 in the key, escaped in the history
	putRef("z", []byte("z"))
	pinned := k.s.mustRev(t)
	// Writes after the pinned revision change what the current path sees;
	// the history path must not see them.
	k.mustApply(put("s/00007", "later"))
	k.mustApply(Command{Op: OpDelete, Key: []byte("s/00008")})
	k.mustApply(put("s/00007x", "new"))

	const nodeBudget = 1 << 20 // node's budget of one reply
	tests := []struct {
		name      string
		req       RangeRequest
		minPages  int // at least this many pages (the budget must split it)
		wantPages int // exactly this many (0: not checked)
	}{
		{name: "many small keys", req: RangeRequest{Key: []byte("s/"), Prefix: true, MaxBytes: 16 << 10}, minPages: 10},
		{name: "many small keys, node budget", req: RangeRequest{Key: []byte("s/"), Prefix: true, MaxBytes: nodeBudget}, wantPages: 1},
		{name: "many small keys, a budget below them", req: RangeRequest{Key: []byte("s/"), Prefix: true, MaxBytes: 256 << 10}, minPages: 2},
		{name: "few keys at the max value size", req: RangeRequest{Key: []byte("b/"), Prefix: true, MaxBytes: nodeBudget}, wantPages: 3},
		{name: "single key at the max size alone", req: RangeRequest{Key: []byte("m/"), Prefix: true, MaxBytes: nodeBudget}, wantPages: 1},
		{name: "single key over a tiny budget", req: RangeRequest{Key: []byte("m/"), Prefix: true, MaxBytes: 100}, wantPages: 1},
		{name: "every key over a tiny budget", req: RangeRequest{Key: []byte("b/"), End: []byte("c"), MaxBytes: 1}, wantPages: 3},
		{name: "limit smaller than a page", req: RangeRequest{Key: []byte("s/"), Prefix: true, MaxBytes: 16 << 10, Limit: 50}, wantPages: 1},
		{name: "limit larger than a page", req: RangeRequest{Key: []byte("s/"), Prefix: true, MaxBytes: 16 << 10, Limit: 1000}, minPages: 5},
		{name: "limit exactly at the end", req: RangeRequest{Key: []byte("b/"), Prefix: true, MaxBytes: nodeBudget, Limit: 3}, wantPages: 3},
		{name: "everything", req: RangeRequest{Prefix: true, MaxBytes: nodeBudget}, minPages: 4},
		{name: "interval with zero bytes", req: RangeRequest{Key: []byte("z"), End: []byte("z\x01"), MaxBytes: 1}, wantPages: 2},
		{name: "empty range", req: RangeRequest{Key: []byte("nothing/"), Prefix: true, MaxBytes: 16 << 10}, wantPages: 1},
	}
	for _, tt := range tests {
		for _, at := range []struct {
			name string
			rev  uint64
		}{{"current", 0}, {"pinned", pinned}} {
			t.Run(tt.name+"/"+at.name, func(t *testing.T) {
				req := tt.req
				req.Rev = at.rev
				want := referenceRange(t, k.s, req)
				pages := pageAll(t, k.s, req)
				var got []KeyValue
				for i, p := range pages {
					if len(p) > 1 && pageBytes(p) > req.MaxBytes {
						t.Fatalf("page %d: %d keys of %d bytes over MaxBytes %d", i+1, len(p), pageBytes(p), req.MaxBytes)
					}
					got = append(got, p...)
					if i == len(pages)-1 || (req.Limit > 0 && uint64(len(got)) == req.Limit) {
						continue
					}
					// Not the last page: the key after it did not fit.
					next := want[len(got)]
					if pageBytes(p)+next.EncodedSizeBound() <= req.MaxBytes {
						t.Fatalf("page %d of %d bytes stopped before %q (%d bytes) that fit in %d",
							i+1, pageBytes(p), next.Key, next.EncodedSizeBound(), req.MaxBytes)
					}
				}
				if d := cmp.Diff(kvString(want), kvString(got)); d != "" {
					t.Fatalf("paged range differs from the reference (-want +got):\n%s", d)
				}
				if len(pages) < tt.minPages || (tt.wantPages > 0 && len(pages) != tt.wantPages) {
					t.Fatalf("%d pages, want %d (at least %d)", len(pages), tt.wantPages, tt.minPages)
				}
			})
		}
	}
}

// referenceRange answers req with neither budget nor paging: every key of
// the range in one read, cut at req.Limit.
func referenceRange(t *testing.T, s *Store, req RangeRequest) []KeyValue {
	t.Helper()
	req.MaxBytes, req.After = 0, nil
	res, err := s.Range(req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(res.KVs, func(a, b KeyValue) int { return bytes.Compare(a.Key, b.Key) }) {
		t.Fatal("reference range not in key order")
	}
	return res.KVs
}

func (s *Store) mustRev(t *testing.T) uint64 {
	t.Helper()
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st.Rev
}

// TestRangeAfter: After skips the keys up to and including itself, on both
// read paths, for ranges and single keys.
func TestRangeAfter(t *testing.T) {
	k := setupKV(t) // a=1 b=2 a=3 ab=4 c=5: at revision 4 c does not exist yet
	for _, tt := range []struct {
		req       RangeRequest
		cur, rev4 string
	}{
		{RangeRequest{Prefix: true, After: []byte("a")}, "ab b c", "ab b"},
		{RangeRequest{Prefix: true, After: []byte("")}, "a ab b c", "a ab b"},
		{RangeRequest{Prefix: true, After: []byte("c")}, "", ""},
		{RangeRequest{Key: []byte("a"), Prefix: true, After: []byte("ab")}, "", ""},
		{RangeRequest{Key: []byte("ab"), End: []byte("c"), After: []byte("a")}, "ab b", "ab b"},
		{RangeRequest{Key: []byte("a"), End: []byte("c"), After: []byte("aa")}, "ab b", "ab b"},
		{RangeRequest{Key: []byte("b"), After: []byte("a")}, "b", "b"},
		{RangeRequest{Key: []byte("b"), After: []byte("b")}, "", ""},
	} {
		for rev, want := range map[uint64]string{0: tt.cur, 4: tt.rev4} {
			req := tt.req
			req.Rev = rev
			res, err := k.s.Range(req)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, kv := range res.KVs {
				keys = append(keys, string(kv.Key))
			}
			if got := strings.Join(keys, " "); got != want {
				t.Errorf("rev %d, %+v: keys %q, want %q", rev, req, got, want)
			}
		}
	}
}

// TestEncodedSizeBound: the msgpack encoding of a KeyValue never takes
// more than EncodedSizeBound, at every header size boundary and with the
// largest revisions.
func TestEncodedSizeBound(t *testing.T) {
	for _, n := range []int{0, 1, 31, 32, 255, 256, 65535, 65536, 1 << 20} {
		for _, r := range []uint64{0, 1, 1 << 31, math.MaxUint64} {
			kv := KeyValue{Key: bytes.Repeat([]byte{'k'}, min(n, MaxKeyBytesLimit)), Value: make([]byte, n),
				CreateRev: r, ModRev: r, Version: r}
			b, err := msgpack.Marshal([]KeyValue{kv})
			if err != nil {
				t.Fatal(err)
			}
			if uint64(len(b)) > kv.EncodedSizeBound() {
				t.Fatalf("key %d, value %d bytes, revisions %d: encoded in %d bytes > bound %d",
					len(kv.Key), len(kv.Value), r, len(b), kv.EncodedSizeBound())
			}
		}
	}
}
