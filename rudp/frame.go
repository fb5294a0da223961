package rudp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Protocol flow
//
// A peer is an address (netip.AddrPort). Each endpoint picks a random 64-bit
// incarnation when it is created. Every datagram names the cluster, the
// sender's node ID and incarnation, and the incarnation the sender believes
// the receiver has (dstInc; 0 when it has not heard from it yet).
//
//	A                                            B
//	data seq=1 una=1 dstInc=0      ──────────▶   rejects (dstInc is not B's);
//	                               ◀──────────   ack-only "hello" (header carries B's incarnation)
//	A learns B's incarnation, resends every unfinished message with new seqs
//	data seq=2 una=2 dstInc=B      ──────────▶   accepted, delivered once
//	                               ◀──────────   ack cum=3 (piggybacked on B's data when it has any)
//
// Each message is split into fragments; each fragment gets the next sequence
// number of the (sender incarnation → receiver) stream when it is first sent,
// and keeps it when retransmitted (Karn's rule applies to RTT samples). The
// receiver keeps a duplicate window per peer incarnation (cumulative point
// plus a 4096-bit map) and acknowledges with the cumulative point and up to
// 64 selective ranges. una, sent with every data fragment, is the lowest
// sequence number the sender may still retransmit; the receiver moves its
// cumulative point up to it, so messages the sender gave up on do not stall
// the window. A new incarnation from an address retires the old one: the
// receiver drops the old one's datagrams and the sender restarts its
// unfinished messages towards the new one.
//
// A datagram whose tag does not verify is dropped unparsed. If its header
// names this cluster, it is answered (rate-limited) with an "auth failed"
// notice: the bare 44-byte header with type 4 and no tag, echoing the
// rejected datagram's sender incarnation as dstInc and its packet number
// as pn. It is never answered in turn. Its receiver only remembers, for
// the sending address, that it refused our authentication: a Send or Call
// to it that fails anyway (deadline, PeerTimeout) then also wraps
// ErrAuthFailed. Anyone can forge a notice, so it never ends an exchange
// nor changes delivery.
//
// The byte layout of every datagram is the table under "Wire format" in
// the package documentation (doc.go); change both together.

// ProtocolVersion is the version byte of every datagram.
const ProtocolVersion = 1

// Datagram types.
// ONLY APPEND: values are on the wire.
const (
	typeData      = 1 // header, optional ack block, one or more data frames
	typeAck       = 2 // header, optional ack block (none: a "hello" that only names the sender)
	typeBroadcast = 3 // header, broadcast frame; unreliable, not acknowledged
	// typeAuthFailed is an "auth failed" notice: the bare header, without
	// a tag, answering a datagram whose tag did not verify. The peers share
	// no key, so it is unauthenticated: only a hint for error messages.
	typeAuthFailed = 4
)

// Header flags.
// ONLY APPEND: values are on the wire.
const (
	flagAck = 1 << 0 // an ack block follows the header
)

// Message kinds.
// ONLY APPEND: values are on the wire.
const (
	kindOneWay   = 0 // delivered to the handler, its reply is ignored
	kindRequest  = 1 // delivered to the handler, its reply is sent back as a kindResponse
	kindResponse = 2 // completes the Call whose request had msg ID ref
)

// Sizes of the fixed parts of a datagram, in bytes.
const (
	headerLen     = 44
	ackFixedLen   = 19
	ackRangeLen   = 4
	dataFixedLen  = 43
	bcastFixedLen = 8
	tagLen        = 16

	maxAckRanges   = 64 // most ranges an ack block may carry
	maxFrames      = 32 // most data frames in one datagram (1372/43 < 32)
	piggyAckRanges = 16 // most ranges piggybacked on a data fragment

	// dataOverhead is everything in a data datagram but the payload.
	dataOverhead = headerLen + ackFixedLen + piggyAckRanges*ackRangeLen + dataFixedLen + tagLen
)

