package kvstore

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"testing"

	"github.com/raftkv/raftkv/node/raft"
	bolt "go.etcd.io/bbolt"
	"pgregory.net/rapid"
)

// refModel is the dumb reference for the MVCC store: every version of every
// key in a map of slices, searched linearly.
type refModel struct {
	hist      map[string][]refVersion
	rev       uint64
	compacted uint64
}

type refVersion struct {
	rev             uint64
	value           []byte
	tomb            bool
	create, version uint64
}

func (m *refModel) visible(key string, rev uint64) (refVersion, bool) {
	var out refVersion
	found := false
	for _, v := range m.hist[key] {
		if v.rev <= rev {
			out, found = v, !v.tomb
		}
	}
	return out, found
}

func (m *refModel) kv(key string, v refVersion) KeyValue {
	return KeyValue{Key: []byte(key), Value: v.value, CreateRev: v.create, ModRev: v.rev, Version: v.version}
}

func (m *refModel) put(key string, value []byte) *KeyValue {
	cur, ok := m.visible(key, m.rev)
	m.rev++
	v := refVersion{rev: m.rev, value: value, create: m.rev, version: 1}
	if ok {
		v.create, v.version = cur.create, cur.version+1
	}
	m.hist[key] = append(m.hist[key], v)
	kv := m.kv(key, v)
	kv.Value = nil
	return &kv
}

func (m *refModel) del(keys []string) uint64 {
	var n uint64
	for _, k := range keys {
		if _, ok := m.visible(k, m.rev); !ok {
			continue
		}
		if n == 0 {
			m.rev++
		}
		n++
		m.hist[k] = append(m.hist[k], refVersion{rev: m.rev, tomb: true})
	}
	return n
}

