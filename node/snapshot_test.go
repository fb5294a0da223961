package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/faultnet"
	"github.com/raftkv/raftkv/internal/proto"
)

// snapGate holds a node's background snapshot writer: the first write
// (or every write, with all) signals entered and blocks until release is
// closed or the write is cancelled.
type snapGate struct {
	all     bool
	entered chan struct{} // closed at the first write
	release chan struct{}
	once    sync.Once
	relOnce sync.Once
	calls   atomic.Int64
}

// open releases the held writer (idempotent). Tests register it as a
// cleanup after newCluster, so that it runs before the nodes stop: an
// implementation that waits for the writer on the loop then fails the
// test instead of hanging it.
func (g *snapGate) open() { g.relOnce.Do(func() { close(g.release) }) }

func newSnapGate(all bool) *snapGate {
	return &snapGate{all: all, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *snapGate) hook(ctx context.Context) error {
	if g.calls.Add(1) > 1 && !g.all {
		return nil
	}
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *snapGate) wait(t *testing.T) {
	t.Helper()
	waitFor(t, "the background snapshot writer to start", func() bool {
		select {
		case <-g.entered:
			return true
		default:
			return false
		}
	})
}

// snapDirFiles lists the node's snapshot directory.
func snapDirFiles(t *testing.T, tn *tnode) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(tn.dir, "snap"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestSnapshotWriteDoesNotBlockTheLoop: while a snapshot is being written
// (the writer is held by a hook), the one node of the cluster keeps
// serving writes and linearizable reads, which all go through its loop.
// The snapshot recorded afterwards is the state pinned when it started,
// and a restart recovers from it.
func TestSnapshotWriteDoesNotBlockTheLoop(t *testing.T) {
	gate := newSnapGate(false)
	c := newCluster(t, 1, func(c *cluster) {
		c.tune = func(cfg *Config) {
			cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 20, 5
			cfg.snapWriteHook = gate.hook
		}
	})
	t.Cleanup(gate.open)
	tn := c.node(1)
	seq := uint64(0)
	// served runs req on the node, failing the test (instead of hanging
	// it: Node.Do waits for the loop) when the loop does not serve it.
	served := func(req proto.ClientRequest) proto.ClientResponse {
		t.Helper()
		ch := make(chan proto.ClientResponse, 1)
		go func() {
			for {
				r := tn.n.Do(context.Background(), req)
				if r.Code != proto.CodeUnavailable && r.Code != proto.CodeNotLeader {
					ch <- r
					return
				}
				time.Sleep(5 * time.Millisecond) // a leader being elected
			}
		}()
		select {
		case r := <-ch:
			return mustOK(t, r)
		case <-time.After(30 * time.Second):
			t.Fatalf("%v %q not served in 30s: the loop is blocked", req.Op, req.Key)
			return proto.ClientResponse{}
		}
	}
	putN := func(n int) {
		for range n {
			seq++
			served(put(91, seq, fmt.Sprintf("k%03d", seq), fmt.Sprint(seq)))
		}
	}
	putN(25)
	gate.wait(t)
	before := tn.n.snapIndexForTest()
	// The writer is held: the loop must serve on.
	putN(40)
	if kv := served(get("k065")).KVs; len(kv) != 1 || string(kv[0].Value) != "65" {
		t.Fatalf("linearizable read during the snapshot write: %+v", kv)
	}
	if got := tn.n.snapIndexForTest(); got != before {
		t.Fatalf("snapshot index moved from %d to %d while the writer was held", before, got)
	}
	applied := tn.n.kv.Applied()
	gate.open()
	waitFor(t, "the held snapshot to be recorded", func() bool { return tn.n.snapIndexForTest() > before })
	if got := tn.n.snapIndexForTest(); got >= applied {
		t.Fatalf("recorded snapshot at %d, want the index pinned before the 40 puts (< %d)", got, applied)
	}
	for _, name := range snapDirFiles(t, tn) {
		if strings.HasSuffix(name, ".tmp") {
			t.Fatalf("temporary snapshot file %s left behind", name)
		}
	}
	c.stop(tn)
	c.start(tn, tn.addr)
	putN(1)
	for i := uint64(1); i <= seq; i++ {
		if kv := mustOK(t, c.do(get(fmt.Sprintf("k%03d", i)))).KVs; len(kv) != 1 || string(kv[0].Value) != fmt.Sprint(i) {
			t.Fatalf("k%03d after restart: %+v", i, kv)
		}
	}
}

// TestCloseDuringSnapshotWrite: a node closed while its snapshot writer is
// held stops cleanly (the write is cancelled, its file removed, no
// goroutine left: goleak), and restarts with its data.
func TestCloseDuringSnapshotWrite(t *testing.T) {
	gate := newSnapGate(true) // never released: only a cancel ends it
	c := newCluster(t, 1, func(c *cluster) {
		c.tune = func(cfg *Config) {
			cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 10, 2
			cfg.snapWriteHook = gate.hook
		}
	})
	t.Cleanup(gate.open)
	tn := c.node(1)
	for i := range 12 {
		mustOK(t, c.do(put(92, uint64(i+1), fmt.Sprintf("k%d", i), "v")))
	}
	gate.wait(t)
	c.stop(tn) // fails the test if Run returns an error
	files := snapDirFiles(t, tn)
	if len(files) != 1 || !strings.HasSuffix(files[0], ".snap") {
		t.Fatalf("after closing during a snapshot write the snapshot dir holds %v, want the bootstrap snapshot only", files)
	}
	c.tune = func(cfg *Config) { cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 10, 2 }
	c.start(tn, tn.addr)
	for i := range 12 {
		mustOK(t, c.do(put(92, uint64(i+13), fmt.Sprintf("k%d", i+12), "v")))
	}
	waitFor(t, "a snapshot after the restart", func() bool { return tn.n.snapIndexForTest() > 1 })
	if kv := mustOK(t, c.do(get("k0"))).KVs; len(kv) != 1 {
		t.Fatalf("k0 after the restart: %+v", kv)
	}
}

// TestSnapshotWriteFailureIsRetried: a failed snapshot write is not fatal:
// the node keeps serving and tries again later.
func TestSnapshotWriteFailureIsRetried(t *testing.T) {
	var calls atomic.Int64
	c := newCluster(t, 1, func(c *cluster) {
		c.tune = func(cfg *Config) {
			cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 16, 4
			cfg.snapWriteHook = func(context.Context) error {
				if calls.Add(1) <= 2 {
					return errors.New("disk full (test)")
				}
				return nil
			}
		}
	})
	tn := c.node(1)
	seq := uint64(0)
	waitFor(t, "a snapshot after two failed writes", func() bool {
		seq++
		mustOK(t, c.do(put(93, seq, "k", fmt.Sprint(seq))))
		return tn.n.snapIndexForTest() > 1
	})
	if n := calls.Load(); n < 3 {
		t.Fatalf("snapshot recorded after %d writes, want the two failures first", n)
	}
	for _, name := range snapDirFiles(t, tn) {
		if strings.HasSuffix(name, ".tmp") {
			t.Fatalf("a failed write left %s behind", name)
		}
	}
}

// TestSnapshotFollowerInstallsWhileWriting: a follower whose own snapshot
// writer is held falls behind the leader's compacted log and receives the
// leader's snapshot; the install cancels the follower's write (which pins
// the store the install replaces) instead of waiting for it forever, and
// the follower catches up.
func TestSnapshotFollowerInstallsWhileWriting(t *testing.T) {
	fn := faultnet.New(11)
	t.Cleanup(func() { fn.Close() })
	gate := newSnapGate(true) // never released: only a cancel ends it
	c := newCluster(t, 3, func(c *cluster) {
		c.wrap = func(pc net.PacketConn) net.PacketConn { return fn.Wrap(pc) }
		c.tune = func(cfg *Config) {
			cfg.SnapshotEntries, cfg.SnapshotCatchUpEntries = 20, 2
			if cfg.Name == "n3" {
				cfg.snapWriteHook = gate.hook
			}
		}
	})
	t.Cleanup(gate.open)
	n3 := c.node(3)
	// Write until n3 starts a snapshot of its own (where depends on how it
	// joined: by the leader's snapshot or by entries).
	seq := uint64(0)
	waitFor(t, "n3 to start a snapshot write", func() bool {
		seq++
		mustOK(t, c.do(put(94, seq, fmt.Sprintf("a%02d", seq), "v")))
		select {
		case <-gate.entered:
			return true
		default:
			return false
		}
	})
	fn.Isolate(n3.addr)
	n3.joined = false
	behind := n3.n.kv.Applied()
	lead := c.waitLeader()
	waitFor(t, "the leader to compact past n3", func() bool {
		seq++
		mustOK(t, c.do(put(94, seq, fmt.Sprintf("b%02d", seq), "v")))
		return lead.n.snapIndexForTest() > behind+2
	})
	fn.Heal()
	n3.joined = true
	waitFor(t, "n3 installs the leader's snapshot and catches up", func() bool {
		v, code := localValue(n3, fmt.Sprintf("b%02d", seq))
		return code == proto.CodeOK && v == "v"
	})
	if gate.calls.Load() == 0 {
		t.Fatal("n3 never started a snapshot write")
	}
}
