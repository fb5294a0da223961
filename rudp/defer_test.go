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

// deferred is a request whose handler deferred its reply.
type deferred struct {
	m     Message
	reply func([]byte) error
}

// deferringHandler defers every Call whose payload starts with "wait" and
// hands it to the test on ch; other Calls get "now" at once.
func deferringHandler(ch chan<- deferred) Handler {
	return func(_ context.Context, m Message) []byte {
		if len(m.Payload) < 4 || string(m.Payload[:4]) != "wait" {
			return []byte("now")
		}
		ch <- deferred{m: m, reply: m.Defer()}
		return []byte("ignored: deferred")
	}
}

func TestDeferredReplyAfterHandlerReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 21)
		ch := make(chan deferred, 1)
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, deferringHandler(ch)))
		type result struct {
			r   []byte
			err error
		}
		res := make(chan result, 1)
		go func() {
			r, err := a.Call(context.Background(), b.AddrPort(), []byte("wait for it"))
			res <- result{r, err}
		}()
		d := <-ch
		synctest.Wait() // the handler has returned; its worker idles
		if !d.m.IsCall() {
			t.Fatal("IsCall = false for a Call")
		}
		select {
		case r := <-res:
			t.Fatalf("Call returned %q, %v before the deferred reply", r.r, r.err)
		default:
		}
		time.Sleep(2 * time.Second) // a slow commit
		if err := d.reply([]byte("later")); err != nil {
			t.Fatalf("deferred reply = %v", err)
		}
		if err := d.reply([]byte("twice")); !errors.Is(err, ErrReplied) {
			t.Fatalf("second deferred reply = %v, want ErrReplied", err)
		}
		if r := <-res; r.err != nil || string(r.r) != "later" {
			t.Fatalf("Call = %q, %v, want the deferred reply", r.r, r.err)
		}
		synctest.Wait()
		if s := a.Stats(); s.MessagesReceived != 1 {
			t.Fatalf("caller received %d messages, want the one reply", s.MessagesReceived)
		}
		// The caller still works for the next call on the same stream.
		if r, err := a.Call(context.Background(), b.AddrPort(), []byte("quick")); err != nil || string(r) != "now" {
			t.Fatalf("next Call = %q, %v", r, err)
		}
	})
}

func TestDeferredReplyNeverSentTimesOutCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 22)
		ch := make(chan deferred, 1)
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, deferringHandler(ch)))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := a.Call(ctx, b.AddrPort(), []byte("wait forever"))
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrPeerUnreachable) {
			t.Fatalf("Call with an unanswered deferral = %v, want a no-reply DeadlineExceeded", err)
		}
		d := <-ch
		// A reply after the caller gave up is sent and dropped by the caller.
		if err := d.reply([]byte("too late")); err != nil {
			t.Fatalf("late deferred reply = %v", err)
		}
		synctest.Wait()
		if r, err := a.Call(context.Background(), b.AddrPort(), []byte("quick")); err != nil || string(r) != "now" {
			t.Fatalf("next Call = %q, %v", r, err)
		}
	})
}

func TestDeferredReplyAfterClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 23)
		ch := make(chan deferred, 1)
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, deferringHandler(ch)))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			_, err := a.Call(ctx, b.AddrPort(), []byte("wait"))
			errc <- err
		}()
		d := <-ch
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := d.reply([]byte("after close")); !errors.Is(err, ErrClosed) {
			t.Fatalf("deferred reply after Close = %v, want ErrClosed", err)
		}
		if err := d.reply([]byte("again")); !errors.Is(err, ErrReplied) {
			t.Fatalf("second deferred reply after Close = %v, want ErrReplied", err)
		}
		if err := <-errc; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Call to a closed endpoint = %v, want DeadlineExceeded", err)
		}
	})
}

