package discovery

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/rudp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// loopBcast is the loopback broadcast address; tests never use
// 255.255.255.255 nor a real subnet.
var loopBcast = netip.MustParseAddr("127.255.255.255")

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// freePort returns a port on which the test can bind 0.0.0.0 with
// SO_REUSEADDR, and the first such socket.
func sharedSocket(t *testing.T) (*net.UDPConn, int) {
	t.Helper()
	pc, err := rudp.ListenUDP(t.Context(), "udp4", "0.0.0.0:0", rudp.SocketOptions{ReuseAddr: true, ReadBuffer: 64 << 10, WriteBuffer: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return pc, pc.LocalAddr().(*net.UDPAddr).Port
}

// finderConn is a loopback-only socket for a Finder.
func finderConn(t *testing.T) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// startResponder runs a Responder on pc until the test ends.
func startResponder(t *testing.T, pc net.PacketConn, addr string, secret []byte) *Responder {
	t.Helper()
	r, err := NewResponder(ResponderConfig{Addr: netip.MustParseAddrPort(addr), PacketConn: pc, Secret: secret, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(context.Background()); err != nil {
			t.Errorf("responder: %v", err)
		}
	})
	t.Cleanup(func() { r.Close(); wg.Wait() })
	return r
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newFinder(t *testing.T, port int, secret []byte) *Finder {
	return &Finder{Port: port, Broadcast: []netip.Addr{loopBcast}, Secret: secret, Name: "n1",
		MinInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, Logger: testLogger(t), PacketConn: finderConn(t)}
}

// Two responders share the discovery port (SO_REUSEADDR on both, as
// entrance and another listener on one host would): a broadcast to
// 127.255.255.255 reaches both, and the finder gets the entrance address.
func TestFindSharedPort(t *testing.T) {
	secret := []byte("s3cret")
	pc1, port := sharedSocket(t)
	pc2, err := Listen(t.Context(), port)
	if err != nil {
		t.Fatal(err)
	}
	r1 := startResponder(t, pc1, "127.0.0.1:7700", secret)
	r2 := startResponder(t, pc2, "127.0.0.1:7700", secret)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := newFinder(t, port, secret).Find(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("127.0.0.1:7700"); got != want {
		t.Fatalf("found %v, want %v", got, want)
	}
	// Every broadcast reaches both sockets, so both answered.
	waitFor(t, "both responders to answer", func() bool {
		return r1.Stats().Answered >= 1 && r2.Stats().Answered >= 1
	})
}

// An entrance listening on 0.0.0.0 announces an unspecified IP; the finder
// uses the IP the beacon came from.
func TestFindUnspecifiedAddr(t *testing.T) {
	pc, port := sharedSocket(t)
	startResponder(t, pc, "0.0.0.0:7700", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := newFinder(t, port, nil).Find(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("127.0.0.1:7700"); got != want {
		t.Fatalf("found %v, want %v", got, want)
	}
}

func TestWrongSecretIgnored(t *testing.T) {
	pc, port := sharedSocket(t)
	r := startResponder(t, pc, "127.0.0.1:7700", []byte("right"))
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := newFinder(t, port, []byte("wrong")).Find(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Find with the wrong secret: %v, want a deadline error", err)
	}
	waitFor(t, "the responder to drop the finder's datagrams", func() bool { return r.Stats().Rudp.DroppedBadMAC > 0 })
	if st := r.Stats(); st.Answered != 0 {
		t.Fatalf("responder answered %d finders with the wrong secret", st.Answered)
	}
	// Unauthenticated finders are refused too.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel2()
	if _, err := newFinder(t, port, nil).Find(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Find without a secret: %v, want a deadline error", err)
	}
	if st := r.Stats(); st.Answered != 0 {
		t.Fatalf("responder answered %d unauthenticated finders", st.Answered)
	}
}

// A finder whose socket shares the discovery port receives its own
// broadcasts (a sniffer on the port proves they loop back) and must not
// take them for an answer.
func TestOwnBroadcastIgnored(t *testing.T) {
	sniff, port := sharedSocket(t)
	defer sniff.Close()
	own, err := Listen(t.Context(), port)
	if err != nil {
		t.Fatal(err)
	}
	f := newFinder(t, port, nil)
	f.PacketConn.Close()
	f.PacketConn = own
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = f.Find(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Find alone: %v, want a deadline error", err)
	}
	sniff.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	if _, _, err := sniff.ReadFromUDPAddrPort(buf); err != nil {
		t.Fatalf("the finder's broadcasts did not loop back to the port: %v", err)
	}
}

// Garbage (raw bytes, authenticated datagrams of the wrong kind, bad
// bodies, unusable beacon addresses) is ignored on both sides and does not
// stop a responder from answering.
func TestGarbageIgnored(t *testing.T) {
	pc, port := sharedSocket(t)
	r := startResponder(t, pc, "127.0.0.1:7700", nil)

	// Raw garbage, unicast to the responder's port.
	raw, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	for _, g := range [][]byte{{}, {1}, []byte("hello, entrance"), make([]byte, 1300)} {
		raw.WriteTo(g, dst)
	}
	// Well-formed rudp broadcasts with bad payloads.
	bad := [][]byte{
		nil,
		{byte(proto.KindDiscover), 0xc1},
		proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "127.0.0.1:1"}),
		proto.MustEncode(proto.KindPing, proto.Ping{}),
	}
	ep, err := rudp.New(finderConn(t), rudp.Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { ep.Run(t.Context()) })
	defer func() { ep.Close(); wg.Wait() }()
	for _, b := range bad {
		if err := ep.Broadcast(netip.AddrPortFrom(loopBcast, uint16(port)), b); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the responder to ignore the garbage", func() bool {
		st := r.Stats()
		return st.Ignored >= uint64(len(bad)) && st.Rudp.DroppedBadMAC+st.Rudp.DroppedMalformed >= 3
	})
	if st := r.Stats(); st.Answered != 0 {
		t.Fatalf("answered %d garbage datagrams", st.Answered)
	}

	// A fake responder that answers every Discover with unusable beacons:
	// the finder keeps looking.
	fakePC, fakePort := sharedSocket(t)
	var fakeAnswers sync.WaitGroup
	fakeAnswers.Add(1)
	var once sync.Once
	var fake *rudp.Endpoint
	fake, err = rudp.New(fakePC, rudp.Config{Logger: testLogger(t), Handler: func(_ context.Context, m rudp.Message) []byte {
		for _, a := range []string{"nonsense", "127.0.0.1:0", "255.255.255.255:7700", "224.0.0.1:7700", ""} {
			fake.Broadcast(m.From, proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: a}))
		}
		fake.Broadcast(m.From, []byte{byte(proto.KindEntranceBeacon), 0x92})
		fake.Broadcast(m.From, proto.MustEncode(proto.KindDiscover, proto.Discover{Name: "x"}))
		once.Do(fakeAnswers.Done)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { fake.Run(t.Context()) })
	defer fake.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if a, err := newFinder(t, fakePort, nil).Find(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Find with only bad beacons: %v %v, want a deadline error", a, err)
	}
	fakeAnswers.Wait()

	// The real responder still answers.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	if _, err := newFinder(t, port, nil).Find(ctx2); err != nil {
		t.Fatalf("Find after garbage: %v", err)
	}
}

func TestFinderRefusesLimitedBroadcast(t *testing.T) {
	for _, a := range []string{"255.255.255.255", "0.0.0.0", "::1"} {
		f := &Finder{Broadcast: []netip.Addr{netip.MustParseAddr(a)}}
		if _, err := f.Find(t.Context()); err == nil {
			t.Fatalf("Find to %s: no error", a)
		}
	}
	if _, err := (&Finder{Broadcast: []netip.Addr{}}).Find(t.Context()); !errors.Is(err, ErrNoBroadcastAddr) {
		t.Fatalf("Find with no addresses: %v", err)
	}
}

func TestSubnetBroadcast(t *testing.T) {
	tests := []struct {
		prefix string
		want   string // "" = none
	}{
		{"127.0.0.1/8", "127.255.255.255"},
		{"10.213.7.2/24", "10.213.7.255"},
		{"192.168.1.77/20", "192.168.15.255"},
		{"10.0.0.5/30", "10.0.0.7"},
		{"10.0.0.5/31", ""},
		{"10.0.0.5/32", ""},
		{"0.0.0.0/0", ""},
		{"fe80::1/64", ""},
	}
	for _, tt := range tests {
		got, ok := SubnetBroadcast(netip.MustParsePrefix(tt.prefix))
		if (tt.want == "") != !ok || (ok && got.String() != tt.want) {
			t.Errorf("SubnetBroadcast(%s) = %v, %v; want %q", tt.prefix, got, ok, tt.want)
		}
	}
}

func TestBroadcastAddrs(t *testing.T) {
	addrs, err := BroadcastAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var loop bool
	for _, a := range addrs {
		if a == limitedBroadcast || !a.Is4() {
			t.Fatalf("BroadcastAddrs returned %v", a)
		}
		loop = loop || a == loopBcast
	}
	if !loop {
		t.Fatalf("BroadcastAddrs %v lacks loopback's %v", addrs, loopBcast)
	}
}

func TestDecodeBeacon(t *testing.T) {
	from := netip.MustParseAddrPort("10.0.0.9:7799")
	const nonce = 0x5eed
	tests := []struct {
		addr, want string // want "" = error
	}{
		{"10.0.0.1:7700", "10.0.0.1:7700"},
		{"0.0.0.0:7700", "10.0.0.9:7700"},
		{"[::]:7700", "10.0.0.9:7700"},
		{"10.0.0.1:0", ""},
		{"255.255.255.255:7700", ""},
		{"239.1.1.1:7700", ""},
		{"10.0.0.1", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := DecodeBeacon(proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: tt.addr, Nonce: nonce}), from, nonce)
		if tt.want == "" {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeBeacon(%q) = %v, %v; want ErrMalformed", tt.addr, got, err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("DecodeBeacon(%q) = %v, %v; want %s", tt.addr, got, err, tt.want)
		}
	}
	if _, err := DecodeBeacon(proto.MustEncode(proto.KindDiscover, proto.Discover{Nonce: nonce}), from, nonce); !errors.Is(err, ErrMalformed) {
		t.Errorf("DecodeBeacon of a Discover: %v", err)
	}
	// A good beacon echoing another nonce, or none (an entrance that
	// predates nonces), is stale.
	for _, echo := range []uint64{0, nonce + 1, 1 << 63} {
		b := proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "10.0.0.1:7700", Nonce: echo})
		if got, err := DecodeBeacon(b, from, nonce); !errors.Is(err, ErrStale) || errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeBeacon echoing %x for %x = %v, %v; want ErrStale", echo, uint64(nonce), got, err)
		}
	}
}

