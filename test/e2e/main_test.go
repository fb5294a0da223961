package e2e

import (
	"os"
	"testing"

	"github.com/raftkv/raftkv/test/internal/daemon"
)

// binDir holds raftd, entrance and raftctl, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(daemon.Main(m, "e2e", &binDir,
		"github.com/raftkv/raftkv/cmd/raftd",
		"github.com/raftkv/raftkv/cmd/entrance",
		"github.com/raftkv/raftkv/cmd/raftctl"))
}
