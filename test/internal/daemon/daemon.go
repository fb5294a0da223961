// Package daemon starts, signals and inspects the processes that the
// real-process tests (test/e2e, test/browser) run: the raftd, entrance and
// raftctl binaries, built once per test binary by Main.
//
// Every process is ended by its own pid; nothing here looks processes up
// by name.
package daemon

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Main builds the packages named by their import paths (for example
// "github.com/raftkv/raftkv/cmd/raftd") into a new temporary directory,
// stores its path in *binDir, runs the tests and checks for leaked
// goroutines after a passing run. It returns the exit code for os.Exit.
// The binaries are built without -race even under `go test -race`: they
// are the system under test, and a race build would triple the run time.
// With no packages, nothing is built and *binDir stays "".
func Main(m *testing.M, name string, binDir *string, pkgs ...string) int {
	if len(pkgs) > 0 {
		dir, err := Build(name, pkgs...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			return 1
		}
		defer os.RemoveAll(dir)
		*binDir = dir
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: leaked goroutines: %v\n", name, err)
			return 1
		}
	}
	return code
}

// Build builds pkgs into a new temporary directory named after name and
// returns it; the caller removes it.
func Build(name string, pkgs ...string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build the daemons: %w", err)
	}
	dir, err := os.MkdirTemp("", "raftkv-"+name+"-bin-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(goBin, append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("building %s failed: %w", strings.Join(pkgs, " "), err)
	}
	return dir, nil
}

// Proc is one process started by a test, possibly several times in a row
// (Start after it exited runs it again with the same arguments, its output
// appended to the same log).
type Proc struct {
	t       testing.TB
	Name    string
	Args    []string // Args[0] is the binary
	LogPath string   // stdout and stderr of every run

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// New returns a process that is not started yet.
func New(t testing.TB, name, logPath string, args ...string) *Proc {
	return &Proc{t: t, Name: name, Args: args, LogPath: logPath}
}

// Start runs the process, its output appended to LogPath after a line that
// says when and how it was started. It fails the test if it cannot start.
func (p *Proc) Start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(p.Args, " "))
	cmd := exec.Command(p.Args[0], p.Args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = childEnv()
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("start %s: %v", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// childEnv is this process's environment without the variables through
// which systemd supervises a service: a test run by a systemd unit must
// not have its daemons report to that unit.
func childEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES":
			return true
		}
		return false
	})
}

// Running reports whether the last run has not exited yet.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process and waits until it exited; one still
// running after grace fails the test and is killed.
func (p *Proc) Signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		p.t.Errorf("%s (pid %d) did not exit %v after %v; killing it", p.Name, cmd.Process.Pid, sig, grace)
		_ = cmd.Process.Kill()
		<-done
	}
}

// Wait waits up to timeout for the last run to exit and reports whether it
// did.
func (p *Proc) Wait(timeout time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Proc) Kill() { p.Signal(syscall.SIGKILL, 10*time.Second) }

// Stop asks the process to stop (SIGTERM) and waits up to 10 s for it.
func (p *Proc) Stop() { p.Signal(syscall.SIGTERM, 10*time.Second) }

// ExitCode is the exit status of the last run (-1 when it was killed by a
// signal, is still running or never ran).
func (p *Proc) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// LogTail returns the last n lines of the log.
func (p *Proc) LogTail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	return Tail(string(b), n)
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreeUDPAddr returns a loopback UDP address that was free a moment ago.
func FreeUDPAddr(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// FreeTCPAddr returns a loopback TCP address that was free a moment ago.
func FreeTCPAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
