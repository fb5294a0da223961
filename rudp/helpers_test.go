package rudp

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/internal/faultnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testSecret = []byte("test cluster secret, 32 bytes!!!")

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testConfig is a Config for tests, deterministic given seed.
func testConfig(t testing.TB, seed uint64, h Handler) Config {
	return Config{
		ClusterID: 7,
		Secret:    testSecret,
		Handler:   h,
		Logger:    testLogger(t),
		Rand:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

// start runs an endpoint on pc until the test ends.
func start(t testing.TB, pc net.PacketConn, cfg Config) *Endpoint {
	t.Helper()
	ep, err := New(pc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- ep.Run(context.Background()) }()
	t.Cleanup(func() {
		ep.Close()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ep
}

// listenMem listens on the in-memory network.
func listenMem(t testing.TB, n *faultnet.Network, addr string) net.PacketConn {
	t.Helper()
	pc, err := n.Listen(netip.MustParseAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// echo is a handler that replies with the request.
func echo(_ context.Context, m Message) []byte { return m.Payload }

// newNet returns a seeded in-memory network closed after the test's
// endpoints (cleanups run last-registered first).
func newNet(t testing.TB, seed uint64) *faultnet.Network {
	n := faultnet.New(seed)
	t.Cleanup(func() { n.Close() })
	return n
}