func TestManyDeferredRepliesDoNotStarveHandlers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const waiting = 100
		n := newNet(t, 24)
		ch := make(chan deferred, waiting)
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		cfg := testConfig(t, 2, deferringHandler(ch))
		cfg.HandlerWorkers = 2
		cfg.InboxLen = 4
		b := start(t, listenMem(t, n, "127.0.0.2:1"), cfg)
		ctx := context.Background()
		var wg sync.WaitGroup
		for i := range waiting {
			wg.Go(func() {
				req := fmt.Sprintf("wait %d", i)
				r, err := a.Call(ctx, b.AddrPort(), []byte(req))
				if err != nil || string(r) != "re: "+req {
					t.Errorf("deferred Call %d = %q, %v", i, r, err)
				}
			})
		}
		var ds []deferred
		for range waiting {
			ds = append(ds, <-ch)
		}
		// Every request waits for its reply, none holds a worker: a new
		// request is answered at once.
		qctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		r, err := a.Call(qctx, b.AddrPort(), []byte("quick"))
		cancel()
		if err != nil || string(r) != "now" {
			t.Fatalf("Call while %d replies are deferred = %q, %v", waiting, r, err)
		}
		for _, d := range ds {
			go func() {
				if err := d.reply([]byte("re: " + string(d.m.Payload))); err != nil {
					t.Errorf("deferred reply = %v", err)
				}
			}()
		}
		wg.Wait()
	})
}

func TestDeferOutsideCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 25)
		type seen struct {
			isCall bool
			err    error
		}
		got := make(chan seen, 2)
		var late func([]byte) error
		var mu sync.Mutex
		a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		b := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, func(_ context.Context, m Message) []byte {
			if m.IsCall() {
				mu.Lock()
				late = func(p []byte) error { return m.Defer()(p) } // Defer after returning
				mu.Unlock()
				got <- seen{isCall: true}
				return []byte("sync")
			}
			got <- seen{isCall: false, err: m.Defer()([]byte("to nobody"))}
			return nil
		}))
		ctx := context.Background()
		if err := a.Send(ctx, b.AddrPort(), []byte("one-way")); err != nil {
			t.Fatal(err)
		}
		if s := <-got; s.isCall || s.err != nil {
			t.Fatalf("one-way message: IsCall %v, Defer()(...) = %v; want false, nil", s.isCall, s.err)
		}
		if r, err := a.Call(ctx, b.AddrPort(), []byte("call")); err != nil || string(r) != "sync" {
			t.Fatalf("Call = %q, %v", r, err)
		}
		<-got
		mu.Lock()
		defer mu.Unlock()
		if err := late([]byte("again")); !errors.Is(err, ErrReplied) {
			t.Fatalf("Defer after the handler's reply was sent: reply = %v, want ErrReplied", err)
		}
		synctest.Wait()
		if s := a.Stats(); s.MessagesReceived != 1 {
			t.Fatalf("caller received %d messages, want the one reply", s.MessagesReceived)
		}
	})
}

// TestHandlersCallingOutWithAllWorkersBusy: handlers that Call another
// endpoint and wait for its reply occupy every worker; the replies (and the
// acks Send waits for) must still be read.
func TestHandlersCallingOutWithAllWorkersBusy(t *testing.T) {
	for _, workers := range []int{1, 3} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newNet(t, 26)
				c := start(t, listenMem(t, n, "127.0.0.3:1"), testConfig(t, 3, echo))
				var b *Endpoint // set before any request is sent
				cfg := testConfig(t, 2, func(ctx context.Context, m Message) []byte {
					r, err := b.Call(ctx, c.AddrPort(), m.Payload)
					if err != nil {
						return []byte(err.Error())
					}
					if err := b.Send(ctx, c.AddrPort(), []byte("note")); err != nil {
						return []byte(err.Error())
					}
					return r
				})
				cfg.HandlerWorkers = workers
				b = start(t, listenMem(t, n, "127.0.0.2:1"), cfg)
				a := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				var wg sync.WaitGroup
				for i := range 3 * workers {
					wg.Go(func() {
						req := fmt.Sprintf("relay %d", i)
						if r, err := a.Call(ctx, b.AddrPort(), []byte(req)); err != nil || string(r) != req {
							t.Errorf("relayed Call %d = %q, %v", i, r, err)
						}
					})
				}
				wg.Wait()
			})
		})
	}
}
