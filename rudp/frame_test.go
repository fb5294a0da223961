package rudp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden files")

// goldenDatagrams are one datagram of each type with fixed contents; their
// bytes are pinned in testdata/golden so a wire change cannot go unnoticed.
func goldenDatagrams() map[string][]byte {
	h := header{version: ProtocolVersion, cluster: 7, node: 0x0102030405060708, inc: 0x1112131415161718, dstInc: 0x2122232425262728, pn: 0x3132333435363738}
	ack := &ackBlock{cum: 100, maxPN: 0x4142434445464748, delay: 250, n: 2, ranges: [maxAckRanges]ackRange{{102, 105}, {110, 111}}}
	data := &dataFrame{seq: 120, una: 100, msgID: 9, ref: 0, kind: kindRequest, fragIdx: 1, fragCnt: 3, total: 10, payload: []byte("def")}

	hd := h
	hd.typ, hd.flags = typeData, flagAck
	d := appendData(appendAck(appendHeader(nil, hd), ack), data)

	ha := h
	ha.typ, ha.flags = typeAck, flagAck
	a := appendAck(appendHeader(nil, ha), ack)

	hh := h
	hh.typ = typeAck
	hello := appendHeader(nil, hh)

	hb := h
	hb.typ, hb.dstInc = typeBroadcast, 0
	b := append(appendHeader(nil, hb), 0, 0, 0, 0, 0, 0, 0, 1)
	b = append(b, "who"...)

	resp := &dataFrame{seq: 1, una: 1, msgID: 2, ref: 9, kind: kindResponse, fragIdx: 0, fragCnt: 1, total: 2, payload: []byte("ok")}
	hr := h
	hr.typ = typeData
	r := appendData(appendHeader(nil, hr), resp)
	two := appendData(appendData(appendHeader(nil, hr), resp), data)
	return map[string][]byte{"data": d, "ack": a, "hello": hello, "broadcast": b, "response": r, "two-frames": two}
}

func TestGoldenFrames(t *testing.T) {
	for name, b := range goldenDatagrams() {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "golden", name+".hex")
			if *update {
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGoldenFrames -update)", err)
			}
			if got := hex.EncodeToString(b); got != strings.TrimSpace(string(want)) {
				t.Fatalf("encoding changed:\n got %s\nwant %s", got, want)
			}
			var g datagram
			if err := decodeDatagram(b, &g); err != nil {
				t.Fatalf("decode golden %s: %v", name, err)
			}
			if re := reencode(&g); !bytes.Equal(re, b) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", re, b)
			}
		})
	}
}

// reencode encodes a decoded datagram again.
func reencode(g *datagram) []byte {
	b := appendHeader(nil, g.h)
	if g.hasAck {
		b = appendAck(b, &g.ack)
	}
	switch g.h.typ {
	case typeData:
		for i := range g.nFrames {
			b = appendData(b, &g.frames[i])
		}
	case typeBroadcast:
		b = append(b, byte(g.bcast.seq>>56), byte(g.bcast.seq>>48), byte(g.bcast.seq>>40), byte(g.bcast.seq>>32),
			byte(g.bcast.seq>>24), byte(g.bcast.seq>>16), byte(g.bcast.seq>>8), byte(g.bcast.seq))
		b = append(b, g.bcast.payload...)
	}
	return b
}

func TestDecodeRejects(t *testing.T) {
	good := goldenDatagrams()["data"]
	mut := func(off int, v byte) []byte { b := bytes.Clone(good); b[off] = v; return b }
	dataOff := headerLen + ackFixedLen + 2*ackRangeLen
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short header", good[:headerLen-1]},
		{"version", mut(0, 2)},
		{"type 0", mut(1, 0)},
		{"type 9", mut(1, 9)},
		{"unknown flag", mut(2, 0x80)},
		{"key id", mut(3, 1)},
		{"ack ranges beyond bytes", mut(headerLen+ackFixedLen-1, 60)},
		{"too many ack ranges", mut(headerLen+ackFixedLen-1, maxAckRanges+1)},
		{"zero gap", mut(headerLen+ackFixedLen+1, 0)},
		{"zero len", mut(headerLen+ackFixedLen+3, 0)},
		{"kind 3", mut(dataOff+32, 3)},
		{"frag index = count", mut(dataOff+34, 3)},
		{"payload too long", append(bytes.Clone(good), 'x')},
		{"payload too short", good[:len(good)-1]},
		{"truncated data", good[:dataOff+10]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g datagram
			if err := decodeDatagram(tt.b, &g); !errors.Is(err, errFrame) {
				t.Fatalf("decodeDatagram = %v, want errFrame", err)
			}
		})
	}
}

