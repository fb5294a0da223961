package node

import (
	"context"
	"fmt"
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
	ep, err := rudp.New(pc, rudp.Config{Logger: slog.New(slog.DiscardHandler), MaxMessageSize: proto.MaxMessageBytes})
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
	ce := &clientEndpoint{try: func(to netip.AddrPort, req proto.ClientRequest) (proto.ClientResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := ep.Call(ctx, to, proto.MustEncode(proto.KindClient, req))
		if err != nil {
			return proto.ClientResponse{}, fmt.Errorf("call %s: %w", to, err)
		}
		kind, body, err := proto.Split(b)
		if err != nil || kind != proto.KindClient {
			return proto.ClientResponse{}, fmt.Errorf("reply kind %d: %v", kind, err)
		}
		var resp proto.ClientResponse
		if err := proto.Decode(body, &resp); err != nil {
			return proto.ClientResponse{}, err
		}
		return resp, nil
	}}
	ce.call = func(t testing.TB, to netip.AddrPort, req proto.ClientRequest) proto.ClientResponse {
		t.Helper()
		resp, err := ce.try(to, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	return ce
}
