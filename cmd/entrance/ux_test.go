package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Ports in use say so once, with what to do; they used to read "listen udp
// A: listen udp A: bind: address already in use".
func TestListenInUse(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tests := []struct {
		flag string
		args []string
		addr string
	}{
		{"--listen", []string{"--listen", pc.LocalAddr().String(), "--http", ""}, pc.LocalAddr().String()},
		{"--http", []string{"--listen", "127.0.0.1:0", "--http", ln.Addr().String()}, ln.Addr().String()},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		args := append([]string{"--data-dir", t.TempDir(), "--discovery-port", "0"}, tt.args...)
		code := run(context.Background(), args, io.Discard, &stderr, envOf(nil), nil)
		want := "Error: " + tt.flag + " " + tt.addr + ": the address is already in use (another entrance or raftd on this machine?); stop it or choose another " + tt.flag + "\n"
		if code != 1 || stderr.String() != want {
			t.Errorf("%s in use: exit %d, stderr %q; want 1, %q", tt.flag, code, stderr.String(), want)
		}
	}
}

// A data dir whose registry another entrance holds says so, not "open
// registry .../entrance.db: timeout".
func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "entrance.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--http", "", "--discovery-port", "0"},
		io.Discard, &stderr, envOf(nil), nil)
	if code != 1 || !strings.HasPrefix(stderr.String(), "Error: --data-dir "+dir+" is in use by another process") {
		t.Fatalf("exit %d, stderr %q; want 1 and that the data dir is in use", code, stderr.String())
	}
}

// A data dir this user may not write is a usage error (exit 2: restarting
// does not help). (Tests run as root here, where no permission is denied,
// so the error is built as the entrance package returns it.)
func TestDataDirPermissionDenied(t *testing.T) {
	pe := &fs.PathError{Op: "mkdir", Path: "/srv/e", Err: syscall.EACCES}
	err := dataDirError("/srv/e", fmt.Errorf("entrance: create data dir: %w", pe))
	want := fmt.Sprintf("--data-dir /srv/e: permission denied for user %d (mkdir /srv/e: permission denied); make it writable by that user, or choose another --data-dir", os.Getuid())
	if _, ok := errors.AsType[*usageError](err); !ok || err.Error() != want {
		t.Fatalf("got %v, want usage error %q", err, want)
	}
}

// A registry file the entrance cannot open is named once; the error read
// "open X: open X: is a directory".
func TestRegistryFileErrorNamesThePathOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "entrance.db")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--http", "", "--discovery-port", "0"},
		io.Discard, &stderr, envOf(nil), nil)
	if code != 1 || strings.Count(stderr.String(), path) != 1 || !strings.Contains(stderr.String(), "open "+path+": is a directory") {
		t.Fatalf("exit %d, stderr %q; want 1 and %s named once", code, stderr.String(), path)
	}
}
