package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/rudp"
)

// rudpTransport is the default Transport: one rudp endpoint on an
// ephemeral UDP port, running until Close.
type rudpTransport struct {
	ep     *rudp.Endpoint
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	resolved map[string]netip.AddrPort
}

func newRUDPTransport(secret []byte, log *slog.Logger) (*rudpTransport, error) {
	pc, err := net.ListenPacket("udp", ":0")
	if err != nil {
		return nil, fmt.Errorf("listen udp: %w", err)
	}
	ep, err := rudp.New(pc, rudp.Config{Secret: secret, Logger: log, MaxMessageSize: proto.MaxMessageBytes})
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &rudpTransport{ep: ep, cancel: cancel, done: make(chan struct{}), resolved: map[string]netip.AddrPort{}}
	go func() {
		defer close(t.done)
		if err := ep.Run(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, rudp.ErrClosed) {
			log.Debug("rudp endpoint stopped", "err", err)
		}
	}()
	return t, nil
}

func (t *rudpTransport) resolve(addr string) (netip.AddrPort, error) {
	t.mu.Lock()
	ap, ok := t.resolved[addr]
	t.mu.Unlock()
	if ok {
		return ap, nil
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap, nil
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("client: resolve %s: %w", addr, err)
	}
	ap = ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	t.mu.Lock()
	t.resolved[addr] = ap
	t.mu.Unlock()
	return ap, nil
}

func (t *rudpTransport) Call(ctx context.Context, addr string, payload []byte) ([]byte, error) {
	ap, err := t.resolve(addr)
	if err != nil {
		return nil, err
	}
	return t.ep.Call(ctx, ap, payload)
}

func (t *rudpTransport) Close() error {
	t.cancel()
	err := t.ep.Close()
	<-t.done
	if errors.Is(err, rudp.ErrClosed) {
		err = nil
	}
	return err
}
