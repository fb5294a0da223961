package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// cmdFsync measures how fast the disk under --dir makes 4 KiB writes
// durable: the floor under any replicated write, for etcd and raftkv alike.
func cmdFsync(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("fsync", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory on the disk to measure (a scratch file is created and removed)")
	d := fs.Duration("duration", 2*time.Second, "time of each of the three loops")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("fsync needs --dir")
	}
	loops := []struct {
		name   string
		append bool
		sync   func(*os.File) error
	}{
		{"append 4 KiB + fdatasync", true, func(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }},
		{"overwrite 4 KiB + fdatasync", false, func(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }},
		{"overwrite 4 KiB + fsync", false, func(f *os.File) error { return f.Sync() }},
	}
	for _, l := range loops {
		n, lats, err := fsyncLoop(ctx, *dir, l.append, l.sync, *d)
		if err != nil {
			return err
		}
		q := quantiles(lats, 0.5, 0.99)
		fmt.Fprintf(stdout, "%-28s %7.0f /s  p50 %.3f ms  p99 %.3f ms  (%d in %v)\n",
			l.name, float64(n)/d.Seconds(), q[0], q[1], n, *d)
	}
	return nil
}

func fsyncLoop(ctx context.Context, dir string, appendMode bool, sync func(*os.File) error, d time.Duration) (int, []time.Duration, error) {
	f, err := os.CreateTemp(dir, "vsetcd-fsync-*")
	if err != nil {
		return 0, nil, fmt.Errorf("fsync: create a scratch file in %s: %w", dir, err)
	}
	path := f.Name()
	defer func() {
		_ = f.Close()
		_ = os.Remove(path)
	}()
	block := make([]byte, 4096)
	if !appendMode { // allocate the block first, as a preallocated WAL would be
		if _, err := f.WriteAt(block, 0); err != nil {
			return 0, nil, err
		}
		if err := f.Sync(); err != nil {
			return 0, nil, err
		}
	}
	var lats []time.Duration
	var off int64
	end := time.Now().Add(d)
	for ctx.Err() == nil && time.Now().Before(end) {
		s := time.Now()
		if _, err := f.WriteAt(block, off); err != nil {
			return 0, nil, fmt.Errorf("fsync: write %s: %w", filepath.Base(path), err)
		}
		if err := sync(f); err != nil {
			return 0, nil, fmt.Errorf("fsync: sync %s: %w", filepath.Base(path), err)
		}
		lats = append(lats, time.Since(s))
		if appendMode {
			off += int64(len(block))
		}
	}
	return len(lats), lats, ctx.Err()
}
