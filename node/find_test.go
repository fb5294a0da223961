package node

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// A node with an empty data dir and no entrance address waits for
// FindEntrance: its error ends Run, Close while it looks is a clean stop.
func TestFindEntrance(t *testing.T) {
	newNode := func(find func(context.Context) (netip.AddrPort, error)) *Node {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n, err := New(Config{Name: "n1", DataDir: t.TempDir(), PacketConn: pc, NoSync: true, FindEntrance: find})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	errNone := errors.New("nobody answered")
	n := newNode(func(context.Context) (netip.AddrPort, error) { return netip.AddrPort{}, errNone })
	if err := n.Run(context.Background()); !errors.Is(err, errNone) {
		t.Fatalf("Run = %v, want the finder's error", err)
	}

	looking := make(chan struct{})
	n = newNode(func(ctx context.Context) (netip.AddrPort, error) {
		close(looking)
		<-ctx.Done()
		return netip.AddrPort{}, ctx.Err()
	})
	done := make(chan error, 1)
	go func() { done <- n.Run(context.Background()) }()
	<-looking
	n.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Close while finding = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	select {
	case <-n.Ready():
		t.Fatal("node served without an entrance")
	default:
	}
}
