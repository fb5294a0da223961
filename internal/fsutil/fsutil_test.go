package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := SyncDir(dir); err != nil {
		t.Fatalf("SyncDir(%s): %v", dir, err)
	}
	err := SyncDir(filepath.Join(dir, "missing"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("SyncDir of a missing directory: got %v, want an error wrapping ErrNotExist", err)
	}
}

func TestMkdirAll(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", "b", "c")
	if err := MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("stat %s after MkdirAll: %v %v", dir, fi, err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v, want 0700", fi.Mode().Perm())
	}
	// Existing: no error, nothing changed.
	if err := MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("MkdirAll of an existing directory: %v", err)
	}
	// A file in the way is an error, as with os.MkdirAll.
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(filepath.Join(file, "sub"), 0o700); err == nil {
		t.Fatal("MkdirAll under a regular file succeeded")
	}
}

func TestOpenBolt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.db")
	db, err := OpenBolt(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat %s: %v %v, want mode 0600", path, fi, err)
	}
	// A directory in the way: the error names the path once.
	bad := filepath.Join(dir, "d.db")
	if err := os.Mkdir(bad, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = OpenBolt(bad, nil)
	if err == nil || strings.Count(err.Error(), bad) != 1 || !strings.Contains(err.Error(), "open "+bad) {
		t.Fatalf("OpenBolt of a directory: %v, want an error naming %s once", err, bad)
	}
}
