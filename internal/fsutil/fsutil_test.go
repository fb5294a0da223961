package fsutil

import (
	"errors"
	"os"
	"path/filepath"
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
