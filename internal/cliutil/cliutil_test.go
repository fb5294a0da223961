package cliutil

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/pflag"
)

func TestApplyEnv(t *testing.T) {
	env := map[string]string{"X_DATA_DIR": "/env", "X_VOTERS": "3", "X_BAD": "nope"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	fl := pflag.NewFlagSet("t", pflag.ContinueOnError)
	dir := fl.String("data-dir", "", "")
	voters := fl.Int("voters", 5, "")
	if err := fl.Parse([]string{"--voters", "4"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv(fl, "X_", lookup); err != nil {
		t.Fatal(err)
	}
	if *dir != "/env" || *voters != 4 {
		t.Fatalf("data-dir %q voters %d; want the variable for the first, the flag for the second", *dir, *voters)
	}

	fl = pflag.NewFlagSet("t", pflag.ContinueOnError)
	fl.Int("bad", 0, "")
	if err := ApplyEnv(fl, "X_", lookup); err == nil || !strings.Contains(err.Error(), `X_BAD="nope"`) {
		t.Fatalf("bad value: %v, want an error naming X_BAD", err)
	}
}

func TestNewLogger(t *testing.T) {
	for _, tt := range []struct {
		level, format string
		ok            bool
	}{{"info", "text", true}, {"debug", "json", true}, {"loud", "text", false}, {"info", "xml", false}} {
		_, err := NewLogger(tt.level, tt.format, io.Discard)
		if (err == nil) != tt.ok {
			t.Errorf("NewLogger(%q, %q) = %v, want ok=%v", tt.level, tt.format, err, tt.ok)
		}
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	empty := filepath.Join(dir, "empty")
	os.WriteFile(good, []byte("  s3cret\n"), 0o600)
	os.WriteFile(empty, []byte(" \n"), 0o600)
	if s, err := ReadSecret(good); err != nil || string(s) != "s3cret" {
		t.Fatalf("ReadSecret(good) = %q, %v", s, err)
	}
	if s, err := ReadSecret(""); err != nil || s != nil {
		t.Fatalf(`ReadSecret("") = %q, %v; want no secret`, s, err)
	}
	if _, err := ReadSecret(empty); err == nil {
		t.Fatal("ReadSecret(empty file) succeeded")
	}
	if _, err := ReadSecret(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("ReadSecret(missing) succeeded")
	}
}

func TestValidListenAddr(t *testing.T) {
	for s, want := range map[string]bool{
		"127.0.0.1:7700": true, ":7700": true, "[::1]:0": true, "0.0.0.0:65535": true,
		"127.0.0.1": false, "127.0.0.1:http": false, "127.0.0.1:65536": false, "": false, "host:-1": false,
	} {
		if got := ValidListenAddr(s); got != want {
			t.Errorf("ValidListenAddr(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestListenError(t *testing.T) {
	inUse := &net.OpError{Op: "listen", Net: "udp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
	got := ListenError("--listen", "127.0.0.1:7700", "another raftd", inUse).Error()
	want := "--listen 127.0.0.1:7700: the address is already in use (another raftd on this machine?); stop it or choose another --listen"
	if got != want {
		t.Errorf("in use:\n got %q\nwant %q", got, want)
	}
	denied := &net.OpError{Op: "listen", Net: "udp", Err: os.NewSyscallError("bind", syscall.EACCES)}
	if got, want := ListenError("--http", ":80", "x", denied).Error(), "--http :80: bind: permission denied"; got != want {
		t.Errorf("denied: got %q, want %q", got, want)
	}
}
