package codec

import (
	"errors"
	"testing"
)

// FuzzUnmarshal checks that no input panics, that every rejection wraps
// ErrMalformed or comes from msgpack after validation, and that decoding
// costs at most maxAlloc(len(input)) bytes of heap.
func FuzzUnmarshal(f *testing.F) {
	good, _ := Marshal(sample{Term: 1, Name: "n", Data: []byte{1}, Index: []int64{2},
		Entries: []entry{{Term: 3, Value: []byte("v")}}, Meta: map[string]string{"k": "v"}})
	f.Add(good)
	f.Add([]byte{0xc0})
	for _, b := range forged() {
		if len(b) < 64 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, dst := range []any{new(sample), new(any)} {
			var err error
			alloc := allocBytes(func() { err = Unmarshal(b, dst) })
			if limit := maxAlloc(len(b)); alloc > limit {
				t.Fatalf("Unmarshal of %d bytes into %T allocated %d bytes (limit %d)", len(b), dst, alloc, limit)
			}
			if verr := Validate(b); verr != nil && (err == nil || !errors.Is(err, ErrMalformed)) {
				t.Fatalf("Validate failed (%v) but Unmarshal returned %v", verr, err)
			}
		}
	})
}
