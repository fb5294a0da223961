package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/rudp"
)

// refusingTransport fails every call at its deadline, as rudp does for a
// peer that never acknowledges; addresses in refuse also sent an "auth
// failed" notice meanwhile.
type refusingTransport struct{ refuse map[string]bool }

func (r *refusingTransport) Call(ctx context.Context, addr string, _ []byte) ([]byte, error) {
	<-ctx.Done()
	if r.refuse[addr] {
		return nil, fmt.Errorf("rudp: send to %s: %w: %w: %w", addr, rudp.ErrPeerUnreachable, rudp.ErrAuthFailed, ctx.Err())
	}
	return nil, fmt.Errorf("rudp: send to %s: %w: %w", addr, rudp.ErrPeerUnreachable, ctx.Err())
}
func (r *refusingTransport) Close() error { return nil }

func TestAuthFailureIsUnauthorized(t *testing.T) {
	tr := &refusingTransport{refuse: map[string]bool{"n1": true, "entrance": true}}
	c := newTestClient(t, Config{Endpoints: []string{"n1", "n2"}, Transport: tr, Timeout: 150 * time.Millisecond})
	_, err := c.Put(t.Context(), "k", []byte("v"))
	if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, rudp.ErrAuthFailed) || !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("put refused by n1, n2 silent: %v, want ErrUnauthorized, rudp.ErrAuthFailed, ErrOutcomeUnknown, ErrTimeout", err)
	}
	_, err = c.Get(t.Context(), "k", GetOptions{})
	if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("get refused by n1, n2 silent: %v, want ErrUnauthorized and ErrTimeout", err)
	}
	if _, err = c.Status(t.Context(), "n1"); !errors.Is(err, ErrUnauthorized) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("status of n1: %v, want ErrUnauthorized and ErrUnavailable", err)
	}
	if _, err = c.Status(t.Context(), "n2"); errors.Is(err, ErrUnauthorized) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("status of silent n2: %v, want ErrTimeout without ErrUnauthorized", err)
	}

	ec := newTestClient(t, Config{Entrance: "entrance", Transport: tr, Timeout: 100 * time.Millisecond})
	if _, err = ec.ListPeers(t.Context()); !errors.Is(err, ErrUnauthorized) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("list peers refused by the entrance: %v, want ErrUnauthorized and ErrUnavailable", err)
	}

	// When every address refused, the operation ends there, not at its
	// deadline: with endpoints, and with an entrance alone.
	all := &refusingTransport{refuse: map[string]bool{"n1": true, "n2": true, "entrance": true}}
	for _, cfg := range []Config{{Endpoints: []string{"n1", "n2"}}, {Entrance: "entrance"}} {
		cfg.Transport, cfg.Timeout = all, time.Minute
		c := newTestClient(t, cfg)
		if _, err := c.Get(t.Context(), "k", GetOptions{}); !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrTimeout) {
			t.Fatalf("get, everyone refusing (%v): %v, want ErrUnauthorized before the timeout", cfg.Endpoints, err)
		}
		// A refusal is an unauthenticated notice: a write sent to a node
		// may have been applied anyway, so its outcome is unknown; one that
		// only reached the entrance was not.
		_, err := c.Put(t.Context(), "k", []byte("v"))
		if toNode := cfg.Entrance == ""; !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrOutcomeUnknown) != toNode || errors.Is(err, ErrTimeout) {
			t.Fatalf("put, everyone refusing (%v): %v, want ErrUnauthorized before the timeout, outcome unknown: %v", cfg.Endpoints, err, toNode)
		}
		if cfg.Entrance != "" {
			if _, err := c.ListPeers(t.Context()); !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrTimeout) {
				t.Fatalf("list peers, entrance refusing: %v, want ErrUnauthorized before the timeout", err)
			}
		} else if _, err := c.Status(t.Context(), "n1"); !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrTimeout) {
			t.Fatalf("status, n1 refusing: %v, want ErrUnauthorized before the timeout", err)
		}
	}

	// Without a notice a silent cluster stays a timeout.
	silent := newTestClient(t, Config{Endpoints: []string{"n2"}, Transport: tr, Timeout: 100 * time.Millisecond})
	_, err = silent.Get(t.Context(), "k", GetOptions{})
	if errors.Is(err, ErrUnauthorized) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("get from a silent node: %v, want ErrTimeout without ErrUnauthorized", err)
	}
}

// TestWrongSecretOverRUDP runs the real transport against a loopback rudp
// endpoint with another secret.
func TestWrongSecretOverRUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := rudp.New(pc, rudp.Config{Secret: []byte("the cluster's secret")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// The only address refused the secret: the operation ends after that
	// attempt, not at its deadline (it used to wait for Timeout).
	for _, secret := range [][]byte{[]byte("another secret"), nil} {
		c, err := New(t.Context(), Config{Endpoints: []string{srv.AddrPort().String()}, Secret: secret,
			Timeout: time.Minute, AttemptTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Get(t.Context(), "k", GetOptions{})
		_, perr := c.Put(t.Context(), "k", []byte("v"))
		c.Close()
		if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, rudp.ErrAuthFailed) || errors.Is(err, ErrTimeout) {
			t.Fatalf("secret %q: get = %v, want ErrUnauthorized and rudp.ErrAuthFailed before the timeout", secret, err)
		}
		// The refusal is an unauthenticated notice, so the client cannot
		// know that the node did not apply the put (here it did not: see
		// the server's stats below), and says so.
		if !errors.Is(perr, ErrUnauthorized) || !errors.Is(perr, ErrOutcomeUnknown) || errors.Is(perr, ErrTimeout) {
			t.Fatalf("secret %q: put = %v, want ErrUnauthorized and ErrOutcomeUnknown before the timeout", secret, perr)
		}
	}
	if s := srv.Stats(); s.NoticesSent == 0 || s.MessagesReceived != 0 {
		t.Fatalf("server stats %+v: want notices sent and nothing delivered", s)
	}
}

// The node got (and applied) the request; its ack and reply were lost; a
// forged "auth failed" notice arrived meanwhile (rudp then wraps
// ErrAuthFailed into ErrPeerUnreachable).
type appliedThenRefused struct{ delivered atomic.Int64 }

func (d *appliedThenRefused) Call(ctx context.Context, addr string, _ []byte) ([]byte, error) {
	d.delivered.Add(1) // the node applied it
	<-ctx.Done()
	return nil, fmt.Errorf("rudp: send to %s: %w: %w: %w", addr, rudp.ErrPeerUnreachable, rudp.ErrAuthFailed, ctx.Err())
}
func (d *appliedThenRefused) Close() error { return nil }

// TestForgedNoticeKeepsOutcomeUnknown: a write whose copy reached a node
// that then "refused" it (a forged notice, or a restart with a new secret)
// may have been applied: the error must say the outcome is unknown.
func TestForgedNoticeKeepsOutcomeUnknown(t *testing.T) {
	tr := &appliedThenRefused{}
	c := newTestClient(t, Config{Endpoints: []string{"n1"}, Transport: tr, Timeout: time.Minute})
	start := time.Now()
	_, err := c.Put(t.Context(), "k", []byte("v"))
	t.Logf("after %v, %d copies delivered: %v", time.Since(start), tr.delivered.Load(), err)
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("a write whose copy reached the node is reported without ErrOutcomeUnknown: %v", err)
	}
}
