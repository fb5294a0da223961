package rudp

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestWrongSecretFailsWithAuthFailed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 11)
		srv := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, echo))
		ctx := context.Background()

		for i, secret := range [][]byte{[]byte("not the cluster secret"), nil} {
			cfg := testConfig(t, 2, nil)
			cfg.Secret = secret
			cfg.PeerTimeout = 2 * time.Second
			w := start(t, listenMem(t, n, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 2}), uint16(1+i)).String()), cfg)

			cctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := w.Call(cctx, srv.AddrPort(), []byte("hi"))
			cancel()
			if !errors.Is(err, ErrAuthFailed) || !errors.Is(err, ErrPeerUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("secret %q: Call = %v, want ErrAuthFailed, ErrPeerUnreachable and DeadlineExceeded", secret, err)
			}
			// Without a deadline: given up after PeerTimeout.
			err = w.Send(ctx, srv.AddrPort(), []byte("hi"))
			if !errors.Is(err, ErrAuthFailed) || !errors.Is(err, ErrPeerUnreachable) {
				t.Fatalf("secret %q: Send = %v, want ErrAuthFailed and ErrPeerUnreachable", secret, err)
			}
			if s := w.Stats(); s.NoticesReceived == 0 || s.MessagesReceived != 0 {
				t.Fatalf("secret %q: client stats %+v: want notices received, nothing delivered", secret, s)
			}
		}
		if s := srv.Stats(); s.NoticesSent == 0 || s.MessagesReceived != 0 {
			t.Fatalf("server stats %+v: want notices sent, nothing delivered", s)
		}

		// The right secret is unaffected, and an unreachable peer that sent
		// no notice is only unreachable.
		ok := start(t, listenMem(t, n, "127.0.0.3:1"), testConfig(t, 3, nil))
		if r, err := ok.Call(ctx, srv.AddrPort(), []byte("hi")); err != nil || string(r) != "hi" {
			t.Fatalf("Call with the right secret = %q, %v", r, err)
		}
		n.Isolate(srv.AddrPort())
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := ok.Call(cctx, srv.AddrPort(), []byte("lost"))
		cancel()
		if !errors.Is(err, ErrPeerUnreachable) || errors.Is(err, ErrAuthFailed) {
			t.Fatalf("Call to an isolated peer = %v, want ErrPeerUnreachable without ErrAuthFailed", err)
		}
		if s := ok.Stats(); s.NoticesReceived != 0 {
			t.Fatalf("right-secret client received %d notices", s.NoticesReceived)
		}
	})
}

// badDatagram returns a datagram of cluster 7 whose tag is wrong.
func badDatagram(size int) []byte {
	b := appendHeader(nil, header{version: ProtocolVersion, typ: typeData, cluster: 7, node: 42, inc: 43, pn: 1})
	return append(b, make([]byte, size-len(b))...)
}

func TestAuthNoticesRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 12)
		srv := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, echo))
		to := net.UDPAddrFromAddrPort(srv.AddrPort())

		// Attackers count what comes back: notices only, each smaller than
		// the datagram that caused it.
		var got, bytesBack, tooBig atomic.Int64
		listen := func(addr string) net.PacketConn {
			pc := listenMem(t, n, addr)
			go func() {
				buf := make([]byte, 2048)
				for {
					k, _, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					got.Add(1)
					bytesBack.Add(int64(k))
					if _, err := decodeNotice(buf[:k]); err != nil || k >= headerLen+tagLen {
						tooBig.Add(1)
					}
				}
			}()
			return pc
		}
		one := listen("127.0.0.9:1")
		const flood = 1000
		for range flood {
			one.WriteTo(badDatagram(headerLen+tagLen), to)
		}
		synctest.Wait()
		if g := got.Load(); g != noticesPerSource {
			t.Fatalf("one source, %d bad datagrams: %d notices back, want %d", flood, g, noticesPerSource)
		}

		// Many sources share the global cap.
		for i := range 100 {
			pc := listen(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 2, byte(i)}), 1).String())
			for range 10 {
				pc.WriteTo(badDatagram(100), to)
			}
		}
		synctest.Wait()
		if g := got.Load(); g != noticesTotal {
			t.Fatalf("after floods from 100 sources: %d notices back, want the global cap %d", g, noticesTotal)
		}
		// The next window allows more.
		time.Sleep(noticeWindow)
		one.WriteTo(badDatagram(200), to)
		synctest.Wait()
		if g := got.Load(); g != noticesTotal+1 {
			t.Fatalf("in the next window: %d notices back, want %d", g, noticesTotal+1)
		}
		if tooBig.Load() != 0 || bytesBack.Load() != got.Load()*noticeLen {
			t.Fatalf("%d replies not notices of %d bytes (%d bytes back)", tooBig.Load(), noticeLen, bytesBack.Load())
		}
		// Datagrams of another cluster, short ones and notices are never answered.
		other := badDatagram(100)
		binary.BigEndian.PutUint64(other[4:], 8)
		notice := appendNotice(nil, 7, 1, 2, badDatagram(100))
		time.Sleep(noticeWindow)
		one.WriteTo(other, to)
		one.WriteTo(badDatagram(headerLen + tagLen)[:headerLen+tagLen-1], to)
		one.WriteTo(notice, to)
		synctest.Wait()
		if g := got.Load(); g != noticesTotal+1 {
			t.Fatalf("answered a datagram that must not be: %d notices back", g)
		}
		if s := srv.Stats(); s.NoticesSent != noticesTotal+1 || s.MessagesReceived != 0 {
			t.Fatalf("server stats %+v", s)
		}
	})
}

