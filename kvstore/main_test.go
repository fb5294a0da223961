package kvstore

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The crash tests re-execute this binary as a child process that
	// writes until it is killed.
	if mode := os.Getenv(crashChildEnv); mode != "" {
		os.Exit(crashChildMain(mode))
	}
	goleak.VerifyTestMain(m)
}
