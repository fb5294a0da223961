package kvstore

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node/raft"
)

// benchDir is where benchmarks put their files: KVSTORE_BENCH_DIR (to
// measure a particular disk) or a temporary directory.
func benchDir(b *testing.B) string {
	if d := os.Getenv("KVSTORE_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "kvbench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

// BenchmarkRawFsync is the reference: one small write plus fsync.
func BenchmarkRawFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(benchDir(b), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{'x'}, 128)
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		if _, err := f.WriteAt(buf, int64(i%64)*128); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "fsyncs/s")
}

// BenchmarkLogAppend appends 128-byte entries with one Save (one
// transaction, one commit) per batch: ns/op is per entry.
func BenchmarkLogAppend(b *testing.B) {
	for _, batch := range []int{1, 8, 64, 256} {
		b.Run(fmt.Sprintf("entries-per-fsync=%d", batch), func(b *testing.B) {
			l, err := OpenLog(filepath.Join(benchDir(b), "raft.db"), LogOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			data := bytes.Repeat([]byte{'e'}, 128)
			next := uint64(1)
			ents := make([]raft.Entry, batch)
			saves := 0
			b.ResetTimer()
			start := time.Now()
			for n := 0; n < b.N; n += batch {
				for i := range ents {
					ents[i] = raft.Entry{Index: next, Term: 1, Data: data}
					next++
				}
				if err := l.Save(raft.HardState{Term: 1, Commit: next - 1}, ents, raft.Snapshot{}, true); err != nil {
					b.Fatal(err)
				}
				saves++
				// Keep the log bounded, as a node compacting behind its
				// snapshots would (freed pages are then reused).
				if first, _ := l.FirstIndex(); next-first > 8192 {
					if err := l.Compact(next - 1024); err != nil {
						b.Fatal(err)
					}
				}
			}
			secs := time.Since(start).Seconds()
			b.ReportMetric(float64(next-1)/secs, "entries/s")
			b.ReportMetric(float64(saves)/secs, "saves/s")
		})
	}
}

// BenchmarkApply applies puts of 128-byte values over 10,000 keys, in
// batches as committed entries arrive, with fsync: ns/op is per command.
func BenchmarkApply(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := Open(filepath.Join(benchDir(b), "kv.db"), Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			val := bytes.Repeat([]byte{'v'}, 128)
			var ents []raft.Entry
			for i := range 4096 {
				data, err := EncodeCommand(Command{Op: OpPut, Key: fmt.Appendf(nil, "key/%05d", (i*7919)%10000), Value: val})
				if err != nil {
					b.Fatal(err)
				}
				ents = append(ents, raft.Entry{Term: 1, Data: data})
			}
			idx := uint64(0)
			batchEnts := make([]raft.Entry, batch)
			b.ResetTimer()
			start := time.Now()
			for n := 0; n < b.N; n += batch {
				for i := range batchEnts {
					idx++
					batchEnts[i] = ents[idx%uint64(len(ents))]
					batchEnts[i].Index = idx
				}
				if _, err := s.Apply(batchEnts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(idx)/time.Since(start).Seconds(), "ops/s")
		})
	}
}

// snapshotBenchStore builds a store of about 16 MiB of values.
func snapshotBenchStore(b *testing.B) *Store {
	s, err := Open(filepath.Join(benchDir(b), "kv.db"), Config{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	val := bytes.Repeat([]byte{'s'}, 4096)
	var ents []raft.Entry
	for i := range 4096 {
		data, err := EncodeCommand(Command{Op: OpPut, Key: fmt.Appendf(nil, "key/%05d", i), Value: val})
		if err != nil {
			b.Fatal(err)
		}
		ents = append(ents, raft.Entry{Index: uint64(i + 1), Term: 1, Data: data})
	}
	for i := 0; i < len(ents); i += 256 {
		if _, err := s.Apply(ents[i : i+256]); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkSnapshotCreate streams a snapshot of a 16 MiB store (MB/s).
func BenchmarkSnapshotCreate(b *testing.B) {
	s := snapshotBenchStore(b)
	b.ResetTimer()
	for b.Loop() {
		info, err := s.WriteSnapshot(io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(info.Size)
	}
}

// BenchmarkSnapshotInstall installs a snapshot of a 16 MiB store: write,
// fsync, check, rename, fsync the directory, reopen (MB/s).
func BenchmarkSnapshotInstall(b *testing.B) {
	data, _, err := snapshotBenchStore(b).SnapshotBytes()
	if err != nil {
		b.Fatal(err)
	}
	dst, err := Open(filepath.Join(benchDir(b), "dst.db"), Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if err := dst.Restore(bytes.NewReader(data), 0); err != nil { // 0: install even though applied already
			b.Fatal(err)
		}
	}
}