// Offsets of the header fields the tag check reads.
const (
	nodeOffset = 12
	incOffset  = 20
	pnOffset   = 36
)

// recvWindow is how many sequence numbers above the cumulative point a
// receiver tracks. A sender never has a fragment in flight with
// seq >= una+recvWindow. Part of the protocol: both sides must agree.
const recvWindow = 4096

var errFrame = errors.New("rudp: malformed frame")

type header struct {
	version uint8
	typ     uint8
	flags   uint8
	keyID   uint8
	cluster uint64
	node    uint64
	inc     uint64
	dstInc  uint64
	pn      uint64
}

// ackRange is the half-open interval [lo, hi) of received sequence numbers.
type ackRange struct{ lo, hi uint64 }

type ackBlock struct {
	cum    uint64
	maxPN  uint64 // highest packet number of a data datagram received; 0 if none
	delay  uint16 // microseconds
	n      int    // Invariant: n <= maxAckRanges
	ranges [maxAckRanges]ackRange
}

type dataFrame struct {
	seq, una, msgID, ref uint64
	kind                 uint8
	fragIdx, fragCnt     uint16
	total                uint32
	payload              []byte // aliases the datagram
}

type bcastFrame struct {
	seq     uint64
	payload []byte // aliases the datagram
}

// datagram is a decoded datagram without its tag.
type datagram struct {
	h       header
	hasAck  bool
	ack     ackBlock
	frames  [maxFrames]dataFrame // frames[:nFrames] valid if h.typ == typeData
	nFrames int
	bcast   bcastFrame // valid if h.typ == typeBroadcast
}

// fragBounds returns the byte range [lo, hi) of fragment i of a message of
// total bytes in count fragments.
func fragBounds(i, count uint16, total uint32) (lo, hi uint32) {
	lo = uint32(uint64(i) * uint64(total) / uint64(count))
	hi = uint32((uint64(i) + 1) * uint64(total) / uint64(count))
	return lo, hi
}

func appendHeader(b []byte, h header) []byte {
	b = append(b, h.version, h.typ, h.flags, h.keyID)
	b = binary.BigEndian.AppendUint64(b, h.cluster)
	b = binary.BigEndian.AppendUint64(b, h.node)
	b = binary.BigEndian.AppendUint64(b, h.inc)
	b = binary.BigEndian.AppendUint64(b, h.dstInc)
	return binary.BigEndian.AppendUint64(b, h.pn)
}

// appendAck encodes a; its ranges must be sorted, disjoint, non-empty,
// above cum and separated by gaps, as dupWindow.ranges produces them.
func appendAck(b []byte, a *ackBlock) []byte {
	b = binary.BigEndian.AppendUint64(b, a.cum)
	b = binary.BigEndian.AppendUint64(b, a.maxPN)
	b = binary.BigEndian.AppendUint16(b, a.delay)
	b = append(b, uint8(a.n))
	prev := a.cum
	for _, r := range a.ranges[:a.n] {
		b = binary.BigEndian.AppendUint16(b, uint16(r.lo-prev))
		b = binary.BigEndian.AppendUint16(b, uint16(r.hi-r.lo))
		prev = r.hi
	}
	return b
}

func appendData(b []byte, d *dataFrame) []byte {
	b = binary.BigEndian.AppendUint64(b, d.seq)
	b = binary.BigEndian.AppendUint64(b, d.una)
	b = binary.BigEndian.AppendUint64(b, d.msgID)
	b = binary.BigEndian.AppendUint64(b, d.ref)
	b = append(b, d.kind)
	b = binary.BigEndian.AppendUint16(b, d.fragIdx)
	b = binary.BigEndian.AppendUint16(b, d.fragCnt)
	b = binary.BigEndian.AppendUint32(b, d.total)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.payload)))
	return append(b, d.payload...)
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errFrame, fmt.Sprintf(format, args...))
}

