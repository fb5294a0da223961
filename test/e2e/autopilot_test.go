package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// seqWriter puts keys prefix/000000, prefix/000001, ... one at a time until
// stopped, and remembers which were acknowledged and which failed.
type seqWriter struct {
	t      *testing.T
	prefix string
	stopc  chan struct{}
	done   chan struct{}

	mu    sync.Mutex
	acked []string
	fails []string
}

func startWriter(t *testing.T, c *cluster, prefix string) *seqWriter {
	t.Helper()
	w := &seqWriter{t: t, prefix: prefix, stopc: make(chan struct{}), done: make(chan struct{})}
	cl := c.client(client.Config{Entrance: c.entrAddr, Timeout: 10 * time.Second})
	go func() {
		defer close(w.done)
		defer cl.Close()
		for i := 0; ; i++ {
			select {
			case <-w.stopc:
				return
			default:
			}
			key := fmt.Sprintf("%s/%06d", prefix, i)
			_, err := cl.Put(context.Background(), key, []byte(key))
			w.mu.Lock()
			if err != nil {
				w.fails = append(w.fails, fmt.Sprintf("%s: %v", key, err))
			} else {
				w.acked = append(w.acked, key)
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.stop)
	return w
}

// stop ends the writer and waits for its last write.
func (w *seqWriter) stop() {
	select {
	case <-w.stopc:
	default:
		close(w.stopc)
	}
	<-w.done
}

func (w *seqWriter) counts() (acked, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked), len(w.fails)
}

// waitMore waits until n more writes than now were acknowledged.
func (w *seqWriter) waitMore(n int, timeout time.Duration) {
	w.t.Helper()
	start, _ := w.counts()
	waitFor(w.t, timeout, func() bool { a, _ := w.counts(); return a >= start+n }, func() string {
		a, f := w.counts()
		return fmt.Sprintf("writer: %d acknowledged (want %d), %d failed: %v", a, start+n, f, w.failures())
	})
}

func (w *seqWriter) failures() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.fails)
}

func (w *seqWriter) ackedKeys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acked)
}

func peerByName(peers []client.Peer, name string) (client.Peer, bool) {
	for _, p := range peers {
		if p.Name == name {
			return p, true
		}
	}
	return client.Peer{}, false
}

// voters counts the listed leader and followers that are not removed.
func voters(peers []client.Peer) int {
	n := 0
	for _, p := range peers {
		if p.Liveness != "removed" && (p.Role == "leader" || p.Role == "follower") {
			n++
		}
	}
	return n
}

