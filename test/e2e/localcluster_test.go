package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePortBlock returns a base port such that base..base+3 (UDP) and
// base+80 (TCP) were free a moment ago.
func freePortBlock(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(30000)
		ok := true
		var closers []func() error
		for p := base; p <= base+3 && ok; p++ {
			pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, pc.Close)
		}
		if ok {
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+80)); err == nil {
				closers = append(closers, l.Close)
			} else {
				ok = false
			}
		}
		for _, c := range closers {
			_ = c()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free block of ports")
	return 0
}

// TestLocalClusterScript runs deploy/local-cluster.sh (what `make run`
// runs): it builds, starts a cluster that serves raftctl, and on Ctrl-C
// (SIGINT to its process group) stops every process it started.
func TestLocalClusterScript(t *testing.T) {
	t0 := time.Now()
	base := freePortBlock(t)
	dir := t.TempDir()
	cmd := exec.Command("bash", "../../deploy/local-cluster.sh", "--fresh")
	cmd.Env = append(os.Environ(), "RAFTKV_DATA="+filepath.Join(dir, "data"), "BIN="+filepath.Join(dir, "bin"),
		"RAFTKV_BASE_PORT="+strconv.Itoa(base), "RAFTKV_HTTP_PORT="+strconv.Itoa(base+80))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, like a terminal's foreground job
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when the script has exited
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_ = cmd.Wait()
		close(exited)
	}()
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		// If the test failed midway: stop the script's group (only ours,
		// and only while the script still runs, so the id is still ours).
		select {
		case <-exited:
			return
		default:
		}
		_ = syscall.Kill(-pgid, syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})

	var (
		pids   []int
		output strings.Builder
		ready  bool
	)
	started := regexp.MustCompile(`^started \S+ \(pid (\d+)\)`)
	timeout := time.After(90 * time.Second)
	for !ready {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("script ended before the cluster was up:\n%s", output.String())
			}
			output.WriteString(l + "\n")
			if m := started.FindStringSubmatch(l); m != nil {
				pid, _ := strconv.Atoi(m[1])
				pids = append(pids, pid)
			}
			ready = strings.HasPrefix(l, "Press Ctrl-C")
		case <-timeout:
			t.Fatalf("cluster not up after 90s:\n%s", output.String())
		}
	}
	t.Logf("cluster up after %v", time.Since(t0))
	if len(pids) != 4 {
		t.Fatalf("started %d processes, want 4:\n%s", len(pids), output.String())
	}

	raftctl := func(args ...string) (string, int) {
		c := exec.Command(filepath.Join(dir, "bin", "raftctl"), args...)
		c.Env = append(os.Environ(), fmt.Sprintf("RAFTCTL_ENTRANCE=127.0.0.1:%d", base), "RAFTCTL_ENDPOINTS=", "RAFTCTL_SECRET_FILE=")
		b, err := c.CombinedOutput()
		code := 0
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(b), code
	}
	if o, code := raftctl("put", "greeting", "hello"); code != 0 {
		t.Fatalf("put: exit %d: %s", code, o)
	}
	if o, code := raftctl("get", "greeting"); code != 0 || o != "hello\n" {
		t.Fatalf("get: exit %d: %q", code, o)
	}

	t0 = time.Now()
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
drain:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break drain
			}
			output.WriteString(l + "\n")
		case <-deadline:
			t.Fatalf("script still running 30s after Ctrl-C:\n%s", output.String())
		}
	}
	select {
	case <-exited:
	case <-deadline:
		t.Fatalf("script still running 30s after Ctrl-C:\n%s", output.String())
	}
	t.Logf("stopped %v after Ctrl-C", time.Since(t0))
	if !strings.Contains(output.String(), "stopped. Data kept in") {
		t.Errorf("script did not report a clean stop:\n%s", output.String())
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after the script stopped (kill -0: %v)", pid, err)
		}
	}
}
