package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/entrance"
	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/node"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a bytes.Buffer safe for the logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no name", []string{"--data-dir", dir, "--entrance", "127.0.0.1:1"}, nil, "--name is required"},
		{"no data dir", []string{"--name", "n1", "--entrance", "127.0.0.1:1"}, nil, "--data-dir is required"},
		{"limited broadcast", []string{"--name", "n1", "--data-dir", dir, "--discovery-addr", "255.255.255.255"}, nil, "not 255.255.255.255"},
		{"bad discovery addr", []string{"--name", "n1", "--data-dir", dir, "--discovery-addr", "10.0.0.255,nowhere"}, nil, "--discovery-addr \"nowhere\""},
		{"bad discovery port", []string{"--name", "n1", "--data-dir", dir, "--discovery-port", "0"}, nil, "--discovery-port 0"},
		{"bad entrance", []string{"--name", "n1", "--data-dir", dir, "--entrance", "nowhere"}, nil, "want ip:port"},
		{"bad env", []string{"--name", "n1", "--data-dir", dir}, map[string]string{"RAFTD_TICK_INTERVAL": "soon"}, "RAFTD_TICK_INTERVAL"},
		{"bad flag", []string{"--bogus"}, nil, "unknown flag"},
		{"argument", []string{"extra"}, nil, "unexpected argument"},
		{"empty secret", []string{"--name", "n1", "--data-dir", dir, "--entrance", "127.0.0.1:1", "--secret-file", empty}, nil, "is empty"},
		{"unspecified listen", []string{"--name", "n1", "--data-dir", dir, "--entrance", "127.0.0.1:1", "--listen", "0.0.0.0:0"}, nil, "give --advertise"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), tt.args, io.Discard, &stderr, envOf(tt.env), nil)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr: %s", code, exitUsage, stderr.String())
			}
			if !strings.HasPrefix(stderr.String(), "Error: ") || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr %q does not mention %q", stderr.String(), tt.want)
			}
		})
	}
}

// startEntrance runs the real entrance in-process on loopback.
func startEntrance(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startEntranceOn(t, pc)
}

// startEntranceOn runs the real entrance in-process on pc.
func startEntranceOn(t *testing.T, pc net.PacketConn) string {
	t.Helper()
	e, err := entrance.New(entrance.Config{DataDir: t.TempDir(), PacketConn: pc, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("entrance: %v", err)
		}
		e.Close()
	})
	return pc.LocalAddr().String()
}

type daemon struct {
	name   string
	cancel context.CancelFunc
	done   chan int
	stderr *syncBuffer
	node   *node.Node
	http   net.Addr
}

func startDaemon(t *testing.T, name, dir string, env map[string]string, args ...string) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{name: name, cancel: cancel, done: make(chan int, 1), stderr: &syncBuffer{}}
	type readyInfo struct {
		n    *node.Node
		http net.Addr
	}
	readyc := make(chan readyInfo, 1)
	args = append([]string{"--name", name, "--listen", "127.0.0.1:0", "--tick-interval", "20ms"}, args...)
	if env == nil {
		env = map[string]string{}
	}
	env["RAFTD_DATA_DIR"] = dir
	go func() {
		d.done <- run(ctx, args, io.Discard, d.stderr, envOf(env), func(n *node.Node, h net.Addr) { readyc <- readyInfo{n, h} })
	}()
	select {
	case ri := <-readyc:
		d.node, d.http = ri.n, ri.http
	case code := <-d.done:
		cancel()
		t.Fatalf("%s exited %d before serving:\n%s", name, code, d.stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("%s did not serve:\n%s", name, d.stderr.String())
	}
	return d
}

