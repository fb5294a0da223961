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
)

// A bad --listen or --http, or a data dir that is a file, is a usage
// error (exit 2) before anything starts.
func TestAddressAndDataDirUsageErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--name", "n1", "--entrance", "127.0.0.1:1"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"listen without port", []string{"--data-dir", dir, "--listen", "127.0.0.1"}, `--listen "127.0.0.1": want ip:port`},
		{"listen port out of range", []string{"--data-dir", dir, "--listen", "127.0.0.1:99999"}, `--listen "127.0.0.1:99999": want ip:port`},
		{"http without port", []string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--http", "127.0.0.1"}, `--http "127.0.0.1": want ip:port`},
		{"data dir is a file", []string{"--data-dir", file, "--listen", "127.0.0.1:0"}, "--data-dir " + file + " is a file, not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), append(base, tt.args...), io.Discard, &stderr, envOf(nil), nil)
			if code != exitUsage || !strings.HasPrefix(stderr.String(), "Error: "+tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), exitUsage, tt.want)
			}
			if strings.Count(stderr.String(), "\n") != 1 {
				t.Fatalf("stderr %q: want one line", stderr.String())
			}
		})
	}
}

// A --listen address in use says so once, with what to do; it used to
// read "listen udp A: listen udp A: bind: address already in use".
func TestListenInUse(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	addr := pc.LocalAddr().String()
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--name", "n1", "--data-dir", t.TempDir(), "--entrance", "127.0.0.1:1", "--listen", addr},
		io.Discard, &stderr, envOf(nil), nil)
	want := "Error: --listen " + addr + ": the address is already in use (another raftd or entrance on this machine?); stop it or choose another --listen\n"
	if code != exitFailure || stderr.String() != want {
		t.Fatalf("exit %d, stderr %q; want %d, %q", code, stderr.String(), exitFailure, want)
	}
}

// A second raftd on a data dir in use says that, not "node: open
// .../node.db: timeout".
func TestDataDirInUse(t *testing.T) {
	entranceAddr := startEntrance(t)
	dir := t.TempDir()
	d := startDaemon(t, "n1", dir, nil, "--entrance", entranceAddr)
	defer d.stop()
	var stderr syncBuffer
	code := run(context.Background(), []string{"--name", "n1", "--data-dir", dir, "--entrance", entranceAddr, "--listen", "127.0.0.1:0"},
		io.Discard, &stderr, envOf(nil), nil)
	if code != exitFailure || !strings.Contains(stderr.String(), "Error: --data-dir "+dir+" is in use by another process") ||
		!strings.Contains(stderr.String(), "give this node its own --data-dir") {
		t.Fatalf("exit %d, stderr %q; want 1 and that the data dir is in use", code, stderr.String())
	}
}

// A data dir this user may not write is a usage error (exit 2: restarting
// does not help) that names the file once; it read "node: open X: open X:
// permission denied" and exited 1. (Tests run as root here, where no
// permission is denied, so the error is built as node returns it.)
func TestDataDirPermissionDenied(t *testing.T) {
	pe := &fs.PathError{Op: "open", Path: "/srv/n1/node.db", Err: syscall.EACCES}
	err := dataDirError("/srv/n1", fmt.Errorf("node: open %s: %w", pe.Path, pe))
	want := fmt.Sprintf("--data-dir /srv/n1: permission denied for user %d (open /srv/n1/node.db: permission denied); make it writable by that user, or choose another --data-dir", os.Getuid())
	if !isUsage(err) || err.Error() != want {
		t.Fatalf("got %v (usage %v), want usage error %q", err, isUsage(err), want)
	}
	other := errors.New("node: something else")
	if got := dataDirError("/srv/n1", other); got != other {
		t.Fatalf("other errors: got %v, want them unchanged", got)
	}
}

// A store file the node cannot open is named once; the errors read "open
// X: open X: is a directory".
func TestDataDirFileErrorNamesThePathOnce(t *testing.T) {
	for _, file := range []string{"node.db", "raft.db", "kv.db"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, file)
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			code := run(context.Background(), []string{"--name", "n1", "--data-dir", dir, "--entrance", "127.0.0.1:1", "--listen", "127.0.0.1:0"},
				io.Discard, &stderr, envOf(nil), nil)
			if code != exitFailure || strings.Count(stderr.String(), path) != 1 || !strings.Contains(stderr.String(), "open "+path+": is a directory") {
				t.Fatalf("exit %d, stderr %q; want %d and %s named once", code, stderr.String(), exitFailure, path)
			}
		})
	}
}