// TestAutopilotRemovesKilledNode: with --voters 3, a fourth node stays a
// learner. A follower voter is SIGKILLed and never restarted: list-peers
// shows it down, then removed after --down-grace, and the learner is
// promoted so there are three voters again; a seqWriter keeps getting its
// writes acknowledged throughout, and none is lost.
func TestAutopilotRemovesKilledNode(t *testing.T) {
	c := startClusterWith(t, 3, clusterOpts{entranceArgs: []string{"--voters", "3", "--ping-interval", "250ms",
		"--suspect-after", "1s", "--down-after", "2s", "--down-grace", "2s"}})
	c.addNode("n4")
	var peers []client.Peer
	waitFor(t, 20*time.Second, func() bool {
		var err error
		peers, err = c.listPeers(t.Context())
		p, ok := peerByName(peers, "n4")
		return err == nil && ok && p.Role == "learner" && p.Liveness == "alive" && voters(peers) == 3
	}, func() string { return fmt.Sprintf("n4 not listed as an alive learner beside 3 voters: %+v", peers) })

	w := startWriter(t, c, "ap")
	w.waitMore(20, 20*time.Second)

	lead := c.leader(10 * time.Second)
	victim := (lead + 1) % 3 // a follower voter (n1..n3)
	name := c.nodes[victim].Name
	c.nodes[victim].Kill()
	t0 := time.Now()

	var (
		seenDown              bool
		seenDownAt, removedAt time.Duration
	)
	waitFor(t, 30*time.Second, func() bool {
		ps, err := c.listPeers(t.Context())
		if err != nil {
			return false
		}
		peers = ps
		p, ok := peerByName(ps, name)
		switch {
		case !ok:
			return false
		case p.Liveness == "down" && !seenDown:
			seenDown, seenDownAt = true, time.Since(t0)
		case p.Liveness == "removed" && removedAt == 0:
			removedAt = time.Since(t0)
		}
		n4, _ := peerByName(ps, "n4")
		return removedAt != 0 && n4.Role == "follower" && n4.Liveness == "alive" && voters(ps) == 3
	}, func() string {
		return fmt.Sprintf("after killing %s: want it removed and n4 promoted to 3 voters; list-peers %+v", name, peers)
	})
	if !seenDown || seenDownAt > removedAt {
		t.Fatalf("%s was removed (after %v) without being listed down first", name, removedAt)
	}
	t.Logf("%s listed down after %v, removed after %v; n4 promoted", name, seenDownAt, removedAt)

	// The leader's own view agrees: n4 votes, the victim is gone.
	for _, p := range peers {
		if p.Liveness != "removed" && p.Liveness != "alive" {
			t.Fatalf("after the removal a member is %s: %+v", p.Liveness, peers)
		}
	}
	w.waitMore(20, 20*time.Second)
	w.stop()
	acked, failed := w.counts()
	if failed != 0 {
		t.Fatalf("%d of %d writes failed while %s was killed and removed: %v", failed, acked+failed, name, w.failures())
	}
	// Every acknowledged write is there (linearizable read through the leader).
	cl := c.client(client.Config{Entrance: c.entrAddr, Timeout: 10 * time.Second})
	defer cl.Close()
	res, err := cl.Get(t.Context(), "ap/", client.GetOptions{Prefix: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.KVs) != acked {
		t.Fatalf("read %d keys, %d writes were acknowledged", len(res.KVs), acked)
	}
	// raftctl list-peers shows the same.
	out, errOut, code := c.raftctl("--entrance="+c.entrAddr, "list-peers")
	if code != 0 || !rowHas(out, name, "removed") || !rowHas(out, "n4", "follower", "alive") {
		t.Fatalf("raftctl list-peers: exit %d, stderr %q:\n%s", code, errOut, out)
	}
}

// rowHas reports whether the text table out has a row for name with every
// one of words as a field.
func rowHas(out, name string, words ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != name {
			continue
		}
		for _, w := range words {
			if !slices.Contains(f, w) {
				return false
			}
		}
		return true
	}
	return false
}

