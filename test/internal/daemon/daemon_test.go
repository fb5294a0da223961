package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProcLifecycle(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	log := filepath.Join(t.TempDir(), "p.log")
	p := New(t, "sleeper", log, sh, "-c", "echo started; exec sleep 60")
	if p.Running() || p.ExitCode() != -1 {
		t.Fatalf("before Start: Running %v, ExitCode %d; want false, -1", p.Running(), p.ExitCode())
	}
	p.Start()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.LogTail(1), "started") {
		if time.Now().After(deadline) {
			t.Fatalf("log tail %q, want the process's output", p.LogTail(5))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !p.Running() {
		t.Fatal("Running = false while the process sleeps")
	}
	p.Stop()
	if p.Running() || p.ExitCode() != -1 {
		t.Fatalf("after SIGTERM: Running %v, ExitCode %d; want false, -1", p.Running(), p.ExitCode())
	}

	// A second run appends to the same log and reports its exit status.
	p.Args = []string{sh, "-c", "echo second; exit 3"}
	p.Start()
	if !p.Wait(10 * time.Second) {
		t.Fatal("sh -c 'exit 3' still runs after 10 s")
	}
	if got := p.ExitCode(); got != 3 {
		t.Fatalf("ExitCode = %d, want 3", got)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); strings.Count(s, "=== ") != 2 || !strings.Contains(s, "started") || !strings.Contains(s, "second") {
		t.Fatalf("log of two runs:\n%s", s)
	}
}

func TestTail(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"", 3, ""},
	} {
		if got := Tail(tt.in, tt.n); got != tt.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestFreeAddrs(t *testing.T) {
	for _, a := range []string{FreeUDPAddr(t), FreeTCPAddr(t)} {
		if !strings.HasPrefix(a, "127.0.0.1:") || strings.HasSuffix(a, ":0") {
			t.Errorf("free address %q, want 127.0.0.1:PORT", a)
		}
	}
}

func TestChildEnvDropsSystemdVariables(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("RAFTKV_KEEP", "1")
	env := strings.Join(childEnv(), "\n")
	if strings.Contains(env, "NOTIFY_SOCKET=") || strings.Contains(env, "WATCHDOG_USEC=") || !strings.Contains(env, "RAFTKV_KEEP=1") {
		t.Fatalf("child environment keeps systemd's variables or loses others:\n%s", env)
	}
}
