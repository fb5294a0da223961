package rudp

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftkv/raftkv/internal/faultnet"
)

// streamTime sends 64 messages of 64 KiB with 16 concurrent senders over
// links with a 100µs delay and the given loss, and returns the virtual time
// it took and the retransmissions.
func streamTime(t *testing.T, loss float64) (time.Duration, uint64, uint64) {
	var took time.Duration
	var retx, dropped uint64
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, 1)
		n.SetDefault(faultnet.Link{Drop: loss, Delay: 100 * time.Microsecond})
		srv := start(t, listenMem(t, n, "127.0.0.1:1"), testConfig(t, 1, nil))
		cli := start(t, listenMem(t, n, "127.0.0.2:1"), testConfig(t, 2, nil))
		msg := make([]byte, 64<<10)
		ctx := context.Background()
		if err := cli.Send(ctx, srv.AddrPort(), []byte("hello")); err != nil {
			t.Fatal(err)
		}
		before, dropBefore := cli.Stats().Retransmits, n.Stats().Dropped
		t0 := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for next.Add(1) <= 64 {
					if err := cli.Send(ctx, srv.AddrPort(), msg); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		took, retx, dropped = time.Since(t0), cli.Stats().Retransmits-before, n.Stats().Dropped-dropBefore
	})
	return took, retx, dropped
}

// TestLossRecoveryKeepsThePipeFull checks, in virtual time, that 10% loss
// costs little more than the lost datagrams: losses are found from acks
// (also while only resent fragments are in flight) instead of waiting for
// retransmission timeouts, and few fragments are resent needlessly.
func TestLossRecoveryKeepsThePipeFull(t *testing.T) {
	clean, retx0, _ := streamTime(t, 0)
	lossy, retx, dropped := streamTime(t, 0.1)
	t.Logf("loss-free %v (%d resent), 10%% loss %v (%d resent, %d datagrams dropped)", clean, retx0, lossy, retx, dropped)
	if lossy > 2*clean {
		t.Errorf("10%% loss took %v, more than twice the loss-free %v", lossy, clean)
	}
	if retx0 != 0 {
		t.Errorf("%d fragments resent without loss", retx0)
	}
	if retx > 2*dropped {
		t.Errorf("%d fragments resent for %d dropped datagrams", retx, dropped)
	}
}