// stop sends the equivalent of SIGTERM and returns the exit status.
func (d *daemon) stop() int {
	d.cancel()
	return <-d.done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterThroughEntrance runs the real entrance and three raftd
// in-process: the first node bootstraps, the others are admitted as
// learners and promoted, writes replicate, a restart keeps the identity,
// a duplicate name is refused with exit 4, and SIGTERM exits 0.
func TestClusterThroughEntrance(t *testing.T) {
	ent := startEntrance(t)
	env := map[string]string{"RAFTD_ENTRANCE": ent}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	var ds []*daemon
	for i, dir := range dirs {
		ds = append(ds, startDaemon(t, fmt.Sprintf("n%d", i+1), dir, env, "--http", "127.0.0.1:0"))
	}
	defer func() {
		for _, d := range ds {
			if d != nil {
				d.stop()
			}
		}
	}()
	leader := func() *daemon {
		for _, d := range ds {
			if d != nil && d.node.IsLeader() {
				return d
			}
		}
		return nil
	}
	waitFor(t, "three voters", func() bool {
		l := leader()
		if l == nil {
			return false
		}
		voters, _, err := l.node.Membership(context.Background())
		return err == nil && len(voters) == 3
	})
	if !strings.Contains(ds[0].stderr.String(), "bootstrapped a one-node cluster") ||
		!strings.Contains(ds[1].stderr.String(), "admitted") || !strings.Contains(ds[0].stderr.String(), "became leader") {
		t.Fatalf("missing log lines:\n%s\n%s", ds[0].stderr.String(), ds[1].stderr.String())
	}
	// The HTTP status of the leader.
	l := leader()
	resp, err := http.Get("http://" + l.http.String() + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st proto.NodeStatus
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Role != "leader" || st.Name != l.name {
		t.Fatalf("/v1/status: %+v, %v", st, err)
	}
	if resp, err := http.Get("http://" + l.http.String() + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	put := proto.ClientRequest{ClientID: 5, Seq: 1, Op: proto.OpPut, Key: []byte("hello"), Value: []byte("world")}
	if r := leader().node.Do(context.Background(), put); r.Code != proto.CodeOK {
		t.Fatalf("put: %v %s", r.Code, r.Message)
	}
	// Restart n3 from its data dir: same ID, it catches up.
	id3 := ds[2].node.ID()
	if code := ds[2].stop(); code != exitOK {
		t.Fatalf("n3 exit %d after SIGTERM:\n%s", code, ds[2].stderr.String())
	}
	if !strings.Contains(ds[2].stderr.String(), "raftd stopped") {
		t.Fatalf("no clean stop in n3's log:\n%s", ds[2].stderr.String())
	}
	ds[2] = startDaemon(t, "n3", dirs[2], env, "--http", "127.0.0.1:0")
	if ds[2].node.ID() != id3 {
		t.Fatalf("n3 came back as %016x, was %016x", ds[2].node.ID(), id3)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range ds {
				if d != nil {
					t.Logf("%s log:\n%s", d.name, d.stderr.String())
				}
			}
		}
	})
	waitFor(t, "n3 catches up", func() bool {
		r := ds[2].node.Do(context.Background(), proto.ClientRequest{Op: proto.OpGet, Key: []byte("hello"), Serializable: true})
		return r.Code == proto.CodeOK && string(r.KVs[0].Value) == "world"
	})
	waitFor(t, "n3 rejoined", func() bool { return strings.Contains(ds[2].stderr.String(), "rejoined") })

	// A different node with a known name is refused: exit 4.
	var stderr syncBuffer
	code := run(context.Background(), []string{"--name", "n1", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()},
		io.Discard, &stderr, envOf(env), nil)
	if code != exitRefused {
		t.Fatalf("duplicate name: exit %d, want %d:\n%s", code, exitRefused, stderr.String())
	}
}

// A node removed from the membership while it was down, restarted on its
// old data dir, learns it from the entrance and exits 0 ("removed from the
// cluster; stopping"), as documented, each time it is started. It used to
// keep running, refused by the entrance. (The entrance's word is not
// recorded in node.db: its registry can lag the configuration for a
// moment, and a live voter must be able to start again.)
func TestRemovedNodeRestartedExits(t *testing.T) {
	ent := startEntrance(t)
	env := map[string]string{"RAFTD_ENTRANCE": ent}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	var ds []*daemon
	for i, dir := range dirs {
		ds = append(ds, startDaemon(t, fmt.Sprintf("n%d", i+1), dir, env))
	}
	defer ds[0].stop()
	defer ds[1].stop()
	waitFor(t, "three voters", func() bool {
		voters, _, err := ds[0].node.Membership(context.Background())
		return err == nil && len(voters) == 3
	})
	id3 := ds[2].node.ID()
	if code := ds[2].stop(); code != exitOK {
		t.Fatalf("n3 exit %d after SIGTERM:\n%s", code, ds[2].stderr.String())
	}
	waitFor(t, "n3 removed by the leader", func() bool {
		for _, d := range ds[:2] {
			if d.node.IsLeader() {
				return d.node.Admin(context.Background(), proto.AdminRequest{Op: proto.AdminRemove, NodeID: id3}).Code == proto.CodeOK
			}
		}
		return false
	})
	c, err := client.New(context.Background(), client.Config{Entrance: ent, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the entrance lists n3 as removed", func() bool {
		peers, err := c.ListPeers(context.Background())
		return err == nil && slices.ContainsFunc(peers, func(p client.Peer) bool { return p.Name == "n3" && p.Liveness == "removed" })
	})
	for i, want := range []string{"the entrance says this node was removed", "the entrance says this node was removed"} {
		var stderr syncBuffer
		done := make(chan int, 1)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			done <- run(ctx, []string{"--name", "n3", "--listen", "127.0.0.1:0", "--tick-interval", "20ms"}, io.Discard, &stderr,
				envOf(map[string]string{"RAFTD_ENTRANCE": ent, "RAFTD_DATA_DIR": dirs[2]}), nil)
		}()
		select {
		case code := <-done:
			out := stderr.String()
			if code != exitOK || !strings.Contains(out, want) || !strings.Contains(out, "removed from the cluster; stopping") {
				t.Fatalf("start %d of the removed n3: exit %d; want 0, %q and the stop:\n%s", i+1, code, want, out)
			}
		case <-time.After(10 * time.Second):
			cancel()
			<-done
			t.Fatalf("start %d of the removed n3 kept running:\n%s", i+1, stderr.String())
		}
		cancel()
	}
}
