package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/internal/sdnotify"
	"github.com/raftkv/raftkv/node"
)

// listenNotify binds a unixgram socket in a temporary directory, as
// systemd's notify socket, and returns it with its path.
func listenNotify(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

// nextNotify returns the next datagram on the notify socket.
func nextNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// queuedNotify returns the datagrams waiting on the notify socket without
// waiting for more. A unixgram send queues the datagram at the receiver
// before it returns, so this is everything sent so far.
func queuedNotify(t *testing.T, c *net.UnixConn) []string {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		buf := make([]byte, 4096)
		var n int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if errors.Is(rerr, syscall.EAGAIN) {
			return out
		}
		if rerr != nil {
			t.Fatal(rerr)
		}
		out = append(out, string(buf[:n]))
	}
}

// TestSystemdNotify runs raftd as systemd would with Type=notify and
// WatchdogSec=: while the node waits to be admitted it reports only that
// it is joining; READY=1 arrives once it serves (its ready hook ran and
// /healthz answers), then watchdog pings and its role; STOPPING=1 on
// SIGTERM.
func TestSystemdNotify(t *testing.T) {
	nc, sock := listenNotify(t)
	// The entrance's socket; nobody answers on it until the test has seen
	// the node try to join.
	entPC, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ent := entPC.LocalAddr().String()
	env := map[string]string{"RAFTD_ENTRANCE": ent, "RAFTD_DATA_DIR": t.TempDir(), "NOTIFY_SOCKET": sock,
		"WATCHDOG_USEC": "200000", "WATCHDOG_PID": strconv.Itoa(os.Getpid())}
	args := []string{"--name", "n1", "--listen", "127.0.0.1:0", "--tick-interval", "20ms", "--http", "127.0.0.1:0"}
	readyc := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, args, io.Discard, &stderr, envOf(env), func(_ *node.Node, h net.Addr) { readyc <- h })
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("raftd log:\n%s", stderr.String())
		}
	})
	exited := false
	defer func() {
		cancel()
		if !exited {
			<-done
		}
	}()

	if got, want := nextNotify(t, nc), "STATUS=joining via "+ent; got != want {
		t.Fatalf("first notification %q, want %q", got, want)
	}
	// The node tries to join: a datagram reaches the entrance's socket.
	entPC.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, _, err := entPC.ReadFrom(make([]byte, 2048)); err != nil {
		t.Fatalf("the node sent nothing to the entrance: %v", err)
	}
	entPC.SetReadDeadline(time.Time{})
	// Not admitted, so not serving: nothing more was sent to systemd.
	if q := queuedNotify(t, nc); len(q) != 0 {
		t.Fatalf("notified %q before it was admitted", q)
	}
	select {
	case <-readyc:
		t.Fatal("the node served before it was admitted")
	default:
	}

	// Hand the socket to a real entrance: the node's retries get through.
	startEntranceOn(t, entPC)
	got := nextNotify(t, nc)
	if !strings.HasPrefix(got, "READY=1\nSTATUS=serving at 127.0.0.1:") {
		t.Fatalf("after admission: %q, want READY=1 with a serving status", got)
	}
	var httpAddr net.Addr
	select {
	case httpAddr = <-readyc:
	default:
		t.Fatal("READY=1 arrived before the node served")
	}
	resp, err := http.Get("http://" + httpAddr.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz after READY=1: %s", resp.Status)
	}

	// The watchdog is pinged (only after checks the node's loop answered)
	// and the status follows the node becoming leader.
	var pinged, leads bool
	for !pinged || !leads {
		switch m := nextNotify(t, nc); {
		case m == "WATCHDOG=1":
			pinged = true
		case strings.HasPrefix(m, "STATUS=leader, term "):
			leads = true
		case strings.HasPrefix(m, "STATUS="):
		default:
			t.Fatalf("unexpected notification %q", m)
		}
	}

	cancel()
	for {
		m := nextNotify(t, nc)
		if m == "STOPPING=1\nSTATUS=stopping" {
			break
		}
		if m != "WATCHDOG=1" && !strings.HasPrefix(m, "STATUS=") {
			t.Fatalf("unexpected notification %q while stopping", m)
		}
	}
	code := <-done
	exited = true
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
}