func TestFragBoundsCoverMessage(t *testing.T) {
	for _, total := range []uint32{0, 1, 2, 1031, 1032, 1033, 256 << 10, 1 << 20} {
		cnt := uint16(max(1, (int(total)+1031)/1032))
		next := uint32(0)
		for i := uint16(0); i < cnt; i++ {
			lo, hi := fragBounds(i, cnt, total)
			if lo != next || hi < lo || hi-lo > 1032 {
				t.Fatalf("total %d frag %d/%d = [%d,%d), want start %d and at most 1032 bytes", total, i, cnt, lo, hi, next)
			}
			next = hi
		}
		if next != total {
			t.Fatalf("total %d: fragments end at %d", total, next)
		}
	}
}

// FuzzDecodeFrame checks that any bytes decode without panicking, and that
// whatever decodes re-encodes to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	for _, b := range goldenDatagrams() {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var g datagram
		if err := decodeDatagram(b, &g); err != nil {
			return
		}
		if re := reencode(&g); !bytes.Equal(re, b) {
			t.Fatalf("decode/encode mismatch:\n in %x\nout %x", b, re)
		}
	})
}

// FuzzDecodeAck checks the ack block decoder: no panic, ranges sorted,
// disjoint, non-empty and above cum, and a faithful round trip.
func FuzzDecodeAck(f *testing.F) {
	g := goldenDatagrams()
	f.Add(g["ack"][headerLen:])
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var a ackBlock
		rest, err := decodeAck(b, &a)
		if err != nil {
			return
		}
		prev := a.cum
		for _, r := range a.ranges[:a.n] {
			if r.lo <= prev || r.hi <= r.lo {
				t.Fatalf("bad range %v after %d", r, prev)
			}
			prev = r.hi
		}
		re := appendAck(nil, &a)
		if !bytes.Equal(append(re, rest...), b) {
			t.Fatalf("round trip: in %x out %x", b, re)
		}
	})
}

// FuzzHandleDatagram feeds authenticated sequences of datagrams (the fuzzer
// controls everything but the tag; "auth failed" notices go untagged) through the whole receive path of an
// endpoint that is not running: parser, incarnation logic, windows, acks and
// reassembly must never panic nor exceed their memory bounds.
func FuzzHandleDatagram(f *testing.F) {
	g := goldenDatagrams()
	seq := func(ds ...[]byte) []byte {
		var out []byte
		for _, d := range ds {
			out = append(out, byte(len(d)>>8), byte(len(d)))
			out = append(out, d...)
		}
		return out
	}
	f.Add(seq(g["data"], g["ack"], g["hello"], g["broadcast"], g["response"]))
	f.Add(seq(g["data"], g["data"]))
	f.Add(seq(appendNotice(nil, 7, 1, 2, g["data"]), g["data"], appendNotice(nil, 7, 1, 2, g["data"])))
	f.Fuzz(func(t *testing.T, in []byte) {
		n := newNet(t, 1)
		cfg := Config{ClusterID: 7, Secret: testSecret, Logger: testLogger(t), InboxLen: 64,
			MaxReassemblyBytesPerPeer: 1 << 20, MaxReassemblyBytes: 1 << 20}
		e, err := New(listenMem(t, n, "127.0.0.1:1"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		from := netip.MustParseAddrPort("127.0.0.2:1")
		for i := 0; len(in) >= 2 && i < 32; i++ {
			l := int(in[0])<<8 | int(in[1])
			in = in[2:]
			l = min(l, len(in))
			d := bytes.Clone(in[:l])
			in = in[l:]
			if len(d) >= headerLen && d[1] != typeBroadcast {
				// Let the fuzzer's datagrams address this incarnation.
				copy(d[28:36], binary.BigEndian.AppendUint64(nil, e.Incarnation()))
			}
			if len(d) < headerLen || (len(d) == noticeLen && d[1] == typeAuthFailed) {
				e.handleDatagram(d, from) // too short to carry a tag, or a notice (never tagged)
				continue
			}
			e.handleDatagram(sealAs(e, d), from)
			if r := e.Stats().ReassemblyBytes; r > int64(cfg.MaxReassemblyBytes) {
				t.Fatalf("reassembly holds %d bytes", r)
			}
		}
	})
}