// decodeHeader parses and checks the fixed header.
func decodeHeader(b []byte) (header, error) {
	if len(b) < headerLen {
		return header{}, malformed("%d bytes, header needs %d", len(b), headerLen)
	}
	h := header{
		version: b[0], typ: b[1], flags: b[2], keyID: b[3],
		cluster: binary.BigEndian.Uint64(b[4:]),
		node:    binary.BigEndian.Uint64(b[12:]),
		inc:     binary.BigEndian.Uint64(b[20:]),
		dstInc:  binary.BigEndian.Uint64(b[28:]),
		pn:      binary.BigEndian.Uint64(b[36:]),
	}
	switch {
	case h.version != ProtocolVersion:
		return h, malformed("version %d", h.version)
	case h.typ < typeData || h.typ > typeBroadcast:
		return h, malformed("type %d", h.typ)
	case h.flags&^flagAck != 0:
		return h, malformed("flags %#x", h.flags)
	case h.typ == typeBroadcast && h.flags != 0:
		return h, malformed("broadcast with flags %#x", h.flags)
	case h.keyID != 0:
		return h, malformed("key ID %d", h.keyID)
	case h.inc == 0:
		return h, malformed("zero incarnation")
	}
	return h, nil
}

// noticeLen is the length of an "auth failed" notice: a header, no tag.
const noticeLen = headerLen

// appendNotice encodes the "auth failed" notice that endpoint (node, inc)
// of cluster sends in answer to the rejected datagram bad (at least
// headerLen bytes long; its sender incarnation and packet number are
// echoed).
func appendNotice(b []byte, cluster, node, inc uint64, bad []byte) []byte {
	return appendHeader(b, header{
		version: ProtocolVersion, typ: typeAuthFailed, cluster: cluster, node: node, inc: inc,
		dstInc: binary.BigEndian.Uint64(bad[incOffset:]),
		pn:     binary.BigEndian.Uint64(bad[pnOffset:]),
	})
}

// decodeNotice parses and checks an "auth failed" notice (untrusted: it
// carries no tag).
func decodeNotice(b []byte) (header, error) {
	if len(b) != noticeLen {
		return header{}, malformed("notice of %d bytes, want %d", len(b), noticeLen)
	}
	h := header{
		version: b[0], typ: b[1], flags: b[2], keyID: b[3],
		cluster: binary.BigEndian.Uint64(b[4:]),
		node:    binary.BigEndian.Uint64(b[12:]),
		inc:     binary.BigEndian.Uint64(b[20:]),
		dstInc:  binary.BigEndian.Uint64(b[28:]),
		pn:      binary.BigEndian.Uint64(b[36:]),
	}
	switch {
	case h.version != ProtocolVersion:
		return h, malformed("version %d", h.version)
	case h.typ != typeAuthFailed:
		return h, malformed("notice of type %d", h.typ)
	case h.flags != 0 || h.keyID != 0:
		return h, malformed("notice with flags %#x key ID %d", h.flags, h.keyID)
	case h.inc == 0 || h.dstInc == 0:
		return h, malformed("notice with zero incarnation")
	}
	return h, nil
}

// decodeAck parses an ack block into a and returns the bytes after it.
func decodeAck(b []byte, a *ackBlock) ([]byte, error) {
	if len(b) < ackFixedLen {
		return nil, malformed("ack block of %d bytes", len(b))
	}
	a.cum = binary.BigEndian.Uint64(b)
	a.maxPN = binary.BigEndian.Uint64(b[8:])
	a.delay = binary.BigEndian.Uint16(b[16:])
	n := int(b[18])
	b = b[ackFixedLen:]
	if n > maxAckRanges {
		return nil, malformed("%d ack ranges", n)
	}
	if len(b) < n*ackRangeLen {
		return nil, malformed("%d ack ranges in %d bytes", n, len(b))
	}
	a.n = n
	prev := a.cum
	for i := range n {
		gap := uint64(binary.BigEndian.Uint16(b[4*i:]))
		length := uint64(binary.BigEndian.Uint16(b[4*i+2:]))
		if gap == 0 || length == 0 {
			return nil, malformed("ack range %d: gap %d len %d", i, gap, length)
		}
		lo := prev + gap
		hi := lo + length
		if lo < prev || hi < lo {
			return nil, malformed("ack range %d overflows", i)
		}
		a.ranges[i] = ackRange{lo, hi}
		prev = hi
	}
	return b[n*ackRangeLen:], nil
}

