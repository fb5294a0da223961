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
	f.Add([]byte{byte(proto.KindDiscover)})
	f.Add([]byte{byte(proto.KindDiscover), 0x81, 0xa1, 'n', 0xdb, 0xff, 0xff, 0xff, 0xff})
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
	f.Add(proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "10.0.0.1:7700"}))
	f.Add(proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "0.0.0.0:7700"}))
	f.Add(proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "[::ffff:10.0.0.1]:1"}))
	f.Add(proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "x"}))
	f.Add([]byte{byte(proto.KindEntranceBeacon), 0x92})
	f.Add([]byte{})
	from := netip.MustParseAddrPort("192.168.1.20:7799")
	f.Fuzz(func(t *testing.T, p []byte) {
		a, err := DecodeBeacon(p, from)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		ip := a.Addr()
		if a.Port() == 0 || ip.IsUnspecified() || ip.IsMulticast() || ip == limitedBroadcast || ip.Is4In6() {
			t.Fatalf("DecodeBeacon accepted %v", a)
		}
	})
}
