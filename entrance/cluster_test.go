package entrance

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node"
)

// liveNode is a node.Node running on loopback in this process.
type liveNode struct {
	n      *node.Node
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned, with err set
	err    error
}

// stop stops the node and waits for it; idempotent.
func (l *liveNode) stop(t *testing.T) {
	t.Helper()
	l.cancel()
	waitClosed(t, "node Run to return", l.done)
	if l.err != nil {
		t.Errorf("node Run: %v", l.err)
	}
}

// waitClosed waits for done to be closed, at most 30 s: a shutdown that
// hangs fails the test with every goroutine's stack at once instead of
// running into the go test timeout.
func waitClosed(t *testing.T, what string, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("timed out waiting for %s; goroutines:\n%s", what, buf[:runtime.Stack(buf, true)])
	}
}

// waitLong polls cond until it holds or 30 s pass (real nodes, loaded CI).
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAutopilotWithNodes runs the entrance with four real nodes
// (node.Node over rudp on loopback) and a voter limit of 3: a follower
// that stops is seen down by pings, removed after the grace period, shows
// removed, and the learner is promoted in its place; then the leader
// stops: the new leader is seen and the old one removed too, leaving two
// live voters.
func TestAutopilotWithNodes(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newTest(t, t.TempDir(), nil, nil, func(c *Config) {
		c.PacketConn, c.Voters = pc, 3
		c.PingInterval, c.SuspectAfter, c.DownAfter, c.DownGrace = 100*time.Millisecond, 400*time.Millisecond, 800*time.Millisecond, time.Second
		c.RetryInterval = 50 * time.Millisecond
	})
	entranceAddr := netip.MustParseAddrPort(pc.LocalAddr().String())
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	runDone := make(chan struct{})
	go func() { runErr = e.Run(ctx); close(runDone) }()
	defer func() {
		cancel()
		waitClosed(t, "the entrance's Run to return", runDone)
		if runErr != nil {
			t.Errorf("Run: %v", runErr)
		}
	}()

	nodes := map[string]*liveNode{}
	for i := 1; i <= 4; i++ {
		name := fmt.Sprintf("n%d", i)
		npc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n, err := node.New(node.Config{Name: name, DataDir: t.TempDir(), PacketConn: npc, Entrance: entranceAddr,
			TickInterval: 20 * time.Millisecond, ReportInterval: 100 * time.Millisecond, NoSync: true, Seed: uint64(i),
			Logger: testLogger(t).With("node", name)})
		if err != nil {
			t.Fatal(err)
		}
		nctx, ncancel := context.WithCancel(context.Background())
		l := &liveNode{n: n, cancel: ncancel, done: make(chan struct{})}
		go func() { l.err = n.Run(nctx); close(l.done) }()
		nodes[name] = l
		defer l.stop(t)
		if i == 1 {
			// n1 founds the cluster before the others join.
			waitLong(t, "n1 to lead", func() bool { id, _, _ := e.Leader(); return id != 0 })
		}
	}
	view := func() map[string]string {
		out := map[string]string{}
		for _, p := range e.Peers() {
			out[p.Name] = p.Role + "/" + p.Liveness
		}
		return out
	}
	count := func(want string) int {
		k := 0
		for _, v := range view() {
			if v == want {
				k++
			}
		}
		return k
	}
	waitLong(t, "1 leader, 2 followers, 1 learner, all alive", func() bool {
		return count("leader/alive") == 1 && count("follower/alive") == 2 && count("learner/alive") == 1
	})
	var follower, learner, leader string
	for name, v := range view() {
		switch v {
		case "follower/alive":
			follower = name
		case "learner/alive":
			learner = name
		case "leader/alive":
			leader = name
		}
	}
	t.Logf("cluster: %v", view())

	start := time.Now()
	nodes[follower].stop(t)
	waitLong(t, follower+" removed and "+learner+" promoted", func() bool {
		v := view()
		return v[follower] == "follower/removed" && v[learner] == "follower/alive"
	})
	// Measured from its last sign of life as the entrance recorded it (a
	// pong or a report just before or after the stop), not from the stop.
	for _, r := range e.Records() {
		if d := time.Since(r.LastSeen()); r.Name == follower && d < 1800*time.Millisecond {
			t.Fatalf("%s removed %v after it was last seen; DownAfter + DownGrace is 1.8s", follower, d)
		}
	}
	t.Logf("%s removed after %v: %v", follower, time.Since(start).Round(time.Millisecond), view())

	oldID, _, oldTerm := e.Leader()
	start = time.Now()
	nodes[leader].stop(t)
	waitLong(t, "a new leader", func() bool { id, _, term := e.Leader(); return id != oldID && term > oldTerm })
	t.Logf("new leader seen %v after the leader stopped", time.Since(start).Round(time.Millisecond))
	waitLong(t, "the old leader "+leader+" removed", func() bool {
		return view()[leader] == "follower/removed" && count("leader/alive") == 1 && count("follower/alive") == 1
	})
	t.Logf("after the leader stopped: %v", view())
}