// TestJoinDuringWritesCatchUpBySnapshot: three nodes compact their log
// every 50 entries while a seqWriter runs; a fourth and fifth raftd start
// during the writes, are admitted and promoted (5 voters), install a
// snapshot (their log says so and their snapshot index is set) rather than
// replaying the whole log, and catch up: their applied index reaches the
// leader's commit and a serializable read on each sees every acknowledged
// write.
func TestJoinDuringWritesCatchUpBySnapshot(t *testing.T) {
	c := startClusterWith(t, 3, clusterOpts{nodeArgs: []string{"--snapshot-entries", "50"}})
	w := startWriter(t, c, "jw")
	stc := c.client(client.Config{Endpoints: c.addrs, AttemptTimeout: 500 * time.Millisecond, Timeout: 2 * time.Second})
	defer stc.Close()
	// Wait until the leader compacted past the start of the log (it keeps
	// 25 entries behind a snapshot), so joiners cannot get every entry.
	var lst *client.NodeStatus
	waitFor(t, 60*time.Second, func() bool {
		st, err := stc.Status(t.Context(), c.addrs[c.leader(10*time.Second)])
		if err == nil {
			lst = st
		}
		return err == nil && st.Snapshot >= 100 && st.LogEntries < st.LastIndex
	}, func() string { return fmt.Sprintf("leader's log not compacted past index 100: %+v", lst) })

	c.addNode("n4")
	c.addNode("n5")
	w.waitMore(10, 20*time.Second)
	c.waitFormed(5)
	w.waitMore(20, 20*time.Second)
	w.stop()
	acked, failed := w.counts()
	if failed != 0 {
		t.Fatalf("%d of %d writes failed while n4 and n5 joined: %v", failed, acked+failed, w.failures())
	}
	keys := w.ackedKeys()

	st, err := stc.Status(t.Context(), c.addrs[c.leader(10*time.Second)])
	if err != nil {
		t.Fatal(err)
	}
	commit := st.Commit
	for i := 3; i < 5; i++ {
		name, addr := c.nodes[i].Name, c.addrs[i]
		var nst *client.NodeStatus
		waitFor(t, 20*time.Second, func() bool {
			s, err := stc.Status(t.Context(), addr)
			if err == nil {
				nst = s
			}
			return err == nil && s.Applied >= commit
		}, func() string {
			return fmt.Sprintf("%s did not apply up to the leader's commit %d: %+v", name, commit, nst)
		})
		if nst.Snapshot == 0 {
			t.Fatalf("%s caught up without a snapshot: %+v", name, nst)
		}
		// Every new node installs the one-entry bootstrap snapshot (index
		// 1); a catch-up snapshot is one past the leader's compaction.
		if idx := installedSnapshot(t, c.nodes[i]); idx < 100 {
			t.Fatalf("%s installed no snapshot at index >= 100 (highest %d):\n%s", name, idx, c.nodes[i].LogTail(30))
		}
		rc := c.client(client.Config{Endpoints: []string{addr}, Timeout: 5 * time.Second})
		res, err := rc.Get(t.Context(), "jw/", client.GetOptions{Prefix: true, Serializable: true})
		rc.Close()
		if err != nil {
			t.Fatalf("serializable read on %s: %v", name, err)
		}
		got := make([]string, 0, len(res.KVs))
		for _, kv := range res.KVs {
			got = append(got, kv.Key)
		}
		for _, k := range keys {
			if _, ok := slices.BinarySearch(got, k); !ok {
				t.Fatalf("serializable read on %s (applied %d >= commit %d) misses acknowledged %s; it has %d keys",
					name, nst.Applied, commit, k, len(got))
			}
		}
		t.Logf("%s: snapshot index %d, applied %d, %d keys, log entries %d", name, nst.Snapshot, nst.Applied, len(got), nst.LogEntries)
	}
	peers, err := c.listPeers(t.Context())
	if err != nil || voters(peers) != 5 {
		t.Fatalf("list-peers: %v, %+v; want 5 voters", err, peers)
	}

	// raftctl status shows the log size and rudp counters of every node.
	out, errOut, code := c.raftctl("--entrance="+c.entrAddr, "-o", "json", "status")
	var rows []struct {
		Name       string `json:"name"`
		Snapshot   uint64 `json:"snapshot_index"`
		LastIndex  uint64 `json:"last_index"`
		LogEntries uint64 `json:"log_entries"`
		LogBytes   int64  `json:"log_bytes"`
		Sent       uint64 `json:"rudp_sent"`
		Received   uint64 `json:"rudp_received"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != 0 || len(rows) != 5 {
		t.Fatalf("status -o json: exit %d, %v, stderr %q:\n%s", code, err, errOut, out)
	}
	for _, r := range rows {
		if r.LogEntries == 0 || r.LogEntries >= r.LastIndex || r.LogBytes <= 0 || r.Sent == 0 || r.Received == 0 {
			t.Fatalf("status of %s: %+v; want a compacted log (0 < log_entries < last_index), log_bytes and rudp counters", r.Name, r)
		}
	}
}

// installedSnapshot returns the highest index of the "snapshot installed"
// lines in p's log (0: none).
func installedSnapshot(t *testing.T, p *proc) uint64 {
	t.Helper()
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	var best uint64
	for _, m := range snapInstalled.FindAllStringSubmatch(string(b), -1) {
		if i, err := strconv.ParseUint(m[1], 10, 64); err == nil && i > best {
			best = i
		}
	}
	return best
}

var snapInstalled = regexp.MustCompile(`msg="snapshot installed" name=\S+ node_id=\S+ index=(\d+) `)
