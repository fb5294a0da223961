package proto

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/raftkv/raftkv/internal/codec"
	"github.com/vmihailenco/msgpack/v5"
)

// BenchmarkEncode compares Encode with what it did before it used codec's
// pooled buffer (msgpack.Marshal, then a copy behind the kind byte), on a
// put request and on a range answer of 64 keys.
func BenchmarkEncode(b *testing.B) {
	bodies := []struct {
		name string
		body any
	}{
		{"put-100B", &ClientRequest{ClientID: 7, Seq: 9, Op: OpPut, Key: []byte("bench/12/345"), Value: make([]byte, 100)}},
		{"range-64x100B", rangeResponse(64, 100)},
	}
	for _, bd := range bodies {
		b.Run(bd.name+"/marshal-then-copy", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m, err := msgpack.Marshal(bd.body)
				if err != nil {
					b.Fatal(err)
				}
				out := make([]byte, 0, len(m)+1)
				out = append(out, byte(KindClient))
				_ = append(out, m...)
			}
		})
		b.Run(bd.name+"/Encode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Encode(KindClient, bd.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode compares Decode (codec.Unmarshal's pooled decoder) with
// Validate plus msgpack.Unmarshal, which it called before.
func BenchmarkDecode(b *testing.B) {
	body := MustEncode(KindClient, &ClientRequest{ClientID: 7, Seq: 9, Op: OpPut, Key: []byte("bench/12/345"), Value: make([]byte, 100)})[1:]
	b.Run("validate-then-msgpack.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req ClientRequest
			if err := codec.Validate(body); err != nil {
				b.Fatal(err)
			}
			if err := msgpack.Unmarshal(body, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req ClientRequest
			if err := Decode(body, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func rangeResponse(n, valueBytes int) *ClientResponse {
	r := &ClientResponse{Revision: 1000}
	for i := range n {
		r.KVs = append(r.KVs, KeyValue{Key: fmt.Appendf(nil, "bench/%08d", i), Value: bytes.Repeat([]byte{'v'}, valueBytes),
			CreateRevision: int64(i), ModRevision: int64(i), Version: 1})
	}
	return r
}
