package browser

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

var (
	// binDir holds entrance and raftd, built once by TestMain ("" when no
	// browser was found: nothing to test them with).
	binDir string
	// browserPath is the chromium found on PATH ("" when none).
	browserPath string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

// findBrowser returns the path of chromium or chromium-browser on PATH.
func findBrowser() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func testMain(m *testing.M) int {
	browserPath = findBrowser()
	if browserPath != "" {
		dir, err := os.MkdirTemp("", "raftkv-browser-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "browser:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		goBin, err := exec.LookPath("go")
		if err != nil {
			fmt.Fprintln(os.Stderr, "browser: the go command is needed to build the daemons:", err)
			return 1
		}
		// Built without -race even under `go test -race`: the daemons are
		// the system under test, not this package's code.
		cmd := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator), "../../cmd/raftd", "../../cmd/entrance")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "browser: building the binaries failed:", err)
			return 1
		}
		binDir = dir
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "browser: leaked goroutines:", err)
			return 1
		}
	}
	return code
}
