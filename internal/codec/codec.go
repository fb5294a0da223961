package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// MaxDepth is the deepest nesting of arrays and maps Unmarshal accepts.
const MaxDepth = 32

// ErrMalformed is returned (wrapped) by Validate and Unmarshal when the
// input is not exactly one well-formed msgpack value within the limits.
var ErrMalformed = errors.New("codec: malformed msgpack")

// Marshal encodes v as msgpack.
func Marshal(v any) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: marshal %T: %w", v, err)
	}
	return b, nil
}

// MarshalAfter returns a new slice that holds prefix followed by the
// msgpack encoding of v (the bytes Marshal returns). It encodes into a
// pooled buffer and allocates the result once at its final size, where
// Marshal grows its buffer by doublings; prefix is copied, not retained.
func MarshalAfter(prefix []byte, v any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	defer e.release()
	e.enc.Reset(&e.buf) // the state msgpack.Marshal starts from
	if err := e.enc.Encode(v); err != nil {
		return nil, fmt.Errorf("codec: marshal %T: %w", v, err)
	}
	out := make([]byte, len(prefix)+e.buf.Len())
	copy(out[copy(out, prefix):], e.buf.Bytes())
	return out, nil
}

// encoder is a pooled msgpack encoder and the buffer it writes to. The
// buffer never leaves MarshalAfter: callers get a copy.
type encoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}}

// maxPooledBuffer bounds the buffers kept for reuse, so that one large
// message (a snapshot chunk, a MsgApp of big values) does not stay pinned.
const maxPooledBuffer = 64 << 10

func (e *encoder) release() {
	if e.buf.Cap() > maxPooledBuffer {
		return
	}
	e.buf.Reset()
	encoders.Put(e)
}

// Unmarshal decodes exactly one msgpack value from b into v, after Validate
// has checked that every length and count in b is backed by bytes.
func Unmarshal(b []byte, v any) error {
	if err := Validate(b); err != nil {
		return err
	}
	d := decoders.Get().(*decoder)
	d.r.Reset(b)
	d.dec.Reset(&d.r) // the state msgpack.Unmarshal decodes with
	err := d.dec.Decode(v)
	d.r.Reset(nil) // do not pin b
	d.dec.Reset(nil)
	decoders.Put(d)
	if err != nil {
		return fmt.Errorf("codec: unmarshal into %T: %w", v, err)
	}
	return nil
}

// decoder is a pooled msgpack decoder with the reader it reads from
// (msgpack.Unmarshal allocates a bytes.Reader per call). Decoded []byte
// and string fields are copies: nothing in v aliases b.
type decoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

var decoders = sync.Pool{New: func() any {
	d := &decoder{}
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}}

// Validate walks b and reports whether it holds exactly one msgpack value
// whose lengths and counts all fit in the bytes that remain and whose
// nesting is at most MaxDepth. Its cost is linear in len(b) and it
// allocates nothing.
func Validate(b []byte) error {
	w := walker{b: b}
	if err := w.value(0); err != nil {
		return err
	}
	if w.off != len(b) {
		return fmt.Errorf("%w: %d trailing bytes after the value", ErrMalformed, len(b)-w.off)
	}
	return nil
}

type walker struct {
	b   []byte
	off int // Invariant: off <= len(b)
}

func (w *walker) remaining() int { return len(w.b) - w.off }

func (w *walker) errf(format string, args ...any) error {
	return fmt.Errorf("%w: at offset %d: %s", ErrMalformed, w.off, fmt.Sprintf(format, args...))
}

// skip advances over n bytes that must be present.
func (w *walker) skip(n uint64, what string) error {
	if n > uint64(w.remaining()) {
		return w.errf("%s of %d bytes, only %d remain", what, n, w.remaining())
	}
	w.off += int(n)
	return nil
}

// uint reads a big-endian unsigned integer of size bytes.
func (w *walker) uint(size int) (uint64, error) {
	if size > w.remaining() {
		return 0, w.errf("truncated %d-byte length", size)
	}
	p := w.b[w.off : w.off+size]
	w.off += size
	switch size {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	default:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
}

// elems walks n values, each of which needs at least one byte.
func (w *walker) elems(n uint64, depth int, what string) error {
	if depth >= MaxDepth {
		return w.errf("nesting deeper than %d", MaxDepth)
	}
	if n > uint64(w.remaining()) {
		return w.errf("%s of %d elements, only %d bytes remain", what, n, w.remaining())
	}
	for i := uint64(0); i < n; i++ {
		if err := w.value(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) value(depth int) error {
	if w.remaining() < 1 {
		return w.errf("truncated: value expected")
	}
	c := w.b[w.off]
	w.off++
	switch {
	case c <= 0x7f || c >= 0xe0: // positive and negative fixint
		return nil
	case c <= 0x8f: // fixmap
		return w.elems(2*uint64(c&0x0f), depth, "map")
	case c <= 0x9f: // fixarray
		return w.elems(uint64(c&0x0f), depth, "array")
	case c <= 0xbf: // fixstr
		return w.skip(uint64(c&0x1f), "str")
	}
	switch c {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return nil
	case 0xc4, 0xc5, 0xc6: // bin8/16/32
		n, err := w.uint(1 << (c - 0xc4))
		if err != nil {
			return err
		}
		return w.skip(n, "bin")
	case 0xc7, 0xc8, 0xc9: // ext8/16/32: length, type, data
		n, err := w.uint(1 << (c - 0xc7))
		if err != nil {
			return err
		}
		return w.skip(n+1, "ext")
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return w.skip(4, "number")
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		return w.skip(8, "number")
	case 0xcc, 0xd0: // uint8, int8
		return w.skip(1, "number")
	case 0xcd, 0xd1: // uint16, int16
		return w.skip(2, "number")
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1/2/4/8/16: type, data
		return w.skip(1+(1<<(c-0xd4)), "fixext")
	case 0xd9, 0xda, 0xdb: // str8/16/32
		n, err := w.uint(1 << (c - 0xd9))
		if err != nil {
			return err
		}
		return w.skip(n, "str")
	case 0xdc, 0xdd: // array16/32
		n, err := w.uint(2 << (c - 0xdc))
		if err != nil {
			return err
		}
		return w.elems(n, depth, "array")
	case 0xde, 0xdf: // map16/32
		n, err := w.uint(2 << (c - 0xde))
		if err != nil {
			return err
		}
		return w.elems(2*n, depth, "map")
	}
	w.off--
	return w.errf("invalid type byte 0x%02x", c)
}
