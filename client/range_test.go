package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
)

// pagingFake is a Transport whose nodes answer ranges in pages of at most
// pageKeys keys, the way a node stops a reply at its byte budget. Every
// page served bumps the revision, as concurrent writers would.
type pagingFake struct {
	mu       sync.Mutex
	leader   string
	keys     []string // sorted
	pageKeys int
	rev      int64
	// compactAfter, when > 0, compacts every revision up to the current
	// one once that many pages were served.
	compactAfter int
	compacted    int64
	ignoreAfter  bool // answer as a node that predates ClientRequest.After
	served       int
	seen         []string // "addr rev=R after=A limit=L serializable=S"
}

func newPagingFake(n, pageKeys int) *pagingFake {
	f := &pagingFake{leader: "a", pageKeys: pageKeys, rev: 100}
	for i := range n {
		f.keys = append(f.keys, fmt.Sprintf("p/%03d", i))
	}
	f.keys = append(f.keys, "q/outside")
	return f
}

func (f *pagingFake) Close() error { return nil }

func (f *pagingFake) Call(ctx context.Context, addr string, payload []byte) ([]byte, error) {
	_, body, err := proto.Split(payload)
	if err != nil {
		return nil, err
	}
	var req proto.ClientRequest
	if err := proto.Decode(body, &req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, fmt.Sprintf("%s rev=%d after=%s limit=%d serializable=%v", addr, req.Revision, req.After, req.Limit, req.Serializable))
	resp := f.serveLocked(addr, &req)
	return proto.MustEncode(proto.KindClient, resp)[1:], nil
}

func (f *pagingFake) serveLocked(addr string, req *proto.ClientRequest) proto.ClientResponse {
	if req.Op != proto.OpRange || !req.Prefix {
		return proto.ClientResponse{Code: proto.CodeInvalid, Message: "fake serves prefix ranges only"}
	}
	if addr != f.leader && !req.Serializable {
		return proto.ClientResponse{Code: proto.CodeNotLeader, LeaderAddr: f.leader}
	}
	if req.Revision > 0 && req.Revision < f.compacted {
		return proto.ClientResponse{Code: proto.CodeCompacted, Message: fmt.Sprintf("read at %d < compacted %d", req.Revision, f.compacted)}
	}
	resp := proto.ClientResponse{Revision: f.rev}
	for _, k := range f.keys {
		if !strings.HasPrefix(k, string(req.Key)) || (!f.ignoreAfter && req.After != nil && k <= string(req.After)) {
			continue
		}
		if len(resp.KVs) == f.pageKeys || (req.Limit > 0 && int64(len(resp.KVs)) == req.Limit) {
			resp.More = true
			break
		}
		resp.KVs = append(resp.KVs, proto.KeyValue{Key: []byte(k), Value: []byte("v" + k)})
	}
	f.rev++
	if f.served++; f.compactAfter > 0 && f.served == f.compactAfter {
		f.compacted = f.rev
	}
	return resp
}

func keysOf(kvs []KeyValue) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

// TestRangePages: a prefix read larger than one page comes back whole and
// in order; the later pages continue after the last key, pinned at the
// first page's revision, with what is left of Limit.
func TestRangePages(t *testing.T) {
	tests := []struct {
		name     string
		limit    int64
		want     int
		wantMore bool
		limits   []int64 // Limit of each request
	}{
		{name: "no limit", limit: 0, want: 10, limits: []int64{0, 0, 0}},
		{name: "limit across pages", limit: 7, want: 7, wantMore: true, limits: []int64{7, 3}},
		{name: "limit at a page boundary", limit: 8, want: 8, wantMore: true, limits: []int64{8, 4}},
		{name: "limit smaller than a page", limit: 2, want: 2, wantMore: true, limits: []int64{2}},
		{name: "limit exactly the keys", limit: 10, want: 10, limits: []int64{10, 6, 2}},
		{name: "limit over the keys", limit: 50, want: 10, limits: []int64{50, 46, 42}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newPagingFake(10, 4)
			c := newTestClient(t, Config{Endpoints: []string{"a", "b"}, Transport: f})
			res, err := c.Get(t.Context(), "p/", GetOptions{Prefix: true, Limit: tt.limit})
			if err != nil {
				t.Fatal(err)
			}
			got := keysOf(res.KVs)
			if len(got) != tt.want || !slices.IsSorted(got) || got[0] != "p/000" || res.More != tt.wantMore {
				t.Fatalf("keys %v more %v, want %d keys from p/000 in order, more %v", got, res.More, tt.want, tt.wantMore)
			}
			if res.Revision != 100 {
				t.Fatalf("revision %d, want the first page's 100", res.Revision)
			}
			var want []string
			after := ""
			for i, l := range tt.limits {
				rev := int64(100)
				if i == 0 {
					rev = 0
				}
				want = append(want, fmt.Sprintf("a rev=%d after=%s limit=%d serializable=false", rev, after, l))
				after = fmt.Sprintf("p/%03d", 4*i+3)
			}
			if d := strings.Join(f.seen, "\n"); d != strings.Join(want, "\n") {
				t.Fatalf("requests:\n%s\nwant:\n%s", d, strings.Join(want, "\n"))
			}
		})
	}
}

