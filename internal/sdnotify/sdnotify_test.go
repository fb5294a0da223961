package sdnotify

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// listen binds a unixgram socket named name (a path, or @abstract) with
// SO_PASSCRED, as systemd's notify socket is, and closes it at the end.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	return c
}

// recv reads one datagram and the sender's PID from its credentials.
func recv(t *testing.T, c *net.UnixConn) (string, int32) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(syscall.SizeofUcred))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("read the notify socket: %v", err)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v, %v; want the sender's credentials", msgs, err)
	}
	cred, err := syscall.ParseUnixCredentials(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n]), cred.Pid
}

func TestMessages(t *testing.T) {
	abstract := fmt.Sprintf("@raftkv-sdnotify-test-%d-%s", os.Getpid(), rand.Text()[:8])
	for _, name := range []string{filepath.Join(t.TempDir(), "notify.sock"), abstract} {
		t.Run(name[:1], func(t *testing.T) {
			c := listen(t, name)
			n, err := New(envOf(map[string]string{"NOTIFY_SOCKET": name}))
			if err != nil || n == nil || n.Socket() != name {
				t.Fatalf("New = %v, %v", n, err)
			}
			tests := []struct {
				send func() error
				want string
			}{
				{func() error { return n.Status("joining via 10.0.0.1:7700") }, "STATUS=joining via 10.0.0.1:7700"},
				{func() error { return n.Ready("") }, "READY=1"},
				{func() error { return n.Ready("leader, term 5") }, "READY=1\nSTATUS=leader, term 5"},
				{func() error { return n.Status("two\nlines\r\nhere") }, "STATUS=two lines here"},
				{n.Watchdog, "WATCHDOG=1"},
				{func() error { return n.Stopping("") }, "STOPPING=1"},
				{func() error { return n.Stopping("stopping") }, "STOPPING=1\nSTATUS=stopping"},
				{func() error { return n.Send("READY=1", "MAINPID=1") }, "READY=1\nMAINPID=1"},
			}
			for _, tt := range tests {
				if err := tt.send(); err != nil {
					t.Fatalf("send %q: %v", tt.want, err)
				}
				got, pid := recv(t, c)
				if got != tt.want {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
				// systemd's NotifyAccess=main accepts only the main PID.
				if pid != int32(os.Getpid()) {
					t.Fatalf("sender pid %d, want ours %d", pid, os.Getpid())
				}
			}
			// Send with nothing sends nothing: the next datagram is the
			// next message.
			if err := n.Send(); err != nil {
				t.Fatal(err)
			}
			n.Watchdog()
			if got, _ := recv(t, c); got != "WATCHDOG=1" {
				t.Fatalf("after an empty Send: %q", got)
			}
		})
	}
}

func TestOutsideSystemd(t *testing.T) {
	for _, env := range []map[string]string{nil, {"NOTIFY_SOCKET": ""}} {
		n, err := New(envOf(env))
		if n != nil || err != nil {
			t.Fatalf("New(%v) = %v, %v; want nil, nil", env, n, err)
		}
		// The nil Notifier does nothing.
		for _, f := range []func() error{func() error { return n.Ready("x") }, func() error { return n.Stopping("") },
			func() error { return n.Status("x") }, n.Watchdog, func() error { return n.Send("READY=1") }} {
			if err := f(); err != nil {
				t.Fatalf("nil Notifier: %v", err)
			}
		}
		if n.Socket() != "" {
			t.Fatalf("nil Notifier's socket %q", n.Socket())
		}
	}
}

func TestBadSocket(t *testing.T) {
	for _, name := range []string{"relative/notify", "vsock:2:1234"} {
		if n, err := New(envOf(map[string]string{"NOTIFY_SOCKET": name})); !errors.Is(err, ErrBadSocket) {
			t.Errorf("New(%q) = %v, %v; want ErrBadSocket", name, n, err)
		}
	}
	// A socket that is gone: Send reports it.
	n, err := New(envOf(map[string]string{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "gone.sock")}))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Ready(""); err == nil {
		t.Fatal("Ready to a missing socket: no error")
	}
}

func TestWatchdogInterval(t *testing.T) {
	const pid = 4242
	tests := []struct {
		name    string
		env     map[string]string
		want    time.Duration
		wantErr bool
	}{
		{"unset", nil, 0, false},
		{"for every process", map[string]string{"WATCHDOG_USEC": "30000000"}, 30 * time.Second, false},
		{"for us", map[string]string{"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "4242"}, 500 * time.Millisecond, false},
		{"for another process", map[string]string{"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "1"}, 0, false},
		{"zero", map[string]string{"WATCHDOG_USEC": "0"}, 0, true},
		{"garbage", map[string]string{"WATCHDOG_USEC": "30s"}, 0, true},
		{"negative", map[string]string{"WATCHDOG_USEC": "-1"}, 0, true},
		{"overflow", map[string]string{"WATCHDOG_USEC": "18446744073709551615"}, 0, true},
		{"bad pid", map[string]string{"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "me"}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := WatchdogInterval(envOf(tt.env), pid)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("WatchdogInterval = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
