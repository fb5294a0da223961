package node

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzUnwrapSnapshot feeds snapshot data (it arrives in MsgSnap chunks from
// the network) to the envelope decoder: it must never panic, and a valid
// envelope must round-trip.
func FuzzUnwrapSnapshot(f *testing.F) {
	s := newReplState()
	s.Members[1] = Member{Name: "n1", Addr: "127.0.0.1:7701"}
	s.Clients[42] = 7
	f.Add(wrapSnapshot(s, []byte("RKVSNAP\x01data")))
	f.Add(wrapSnapshot(newReplState(), nil))
	f.Add([]byte{})
	f.Add([]byte("RKVNODE1\xff\xff\xff\xff"))
	f.Add([]byte("RKVNODE1\x00\x00\x00\x02\x81\xa1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, kv, err := unwrapSnapshot(data)
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("error %v does not wrap ErrBadSnapshot", err)
			}
			return
		}
		again := wrapSnapshot(rs, kv)
		rs2, kv2, err := unwrapSnapshot(again)
		if err != nil {
			t.Fatalf("re-wrapped envelope fails: %v", err)
		}
		if !bytes.Equal(kv, kv2) || !cmp.Equal(rs, rs2) {
			t.Fatalf("round trip changed the envelope")
		}
	})
}

// FuzzDecodeMember covers ConfChange contexts (they come from the log,
// which followers receive from the network).
func FuzzDecodeMember(f *testing.F) {
	f.Add(encodeMember(Member{Name: "n1", Addr: "127.0.0.1:7701"}))
	f.Add([]byte{0x80})
	f.Add([]byte{0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMember(data)
		if err != nil {
			return
		}
		if m2, err := decodeMember(encodeMember(m)); err != nil || m2 != m {
			t.Fatalf("round trip: %+v vs %+v (%v)", m, m2, err)
		}
	})
}

func TestSnapshotEnvelopeRoundTrip(t *testing.T) {
	s := newReplState()
	s.Members[3] = Member{Name: "n3", Addr: "127.0.0.3:7703"}
	s.Clients[9] = 100
	rs, kv, err := unwrapSnapshot(wrapSnapshot(s, []byte("kv-bytes")))
	if err != nil {
		t.Fatal(err)
	}
	if string(kv) != "kv-bytes" || !cmp.Equal(rs, s) {
		t.Fatalf("got %+v %q", rs, kv)
	}
	if _, _, err := unwrapSnapshot([]byte("RKVSNAP\x01not an envelope")); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("kvstore bytes without envelope: %v", err)
	}
}