// TestSupervise drives supervise with a scripted status check: a check
// that answers pings the watchdog and sends STATUS= when the status
// changed; a check that fails or hangs (times out) sends nothing.
func TestSupervise(t *testing.T) {
	nc, sock := listenNotify(t)
	sd, err := sdnotify.New(envOf(map[string]string{"NOTIFY_SOCKET": sock}))
	if err != nil {
		t.Fatal(err)
	}
	follower := proto.NodeStatus{Role: "follower", Term: 5, Leader: "00000000000000a2"}
	leader := proto.NodeStatus{Role: "leader", Term: 6, Leader: "00000000000000a1"}
	type step struct {
		st   proto.NodeStatus
		err  error
		hang bool
	}
	script := []step{{st: follower}, {st: follower}, {err: errors.New("node: closed")}, {hang: true}, {st: leader}}
	finished := make(chan struct{})
	stop := make(chan struct{})
	calls := 0
	status := func(ctx context.Context) (proto.NodeStatus, error) {
		if calls == len(script) {
			close(finished)
			<-stop
			return proto.NodeStatus{}, errors.New("stopped")
		}
		s := script[calls]
		calls++
		if s.hang {
			<-ctx.Done() // the check's timeout
			return proto.NodeStatus{}, ctx.Err()
		}
		return s.st, s.err
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		supervise(ctx, sd, status, time.Millisecond, 10*time.Millisecond, true, slog.New(slog.NewTextHandler(t.Output(), nil)))
	})
	<-finished
	got := queuedNotify(t, nc)
	want := []string{"WATCHDOG=1", "STATUS=follower, term 5, leader 00000000000000a2", "WATCHDOG=1",
		"WATCHDOG=1", "STATUS=leader, term 6"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("notifications %q, want %q", got, want)
	}
	cancel()
	close(stop)
	wg.Wait()

	// Without a watchdog: status lines only.
	calls = 0
	finished, stop = make(chan struct{}), make(chan struct{})
	ctx, cancel = context.WithCancel(t.Context())
	wg.Go(func() {
		supervise(ctx, sd, status, time.Millisecond, 10*time.Millisecond, false, slog.New(slog.DiscardHandler))
	})
	<-finished
	got = queuedNotify(t, nc)
	want = []string{"STATUS=follower, term 5, leader 00000000000000a2", "STATUS=leader, term 6"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("notifications without a watchdog %q, want %q", got, want)
	}
	cancel()
	close(stop)
	wg.Wait()
}

func TestStatusText(t *testing.T) {
	tests := []struct {
		st   proto.NodeStatus
		want string
	}{
		{proto.NodeStatus{Role: "leader", Term: 3, Leader: "0000000000000001"}, "leader, term 3"},
		{proto.NodeStatus{Role: "follower", Term: 3, Leader: "0000000000000001"}, "follower, term 3, leader 0000000000000001"},
		{proto.NodeStatus{Role: "learner", Term: 4, Leader: "0000000000000002"}, "learner, term 4, leader 0000000000000002"},
		{proto.NodeStatus{Role: "candidate", Term: 9}, "candidate, term 9, no leader"},
	}
	for _, tt := range tests {
		if got := statusText(tt.st); got != tt.want {
			t.Errorf("statusText(%+v) = %q, want %q", tt.st, got, tt.want)
		}
	}
}

func TestSuperviseTiming(t *testing.T) {
	tests := []struct{ watchdog, interval, timeout time.Duration }{
		{0, time.Second, 5 * time.Second},
		{30 * time.Second, time.Second, 15 * time.Second},
		{200 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond},
		{time.Microsecond, time.Millisecond, time.Millisecond},
	}
	for _, tt := range tests {
		if i, to := superviseTiming(tt.watchdog); i != tt.interval || to != tt.timeout {
			t.Errorf("superviseTiming(%v) = %v, %v; want %v, %v", tt.watchdog, i, to, tt.interval, tt.timeout)
		}
	}
}