func TestForgedNoticeDoesNotBreakExchange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 13)
		var got counter
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, got.handle))
		ctx := context.Background()
		if err := a.Send(ctx, b.AddrPort(), []byte("warm-up")); err != nil {
			t.Fatal(err)
		}
		// A forged notice as if from b (as an on-path attacker could send
		// it), naming a's incarnation and a packet number a sent.
		forged := appendHeader(nil, header{version: ProtocolVersion, typ: typeAuthFailed, cluster: 7,
			node: b.NodeID(), inc: b.Incarnation(), dstInc: a.Incarnation(), pn: 1})

		// Mid-exchange, while b is cut off: the Send keeps retrying and
		// completes once b is back.
		n.Isolate(b.AddrPort())
		done := make(chan error, 1)
		go func() { done <- a.Send(ctx, b.AddrPort(), []byte("during")) }()
		synctest.Wait()
		a.handleDatagram(forged, b.AddrPort())
		time.Sleep(100 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("Send returned %v after a forged notice, before the peer was back", err)
		default:
		}
		n.Heal()
		if err := <-done; err != nil {
			t.Fatalf("Send after a forged notice = %v", err)
		}
		a.handleDatagram(forged, b.AddrPort())
		if r, err := a.Call(ctx, b.AddrPort(), []byte("call")); err != nil || string(r) != "ok" {
			t.Fatalf("Call after a forged notice = %q, %v", r, err)
		}
		// A notice from an address a is not talking to changes nothing.
		a.handleDatagram(forged, netip.MustParseAddrPort("127.0.0.66:1"))
		synctest.Wait()
		if got.n.Load() != 3 {
			t.Fatalf("b received %d messages, want 3", got.n.Load())
		}
		if s := a.Stats(); s.NoticesReceived != 2 || s.Unreachable != 0 {
			t.Fatalf("a stats %+v: want 2 notices received, nothing unreachable", s)
		}
	})
}

func TestGoldenNotice(t *testing.T) {
	b := appendNotice(nil, 7, 0x0102030405060708, 0x1112131415161718, goldenDatagrams()["data"])
	path := filepath.Join("testdata", "golden", "notice.hex")
	if *update {
		if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenNotice -update)", err)
	}
	if got := hex.EncodeToString(b); got != strings.TrimSpace(string(want)) {
		t.Fatalf("encoding changed:\n got %s\nwant %s", got, want)
	}
	h, err := decodeNotice(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.dstInc != 0x1112131415161718 || h.pn != 0x3132333435363738 || h.node != 0x0102030405060708 {
		t.Fatalf("decoded %+v", h)
	}
	if re := appendHeader(nil, h); !bytes.Equal(re, b) {
		t.Fatalf("re-encoding differs")
	}
	var g datagram
	if decodeDatagram(b, &g) == nil {
		t.Fatal("decodeDatagram accepted a notice")
	}
}

// FuzzDecodeNotice checks the notice decoder: no panic, and whatever it
// accepts re-encodes to the same bytes.
func FuzzDecodeNotice(f *testing.F) {
	f.Add(appendNotice(nil, 7, 1, 2, goldenDatagrams()["data"]))
	f.Add(goldenDatagrams()["hello"])
	f.Add([]byte{1, typeAuthFailed})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeNotice(b)
		if err != nil {
			return
		}
		if h.typ != typeAuthFailed || h.inc == 0 || h.dstInc == 0 {
			t.Fatalf("accepted %+v", h)
		}
		if re := appendHeader(nil, h); !bytes.Equal(re, b) {
			t.Fatalf("round trip: in %x out %x", b, re)
		}
	})
}
