package browser

import (
	"os"
	"os/exec"
	"testing"

	"github.com/raftkv/raftkv/test/internal/daemon"
)

var (
	// binDir holds entrance and raftd, built once by TestMain ("" when no
	// browser was found: nothing to test them with).
	binDir string
	// browserPath is the chromium found on PATH ("" when none).
	browserPath string
)

func TestMain(m *testing.M) {
	browserPath = findBrowser()
	var pkgs []string
	if browserPath != "" {
		pkgs = []string{"github.com/raftkv/raftkv/cmd/raftd", "github.com/raftkv/raftkv/cmd/entrance"}
	}
	os.Exit(daemon.Main(m, "browser", &binDir, pkgs...))
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