func TestNewNonce(t *testing.T) {
	seen := map[uint64]bool{}
	for range 1000 {
		n := newNonce()
		if n == 0 || seen[n] {
			t.Fatalf("newNonce returned %x (zero or repeated)", n)
		}
		seen[n] = true
	}
}

// recordConn records the datagrams read through it.
type recordConn struct {
	net.PacketConn
	mu   sync.Mutex
	read [][]byte
}

func (c *recordConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		c.mu.Lock()
		c.read = append(c.read, bytes.Clone(b[:n]))
		c.mu.Unlock()
	}
	return n, a, err
}

// An attacker on the LAN captures the authenticated beacon an old
// entrance sent to one finder and replays it, verbatim and garbled, to a
// later finder. The later finder ignores all of it (the verbatim replay
// reaches its handler, passing rudp's MAC, and is counted stale) and takes
// the answer of the entrance that answers its own Discover.
func TestReplayedBeaconIgnored(t *testing.T) {
	secret := []byte("s3cret")
	// Finder 1 finds the old entrance; its socket records the beacon.
	oldPC, oldPort := sharedSocket(t)
	old := startResponder(t, oldPC, "127.0.0.1:7700", secret)
	f1 := newFinder(t, oldPort, secret)
	rec := &recordConn{PacketConn: f1.PacketConn}
	f1.PacketConn = rec
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if got, err := f1.Find(ctx); err != nil || got != netip.MustParseAddrPort("127.0.0.1:7700") {
		t.Fatalf("first Find = %v, %v", got, err)
	}
	old.Close()
	rec.mu.Lock()
	captured := rec.read[0]
	rec.mu.Unlock()

	// Finder 2 looks on a port where no entrance answers yet.
	newPC, newPort := sharedSocket(t)
	f2 := newFinder(t, newPort, secret)
	f2Addr := f2.PacketConn.LocalAddr()
	attacker, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	// Garbled copies first (each byte flipped in turn; a MAC failure
	// drops them before any parsing), then the verbatim replay, all
	// queued on the socket before Find reads it.
	for i := range captured {
		g := bytes.Clone(captured)
		g[i] ^= 0x01
		if _, err := attacker.WriteTo(g, f2Addr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := attacker.WriteTo(captured, f2Addr); err != nil {
		t.Fatal(err)
	}
	type result struct {
		a   netip.AddrPort
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := f2.Find(ctx)
		done <- result{a, err}
	}()
	waitFor(t, "the replayed beacon to be ignored", func() bool { return f2.Stats().Stale >= 1 })
	select {
	case r := <-done:
		t.Fatalf("Find returned %v, %v before any entrance answered it", r.a, r.err)
	default:
	}
	// Now the new entrance answers; its beacon echoes the nonce.
	startResponder(t, newPC, "127.0.0.1:7701", secret)
	r := <-done
	if want := netip.MustParseAddrPort("127.0.0.1:7701"); r.err != nil || r.a != want {
		t.Fatalf("Find = %v, %v; want %v", r.a, r.err, want)
	}
	// Find returned, so its handlers are done: the counts are final.
	if st := f2.Stats(); st.Stale != 1 || st.Malformed != 0 {
		t.Fatalf("finder stats %+v; want 1 stale (the verbatim replay) and no garbled copy reaching the handler", st)
	}
}

// Beacons from an authenticated peer that echo a wrong nonce, or none (an
// entrance that predates nonces), are ignored; the matching answer of a
// real responder is taken.
func TestBeaconMustEchoNonce(t *testing.T) {
	fakePC, fakePort := sharedSocket(t)
	var fake *rudp.Endpoint
	var answered atomic.Int64
	fake, err := rudp.New(fakePC, rudp.Config{Logger: testLogger(t), Handler: func(_ context.Context, m rudp.Message) []byte {
		d, err := DecodeDiscover(m.Payload)
		if err != nil || d.Nonce == 0 {
			t.Errorf("fake responder got %+v, %v; want a Discover with a nonce", d, err)
			return nil
		}
		for _, echo := range []uint64{0, d.Nonce + 1, d.Nonce ^ 1<<63} {
			fake.Broadcast(m.From, proto.MustEncode(proto.KindEntranceBeacon, proto.EntranceBeacon{Addr: "127.0.0.1:6666", Nonce: echo}))
		}
		answered.Add(1)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { fake.Run(t.Context()) })
	defer func() { fake.Close(); wg.Wait() }()

	f := newFinder(t, fakePort, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	type result struct {
		a   netip.AddrPort
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := f.Find(ctx)
		done <- result{a, err}
	}()
	waitFor(t, "the wrong echoes to be ignored", func() bool { return f.Stats().Stale >= 3 })
	select {
	case r := <-done:
		t.Fatalf("Find returned %v, %v on beacons with wrong nonces", r.a, r.err)
	default:
	}
	// A real responder sharing the port (SO_REUSEADDR: broadcasts reach
	// both) answers with the nonce.
	realPC, err := Listen(t.Context(), fakePort)
	if err != nil {
		t.Fatal(err)
	}
	startResponder(t, realPC, "127.0.0.1:7700", nil)
	r := <-done
	if want := netip.MustParseAddrPort("127.0.0.1:7700"); r.err != nil || r.a != want {
		t.Fatalf("Find = %v, %v; want %v", r.a, r.err, want)
	}
	if st := f.Stats(); st.Stale < 3 || st.Malformed != 0 {
		t.Fatalf("finder stats %+v after %d fake answers; want 3 stale per answer, none malformed", st, answered.Load())
	}
}

// A Discover from a finder that predates nonces (Nonce 0) is answered
// with a beacon echoing 0, which such a finder accepts: old nodes keep
// finding a new entrance.
func TestOldFinderAnswered(t *testing.T) {
	pc, port := sharedSocket(t)
	r := startResponder(t, pc, "127.0.0.1:7700", nil)
	got := make(chan []byte, 1)
	var ep *rudp.Endpoint
	ep, err := rudp.New(finderConn(t), rudp.Config{Logger: testLogger(t), Handler: func(_ context.Context, m rudp.Message) []byte {
		select {
		case got <- m.Payload:
		default:
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { ep.Run(t.Context()) })
	defer func() { ep.Close(); wg.Wait() }()
	// The old Discover's encoding: a map with the name only.
	type oldDiscover struct {
		Name string `msgpack:"n"`
	}
	old := proto.MustEncode(proto.KindDiscover, oldDiscover{Name: "old"})
	if err := ep.Broadcast(netip.AddrPortFrom(loopBcast, uint16(port)), old); err != nil {
		t.Fatal(err)
	}
	p := <-got
	if a, err := DecodeBeacon(p, netip.MustParseAddrPort("127.0.0.1:1"), 0); err != nil || a.String() != "127.0.0.1:7700" {
		t.Fatalf("answer to an old finder: %v, %v", a, err)
	}
	// And an old finder's decoder (the struct without Nonce) reads it.
	type oldBeacon struct {
		Addr string `msgpack:"a"`
	}
	_, body, _ := proto.Split(p)
	var ob oldBeacon
	if err := proto.Decode(body, &ob); err != nil || ob.Addr != "127.0.0.1:7700" {
		t.Fatalf("old decoder: %+v, %v", ob, err)
	}
	// Answered counts after the answer left.
	waitFor(t, "the responder to count its answer", func() bool { return r.Stats().Answered == 1 })
}
