package rudp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftkv/raftkv/internal/faultnet"
)

// counter is a handler that counts and records deliveries.
type counter struct {
	n    atomic.Int64
	mu   sync.Mutex
	msgs []Message
}

func (c *counter) handle(_ context.Context, m Message) []byte {
	c.n.Add(1)
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	return []byte("ok")
}

func TestPartitionedPeerReportedUnreachable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 2)
		cfgA := testConfig(t, 1, nil)
		cfgA.PeerTimeout = 3 * time.Second
		a := start(t, listenMem(t, n, "127.0.0.1:1"), cfgA)
		var got counter
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, got.handle))
		ctx := context.Background()
		if err := a.Send(ctx, b.AddrPort(), []byte("warm-up")); err != nil {
			t.Fatal(err)
		}

		n.Isolate(b.AddrPort())
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		t0 := time.Now()
		err := a.Send(dctx, b.AddrPort(), []byte("lost"))
		cancel()
		if !errors.Is(err, ErrPeerUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Send to isolated peer = %v, want ErrPeerUnreachable and DeadlineExceeded", err)
		}
		if el := time.Since(t0); el < 2*time.Second || el > 2*time.Second+10*time.Millisecond {
			t.Fatalf("Send returned after %v, want at the 2s deadline", el)
		}

		t0 = time.Now()
		err = a.Send(ctx, b.AddrPort(), []byte("no deadline"))
		if !errors.Is(err, ErrPeerUnreachable) {
			t.Fatalf("Send without deadline = %v, want ErrPeerUnreachable", err)
		}
		if el := time.Since(t0); el < cfgA.PeerTimeout || el > cfgA.PeerTimeout+10*time.Millisecond {
			t.Fatalf("gave up after %v, want PeerTimeout %v", el, cfgA.PeerTimeout)
		}

		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = a.Call(cctx, b.AddrPort(), []byte("call"))
		cancel()
		if !errors.Is(err, ErrPeerUnreachable) {
			t.Fatalf("Call to isolated peer = %v, want ErrPeerUnreachable", err)
		}

		// One-way partition: b gets the message but a never hears the ack.
		n.Heal()
		n.Block(b.AddrPort(), a.AddrPort())
		dctx, cancel = context.WithTimeout(ctx, time.Second)
		err = a.Send(dctx, b.AddrPort(), []byte("acks lost"))
		cancel()
		if !errors.Is(err, ErrPeerUnreachable) {
			t.Fatalf("Send with acks blocked = %v, want ErrPeerUnreachable", err)
		}

		n.Heal()
		if err := a.Send(ctx, b.AddrPort(), []byte("healed")); err != nil {
			t.Fatalf("Send after Heal: %v", err)
		}
		synctest.Wait()
		if got.n.Load() != 3 { // warm-up, "acks lost" (delivered once), healed
			t.Fatalf("b received %d messages, want 3", got.n.Load())
		}
		if s := a.Stats(); s.Unreachable != 4 {
			t.Fatalf("Unreachable = %d, want 4", s.Unreachable)
		}
	})
}

// tapConn records every datagram written through it.
type tapConn struct {
	net.PacketConn
	mu   sync.Mutex
	sent [][]byte
	to   []net.Addr
}

func (c *tapConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	c.sent = append(c.sent, bytes.Clone(b))
	c.to = append(c.to, addr)
	c.mu.Unlock()
	return c.PacketConn.WriteTo(b, addr)
}

