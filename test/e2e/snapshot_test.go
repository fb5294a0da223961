package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// TestKillDuringSnapshots: a cluster that snapshots every 20 entries (so
// that a snapshot is often being written, recorded or installed) is
// SIGKILLed as a whole three times while clients write; every restart
// recovers (a log naming a damaged snapshot file would be refused), every
// acknowledged write is there, and after a graceful stop each data dir
// holds exactly the one snapshot file its log names.
func TestKillDuringSnapshots(t *testing.T) {
	c := startClusterWith(t, 3, clusterOpts{nodeArgs: []string{"--snapshot-entries", "20"}})
	w := &writer{acked: map[string]string{}}
	for round := range 3 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var clients []*client.Client
		for id := range 4 {
			cl := c.client(client.Config{Timeout: 3 * time.Second})
			clients = append(clients, cl)
			wg.Go(func() { w.run(t, cl, 10*round+id, stop) })
		}
		target := w.n.Load() + 150
		waitFor(t, 30*time.Second, func() bool { return w.n.Load() >= target }, func() string {
			return fmt.Sprintf("round %d: only %d of %d writes acknowledged", round, w.n.Load(), target)
		})
		var kw sync.WaitGroup
		for _, p := range c.nodes {
			kw.Go(p.Kill)
		}
		kw.Wait()
		close(stop)
		wg.Wait()
		for _, cl := range clients {
			cl.Close()
		}
		for _, p := range c.nodes {
			p.Start()
		}
	}
	t.Logf("%d writes acknowledged over 3 kills", w.n.Load())
	cl := c.client(client.Config{Timeout: 20 * time.Second})
	defer cl.Close()
	w.mu.Lock()
	verifyAcked(t, cl, w.acked)
	w.mu.Unlock()
	for _, p := range c.nodes {
		log, err := os.ReadFile(p.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), `msg="snapshot created"`) {
			t.Fatalf("%s never created a snapshot:\n%s", p.Name, p.LogTail(30))
		}
		t.Logf("%s: %d snapshots created, %d installed, %d orphaned files removed at restarts", p.Name,
			strings.Count(string(log), `msg="snapshot created"`), strings.Count(string(log), `msg="snapshot installed" name=`),
			strings.Count(string(log), "no log record names"))
		p.Stop()
		es, err := os.ReadDir(filepath.Join(c.dir, p.Name, "snap"))
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 || !strings.HasSuffix(es[0].Name(), ".snap") {
			var names []string
			for _, e := range es {
				names = append(names, e.Name())
			}
			t.Fatalf("%s: snapshot dir holds %v after a graceful stop, want one .snap file", p.Name, names)
		}
	}
}
