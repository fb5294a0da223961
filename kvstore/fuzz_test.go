package kvstore

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/node/raft"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzDecodeCommand feeds arbitrary bytes to the command decoder (log
// entries may come from a faulty or hostile peer): it must never panic or
// allocate without bound, and whatever it accepts must re-encode to a
// command that decodes the same.
func FuzzDecodeCommand(f *testing.F) {
	seeds := []Command{
		{Op: OpNoop},
		{Op: OpPut, Key: []byte("k"), Value: []byte("v"), ClientID: 7, Seq: 3, Time: 1e18},
		{Op: OpDelete, Key: []byte("k\x00")},
		{Op: OpDeletePrefix, Key: []byte("p/")},
		{Op: OpCAS, Key: []byte("k"), Compare: &Compare{Target: CompareModRev, Rev: 9}, Then: OpDelete},
		{Op: OpCAS, Key: []byte("k"), Compare: &Compare{Target: CompareValue, Value: []byte("old")}, Then: OpPut, Value: []byte("new")},
		{Op: OpCompact, Rev: 100},
		{Op: OpRange, Key: []byte("a"), End: []byte("z"), Limit: 10, Rev: 4},
		{Op: OpRegisterSession, Time: 5},
		{Op: OpCloseSession, ClientID: 1, Seq: 2},
	}
	for _, c := range seeds {
		b, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0xc1})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})                  // map32 announcing 4G entries
	f.Add([]byte{0x81, 0xa1, 'k', 0xc6, 0xff, 0xff, 0xff, 0xff}) // bin32 of 4 GiB
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := DecodeCommand(b)
		if err != nil {
			return
		}
		again, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatalf("re-encode of an accepted command: %v", err)
		}
		cmd2, err := DecodeCommand(again)
		if err != nil {
			t.Fatalf("decode of a re-encoded command: %v", err)
		}
		if diff := cmp.Diff(cmd, cmd2, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip changed the command (-first +second):\n%s", diff)
		}
	})
}

// FuzzApply applies arbitrary entry data to one store: a bad entry is
// answered with an error in its Result and never fails the batch or
// panics.
func FuzzApply(f *testing.F) {
	for _, c := range []Command{
		{Op: OpPut, Key: []byte("k"), Value: []byte("v")},
		{Op: OpRegisterSession, Time: 1},
		{Op: OpPut, Key: []byte("k"), ClientID: 2, Seq: 1},
		{Op: OpPut, Key: []byte("k"), ClientID: 2, Seq: 2, Time: 5},
		{Op: OpPut, Key: []byte("k"), ClientID: 3, Seq: 4},
		{Op: OpCAS, Key: []byte("k"), Compare: &Compare{Target: CompareVersion, Rev: 1}, Then: OpDelete},
		{Op: OpCompact, Rev: 1},
		{Op: OpRange, Prefix: true, Rev: 1},
		{Op: OpDeletePrefix},
	} {
		b, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s, err := Open(filepath.Join(f.TempDir(), "kv.db"), Config{NoSync: true, MaxValueBytes: 1 << 10})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, b []byte) {
		idx := s.Applied() + 1
		rs, err := s.Apply([]raft.Entry{{Index: idx, Term: 1, Data: b}})
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		if len(rs) != 1 || rs[0].Index != idx || s.Applied() != idx {
			t.Fatalf("results %+v, applied %d", rs, s.Applied())
		}
		if rs[0].Err != nil && CodeOf(rs[0].Err) == CodeBadCommand && !errors.Is(rs[0].Err, ErrBadCommand) {
			t.Fatalf("unclassified error %v", rs[0].Err)
		}
	})
}
