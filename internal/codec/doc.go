// Package codec is the msgpack codec every layer above rudp uses for bytes
// that came off the network.
//
// github.com/vmihailenco/msgpack/v5 (v5.4.1) trusts the lengths written in
// its input: a forged 5 to 9 byte input that announces a bin32 or array32 of
// four billion elements makes it allocate gigabytes before it notices that
// nothing follows. Unmarshal therefore first walks the encoding (Validate)
// and checks every str/bin/ext length against the bytes that remain, every
// array/map count against the bytes that remain (each element takes at least
// one byte), and the nesting depth against MaxDepth; only a buffer that
// passes is handed to msgpack. A forged or corrupted input thus costs at most
// a small multiple of its own size (the multiple is the size of the Go value
// one msgpack byte can expand to, e.g. 16 bytes for an interface in a slice).
//
// Unmarshal also rejects trailing bytes after the single top-level value.
//
// # Usage
//
//	type vote struct {
//		Term uint64 `msgpack:"t"`
//		From uint64 `msgpack:"f"`
//	}
//	b, err := codec.Marshal(vote{Term: 3, From: 1})
//	...
//	var v vote
//	if err := codec.Unmarshal(b, &v); err != nil { // errors.Is(err, codec.ErrMalformed) for bad input
//		...
//	}
//
// Decode into concrete structs with short tags, never into interface{}: it
// is allowed but expands each input byte the most.
package codec