func (m *refModel) keys(rev uint64, inRange func(string) bool) []string {
	var out []string
	for k := range m.hist {
		if _, ok := m.visible(k, rev); ok && inRange(k) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (m *refModel) rangeRead(req RangeRequest) (RangeResult, error) {
	rev := req.Rev
	if rev == 0 {
		rev = m.rev
	}
	if rev > m.rev {
		return RangeResult{}, ErrFutureRevision
	}
	if req.Rev != 0 && rev < m.compacted {
		return RangeResult{}, ErrCompacted
	}
	start, end, single := req.span()
	inRange := func(k string) bool {
		switch {
		case single:
			return k == string(start)
		case end == nil:
			return k >= string(start)
		}
		return k >= string(start) && k < string(end)
	}
	out := RangeResult{Rev: m.rev}
	for _, k := range m.keys(rev, inRange) {
		if req.Limit > 0 && uint64(len(out.KVs)) == req.Limit {
			out.More = true
			break
		}
		v, _ := m.visible(k, rev)
		out.KVs = append(out.KVs, m.kv(k, v))
	}
	return out, nil
}

// exec mirrors applier.exec for the commands the property test sends.
func (m *refModel) exec(cmd Command) Result {
	r := Result{Op: cmd.Op}
	switch cmd.Op {
	case OpPut:
		r.KV = m.put(string(cmd.Key), cmd.Value)
	case OpDelete:
		r.Deleted = m.del([]string{string(cmd.Key)})
	case OpDeletePrefix:
		r.Deleted = m.del(m.keys(m.rev, func(k string) bool { return bytes.HasPrefix([]byte(k), cmd.Key) }))
	case OpCAS:
		cur, ok := m.visible(string(cmd.Key), m.rev)
		c := cmd.Compare
		var hold bool
		switch c.Target {
		case CompareValue:
			hold = ok && bytes.Equal(cur.value, c.Value)
		case CompareModRev:
			hold = (ok && cur.rev == c.Rev) || (!ok && c.Rev == 0)
		case CompareVersion:
			hold = (ok && cur.version == c.Rev) || (!ok && c.Rev == 0)
		case CompareCreateRev:
			hold = (ok && cur.create == c.Rev) || (!ok && c.Rev == 0)
		case CompareExists:
			hold = ok
		}
		switch {
		case !hold:
			r.Err = ErrCompareFailed
			if ok {
				kv := m.kv(string(cmd.Key), cur)
				r.KV = &kv
			}
		case cmd.Then == OpPut:
			r.KV = m.put(string(cmd.Key), cmd.Value)
		default:
			r.Deleted = m.del([]string{string(cmd.Key)})
		}
	case OpCompact:
		switch {
		case cmd.Rev > m.rev:
			r.Err = ErrFutureRevision
		case cmd.Rev <= m.compacted:
			r.Err = ErrCompacted
		default:
			m.compacted = cmd.Rev
		}
	}
	r.Rev = m.rev
	return r
}

func TestStoreMatchesModel(t *testing.T) {
	dir := t.TempDir()
	n := 0
	keyGen := rapid.SliceOfN(rapid.SampledFrom([]byte{0, 1, 'a', 'b', 0xff}), 1, 3)
	valGen := rapid.SliceOfN(rapid.Byte(), 0, 6)
	rapid.Check(t, func(rt *rapid.T) {
		n++
		s, err := Open(filepath.Join(dir, fmt.Sprintf("kv%d.db", n)), Config{NoSync: true})
		if err != nil {
			rt.Fatal(err)
		}
		defer s.Close()
		m := &refModel{hist: map[string][]refVersion{}}
		idx := uint64(0)
		apply := func(cmd Command) {
			data, err := EncodeCommand(cmd)
			if err != nil {
				rt.Fatal(err)
			}
			idx++
			rs, err := s.Apply([]raft.Entry{{Index: idx, Term: 1, Data: data}})
			if err != nil {
				rt.Fatal(err)
			}
			got, want := rs[0], m.exec(cmd)
			if !errors.Is(got.Err, want.Err) || (got.Err == nil) != (want.Err == nil) ||
				got.Rev != want.Rev || got.Deleted != want.Deleted || kvString(ptrSlice(got.KV)) != kvString(ptrSlice(want.KV)) {
				rt.Fatalf("%v %q: store %+v (kv %s), model %+v (kv %s)", cmd.Op, cmd.Key, got, kvString(ptrSlice(got.KV)), want, kvString(ptrSlice(want.KV)))
			}
		}
		rt.Repeat(map[string]func(*rapid.T){
			"put": func(rt *rapid.T) {
				apply(Command{Op: OpPut, Key: keyGen.Draw(rt, "key"), Value: valGen.Draw(rt, "value")})
			},
			"delete": func(rt *rapid.T) {
				apply(Command{Op: OpDelete, Key: keyGen.Draw(rt, "key")})
			},
			"deletePrefix": func(rt *rapid.T) {
				apply(Command{Op: OpDeletePrefix, Key: rapid.SliceOfN(rapid.SampledFrom([]byte{0, 'a', 0xff}), 0, 2).Draw(rt, "prefix")})
			},
			"cas": func(rt *rapid.T) {
				c := Compare{Target: CompareTarget(rapid.IntRange(0, 4).Draw(rt, "target"))}
				if c.Target == CompareValue {
					c.Value = valGen.Draw(rt, "cmpValue")
				} else {
					c.Rev = rapid.Uint64Range(0, m.rev+1).Draw(rt, "cmpRev")
				}
				then := rapid.SampledFrom([]Op{OpPut, OpDelete}).Draw(rt, "then")
				apply(Command{Op: OpCAS, Key: keyGen.Draw(rt, "key"), Compare: &c, Then: then, Value: valGen.Draw(rt, "value")})
			},
			"compact": func(rt *rapid.T) {
				apply(Command{Op: OpCompact, Rev: rapid.Uint64Range(0, m.rev+1).Draw(rt, "rev")})
			},
			"read": func(rt *rapid.T) {
				req := RangeRequest{
					Key:   keyGen.Draw(rt, "start"),
					Limit: rapid.Uint64Range(0, 4).Draw(rt, "limit"),
					Rev:   rapid.Uint64Range(0, m.rev+1).Draw(rt, "rev"),
				}
				switch rapid.IntRange(0, 2).Draw(rt, "kind") {
				case 1:
					req.Prefix = true
					req.Key = req.Key[:rapid.IntRange(0, len(req.Key)).Draw(rt, "prefixLen")]
				case 2:
					req.End = keyGen.Draw(rt, "end")
				}
				got, gotErr := s.Range(req)
				want, wantErr := m.rangeRead(req)
				if !errors.Is(gotErr, wantErr) || (gotErr == nil) != (wantErr == nil) {
					rt.Fatalf("range %+v: store err %v, model err %v", req, gotErr, wantErr)
				}
				if kvString(got.KVs) != kvString(want.KVs) || got.More != want.More || got.Rev != want.Rev {
					rt.Fatalf("range %+v:\nstore %s more=%v rev=%d\nmodel %s more=%v rev=%d", req,
						kvString(got.KVs), got.More, got.Rev, kvString(want.KVs), want.More, want.Rev)
				}
			},
			"": func(rt *rapid.T) {
				// Invariant: the current state read at the current revision
				// through history equals the current table.
				cur, err := s.Range(RangeRequest{Prefix: true})
				if err != nil {
					rt.Fatal(err)
				}
				if m.rev > 0 {
					hist, err := historyRange(s, RangeRequest{Prefix: true, Rev: m.rev})
					if err != nil {
						rt.Fatal(err)
					}
					if kvString(cur.KVs) != kvString(hist.KVs) {
						rt.Fatalf("current table %s != history at current rev %s", kvString(cur.KVs), kvString(hist.KVs))
					}
				}
				want, _ := m.rangeRead(RangeRequest{Prefix: true})
				if kvString(cur.KVs) != kvString(want.KVs) {
					rt.Fatalf("store %s\nmodel %s", kvString(cur.KVs), kvString(want.KVs))
				}
			},
		})
	})
}

func ptrSlice(kv *KeyValue) []KeyValue {
	if kv == nil {
		return nil
	}
	return []KeyValue{*kv}
}

// historyRange serves req from the history bucket even at the current
// revision (readRange takes the current table there).
func historyRange(s *Store, req RangeRequest) (RangeResult, error) {
	var out RangeResult
	err := s.view(func(tx *bolt.Tx) error {
		st, err := readMeta(tx)
		if err != nil {
			return err
		}
		st.rev++ // pretend a newer revision exists
		out, err = readRange(tx, st, req)
		return err
	})
	return out, err
}