// replay writes every recorded datagram again through pc.
func (c *tapConn) replay(t *testing.T, pc net.PacketConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, b := range c.sent {
		if _, err := pc.WriteTo(b, c.to[i]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRestartAndReplay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 3)
		var got counter
		aPC := listenMem(t, n, "127.0.0.1:1")
		a := start(t, aPC, testConfig(t, 1, got.handle))
		bAddr := netip.MustParseAddrPort("127.0.0.2:1")
		tap := &tapConn{PacketConn: listenMem(t, n, bAddr.String())}
		b1, err := New(tap, testConfig(t, 2, nil))
		if err != nil {
			t.Fatal(err)
		}
		b1done := make(chan error, 1)
		go func() { b1done <- b1.Run(context.Background()) }()
		ctx := context.Background()
		for i := range 5 {
			if err := b1.Send(ctx, a.AddrPort(), []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b1.Call(ctx, a.AddrPort(), bytes.Repeat([]byte("z"), 5000)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got.n.Load() != 6 {
			t.Fatalf("delivered %d, want 6", got.n.Load())
		}

		// Replays of the live incarnation's datagrams are duplicates.
		tap.replay(t, tap.PacketConn)
		synctest.Wait()
		if got.n.Load() != 6 {
			t.Fatalf("replay delivered: %d messages, want 6", got.n.Load())
		}
		if a.Stats().Duplicates == 0 {
			t.Fatal("replayed fragments not counted as duplicates")
		}

		// b restarts on the same address with a new incarnation.
		b1.Close()
		<-b1done
		b2PC := listenMem(t, n, bAddr.String())
		b2 := start(t, b2PC, testConfig(t, 22, nil))
		if b2.Incarnation() == b1.Incarnation() {
			t.Fatal("restart kept the incarnation")
		}
		for i := range 3 {
			if err := b2.Send(ctx, a.AddrPort(), []byte{byte(i)}); err != nil {
				t.Fatalf("fresh message %d from restarted peer: %v", i, err)
			}
		}
		synctest.Wait()
		if got.n.Load() != 9 {
			t.Fatalf("delivered %d, want 9 (fresh messages with reused sequence numbers)", got.n.Load())
		}
		if s := a.Stats(); s.PeerRestarts != 1 {
			t.Fatalf("PeerRestarts = %d, want 1", s.PeerRestarts)
		}

		// The old incarnation's datagrams, replayed from its address, are stale.
		stale := a.Stats().DroppedStale
		tap.replay(t, b2PC)
		synctest.Wait()
		if got.n.Load() != 9 || a.Stats().DroppedStale <= stale {
			t.Fatalf("replay of retired incarnation: delivered %d (want 9), stale %d -> %d", got.n.Load(), stale, a.Stats().DroppedStale)
		}

		// a restarts too: b1's datagrams name a's old incarnation and are refused.
		a.Close()
		synctest.Wait()
		var got2 counter
		a2 := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 11, got2.handle))
		tap.replay(t, b2PC)
		synctest.Wait()
		if got2.n.Load() != 0 {
			t.Fatalf("restarted receiver delivered %d replayed messages", got2.n.Load())
		}
		// And the restarted b2 can still reach the restarted a2.
		if err := b2.Send(ctx, a2.AddrPort(), []byte("after both restarts")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got2.n.Load() != 1 {
			t.Fatalf("a2 delivered %d, want 1", got2.n.Load())
		}
	})
}

// craft builds an authenticated datagram as peer (node 99, inc) would send it.
func craft(e *Endpoint, inc, dstInc uint64, d *dataFrame) []byte {
	craftPN++
	b := appendHeader(nil, header{version: ProtocolVersion, typ: typeData, cluster: e.cfg.ClusterID, node: 99, inc: inc, dstInc: dstInc, pn: craftPN})
	b = appendData(b, d)
	return sealAs(e, b)
}

var craftPN uint64

// sealAs appends the tag e would accept from the sender named in b's header.
func sealAs(e *Endpoint, b []byte) []byte {
	aead, err := e.mac.derive(binary.BigEndian.Uint64(b[nodeOffset:]), binary.BigEndian.Uint64(b[incOffset:]))
	if err != nil {
		panic(err)
	}
	return sealWith(aead, b)
}

func TestFloodsLeaveMemoryBoundedAndEndpointServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 4)
		cfg := testConfig(t, 1, echo)
		cfg.MaxReassemblyBytesPerPeer = 2 << 20
		cfg.MaxReassemblyBytes = 4 << 20
		a := start(t, listenMem(t, n, "127.0.0.1:1"), cfg)
		c := start(t, listenMem(t, n, "127.0.0.3:1"), testConfig(t, 3, nil))
		ctx := context.Background()
		if _, err := c.Call(ctx, a.AddrPort(), []byte("before")); err != nil {
			t.Fatal(err)
		}
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)

		// Garbage and datagrams under the wrong secret.
		junk := listenMem(t, n, "127.0.0.9:1")
		r := rand.New(rand.NewPCG(1, 2))
		for range 2000 {
			g := make([]byte, 1+r.IntN(1400))
			for i := range g {
				g[i] = byte(r.Uint32())
			}
			junk.WriteTo(g, net.UDPAddrFromAddrPort(a.AddrPort()))
		}
		wrong := testConfig(t, 5, nil)
		wrong.Secret = []byte("not the cluster secret")
		w := start(t, listenMem(t, n, "127.0.0.5:1"), wrong)
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		if err := w.Send(wctx, a.AddrPort(), []byte("forged")); !errors.Is(err, ErrPeerUnreachable) {
			t.Fatalf("wrong-secret Send = %v, want ErrPeerUnreachable", err)
		}
		cancel()

		// Authenticated floods of fragment starts from eight addresses, each
		// announcing 1,000,000-byte messages, 2000 message IDs per address.
		const total = 1_000_000
		for f := range 8 {
			pc := listenMem(t, n, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(f)}), 1).String())
			inc := uint64(1000 + f)
			for id := uint64(1); id <= 2000; id++ {
				lo, hi := fragBounds(0, 1000, total)
				d := &dataFrame{seq: id, una: 1, msgID: id, kind: kindOneWay, fragIdx: 0, fragCnt: 1000, total: total, payload: make([]byte, hi-lo)}
				pc.WriteTo(craft(a, inc, a.Incarnation(), d), net.UDPAddrFromAddrPort(a.AddrPort()))
				if id == 1 {
					// The first one only teaches us a's incarnation check; resend.
					synctest.Wait()
					pc.WriteTo(craft(a, inc, a.Incarnation(), d), net.UDPAddrFromAddrPort(a.AddrPort()))
				}
			}
			synctest.Wait()
		}
		// And a malformed but authenticated datagram.
		bad := appendHeader(nil, header{version: ProtocolVersion, typ: typeData, cluster: 7, node: 99, inc: 5, dstInc: a.Incarnation()})
		junk.WriteTo(sealAs(a, append(bad, 1, 2, 3)), net.UDPAddrFromAddrPort(a.AddrPort()))
		synctest.Wait()

		s := a.Stats()
		if s.ReassemblyBytes > int64(cfg.MaxReassemblyBytes) {
			t.Fatalf("reassembly holds %d bytes, bound %d", s.ReassemblyBytes, cfg.MaxReassemblyBytes)
		}
		if s.DroppedBadMAC < 2000 || s.DroppedNoBuffer == 0 || s.DroppedMalformed != 1 {
			t.Fatalf("stats %+v: want >= 2000 bad MAC, some no-buffer drops, 1 malformed", s)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 4*int64(cfg.MaxReassemblyBytes) {
			t.Fatalf("heap grew by %d bytes during the floods", grow)
		}
		// Still serving.
		if r, err := c.Call(ctx, a.AddrPort(), []byte("after")); err != nil || string(r) != "after" {
			t.Fatalf("Call after floods = %q, %v", r, err)
		}
		// Stale partial messages are freed.
		time.Sleep(a.cfg.ReassemblyTimeout + 2*time.Second)
		synctest.Wait()
		if s := a.Stats(); s.ReassemblyBytes != 0 || s.PartialsExpired == 0 {
			t.Fatalf("after ReassemblyTimeout: %d bytes reserved, %d expired", s.ReassemblyBytes, s.PartialsExpired)
		}
	})
}

