package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/discovery"
	"go.uber.org/goleak"
	"net/netip"
	"strconv"
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

func voterLimit(t *testing.T, httpAddr net.Addr) int {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr.String() + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct {
		Voters int `json:"voter_limit"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c.Voters
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestServe runs the command in-process: environment variables stand for
// flags, a flag wins over its variable, HTTP serves, cancelling stops it
// with status 0 and the registry is on disk.
func TestServe(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		voters int
	}{
		{"env only", nil, map[string]string{"ENTRANCE_VOTERS": "3"}, 3},
		{"flag wins", []string{"--voters", "4"}, map[string]string{"ENTRANCE_VOTERS": "3"}, 4},
		{"default", nil, nil, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := map[string]string{"ENTRANCE_DATA_DIR": dir, "ENTRANCE_LISTEN": "127.0.0.1:0", "ENTRANCE_HTTP": "127.0.0.1:0",
				"ENTRANCE_DISCOVERY_PORT": "0"}
			for k, v := range tt.env {
				env[k] = v
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type addrs struct{ udp, http net.Addr }
			readyc := make(chan addrs, 1)
			var stderr syncBuffer
			done := make(chan int, 1)
			go func() {
				done <- run(ctx, tt.args, io.Discard, &stderr, envOf(env), func(u, h net.Addr) { readyc <- addrs{u, h} })
			}()
			var a addrs
			select {
			case a = <-readyc:
			case code := <-done:
				t.Fatalf("exited %d before serving: %s", code, stderr.String())
			}
			if got := voterLimit(t, a.http); got != tt.voters {
				t.Fatalf("voter_limit %d, want %d", got, tt.voters)
			}
			for path, want := range map[string]string{"/": "<h1>raftkv cluster</h1>", "/metrics": `raftkv_build_info{component="entrance"`} {
				if body := httpBody(t, "http://"+a.http.String()+path); !strings.Contains(body, want) {
					t.Fatalf("GET %s lacks %q:\n%s", path, want, body)
				}
			}
			cancel()
			if code := <-done; code != 0 {
				t.Fatalf("exit status %d after cancel, stderr:\n%s", code, stderr.String())
			}
			if _, err := os.Stat(filepath.Join(dir, "entrance.db")); err != nil {
				t.Fatalf("registry: %v", err)
			}
			if !strings.Contains(stderr.String(), "entrance stopped") {
				t.Fatalf("no clean stop in the log:\n%s", stderr.String())
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(secret, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		msg  string
	}{
		{"no data dir", []string{"--listen", "127.0.0.1:0"}, nil, 2, "--data-dir is required"},
		{"bad voters", []string{"--data-dir", "d", "--voters", "0"}, nil, 2, "--voters 0"},
		{"unknown flag", []string{"--nope"}, nil, 2, "unknown flag"},
		{"argument", []string{"extra"}, nil, 2, "unexpected argument"},
		{"bad env", []string{"--data-dir", "d"}, map[string]string{"ENTRANCE_VOTERS": "many"}, 2, "ENTRANCE_VOTERS"},
		{"bad log level", []string{"--data-dir", "d", "--log-level", "loud"}, nil, 2, "--log-level"},
		{"down before suspect", []string{"--data-dir", "d", "--suspect-after", "5s", "--down-after", "1s"}, nil, 2, "--suspect-after 5s"},
		{"negative grace", []string{"--data-dir", "d", "--down-grace", "-1s"}, nil, 2, "--down-grace"},
		{"negative ping", []string{"--data-dir", "d", "--ping-interval", "-1s"}, nil, 2, "--ping-interval"},
		{"bad duration env", []string{"--data-dir", "d"}, map[string]string{"ENTRANCE_DOWN_GRACE": "soon"}, 2, "ENTRANCE_DOWN_GRACE"},
		{"empty secret", []string{"--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--http", "", "--secret-file", secret}, nil, 2, "is empty"},
		{"missing secret", []string{"--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--http", "", "--secret-file", secret + ".nope"}, nil, 2, "no such file"},
		{"bad listen", []string{"--data-dir", t.TempDir(), "--listen", "nonsense", "--http", ""}, nil, 2, `--listen "nonsense": want ip:port`},
		{"listen without port", []string{"--data-dir", t.TempDir(), "--listen", "127.0.0.1", "--http", ""}, nil, 2, `--listen "127.0.0.1": want ip:port`},
		{"http without port", []string{"--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--http", "127.0.0.1"}, nil, 2, `--http "127.0.0.1": want ip:port`},
		{"data dir is a file", []string{"--data-dir", secret, "--listen", "127.0.0.1:0", "--http", ""}, nil, 2, "--data-dir " + secret + " is a file, not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), tt.args, io.Discard, &stderr, envOf(tt.env), nil)
			if code != tt.code || !strings.Contains(stderr.String(), tt.msg) || !strings.HasPrefix(stderr.String(), "Error: ") {
				t.Fatalf("exit %d, stderr %q; want %d with %q", code, stderr.String(), tt.code, tt.msg)
			}
		})
	}
}

// TestSignalShutdown builds the binary, runs it as systemd would with
// Type=notify ($NOTIFY_SOCKET) and stops it with SIGTERM and SIGINT:
// READY=1 comes from the entrance's own PID once its registry is on disk
// and its HTTP port answers, STOPPING=1 on the signal, and it exits 0
// after a clean stop.
func TestSignalShutdown(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "entrance")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			nc, sock := listenNotify(t)
			dataDir := t.TempDir()
			cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", dataDir, "--discovery-port", "0")
			cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill() }) // an error once it exited
			lines := make(chan string, 100)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			var log []string
			wait := func(s string) {
				timeout := time.After(20 * time.Second)
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("exited before %q:\n%s", s, strings.Join(log, "\n"))
						}
						log = append(log, l)
						if strings.Contains(l, s) {
							return
						}
					case <-timeout:
						cmd.Process.Kill()
						t.Fatalf("no %q in 20s:\n%s", s, strings.Join(log, "\n"))
					}
				}
			}
			msg, pid := nextNotify(t, nc)
			if pid != cmd.Process.Pid {
				t.Fatalf("notification from pid %d, want the entrance's %d", pid, cmd.Process.Pid)
			}
			status, ok := strings.CutPrefix(msg, "READY=1\nSTATUS=serving at 127.0.0.1:")
			_, httpAddr, ok2 := strings.Cut(status, ", http ")
			if !ok || !ok2 {
				cmd.Process.Kill()
				t.Fatalf("first notification %q, want READY=1 with the addresses", msg)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "entrance.db")); err != nil {
				t.Fatalf("READY=1 before the registry exists: %v", err)
			}
			if body := httpBody(t, "http://"+httpAddr+"/healthz"); body == "" {
				t.Fatal("/healthz answered nothing after READY=1")
			}
			wait("serving http")
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if msg, _ := nextNotify(t, nc); msg != "STOPPING=1\nSTATUS=stopping" {
				t.Fatalf("after %v: %q, want STOPPING=1", sig, msg)
			}
			wait("entrance stopped")
			for l := range lines {
				log = append(log, l)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit after %v: %v\n%s", sig, err, strings.Join(log, "\n"))
			}
		})
	}
}

// TestDiscoveryAnswered: a raftd-style Finder broadcasting on loopback
// learns the entrance's rudp address from the running command, and only
// with the right secret.
func TestDiscoveryAnswered(t *testing.T) {
	free, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.LocalAddr().(*net.UDPAddr).Port
	free.Close()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readyc := make(chan net.Addr, 1)
	var stderr syncBuffer
	done := make(chan int, 1)
	args := []string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--http", "", "--secret-file", secretFile,
		"--discovery-port", strconv.Itoa(port)}
	go func() {
		done <- run(ctx, args, io.Discard, &stderr, envOf(nil), func(u, _ net.Addr) { readyc <- u })
	}()
	var udp net.Addr
	select {
	case udp = <-readyc:
	case code := <-done:
		t.Fatalf("exited %d before serving: %s", code, stderr.String())
	}
	find := func(secret string, timeout time.Duration) (netip.AddrPort, error) {
		fctx, fcancel := context.WithTimeout(ctx, timeout)
		defer fcancel()
		f := discovery.Finder{Port: port, Broadcast: []netip.Addr{netip.MustParseAddr("127.255.255.255")},
			Secret: []byte(secret), Name: "test", MinInterval: 20 * time.Millisecond}
		return f.Find(fctx)
	}
	got, err := find("s3cret", 10*time.Second)
	if err != nil {
		t.Fatalf("Find: %v\n%s", err, stderr.String())
	}
	if got.String() != udp.String() {
		t.Fatalf("found %v, want the entrance's %v", got, udp)
	}
	if got, err := find("wrong", 300*time.Millisecond); err == nil {
		t.Fatalf("Find with a wrong secret found %v", got)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit status %d, stderr:\n%s", code, stderr.String())
	}
}
