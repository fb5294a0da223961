package codec

import (
	"bytes"
	"errors"
	"math"
	"runtime"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"
)

// sample is shaped like the messages the upper layers send: short tags,
// byte slices, nested slices and maps.
type sample struct {
	Term    uint64            `msgpack:"t"`
	Name    string            `msgpack:"n"`
	Data    []byte            `msgpack:"d"`
	Index   []int64           `msgpack:"i"`
	Entries []entry           `msgpack:"e"`
	Meta    map[string]string `msgpack:"m"`
	Ok      bool              `msgpack:"o"`
	Ratio   float64           `msgpack:"r"`
}

type entry struct {
	Term  uint64 `msgpack:"t"`
	Value []byte `msgpack:"v"`
}

func TestRoundTrip(t *testing.T) {
	in := sample{
		Term: 7, Name: "n1", Data: []byte{1, 2, 3}, Index: []int64{-1, 0, 1 << 40},
		Entries: []entry{{Term: 1, Value: []byte("x")}, {Term: 2, Value: bytes.Repeat([]byte("y"), 70000)}},
		Meta:    map[string]string{"a": "b"}, Ok: true, Ratio: 0.5,
	}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out sample
	if err := Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Fatalf("round trip (-in +out):\n%s", diff)
	}
}

// forged returns inputs that announce far more data than they carry. Each
// makes msgpack v5.4.1 allocate from 256 MiB to 4 GiB when decoded directly.
func forged() map[string][]byte {
	return map[string][]byte{
		"bin32":           {0xc6, 0xff, 0xff, 0xff, 0xff},
		"bin32-in-map":    {0x81, 0xa1, 'd', 0xc6, 0xff, 0xff, 0xff, 0xf0},
		"array32":         {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		"array32-in-map":  {0x81, 0xa1, 'i', 0xdd, 0x10, 0x00, 0x00, 0x00, 0x01},
		"map32":           {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a'},
		"str32":           {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
		"ext32":           {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01},
		"entries-array32": {0x81, 0xa1, 'e', 0xdd, 0x7f, 0xff, 0xff, 0xff, 0x80},
		"deep":            bytes.Repeat([]byte{0x91}, 100000),
	}
}

func TestForgedLengthsRejectedCheaply(t *testing.T) {
	for name, b := range forged() {
		t.Run(name, func(t *testing.T) {
			for _, newDst := range []func() any{
				func() any { return new(sample) }, func() any { return new(any) }, func() any { return new([]byte) },
				func() any { return new([]int64) }, func() any { return new(map[string]any) },
			} {
				var (
					err error
					dst any
				)
				alloc := allocBytes(func() { dst = newDst(); err = Unmarshal(b, dst) })
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Unmarshal(%x) into %T = %v, want ErrMalformed", b[:min(len(b), 16)], dst, err)
				}
				if limit := uint64(4096); alloc > limit {
					t.Fatalf("Unmarshal of %d forged bytes into %T allocated %d bytes, want <= %d", len(b), dst, alloc, limit)
				}
			}
		})
	}
}

// TestAllocationBoundedByInput decodes valid inputs built to expand as much
// as possible and checks the cost stays a small multiple of their size.
func TestAllocationBoundedByInput(t *testing.T) {
	// An array16 of 65535 empty maps decoded into interface values: the
	// most expansion one byte of msgpack can buy in a generic decode.
	arr := append([]byte{0xdc, 0xff, 0xff}, bytes.Repeat([]byte{0x80}, 65535)...)
	// An array32 of 65535 nils decoded into []entry.
	nils := append([]byte{0xdd, 0x00, 0x00, 0xff, 0xff}, bytes.Repeat([]byte{0xc0}, 65535)...)
	tests := []struct {
		name string
		b    []byte
		dst  func() any
	}{
		{"maps-into-any", arr, func() any { return new(any) }},
		{"nils-into-entries", nils, func() any { return new([]entry) }},
		{"nils-into-any", nils, func() any { return new(any) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			alloc := allocBytes(func() { err = Unmarshal(tt.b, tt.dst()) })
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if limit := maxAlloc(len(tt.b)); alloc > limit {
				t.Fatalf("decoding %d bytes allocated %d bytes, want <= %d", len(tt.b), alloc, limit)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good, _ := Marshal(sample{Name: "x", Index: []int64{1}})
	tests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"empty", nil, false},
		{"nil", []byte{0xc0}, true},
		{"fixint", []byte{0x05}, true},
		{"negative", []byte{0xff}, true},
		{"struct", good, true},
		{"trailing", append(append([]byte{}, good...), 0x00), false},
		{"invalid-c1", []byte{0xc1}, false},
		{"truncated-uint64", []byte{0xcf, 0, 0}, false},
		{"truncated-len", []byte{0xc5, 0}, false},
		{"fixext", []byte{0xd4, 1, 2}, true},
		{"fixext-short", []byte{0xd8, 1, 2}, false},
		{"depth-ok", append(bytes.Repeat([]byte{0x91}, MaxDepth), 0xc0), true},
		{"depth-too-deep", append(bytes.Repeat([]byte{0x91}, MaxDepth+1), 0xc0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.b)
			if (err == nil) != tt.ok {
				t.Fatalf("Validate(%x) = %v, want ok=%v", tt.b, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
		})
	}
}

// maxAlloc is the allocation budget for decoding n input bytes: at most 128
// bytes of Go values per input byte plus a fixed allowance.
func maxAlloc(n int) uint64 { return 128*uint64(n) + 64<<10 }

// allocBytes reports how many bytes f allocated on the heap.
//
// TotalAlloc counts the whole process: anything else that allocates
// meanwhile (the first use of a type filling the msgpack library's caches,
// the runtime, the race detector) adds to f's bytes, never takes away. So
// f runs several times and the smallest count, still an upper bound on
// what one call of f allocates, is returned.
func allocBytes(f func()) uint64 {
	least := uint64(math.MaxUint64)
	for range 5 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}

// TestMarshalAfterSameBytes: MarshalAfter writes exactly the bytes of
// msgpack.Marshal (the wire format does not depend on which is used) after
// the prefix, for small values, values larger than the pooled buffers, and
// again once buffers come back from the pool.
func TestMarshalAfterSameBytes(t *testing.T) {
	values := []any{
		sample{Term: 7, Name: "n1", Data: []byte{1, 2, 3}, Meta: map[string]string{"a": "b"}, Ok: true},
		sample{Entries: []entry{{Term: 2, Value: bytes.Repeat([]byte("y"), maxPooledBuffer+1)}}},
		entry{Term: 1},
		sample{},
	}
	for round := range 3 {
		for i, v := range values {
			want, err := msgpack.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			prefix := []byte{byte(i), 0xff}
			got, err := MarshalAfter(prefix, v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:2], []byte{byte(i), 0xff}) || !bytes.Equal(got[2:], want) {
				t.Fatalf("round %d value %d: MarshalAfter = %x, want %x after the prefix", round, i, got, want)
			}
			if cap(got) != len(got) {
				t.Errorf("round %d value %d: result has capacity %d for length %d", round, i, cap(got), len(got))
			}
		}
	}
}

// TestPooledBuffersNotShared: results of MarshalAfter and values decoded by
// Unmarshal own their bytes. Goroutines encode and decode distinct values
// at the same time, overwrite the inputs after each call, and check that
// nothing they got earlier changed (run with -race).
func TestPooledBuffersNotShared(t *testing.T) {
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var keep [][]byte
			var outs []entry
			for r := range rounds {
				v := entry{Term: uint64(w*rounds + r), Value: bytes.Repeat([]byte{byte(w)}, 1+r%300)}
				b, err := MarshalAfter(nil, v)
				if err != nil {
					t.Error(err)
					return
				}
				keep = append(keep, b)
				in := bytes.Clone(b)
				var out entry
				if err := Unmarshal(in, &out); err != nil {
					t.Error(err)
					return
				}
				clear(in) // the decoded value must not alias its input
				outs = append(outs, out)
			}
			for r, b := range keep {
				want, _ := msgpack.Marshal(entry{Term: uint64(w*rounds + r), Value: bytes.Repeat([]byte{byte(w)}, 1+r%300)})
				if !bytes.Equal(b, want) {
					t.Errorf("worker %d: encoding %d changed after later calls: %x, want %x", w, r, b, want)
					return
				}
				if o := outs[r]; o.Term != uint64(w*rounds+r) || !bytes.Equal(o.Value, bytes.Repeat([]byte{byte(w)}, 1+r%300)) {
					t.Errorf("worker %d: decoded value %d changed after its input was cleared: %+v", w, r, o)
					return
				}
			}
		})
	}
	wg.Wait()
}