func TestFlowControlBoundsInflightAndBlocksSenders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 5)
		cfg := testConfig(t, 1, nil)
		cfg.MaxInflightBytes = 8 << 10
		cfg.MaxQueuedBytes = 20 << 10
		cfg.PeerTimeout = time.Minute
		a := start(t, listenMem(t, n, "127.0.0.1:1"), cfg)
		var got counter
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, got.handle))
		ctx := context.Background()
		if err := a.Send(ctx, b.AddrPort(), []byte("hi")); err != nil {
			t.Fatal(err)
		}
		n.Isolate(b.AddrPort())
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range 3 {
			wg.Go(func() { errs[i] = a.Send(ctx, b.AddrPort(), bytes.Repeat([]byte{byte(i)}, 8<<10)) })
		}
		time.Sleep(time.Second)
		synctest.Wait()
		a.mu.Lock()
		p := a.peers[b.AddrPort()]
		inflight, queued, msgs := p.inflightBytes, p.queuedBytes, len(p.msgs)
		a.mu.Unlock()
		if inflight > cfg.MaxInflightBytes || queued > cfg.MaxQueuedBytes || msgs != 2 {
			t.Fatalf("inflight %d (max %d), queued %d (max %d), %d messages queued (want 2: the third waits)",
				inflight, cfg.MaxInflightBytes, queued, cfg.MaxQueuedBytes, msgs)
		}
		// A sender waiting for space gives up at its deadline.
		dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		t0 := time.Now()
		err := a.Send(dctx, b.AddrPort(), make([]byte, 8<<10))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) != 100*time.Millisecond {
			t.Fatalf("blocked Send = %v after %v, want DeadlineExceeded after 100ms", err, time.Since(t0))
		}
		n.Heal()
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		synctest.Wait()
		if got.n.Load() != 4 {
			t.Fatalf("b got %d messages, want 4", got.n.Load())
		}
	})
}

func TestSendManyAndCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 6)
		n.SetDefault(faultnet.Link{Drop: 0.2, Dup: 0.1})
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		var c2, c3 counter
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, c2.handle))
		c := start(t, listenMem(t, n, "127.0.0.3:1"), testConfig(t, 3, c3.handle))
		dead := netip.MustParseAddrPort("127.0.0.4:1") // nobody listens
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		errs := a.SendMany(ctx, []netip.AddrPort{b.AddrPort(), c.AddrPort(), dead}, []byte("all"))
		if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], ErrPeerUnreachable) {
			t.Fatalf("SendMany errors %v", errs)
		}
		synctest.Wait()
		if c2.n.Load() != 1 || c3.n.Load() != 1 {
			t.Fatalf("deliveries %d and %d, want 1 each", c2.n.Load(), c3.n.Load())
		}
		m := c2.msgs[0]
		if m.From != a.AddrPort() || m.NodeID != a.NodeID() || m.Broadcast {
			t.Fatalf("message metadata %+v", m)
		}
		// Concurrent calls are correlated by id.
		ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				r, err := a.Call(ctx, b.AddrPort(), []byte{byte(i)})
				if err != nil || string(r) != "ok" {
					t.Errorf("call %d = %q, %v", i, r, err)
				}
			})
		}
		wg.Wait()
	})
}

func TestCallWithoutReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 7)
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		block := make(chan struct{})
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, func(ctx context.Context, m Message) []byte {
			select {
			case <-block:
			case <-ctx.Done():
			}
			return nil
		}))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := a.Call(ctx, b.AddrPort(), []byte("slow"))
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrPeerUnreachable) {
			t.Fatalf("Call to a slow handler = %v, want a no-reply DeadlineExceeded", err)
		}
		close(block)
	})
}

func TestBroadcastInMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 8)
		n.SetDefault(faultnet.Link{Dup: 1}) // every datagram twice
		var ca, cb, cc counter
		a := start(t, listenMem(t, n, "127.0.0.1:7000"), testConfig(t, 1, ca.handle))
		start(t, listenMem(t, n, "127.0.0.2:7000"), testConfig(t, 2, cb.handle))
		start(t, listenMem(t, n, "127.0.0.3:7000"), testConfig(t, 3, cc.handle))
		if err := a.Broadcast(netip.MustParseAddrPort("127.255.255.255:7000"), []byte("where is the entrance?")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if ca.n.Load() != 0 || cb.n.Load() != 1 || cc.n.Load() != 1 {
			t.Fatalf("deliveries a=%d b=%d c=%d, want 0 1 1", ca.n.Load(), cb.n.Load(), cc.n.Load())
		}
		if m := cb.msgs[0]; !m.Broadcast || m.From != a.AddrPort() || string(m.Payload) != "where is the entrance?" {
			t.Fatalf("broadcast delivered as %+v", m)
		}
		if err := a.Broadcast(netip.MustParseAddrPort("127.255.255.255:7000"), make([]byte, 2000)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("oversize broadcast = %v", err)
		}
	})
}