// TestRangePagesStayOnOneNode: the later pages of a serializable read go
// to the node that answered the first, not round the endpoints (another
// node may not have applied the pinned revision yet).
func TestRangePagesStayOnOneNode(t *testing.T) {
	f := newPagingFake(10, 3)
	c := newTestClient(t, Config{Endpoints: []string{"b", "c"}, Transport: f})
	res, err := c.Get(t.Context(), "p/", GetOptions{Prefix: true, Serializable: true})
	if err != nil || len(res.KVs) != 10 {
		t.Fatalf("get: %v, %d keys", err, len(res.KVs))
	}
	first := strings.Fields(f.seen[0])[0]
	for _, s := range f.seen {
		if !strings.HasPrefix(s, first+" ") || !strings.HasSuffix(s, "serializable=true") {
			t.Fatalf("requests %q: want all serializable, to %s", f.seen, first)
		}
	}
}

// TestRangeCompactedBetweenPages: a compaction of the pinned revision
// between two pages fails the read with a RangeCompactedError that says
// to retry.
func TestRangeCompactedBetweenPages(t *testing.T) {
	f := newPagingFake(10, 4)
	f.compactAfter = 1
	c := newTestClient(t, Config{Endpoints: []string{"a"}, Transport: f})
	_, err := c.Get(t.Context(), "p/", GetOptions{Prefix: true})
	rc, ok := errors.AsType[*RangeCompactedError](err)
	if !ok || !errors.Is(err, ErrCompacted) || rc.Revision != 100 || rc.Read != 4 || !strings.Contains(err.Error(), "retry") {
		t.Fatalf("err = %v, want a RangeCompactedError at revision 100 after 4 keys that says to retry", err)
	}
	// The same read, started afresh, pins a newer revision and succeeds.
	f.seen = nil
	res, err := c.Get(t.Context(), "p/", GetOptions{Prefix: true})
	if err != nil || len(res.KVs) != 10 {
		t.Fatalf("retry: %v (%d keys); requests %q", err, len(res.KVs), f.seen)
	}
}

// TestRangeNodeIgnoresAfter: a node that predates paged ranges answers the
// same page again; the client stops with an error instead of looping.
func TestRangeNodeIgnoresAfter(t *testing.T) {
	f := newPagingFake(10, 4)
	f.ignoreAfter = true
	c := newTestClient(t, Config{Endpoints: []string{"a"}, Transport: f})
	// A deadline: a client that loops fails here rather than hanging.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := c.Get(ctx, "p/", GetOptions{Prefix: true})
	if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "upgrade") || len(f.seen) != 2 {
		t.Fatalf("err = %v after %d requests, want ErrInternal naming an upgrade after 2", err, len(f.seen))
	}
}

// TestScan: Scan yields every key in order, one page at a time, and stops
// asking for pages when the loop breaks.
func TestScan(t *testing.T) {
	f := newPagingFake(10, 4)
	c := newTestClient(t, Config{Endpoints: []string{"a"}, Transport: f})
	var got []string
	for kv, err := range c.Scan(t.Context(), "p/", GetOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, kv.Key)
	}
	if len(got) != 10 || !slices.IsSorted(got) || len(f.seen) != 3 {
		t.Fatalf("scan: %v in %d requests, want 10 keys in order in 3", got, len(f.seen))
	}
	f.seen = nil
	n := 0
	for _, err := range c.Scan(t.Context(), "p/", GetOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 5 {
			break
		}
	}
	if len(f.seen) != 2 {
		t.Fatalf("a scan broken after 5 keys sent %d requests, want 2", len(f.seen))
	}
	f.compactAfter, f.served = 1, 0
	var errs []error
	for _, err := range c.Scan(t.Context(), "p/", GetOptions{}) {
		errs = append(errs, err)
	}
	if len(errs) != 5 || !errors.Is(errs[4], ErrCompacted) {
		t.Fatalf("scan across a compaction yielded %v, want 4 keys then ErrCompacted", errs)
	}
}
