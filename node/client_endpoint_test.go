package node

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/rudp"
)

// newClientEndpoint starts a bare rudp endpoint that sends client requests
// the way the client package does (Kind byte + msgpack body).
func newClientEndpoint(t testing.TB) *clientEndpoint {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := rudp.New(pc, rudp.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ep.Run(context.Background()) }()
	t.Cleanup(func() {
		ep.Close()
		if err := <-done; err != nil {
			t.Errorf("client endpoint: %v", err)
		}
	})
	return &clientEndpoint{call: func(t testing.TB, to netip.AddrPort, req proto.ClientRequest) proto.ClientResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := ep.Call(ctx, to, proto.MustEncode(proto.KindClient, req))
		if err != nil {
			t.Fatalf("call %s: %v", to, err)
		}
		kind, body, err := proto.Split(b)
		if err != nil || kind != proto.KindClient {
			t.Fatalf("reply kind %d: %v", kind, err)
		}
		var resp proto.ClientResponse
		if err := proto.Decode(body, &resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}}
}
