package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	f := newFactory(os.LookupEnv)
	f.stdin = os.Stdin
	f.stdinIsTerminal = stdinIsTerminal
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, f)
	stop()
	os.Exit(code)
}

// stdinIsTerminal reports whether standard input is a character device
// other than /dev/null (which is an empty value, as from a pipe).
func stdinIsTerminal() bool {
	fi, err := os.Stdin.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}
