package rudp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// tokenParked reports whether e's read token is parked (see
// parkTokenLocked).
func tokenParked(e *Endpoint) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.parked && !e.lentSince.IsZero()
}

// warmCaller makes back-to-back Calls from a to b, after a's earlier
// exchanges settled (its replies acknowledged), and checks that a's read
// token is parked after them, so that a's next Call reads its own
// response. It runs in a synctest bubble.
func warmCaller(t *testing.T, a, b *Endpoint) {
	t.Helper()
	time.Sleep(10 * time.Millisecond)
	for range 3 {
		if _, err := a.Call(context.Background(), b.AddrPort(), []byte("warm-up")); err != nil {
			t.Fatal(err)
		}
	}
	if !tokenParked(a) {
		t.Fatal("read token not parked after back-to-back Calls with nothing else waiting")
	}
}

func TestBackToBackCallsReadTheirOwnResponses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 41)
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, echo))
		warmCaller(t, a, b)
		for i := range 20 {
			req := fmt.Sprintf("call %d", i)
			r, err := a.Call(context.Background(), b.AddrPort(), []byte(req))
			if err != nil || string(r) != req {
				t.Fatalf("Call %d = %q, %v", i, r, err)
			}
			if !tokenParked(a) {
				t.Fatalf("after Call %d the read token is not parked", i)
			}
		}
		// A parked token is passed on by the timer: a's handler-less
		// endpoint still reads, acks and delivers a Send's ack.
		time.Sleep(5 * time.Millisecond)
		if tokenParked(a) {
			t.Fatal("read token still parked after lendTimeout")
		}
		if err := a.Send(context.Background(), b.AddrPort(), []byte("after")); err != nil {
			t.Fatal(err)
		}
	})
}

// TestReadingCallStops checks that a Call reading the socket for itself
// returns when its ctx is cancelled, its deadline or CallTimeout passes,
// or its peer stops answering, and that the endpoint reads and answers
// afterwards.
func TestReadingCallStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 42)
		cfgA := testConfig(t, 1, echo)
		cfgA.CallTimeout = 3 * time.Second
		cfgA.PeerTimeout = 2 * time.Second
		a := start(t, listenMem(t, n, "127.0.0.1:1"), cfgA)
		block := make(chan struct{})
		defer close(block)
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, func(ctx context.Context, m Message) []byte {
			if string(m.Payload) == "hang" {
				select {
				case <-block:
				case <-ctx.Done():
				}
			}
			return m.Payload
		}))
		c := start(t, listenMem(t, n, "127.0.0.3:1"), testConfig(t, 3, nil))
		// checkServing: the token is not lost, a still answers Calls.
		checkServing := func(step string) {
			t.Helper()
			if r, err := c.Call(context.Background(), a.AddrPort(), []byte(step)); err != nil || string(r) != step {
				t.Fatalf("after %s: Call to a = %q, %v", step, r, err)
			}
		}

		warmCaller(t, a, b)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		t0 := time.Now()
		if _, err := a.Call(ctx, b.AddrPort(), []byte("hang")); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Call = %v, want context.Canceled", err)
		}
		if el := time.Since(t0); el != time.Second {
			t.Fatalf("cancelled Call returned after %v, want 1s", el)
		}
		checkServing("cancel")

		warmCaller(t, a, b)
		dctx, dcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := a.Call(dctx, b.AddrPort(), []byte("hang"))
		dcancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Call past its deadline = %v, want DeadlineExceeded", err)
		}
		checkServing("deadline")

		warmCaller(t, a, b)
		t0 = time.Now()
		if _, err := a.Call(context.Background(), b.AddrPort(), []byte("hang")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Call past CallTimeout = %v, want DeadlineExceeded", err)
		}
		if el := time.Since(t0); el < cfgA.CallTimeout || el > cfgA.CallTimeout+10*time.Millisecond {
			t.Fatalf("Call returned after %v, want CallTimeout %v", el, cfgA.CallTimeout)
		}
		checkServing("CallTimeout")

		warmCaller(t, a, b)
		n.Isolate(b.AddrPort())
		t0 = time.Now()
		if _, err := a.Call(context.Background(), b.AddrPort(), []byte("lost")); !errors.Is(err, ErrPeerUnreachable) {
			t.Fatalf("Call to an isolated peer = %v, want ErrPeerUnreachable", err)
		}
		if el := time.Since(t0); el < cfgA.PeerTimeout || el > cfgA.PeerTimeout+10*time.Millisecond {
			t.Fatalf("Call gave up after %v, want PeerTimeout %v", el, cfgA.PeerTimeout)
		}
		checkServing("unreachable")
	})
}

// TestReadingCallServesRequests: while a Call reads for itself, requests
// arriving for its endpoint reach the handlers, even one sent by the
// Call's own callee before it answers.
func TestReadingCallServesRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 43)
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, echo))
		var b *Endpoint // set before any request is sent
		b = start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, func(ctx context.Context, m Message) []byte {
			if string(m.Payload) != "nested" {
				return m.Payload
			}
			r, err := b.Call(ctx, m.From, []byte("back"))
			if err != nil {
				return []byte(err.Error())
			}
			return r
		}))
		warmCaller(t, a, b)
		for i := range 5 {
			if r, err := a.Call(context.Background(), b.AddrPort(), []byte("nested")); err != nil || string(r) != "back" {
				t.Fatalf("nested Call %d = %q, %v", i, r, err)
			}
		}
		// Concurrent callers: each response reaches its own Call.
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				req := fmt.Sprintf("concurrent %d", i)
				if r, err := a.Call(context.Background(), b.AddrPort(), []byte(req)); err != nil || string(r) != req {
					t.Errorf("Call %d = %q, %v", i, r, err)
				}
			})
		}
		wg.Wait()
	})
}

// TestHandlerWaitingForAnotherMessage: a handler that blocks until
// another message arrives, without calling Send or Call, holds the read
// token only until lendTimeout, so that message is read and handled.
func TestHandlerWaitingForAnotherMessage(t *testing.T) {
	for _, workers := range []int{2, 3} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newNet(t, 44)
				a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
				var (
					b      *Endpoint // set before any request is sent
					second chan struct{}
					lent   bool // a first handler ran with b's token lent
				)
				cfg := testConfig(t, 2, func(ctx context.Context, m Message) []byte {
					switch string(m.Payload) {
					case "first":
						b.mu.Lock()
						lent = lent || (!b.lentSince.IsZero() && !b.parked)
						b.mu.Unlock()
						select {
						case <-second:
						case <-ctx.Done():
						}
					case "second":
						close(second)
					}
					return m.Payload
				})
				cfg.HandlerWorkers = workers
				b = start(t, listenMem(t, n, "127.0.0.2:1"), cfg)
				// The spare reader may read "first" and queue it for a
				// worker instead: repeat until a worker ran it lent.
				for round := 0; !lent; round++ {
					if round == 50 {
						t.Fatal("no first handler ran with the read token lent in 50 rounds")
					}
					second = make(chan struct{})
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					var wg sync.WaitGroup
					wg.Go(func() {
						if r, err := a.Call(ctx, b.AddrPort(), []byte("first")); err != nil || string(r) != "first" {
							t.Errorf("round %d: first Call = %q, %v", round, r, err)
						}
					})
					synctest.Wait() // the first handler is blocked
					if r, err := a.Call(ctx, b.AddrPort(), []byte("second")); err != nil || string(r) != "second" {
						t.Errorf("round %d: second Call = %q, %v", round, r, err)
					}
					wg.Wait()
					cancel()
				}
			})
		})
	}
}
