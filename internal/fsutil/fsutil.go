// Package fsutil has the few file-system operations that durability needs
// beyond what os offers: making a new directory entry survive a power loss.
//
// A file's fsync makes its contents durable, not its name: the entry lives
// in the parent directory, which needs an fsync of its own after a file is
// created, renamed or removed there (see fsync(2), "Calling fsync() does
// not necessarily ensure that the entry in the directory containing the
// file has also reached disk"). Without it a database created just before
// a power loss can vanish with everything it acknowledged: OpenBolt opens
// the project's bbolt files with that sync.
package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// SyncDir fsyncs the directory dir, making the entries created, renamed or
// removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// MkdirAll creates dir and any missing parents like os.MkdirAll, then
// fsyncs the parent of every directory it created, so that the new
// directories survive a power loss. An existing dir is left alone and
// nothing is synced.
func MkdirAll(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	// Find the missing directories, deepest first.
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		_, err := os.Stat(p)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, p)
		if parent := filepath.Dir(p); parent == p {
			break
		}
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	// Sync from the outermost new directory's parent inwards: each new
	// directory's entry is in its parent.
	for i := len(missing) - 1; i >= 0; i-- {
		if err := SyncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

// OpenBolt opens (creating if needed) the bbolt file at path with mode
// 0600 and fsyncs its directory, so that a new file survives a power loss
// with what is later committed to it. An error names path once (bbolt's
// own error often is an *fs.PathError that names it already).
func OpenBolt(path string, opts *bolt.Options) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		if pe, ok := errors.AsType[*fs.PathError](err); ok && pe.Path == path {
			return nil, err
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}
