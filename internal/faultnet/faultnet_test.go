package faultnet

import (
	"bytes"
	"errors"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	addrA = netip.MustParseAddrPort("127.0.0.1:7001")
	addrB = netip.MustParseAddrPort("127.0.0.2:7001")
	addrC = netip.MustParseAddrPort("127.0.0.3:7001")
)

func listen(t *testing.T, n *Network, a netip.AddrPort) net.PacketConn {
	t.Helper()
	c, err := n.Listen(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func udp(a netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(a) }

// drain reads every queued datagram without blocking (call inside a synctest
// bubble after synctest.Wait, or when no delays are configured).
func drain(c net.PacketConn) [][]byte {
	var out [][]byte
	mc := c.(*memConn)
	for {
		select {
		case pk := <-mc.q:
			out = append(out, pk.b)
		default:
			return out
		}
	}
}

func TestPerfectLinkDelivers(t *testing.T) {
	n := New(1)
	defer n.Close()
	a, b := listen(t, n, addrA), listen(t, n, addrB)
	if _, err := a.WriteTo([]byte("hi"), udp(addrB)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	k, from, err := b.ReadFrom(buf)
	if err != nil || string(buf[:k]) != "hi" || from.String() != addrA.String() {
		t.Fatalf("ReadFrom = %q, %v, %v; want hi from %v", buf[:k], from, err, addrA)
	}
}

// fates sends count datagrams a->b and returns what b got.
func fates(seed uint64, l Link, count int) ([][]byte, Stats) {
	n := New(seed)
	defer n.Close()
	n.QueueLen = 4 * count
	n.SetDefault(l)
	a, _ := n.Listen(addrA)
	b, _ := n.Listen(addrB)
	for i := range count {
		a.WriteTo([]byte{byte(i), byte(i >> 8), 0xAA, 0x55}, udp(addrB))
	}
	return drain(b), n.Stats()
}

func TestSeededFaultsAreDeterministicAndNearTheirRates(t *testing.T) {
	l := Link{Drop: 0.3, Dup: 0.1, Corrupt: 0.05}
	got1, s1 := fates(42, l, 10000)
	got2, s2 := fates(42, l, 10000)
	if s1 != s2 || len(got1) != len(got2) {
		t.Fatalf("same seed gave different results: %+v vs %+v", s1, s2)
	}
	for i := range got1 {
		if !bytes.Equal(got1[i], got2[i]) {
			t.Fatalf("datagram %d differs between runs with one seed", i)
		}
	}
	_, s3 := fates(43, l, 10000)
	if s3 == s1 {
		t.Fatalf("different seeds gave identical stats %+v", s1)
	}
	within := func(name string, got uint64, want float64) {
		if f := float64(got); f < want*0.85 || f > want*1.15 {
			t.Errorf("%s = %d, want about %.0f", name, got, want)
		}
	}
	within("Dropped", s1.Dropped, 3000)
	within("Duplicated", s1.Duplicated, 700)
	within("Corrupted", s1.Corrupted, 0.05*7700)
	if s1.Delivered != uint64(len(got1)) || s1.Delivered != 10000-s1.Dropped+s1.Duplicated {
		t.Errorf("Delivered %d, received %d, want 10000-%d+%d", s1.Delivered, len(got1), s1.Dropped, s1.Duplicated)
	}
	// A corrupted copy differs from the original in exactly one bit.
	corrupted := 0
	for _, b := range got1 {
		want := []byte{b[0], b[1], 0xAA, 0x55}
		d := 0
		for i := range b {
			d += bits.OnesCount8(b[i] ^ want[i])
		}
		switch {
		case d == 1:
			corrupted++
		case d > 1 && (b[2] != 0xAA || b[3] != 0x55):
			t.Fatalf("datagram %x has %d flipped bits", b, d)
		}
	}
	if corrupted == 0 {
		t.Fatal("no corrupted datagram observed")
	}
}

func TestPartitions(t *testing.T) {
	tests := []struct {
		name  string
		apply func(n *Network)
		want  map[[2]netip.AddrPort]bool // reachable pairs (from, to)
	}{
		{"block one way", func(n *Network) { n.Block(addrA, addrB) },
			map[[2]netip.AddrPort]bool{{addrA, addrB}: false, {addrB, addrA}: true, {addrA, addrC}: true}},
		{"isolate", func(n *Network) { n.Isolate(addrC) },
			map[[2]netip.AddrPort]bool{{addrA, addrC}: false, {addrC, addrB}: false, {addrA, addrB}: true}},
		{"partition", func(n *Network) { n.Partition([]netip.AddrPort{addrA}, []netip.AddrPort{addrB, addrC}) },
			map[[2]netip.AddrPort]bool{{addrA, addrB}: false, {addrC, addrA}: false, {addrB, addrC}: true}},
		{"heal", func(n *Network) { n.Isolate(addrA); n.Block(addrB, addrC); n.Heal() },
			map[[2]netip.AddrPort]bool{{addrA, addrB}: true, {addrB, addrC}: true, {addrC, addrA}: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := New(7)
			defer n.Close()
			conns := map[netip.AddrPort]net.PacketConn{
				addrA: listen(t, n, addrA), addrB: listen(t, n, addrB), addrC: listen(t, n, addrC),
			}
			tt.apply(n)
			for pair, ok := range tt.want {
				conns[pair[0]].WriteTo([]byte("x"), udp(pair[1]))
				got := len(drain(conns[pair[1]])) == 1
				if got != ok {
					t.Errorf("%v -> %v delivered=%v, want %v", pair[0], pair[1], got, ok)
				}
			}
		})
	}
}

func TestDelayAndReorderInSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(3)
		defer n.Close()
		n.SetLink(addrA, addrB, Link{Delay: 10 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.5, ReorderDelay: 20 * time.Millisecond})
		a, b := listen(t, n, addrA), listen(t, n, addrB)
		start := time.Now()
		for i := range 100 {
			a.WriteTo([]byte{byte(i)}, udp(addrB))
		}
		time.Sleep(9 * time.Millisecond)
		synctest.Wait()
		if got := drain(b); len(got) != 0 {
			t.Fatalf("%d datagrams arrived before the 10ms delay", len(got))
		}
		time.Sleep(40 * time.Millisecond)
		synctest.Wait()
		got := drain(b)
		if len(got) != 100 {
			t.Fatalf("got %d datagrams after %v, want 100", len(got), time.Since(start))
		}
		inversions := 0
		for i := 1; i < len(got); i++ {
			if got[i][0] < got[i-1][0] {
				inversions++
			}
		}
		if inversions == 0 {
			t.Fatal("no reordering observed with Reorder=0.5")
		}
		if s := n.Stats(); s.Reordered == 0 || s.Delivered != 100 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestBroadcastReachesEveryListenerOnThePort(t *testing.T) {
	n := New(1)
	defer n.Close()
	a, b, c := listen(t, n, addrA), listen(t, n, addrB), listen(t, n, addrC)
	other := listen(t, n, netip.MustParseAddrPort("127.0.0.4:9999"))
	n.Block(addrA, addrC)
	a.WriteTo([]byte("who"), udp(netip.MustParseAddrPort("127.255.255.255:7001")))
	if len(drain(a)) != 1 || len(drain(b)) != 1 || len(drain(c)) != 0 || len(drain(other)) != 0 {
		t.Fatal("broadcast must reach a and b on port 7001, not the blocked c nor another port")
	}
}

func TestListenErrorsAndRestart(t *testing.T) {
	n := New(1)
	a := listen(t, n, addrA)
	if _, err := n.Listen(addrA); !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("second Listen = %v, want ErrAddrInUse", err)
	}
	a.Close()
	a2 := listen(t, n, addrA) // a restarted process binds the same address
	if _, _, err := a.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadFrom after Close = %v", err)
	}
	eph := listen(t, n, netip.MustParseAddrPort("127.0.0.9:0"))
	if eph.LocalAddr().(*net.UDPAddr).Port == 0 {
		t.Fatal("port 0 was not replaced")
	}
	a2.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := a2.ReadFrom(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom past deadline = %v", err)
	}
	n.Close()
	if _, err := n.Listen(addrB); err == nil {
		t.Fatal("Listen after Close succeeded")
	}
}

func TestQueueOverflowIsCounted(t *testing.T) {
	n := New(1)
	defer n.Close()
	n.QueueLen = 4
	a, b := listen(t, n, addrA), listen(t, n, addrB)
	for range 10 {
		a.WriteTo([]byte("x"), udp(addrB))
	}
	if got, s := len(drain(b)), n.Stats(); got != 4 || s.Overflow != 6 {
		t.Fatalf("received %d, overflow %d; want 4 and 6", got, s.Overflow)
	}
}

func TestWrapRealSockets(t *testing.T) {
	n := New(5)
	defer n.Close()
	pa, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	a := n.Wrap(pa)
	defer a.Close()
	bAddr := pb.LocalAddr()
	n.SetLink(toAddrPort(pa.LocalAddr()), toAddrPort(bAddr), Link{Dup: 1, Corrupt: 1})
	if _, err := a.WriteTo([]byte{0, 0, 0, 0}, bAddr); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	for i := range 2 {
		pb.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, _, err := pb.ReadFrom(buf)
		if err != nil {
			t.Fatalf("copy %d: %v", i, err)
		}
		if bytes.Equal(buf[:k], []byte{0, 0, 0, 0}) {
			t.Fatalf("copy %d not corrupted", i)
		}
	}
	n.Block(toAddrPort(pa.LocalAddr()), toAddrPort(bAddr))
	a.WriteTo([]byte("x"), bAddr)
	if s := n.Stats(); s.Blocked != 1 || s.Corrupted != 2 {
		t.Fatalf("stats %+v, want 1 blocked and 2 corrupted", s)
	}
}

func TestFixedDelayKeepsOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(4)
		defer n.Close()
		n.SetLink(addrA, addrB, Link{Delay: 5 * time.Millisecond})
		a, b := listen(t, n, addrA), listen(t, n, addrB)
		for i := range 200 {
			a.WriteTo([]byte{byte(i)}, udp(addrB))
		}
		time.Sleep(5 * time.Millisecond)
		synctest.Wait()
		got := drain(b)
		if len(got) != 200 {
			t.Fatalf("got %d datagrams, want 200", len(got))
		}
		for i, p := range got {
			if p[0] != byte(i) {
				t.Fatalf("datagram %d is %d: a fixed delay reordered", i, p[0])
			}
		}
	})
}
