package kvstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/raftkv/raftkv/node/raft"
)

// testKV applies commands one log entry at a time.
type testKV struct {
	t   testing.TB
	s   *Store
	idx uint64 // last index given to Apply

	clients uint64 // ClientIDs handed out by register
}

func newTestKV(t testing.TB, cfg Config) *testKV {
	t.Helper()
	cfg.NoSync = true
	s, err := Open(filepath.Join(t.TempDir(), "kv.db"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &testKV{t: t, s: s, idx: s.Applied()}
}

func (k *testKV) entry(cmd Command) raft.Entry {
	k.t.Helper()
	data, err := EncodeCommand(cmd)
	if err != nil {
		k.t.Fatal(err)
	}
	k.idx++
	return raft.Entry{Index: k.idx, Term: 1, Data: data}
}

func (k *testKV) apply(cmd Command) Result {
	k.t.Helper()
	return k.applyEntry(k.entry(cmd))
}

func (k *testKV) applyEntry(e raft.Entry) Result {
	k.t.Helper()
	rs, err := k.s.Apply([]raft.Entry{e})
	if err != nil {
		k.t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Index != e.Index {
		k.t.Fatalf("apply %d: got results %+v", e.Index, rs)
	}
	return rs[0]
}

func (k *testKV) mustApply(cmd Command) Result {
	k.t.Helper()
	r := k.apply(cmd)
	if r.Err != nil {
		k.t.Fatalf("%v %q: %v", cmd.Op, cmd.Key, r.Err)
	}
	return r
}

func put(key, value string) Command {
	return Command{Op: OpPut, Key: []byte(key), Value: []byte(value)}
}

func cas(key string, c Compare, then Op, value string) Command {
	return Command{Op: OpCAS, Key: []byte(key), Compare: &c, Then: then, Value: []byte(value)}
}

// kvString renders a key's visible versions compactly: key=value@create/mod/version.
func kvString(kvs []KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, fmt.Sprintf("%s=%s@%d/%d/%d", kv.Key, kv.Value, kv.CreateRev, kv.ModRev, kv.Version))
	}
	return strings.Join(parts, " ")
}

// setupKV writes: a=1 (rev 1), b=2 (2), a=3 (3), ab=4 (4), c=5 (5).
func setupKV(t *testing.T) *testKV {
	k := newTestKV(t, Config{MaxKeyBytes: 16, MaxValueBytes: 32, MaxRequestBytes: 128})
	for _, c := range []Command{put("a", "1"), put("b", "2"), put("a", "3"), put("ab", "4"), put("c", "5")} {
		k.mustApply(c)
	}
	return k
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name    string
		cmd     Command
		raw     []byte // entry data instead of cmd
		wantErr error
		wantRev uint64
		wantKV  string // Result.KV rendered
		wantDel uint64
		after   string // all live keys after the command
	}{
		{name: "put new", cmd: put("d", "6"), wantRev: 6, wantKV: "d=@6/6/1", after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1 d=6@6/6/1"},
		{name: "put existing", cmd: put("a", "6"), wantRev: 6, wantKV: "a=@1/6/3", after: "a=6@1/6/3 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "put empty value", cmd: put("a", ""), wantRev: 6, wantKV: "a=@1/6/3", after: "a=@1/6/3 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "delete", cmd: Command{Op: OpDelete, Key: []byte("a")}, wantRev: 6, wantDel: 1, after: "ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "delete missing", cmd: Command{Op: OpDelete, Key: []byte("zz")}, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "delete prefix", cmd: Command{Op: OpDeletePrefix, Key: []byte("a")}, wantRev: 6, wantDel: 2, after: "b=2@2/2/1 c=5@5/5/1"},
		{name: "delete prefix none", cmd: Command{Op: OpDeletePrefix, Key: []byte("zz")}, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "delete prefix all", cmd: Command{Op: OpDeletePrefix}, wantRev: 6, wantDel: 4, after: ""},
		{name: "cas value ok", cmd: cas("a", Compare{Target: CompareValue, Value: []byte("3")}, OpPut, "x"), wantRev: 6, wantKV: "a=@1/6/3", after: "a=x@1/6/3 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "cas value fails", cmd: cas("a", Compare{Target: CompareValue, Value: []byte("1")}, OpPut, "x"), wantErr: ErrCompareFailed, wantRev: 5, wantKV: "a=3@1/3/2", after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "cas value on missing fails", cmd: cas("zz", Compare{Target: CompareValue}, OpPut, "x"), wantErr: ErrCompareFailed, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "cas mod rev ok", cmd: cas("a", Compare{Target: CompareModRev, Rev: 3}, OpDelete, ""), wantRev: 6, wantDel: 1, after: "ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "cas mod rev fails", cmd: cas("a", Compare{Target: CompareModRev, Rev: 1}, OpDelete, ""), wantErr: ErrCompareFailed, wantRev: 5, wantKV: "a=3@1/3/2", after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "cas version ok", cmd: cas("a", Compare{Target: CompareVersion, Rev: 2}, OpPut, "v"), wantRev: 6, wantKV: "a=@1/6/3", after: "a=v@1/6/3 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "cas create if absent", cmd: cas("new", Compare{Target: CompareVersion, Rev: 0}, OpPut, "n"), wantRev: 6, wantKV: "new=@6/6/1", after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1 new=n@6/6/1"},
		{name: "cas create if absent fails", cmd: cas("a", Compare{Target: CompareVersion, Rev: 0}, OpPut, "n"), wantErr: ErrCompareFailed, wantRev: 5, wantKV: "a=3@1/3/2", after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "cas create rev ok", cmd: cas("ab", Compare{Target: CompareCreateRev, Rev: 4}, OpPut, "y"), wantRev: 6, wantKV: "ab=@4/6/2", after: "a=3@1/3/2 ab=y@4/6/2 b=2@2/2/1 c=5@5/5/1"},
		{name: "cas exists fails", cmd: cas("zz", Compare{Target: CompareExists}, OpDelete, ""), wantErr: ErrCompareFailed, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "cas exists ok", cmd: cas("c", Compare{Target: CompareExists}, OpDelete, ""), wantRev: 6, wantDel: 1, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1"},
		{name: "cas bad then", cmd: cas("a", Compare{Target: CompareExists}, OpCompact, ""), wantErr: ErrBadCommand, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "cas bad target", cmd: cas("a", Compare{Target: 99}, OpPut, ""), wantErr: ErrBadCommand, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "cas without compare", cmd: Command{Op: OpCAS, Key: []byte("a"), Then: OpPut}, wantErr: ErrBadCommand, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "noop", cmd: Command{Op: OpNoop}, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "compact", cmd: Command{Op: OpCompact, Rev: 3}, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "compact future", cmd: Command{Op: OpCompact, Rev: 6}, wantErr: ErrFutureRevision, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "empty key", cmd: put("", "x"), wantErr: ErrEmptyKey, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "key too large", cmd: put(strings.Repeat("k", 17), "x"), wantErr: ErrKeyTooLarge, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "value too large", cmd: put("a", strings.Repeat("v", 33)), wantErr: ErrValueTooLarge, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "compare value too large", cmd: cas("a", Compare{Value: bytes.Repeat([]byte("v"), 33)}, OpPut, ""), wantErr: ErrValueTooLarge, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "request too large", cmd: Command{Op: OpPut, Key: []byte("a"), Value: []byte("v"), End: bytes.Repeat([]byte("e"), 16), Compare: &Compare{Value: bytes.Repeat([]byte("c"), 100)}}, wantErr: ErrRequestTooLarge, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "undecodable", raw: []byte{0xc1}, wantErr: ErrBadCommand, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "unknown op", cmd: Command{Op: 200, Key: []byte("a")}, wantErr: ErrBadCommand, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "session seq 0", cmd: Command{Op: OpPut, Key: []byte("a"), ClientID: 1}, wantErr: ErrBadCommand, wantRev: 5, after: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := setupKV(t)
			e := k.entry(tt.cmd)
			if tt.raw != nil {
				e.Data = tt.raw
			}
			r := k.applyEntry(e)
			if !errors.Is(r.Err, tt.wantErr) || (tt.wantErr == nil) != (r.Err == nil) {
				t.Fatalf("err = %v, want %v", r.Err, tt.wantErr)
			}
			if r.Code != CodeOf(tt.wantErr) {
				t.Errorf("code = %d, want %d", r.Code, CodeOf(tt.wantErr))
			}
			if r.Rev != tt.wantRev {
				t.Errorf("rev = %d, want %d", r.Rev, tt.wantRev)
			}
			var gotKV string
			if r.KV != nil {
				gotKV = kvString([]KeyValue{*r.KV})
			}
			if gotKV != tt.wantKV {
				t.Errorf("kv = %q, want %q", gotKV, tt.wantKV)
			}
			if r.Deleted != tt.wantDel {
				t.Errorf("deleted = %d, want %d", r.Deleted, tt.wantDel)
			}
			all, err := k.s.Range(RangeRequest{Prefix: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := kvString(all.KVs); got != tt.after {
				t.Errorf("after:\n got %s\nwant %s", got, tt.after)
			}
			if all.Rev != tt.wantRev {
				t.Errorf("store rev = %d, want %d", all.Rev, tt.wantRev)
			}
			if k.s.Applied() != e.Index {
				t.Errorf("applied = %d, want %d", k.s.Applied(), e.Index)
			}
		})
	}
}

func TestHistoryReads(t *testing.T) {
	k := setupKV(t)
	k.mustApply(Command{Op: OpDelete, Key: []byte("a")}) // rev 6
	k.mustApply(put("a", "7"))                           // rev 7
	tests := []struct {
		name    string
		req     RangeRequest
		want    string
		more    bool
		wantErr error
	}{
		{name: "get at 1", req: RangeRequest{Key: []byte("a"), Rev: 1}, want: "a=1@1/1/1"},
		{name: "get at 2", req: RangeRequest{Key: []byte("a"), Rev: 2}, want: "a=1@1/1/1"},
		{name: "get at 3", req: RangeRequest{Key: []byte("a"), Rev: 3}, want: "a=3@1/3/2"},
		{name: "get deleted at 6", req: RangeRequest{Key: []byte("a"), Rev: 6}, want: ""},
		{name: "get recreated at 7", req: RangeRequest{Key: []byte("a"), Rev: 7}, want: "a=7@7/7/1"},
		{name: "get current", req: RangeRequest{Key: []byte("a")}, want: "a=7@7/7/1"},
		{name: "get before creation", req: RangeRequest{Key: []byte("c"), Rev: 4}, want: ""},
		{name: "get missing", req: RangeRequest{Key: []byte("zz"), Rev: 4}, want: ""},
		{name: "future", req: RangeRequest{Key: []byte("a"), Rev: 8}, wantErr: ErrFutureRevision},
		{name: "all at 5", req: RangeRequest{Prefix: true, Rev: 5}, want: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "all at 6", req: RangeRequest{Prefix: true, Rev: 6}, want: "ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "all at 2", req: RangeRequest{Prefix: true, Rev: 2}, want: "a=1@1/1/1 b=2@2/2/1"},
		{name: "interval at 3", req: RangeRequest{Key: []byte("a"), End: []byte("b"), Rev: 3}, want: "a=3@1/3/2"},
		{name: "interval at 4", req: RangeRequest{Key: []byte("a"), End: []byte("b"), Rev: 4}, want: "a=3@1/3/2 ab=4@4/4/1"},
		{name: "interval current", req: RangeRequest{Key: []byte("ab"), End: []byte("c")}, want: "ab=4@4/4/1 b=2@2/2/1"},
		{name: "prefix current", req: RangeRequest{Key: []byte("a"), Prefix: true}, want: "a=7@7/7/1 ab=4@4/4/1"},
		{name: "prefix at 6", req: RangeRequest{Key: []byte("a"), Prefix: true, Rev: 6}, want: "ab=4@4/4/1"},
		{name: "limit current", req: RangeRequest{Prefix: true, Limit: 2}, want: "a=7@7/7/1 ab=4@4/4/1", more: true},
		{name: "limit exact", req: RangeRequest{Prefix: true, Limit: 4}, want: "a=7@7/7/1 ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "limit at 5", req: RangeRequest{Prefix: true, Limit: 3, Rev: 5}, want: "a=3@1/3/2 ab=4@4/4/1 b=2@2/2/1", more: true},
		{name: "limit at 6 skips tombstone", req: RangeRequest{Prefix: true, Limit: 3, Rev: 6}, want: "ab=4@4/4/1 b=2@2/2/1 c=5@5/5/1"},
		{name: "keys only", req: RangeRequest{Key: []byte("a"), Prefix: true, KeysOnly: true, Rev: 4}, want: "a=@1/3/2 ab=@4/4/1"},
		{name: "empty key", req: RangeRequest{}, wantErr: ErrEmptyKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := k.s.Range(tt.req)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := kvString(res.KVs); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if res.More != tt.more {
				t.Errorf("more = %v, want %v", res.More, tt.more)
			}
		})
	}
	if _, err := k.s.Get([]byte("a"), 6); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("get deleted: %v, want ErrKeyNotFound", err)
	}
	// The same read through the log.
	r := k.mustApply(Command{Op: OpRange, Key: []byte("a"), Prefix: true, Rev: 4})
	if got := kvString(r.KVs); got != "a=3@1/3/2 ab=4@4/4/1" {
		t.Errorf("range through the log: %s", got)
	}
}

func TestCompaction(t *testing.T) {
	k := setupKV(t)
	k.mustApply(Command{Op: OpDelete, Key: []byte("b")}) // rev 6
	k.mustApply(put("a", "7"))                           // rev 7
	before := map[uint64]string{}
	for rev := uint64(4); rev <= 7; rev++ {
		res, err := k.s.Range(RangeRequest{Prefix: true, Rev: rev})
		if err != nil {
			t.Fatal(err)
		}
		before[rev] = kvString(res.KVs)
	}
	k.mustApply(Command{Op: OpCompact, Rev: 4})
	for rev := uint64(1); rev <= 3; rev++ {
		if _, err := k.s.Get([]byte("a"), rev); !errors.Is(err, ErrCompacted) {
			t.Errorf("get at compacted %d: %v, want ErrCompacted", rev, err)
		}
	}
	for rev := uint64(4); rev <= 7; rev++ {
		res, err := k.s.Range(RangeRequest{Prefix: true, Rev: rev})
		if err != nil {
			t.Fatal(err)
		}
		if got := kvString(res.KVs); got != before[rev] {
			t.Errorf("at %d after compaction: %s, want %s", rev, got, before[rev])
		}
	}
	if r := k.apply(Command{Op: OpCompact, Rev: 4}); !errors.Is(r.Err, ErrCompacted) {
		t.Errorf("compact again: %v, want ErrCompacted", r.Err)
	}
	// Compacting past the delete of b drops b's whole history.
	k.mustApply(Command{Op: OpCompact, Rev: 7})
	hist := dumpBucket(t, k.s, bucketRevs)
	want := fmt.Sprintf("%x=%x\n%x=%x\n%x=%x\n",
		histKey([]byte("a"), 7), encodeHist(false, 1, 3, []byte("7")),
		histKey([]byte("ab"), 4), encodeHist(false, 4, 1, []byte("4")),
		histKey([]byte("c"), 5), encodeHist(false, 5, 1, []byte("5")))
	if strings.TrimSpace(hist) != strings.TrimSpace(want) {
		t.Errorf("history after compacting to the current revision:\n%s\nwant only the live versions:\n%s", hist, want)
	}
	st, err := k.s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.CompactRev != 7 || st.Rev != 7 || st.Keys != 3 {
		t.Errorf("status %+v", st)
	}
}

func dumpBucket(t *testing.T, s *Store, name []byte) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(dumpStore(t, s), "\n") {
		b.WriteString(line + "\n")
	}
	full := b.String()
	start := strings.Index(full, "["+string(name)+"]\n")
	if start < 0 {
		t.Fatalf("no bucket %s", name)
	}
	rest := full[start+len(name)+3:]
	if end := strings.Index(rest, "["); end >= 0 {
		rest = rest[:end]
	}
	return rest
}

func TestApplyIdempotentAndGap(t *testing.T) {
	k := newTestKV(t, Config{})
	var all []raft.Entry
	for i := range 10 {
		all = append(all, k.entry(put(fmt.Sprintf("k%d", i%3), fmt.Sprint(i))))
	}
	if rs, err := k.s.Apply(all[:6]); err != nil || len(rs) != 6 {
		t.Fatalf("apply: %v %d", err, len(rs))
	}
	rs, err := k.s.Apply(all) // 1..6 again, then 7..10
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 || rs[0].Index != 7 || rs[3].Rev != 10 {
		t.Fatalf("re-apply results %+v", rs)
	}
	if rs, err := k.s.Apply(all); err != nil || len(rs) != 0 {
		t.Fatalf("apply of applied entries: %v %+v", err, rs)
	}
	fresh := newTestKV(t, Config{})
	if _, err := fresh.s.Apply(all); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dumpStore(t, fresh.s), dumpStore(t, k.s)); diff != "" {
		t.Fatalf("re-applied store differs from a fresh one:\n%s", diff)
	}
	k.idx = 11
	if _, err := k.s.Apply([]raft.Entry{k.entry(put("x", "y"))}); !errors.Is(err, ErrApplyGap) {
		t.Fatalf("apply with a gap: %v, want ErrApplyGap", err)
	}
	if k.s.Applied() != 10 {
		t.Fatalf("applied %d after a refused gap", k.s.Applied())
	}
}

func TestApplySkipsNoopsAndConfChanges(t *testing.T) {
	k := newTestKV(t, Config{})
	rs, err := k.s.Apply([]raft.Entry{
		{Index: 1, Term: 1},
		{Index: 2, Term: 1, Type: raft.EntryConfChange, Data: []byte{0x93, 1, 2, 3}},
		k.entryAt(3, put("a", "b")),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{{Index: 1}, {Index: 2}, {Index: 3, Op: OpPut, Rev: 1, KV: &KeyValue{Key: []byte("a"), CreateRev: 1, ModRev: 1, Version: 1}}}
	if diff := cmp.Diff(want, rs, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("results (-want +got):\n%s", diff)
	}
	st, _ := k.s.Status()
	if st.Applied != 3 || st.AppliedTerm != 1 {
		t.Fatalf("status %+v", st)
	}
}

func (k *testKV) entryAt(i uint64, cmd Command) raft.Entry {
	k.idx = i - 1
	return k.entry(cmd)
}

func TestValidate(t *testing.T) {
	k := newTestKV(t, Config{MaxKeyBytes: 8, MaxValueBytes: 8, MaxRequestBytes: 40})
	for _, tt := range []struct {
		cmd  Command
		want error
	}{
		{put("a", "b"), nil},
		{put("", "b"), ErrEmptyKey},
		{put("123456789", "b"), ErrKeyTooLarge},
		{put("a", "123456789"), ErrValueTooLarge},
		{Command{Op: OpPut, Key: []byte("k"), Value: []byte("v"), Compare: &Compare{Value: bytes.Repeat([]byte("x"), 40)}}, ErrRequestTooLarge},
		{Command{Op: 77}, ErrBadCommand},
	} {
		if err := k.s.Validate(tt.cmd); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
			t.Errorf("validate %v %q: %v, want %v", tt.cmd.Op, tt.cmd.Key, err, tt.want)
		}
	}
	// The size checked is the size proposed: session fields and time count.
	bare := put("a", "b")
	b, err := k.s.EncodeChecked(bare)
	if err != nil {
		t.Fatalf("EncodeChecked(%v): %v", bare, err)
	}
	if want, _ := EncodeCommand(bare); !bytes.Equal(b, want) {
		t.Fatal("EncodeChecked's bytes differ from EncodeCommand's")
	}
	stamped := bare
	stamped.ClientID, stamped.Seq, stamped.Time = 1<<63, 1<<40, 1<<62
	if len(b) > 40 {
		t.Fatalf("bare put is %d bytes, the test needs it under the 40-byte limit", len(b))
	}
	if _, err := k.s.EncodeChecked(stamped); !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("a put over the limit only with its session fields: %v, want ErrRequestTooLarge", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), Config{MaxKeyBytes: MaxKeyBytesLimit + 1}); err == nil {
		t.Error("open with MaxKeyBytes beyond the limit succeeded")
	}
}

func TestZeroBytesInKeys(t *testing.T) {
	// Keys with 0x00 bytes must keep their order and history apart.
	k := newTestKV(t, Config{})
	keys := []string{"a", "a\x00", "a\x00\x00", "a\x00\x01", "a\x01", "\x00", "\x00\xff"}
	for i, key := range keys {
		k.mustApply(put(key, fmt.Sprint(i)))
	}
	k.mustApply(put("a\x00", "again"))
	cur, err := k.s.Range(RangeRequest{Prefix: true})
	if err != nil {
		t.Fatal(err)
	}
	old, err := k.s.Range(RangeRequest{Prefix: true, Rev: uint64(len(keys))})
	if err != nil {
		t.Fatal(err)
	}
	if len(cur.KVs) != len(keys) || len(old.KVs) != len(keys) {
		t.Fatalf("current %d keys, old %d keys, want %d", len(cur.KVs), len(old.KVs), len(keys))
	}
	for i := range cur.KVs {
		if !bytes.Equal(cur.KVs[i].Key, old.KVs[i].Key) {
			t.Fatalf("key %d: current %q, history %q", i, cur.KVs[i].Key, old.KVs[i].Key)
		}
	}
	got, err := k.s.Get([]byte("a\x00"), uint64(len(keys)))
	if err != nil || string(got.Value) != "1" {
		t.Fatalf("history get of a\\x00: %q %v", got.Value, err)
	}
	pre, err := k.s.Range(RangeRequest{Key: []byte("a\x00"), Prefix: true, Rev: uint64(len(keys))})
	if err != nil || len(pre.KVs) != 3 {
		t.Fatalf("history prefix a\\x00: %s %v", kvString(pre.KVs), err)
	}
}

func TestWaitApplied(t *testing.T) {
	k := newTestKV(t, Config{})
	done := make(chan error, 1)
	go func() { done <- k.s.WaitApplied(t.Context(), 3) }()
	for range 3 {
		select {
		case err := <-done:
			t.Fatalf("WaitApplied returned before index 3 was applied: %v", err)
		default:
		}
		k.mustApply(put("a", "b"))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := k.s.WaitApplied(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied with a canceled context: %v", err)
	}
}

func TestLargestKey(t *testing.T) {
	// The largest allowed key, all zero bytes (each escaped to two), still
	// fits bbolt's key limit in the history bucket.
	k := newTestKV(t, Config{MaxKeyBytes: MaxKeyBytesLimit})
	key := string(make([]byte, MaxKeyBytesLimit))
	k.mustApply(put(key, "v"))
	k.mustApply(put(key, "w"))
	if kv, err := k.s.Get([]byte(key), 1); err != nil || string(kv.Value) != "v" {
		t.Fatalf("history read of the largest key: %q %v", kv.Value, err)
	}
}
