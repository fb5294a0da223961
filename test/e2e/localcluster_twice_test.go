package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLocalClusterScriptTwice runs deploy/local-cluster.sh while another
// run of it serves: on the same data directory, or on other data but the
// same ports, the second run refuses at once with exit 1 and says why. It
// used to start daemons that died on the ports or locks in use while its
// readiness check, answered by the first cluster, printed "raftkv is
// running".
func TestLocalClusterScriptTwice(t *testing.T) {
	base := freePortBlock(t)
	dir := t.TempDir()
	env := func(data string) []string {
		return append(os.Environ(), "RAFTKV_DATA="+data, "BIN="+filepath.Join(dir, "bin"),
			"RAFTKV_BASE_PORT="+strconv.Itoa(base), "RAFTKV_HTTP_PORT="+strconv.Itoa(base+80))
	}
	first := exec.Command("bash", "../../deploy/local-cluster.sh", "--fresh")
	first.Env = env(filepath.Join(dir, "data"))
	first.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := first.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	first.Stderr = first.Stdout
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	up := make(chan struct{})
	var output strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			output.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				close(up)
			}
		}
		_ = first.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		// Ctrl-C to the first run's group (ours while it runs).
		select {
		case <-done:
			return
		default:
		}
		_ = syscall.Kill(-first.Process.Pid, syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-first.Process.Pid, syscall.SIGKILL)
			t.Errorf("the first run did not stop 30s after Ctrl-C")
		}
	})
	select {
	case <-up:
	case <-done:
		t.Fatalf("the first run ended before the cluster was up:\n%s", output.String())
	case <-time.After(90 * time.Second):
		t.Fatal("the first run is not up after 90s")
	}

	tests := []struct {
		name, data, want string
	}{
		{"same data dir", filepath.Join(dir, "data"), "is in use by another local cluster"},
		{"same ports", filepath.Join(dir, "other"), "an entrance already answers on 127.0.0.1:" + strconv.Itoa(base)},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		second := exec.CommandContext(ctx, "bash", "../../deploy/local-cluster.sh")
		second.Env = env(tt.data)
		second.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		second.Cancel = func() error { return syscall.Kill(-second.Process.Pid, syscall.SIGINT) }
		second.WaitDelay = 20 * time.Second
		b, err := second.CombinedOutput()
		cancel()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.Contains(string(b), tt.want) || strings.Contains(string(b), "started ") {
			t.Errorf("%s: second run: %v, want exit 1 at once saying %q:\n%s", tt.name, err, tt.want, b)
		}
	}
}