// decodeData parses and checks the data frame at the start of b and
// returns the bytes after it.
func decodeData(b []byte, d *dataFrame) ([]byte, error) {
	if len(b) < dataFixedLen {
		return nil, malformed("data frame of %d bytes", len(b))
	}
	plen := int(binary.BigEndian.Uint16(b[41:]))
	if plen > len(b)-dataFixedLen {
		return nil, malformed("data frame payload of %d bytes, %d remain", plen, len(b)-dataFixedLen)
	}
	*d = dataFrame{
		seq:     binary.BigEndian.Uint64(b),
		una:     binary.BigEndian.Uint64(b[8:]),
		msgID:   binary.BigEndian.Uint64(b[16:]),
		ref:     binary.BigEndian.Uint64(b[24:]),
		kind:    b[32],
		fragIdx: binary.BigEndian.Uint16(b[33:]),
		fragCnt: binary.BigEndian.Uint16(b[35:]),
		total:   binary.BigEndian.Uint32(b[37:]),
		payload: b[dataFixedLen : dataFixedLen+plen],
	}
	switch {
	case d.seq == 0 || d.una == 0 || d.una > d.seq:
		return nil, malformed("seq %d una %d", d.seq, d.una)
	case d.msgID == 0:
		return nil, malformed("zero msg ID")
	case d.kind > kindResponse:
		return nil, malformed("kind %d", d.kind)
	case (d.kind == kindResponse) != (d.ref != 0):
		return nil, malformed("kind %d with ref %d", d.kind, d.ref)
	case d.fragCnt == 0 || d.fragIdx >= d.fragCnt:
		return nil, malformed("fragment %d of %d", d.fragIdx, d.fragCnt)
	case uint32(d.fragCnt) > max(d.total, 1):
		return nil, malformed("%d fragments for %d bytes", d.fragCnt, d.total)
	}
	lo, hi := fragBounds(d.fragIdx, d.fragCnt, d.total)
	if uint32(len(d.payload)) != hi-lo {
		return nil, malformed("fragment %d of %d carries %d bytes, want %d", d.fragIdx, d.fragCnt, len(d.payload), hi-lo)
	}
	return b[dataFixedLen+plen:], nil
}

// decodeDatagram parses a datagram whose tag was verified and removed.
func decodeDatagram(b []byte, g *datagram) error {
	h, err := decodeHeader(b)
	if err != nil {
		return err
	}
	g.h = h
	g.hasAck = h.flags&flagAck != 0
	rest := b[headerLen:]
	if g.hasAck {
		if rest, err = decodeAck(rest, &g.ack); err != nil {
			return err
		}
	}
	switch h.typ {
	case typeData:
		g.nFrames = 0
		for len(rest) > 0 || g.nFrames == 0 {
			if g.nFrames == maxFrames {
				return malformed("more than %d data frames", maxFrames)
			}
			if rest, err = decodeData(rest, &g.frames[g.nFrames]); err != nil {
				return err
			}
			g.nFrames++
		}
	case typeAck:
		if len(rest) != 0 {
			return malformed("%d trailing bytes after ack", len(rest))
		}
	case typeBroadcast:
		if len(rest) < bcastFixedLen {
			return malformed("broadcast frame of %d bytes", len(rest))
		}
		g.bcast = bcastFrame{seq: binary.BigEndian.Uint64(rest), payload: rest[bcastFixedLen:]}
		if g.bcast.seq == 0 {
			return malformed("zero broadcast seq")
		}
	}
	return nil
}
