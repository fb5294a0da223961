package discovery

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/raftkv/raftkv/internal/proto"
)

func FuzzDecodeDiscover(f *testing.F) {
	f.Add(proto.MustEncode(proto.KindDiscover, proto.Discover{Name: "n1"}))
	f.Add(proto.MustEncode(proto.KindDiscover, proto.Discover{}))
	f.Add(proto.MustEncode(proto.KindDiscover, proto.Discover{Name: "n1", Nonce: 0x1f3a5c7e9b2d4f60}))
	f.Add([]byte{byte(proto.KindDiscover)})
	f.Add([]byte{byte(proto.KindDiscover), 0x81, 0xa1, 'n', 0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{byte(proto.KindDiscover), 0x81, 0xa1, 'o', 0xa1, 'x'}) // a nonce that is a string
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		d, err := DecodeDiscover(p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if again, err := DecodeDiscover(proto.MustEncode(proto.KindDiscover, d)); err != nil || again != d {
			t.Fatalf("round trip of %+v: %+v, %v", d, again, err)
		}
	})
}

func FuzzDecodeBeacon(f *testing.F) {
	const n = 0x1f3a5c7e9b2d4f60
	f.Add(proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "10.0.0.1:7700", Nonce: n}), uint64(n))
	f.Add(proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "10.0.0.1:7700", Nonce: n}), uint64(n+1))
	f.Add(proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "10.0.0.1:7700"}), uint64(n))
	f.Add(proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "0.0.0.0:7700", Nonce: 1}), uint64(1))
	f.Add(proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "[::ffff:10.0.0.1]:1", Nonce: 2}), uint64(2))
	f.Add(proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "x", Nonce: 3}), uint64(3))
	f.Add([]byte{byte(proto.KindEntranceBeacon), 0x92}, uint64(0))
	f.Add([]byte{byte(proto.KindEntranceBeacon), 0x81, 0xa1, 'o', 0xcf, 0, 0, 0, 0, 0, 0, 0}, uint64(0)) // truncated uint64
	f.Add([]byte{}, uint64(0))
	from := netip.MustParseAddrPort("192.168.1.20:7799")
	f.Fuzz(func(t *testing.T, p []byte, nonce uint64) {
		a, err := DecodeBeacon(p, from, nonce)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrStale) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrStale", err)
			}
			return
		}
		ip := a.Addr()
		if a.Port() == 0 || ip.IsUnspecified() || ip.IsMulticast() || ip == limitedBroadcast || ip.Is4In6() {
			t.Fatalf("DecodeBeacon accepted %v", a)
		}
		// Accepted for nonce, so refused for any other.
		if _, err := DecodeBeacon(p, from, nonce+1); !errors.Is(err, ErrStale) {
			t.Fatalf("beacon accepted for nonce %x is not stale for %x: %v", nonce, nonce+1, err)
		}
	})
}
