package e2e

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// TestCASAcrossLeaderKill: compare-and-swaps whose condition can never hold
// (the compared value is never written) run while the leader is SIGKILLed
// and restarted again and again; none may report success. Retries of one
// CAS reach the cluster several times with the same (ClientID, Seq), so
// this checks that every duplicate is answered like the original
// (a kvstore bug once answered the second duplicate of a failed CAS "OK").
func TestCASAcrossLeaderKill(t *testing.T) {
	c := startCluster(t, 3)
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("raftkv-e2e-cas-%d.log", time.Now().UnixNano()))
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	lg := slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad, ok, failed atomic.Int64
	for id := range 6 {
		cl := c.client(client.Config{AttemptTimeout: 300 * time.Millisecond, Logger: lg.With("client", id)})
		defer cl.Close()
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("k%d", i%3)
				if i%2 == 0 {
					if _, err := cl.Put(t.Context(), k, fmt.Appendf(nil, "c%d-%d", id, i)); err == nil {
						ok.Add(1)
					}
					continue
				}
				res, err := cl.CAS(t.Context(), k, client.Compare{Target: client.CompareValue, Value: []byte("never")}, []byte("bad"), false)
				switch {
				case err == nil:
					bad.Add(1)
					t.Errorf("client %d: cas on %s reported success (revision %d)", id, k, res.Revision)
				case errors.Is(err, client.ErrCompareFailed):
					ok.Add(1)
				default:
					failed.Add(1)
				}
			}
		})
	}
	for range 6 {
		l := c.leader(20 * time.Second)
		waitFor(t, 10*time.Second, func() bool { return ok.Load() > 50 }, func() string { return "no progress" })
		ok.Store(0)
		c.nodes[l].Kill()
		c.nodes[l].Start()
	}
	close(stop)
	wg.Wait()
	if bad.Load() > 0 {
		t.Logf("%d wrong successes; client debug log: %s", bad.Load(), logPath)
		return
	}
	t.Logf("%d CASes ended without an answer", failed.Load())
	lf.Close()
	os.Remove(logPath)
}