func TestBroadcastOverLoopbackSockets(t *testing.T) {
	ctx := context.Background()
	l1, err := ListenUDP(ctx, "udp4", "0.0.0.0:0", SocketOptions{ReuseAddr: true})
	if err != nil {
		t.Fatal(err)
	}
	port := l1.LocalAddr().(*net.UDPAddr).Port
	l2, err := ListenUDP(ctx, "udp4", netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(port)).String(), SocketOptions{ReuseAddr: true})
	if err != nil {
		l1.Close()
		t.Fatal(err)
	}
	s, err := ListenUDP(ctx, "udp4", "127.0.0.1:0", SocketOptions{})
	if err != nil {
		l1.Close()
		l2.Close()
		t.Fatal(err)
	}
	got := make(chan Message, 4)
	h := func(_ context.Context, m Message) []byte { got <- m; return nil }
	start(t, l1, testConfig(t, 1, h))
	start(t, l2, testConfig(t, 2, h))
	var replies counter
	sender := start(t, s, testConfig(t, 3, replies.handle))
	bcast := netip.AddrPortFrom(netip.MustParseAddr("127.255.255.255"), uint16(port))
	if err := sender.Broadcast(bcast, []byte("discover")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case m := <-got:
			if !m.Broadcast || string(m.Payload) != "discover" || m.NodeID != sender.NodeID() {
				t.Fatalf("got %+v", m)
			}
			if m.From != sender.AddrPort() {
				t.Fatalf("broadcast from %v, want %v", m.From, sender.AddrPort())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("broadcast not received by both listeners")
		}
	}
}

func TestListenUDPConfiguresSocket(t *testing.T) {
	pc, err := ListenUDP(context.Background(), "udp4", "127.0.0.1:0", SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	rb, err := socketReadBuffer(pc)
	if err != nil {
		t.Fatal(err)
	}
	if want := min(4<<20, rmemMax(t)); rb < want {
		t.Fatalf("SO_RCVBUF = %d, want >= %d", rb, want)
	}
	if err := checkPMTUDiscoverDo(pc); err != nil {
		t.Fatal(err)
	}
}

func TestLifecycleAndErrors(t *testing.T) {
	n := newNet(t, 9)
	if _, err := New(nil, Config{}); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"datagram too big", Config{MaxDatagramSize: 1500}},
		{"datagram too small", Config{MaxDatagramSize: 100}},
		{"max RTO above 1s", Config{MaxRTO: 2 * time.Second}},
		{"min above max", Config{MinRTO: 2 * time.Second}},
		{"ack delay above min RTO", Config{AckDelay: 10 * time.Millisecond}},
		{"reassembly below message", Config{MaxMessageSize: 8 << 20, MaxReassemblyBytesPerPeer: 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = testLogger(t)
			if _, err := New(listenMem(t, n, "127.0.0.1:0"), tt.cfg); err == nil {
				t.Fatal("invalid config accepted")
			}
		})
	}
	cfg := testConfig(t, 1, nil)
	e, err := New(listenMem(t, n, "127.0.0.1:0"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- e.Run(context.Background()) }()
	ctx := context.Background()
	to := netip.MustParseAddrPort("127.0.0.2:1")
	if err := e.Send(ctx, to, make([]byte, e.cfg.MaxMessageSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize Send = %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if err := e.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v", err)
	}
	if err := e.Send(ctx, to, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close = %v", err)
	}
	if _, err := e.Call(ctx, to, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Call after Close = %v", err)
	}
}

func TestCloseFailsPendingSends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 10)
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		errc := make(chan error, 1)
		go func() { errc <- a.Send(context.Background(), netip.MustParseAddrPort("127.0.0.2:1"), []byte("x")) }()
		time.Sleep(100 * time.Millisecond)
		a.Close()
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("pending Send after Close = %v", err)
		}
	})
}

// TestCloseSendsPendingAcks: a caller that closes right after its Call
// returns has acknowledged the reply, so the replier does not retransmit
// it until PeerTimeout.
func TestCloseSendsPendingAcks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 27)
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, echo))
		if r, err := a.Call(context.Background(), b.AddrPort(), []byte("bye")); err != nil || string(r) != "bye" {
			t.Fatalf("Call = %q, %v", r, err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * b.cfg.PeerTimeout)
		synctest.Wait()
		if s := b.Stats(); s.MessagesSent != 1 || s.Unreachable != 0 || s.Retransmits != 0 {
			t.Fatalf("replier: %d messages acknowledged, %d given up, %d retransmits; want 1, 0, 0",
				s.MessagesSent, s.Unreachable, s.Retransmits)
		}
	})
}
