package kvstore

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/raftkv/raftkv/internal/fsutil"
	"github.com/raftkv/raftkv/node/raft"
	bolt "go.etcd.io/bbolt"
)

// Snapshot files. The log keeps a snapshot's metadata (index, term,
// membership) and a SnapshotFile record naming its data, which lives in
// its own file in the snapshot directory (LogOptions.SnapDir, by default
// "snap" next to the log file):
//
//	<snap-dir>/<term %016x>-<index %016x>.snap
//
// A file is written under a temporary name (".tmp" suffix), fsynced,
// renamed and the directory fsynced (WriteSnapshotFile); only then does a
// log transaction name it (RecordSnapshot, Save, ApplySnapshot), and only
// after that commit is the previous file removed. A crash at any step
// leaves the log naming a complete file; what no log record names (a
// temporary file, a file written but not yet recorded, a file whose
// removal was interrupted) is removed by OpenLog. The directory holds at
// most two snapshot files at any time (the recorded one and one being
// written), and one at rest.
const snapFileSuffix = ".snap"

// SnapshotFile names the data file of a snapshot and what it must hold.
type SnapshotFile struct {
	Name string `msgpack:"n"` // base name in the snapshot directory
	Size int64  `msgpack:"s"` // bytes
	CRC  uint32 `msgpack:"c"` // CRC-32C (Castagnoli) of the whole file
}

// logFormat is the layout version of the Raft log file.
//
//	1 (no format key): the snapshot's data was stored inside the log file
//	2: the snapshot's data is a file in the snapshot directory
const logFormat = 2

// keySnapFile holds the msgpack SnapshotFile of the recorded snapshot, and
// keyLogFormat the 1-byte logFormat, both in bucketRaftState.
var (
	keySnapFile  = []byte("snapfile")
	keyLogFormat = []byte("format")
)

// checkLogFormat refuses a log file of another layout; a new file gets
// the current one. existing says the state bucket was there before.
func checkLogFormat(sb *bolt.Bucket, lb *bolt.Bucket) error {
	v := sb.Get(keyLogFormat)
	switch {
	case len(v) == 1 && v[0] == logFormat:
		return nil
	case v != nil:
		return fmt.Errorf("%w: unknown log format %x (this build reads format %d; was it written by a newer raftkv?)", ErrFormat, v, logFormat)
	}
	if k, _ := sb.Cursor().First(); k != nil || lb.Stats().KeyN > 0 {
		return fmt.Errorf("%w: log format 1 was written by an older raftkv (snapshot data inside raft.db; this build reads format %d only, "+
			"with snapshot files in the snapshot directory): keep the older raftkv for this data dir, or start this node with an empty data dir "+
			"(remove it from the cluster and add it anew)", ErrFormat, logFormat)
	}
	return sb.Put(keyLogFormat, []byte{logFormat})
}

func snapFileName(index, term uint64) string {
	return fmt.Sprintf("%016x-%016x%s", term, index, snapFileSuffix)
}

// SnapshotDir returns the directory of the snapshot files.
func (l *LogStore) SnapshotDir() string { return l.snapDir }

// WriteSnapshotFile writes the data of a snapshot at index and term to a
// new file in the snapshot directory: fill writes the data to w; the file
// is fsynced, renamed to its final name and the directory fsynced before
// WriteSnapshotFile returns. The file is not part of the log until
// RecordSnapshot names it (a crash before leaves an orphan that OpenLog
// removes). On error nothing is left behind.
//
// WriteSnapshotFile takes no lock of the log: it may run on any goroutine
// while the log is in use (one snapshot creation at a time).
func (l *LogStore) WriteSnapshotFile(index, term uint64, fill func(w io.Writer) error) (SnapshotFile, error) {
	f, err := l.writeSnapFile(index, term, fill)
	if err != nil {
		return SnapshotFile{}, fmt.Errorf("kvstore: write snapshot file at %d: %w", index, err)
	}
	return f, nil
}

func (l *LogStore) writeSnapFile(index, term uint64, fill func(w io.Writer) error) (sf SnapshotFile, err error) {
	if err := fsutil.MkdirAll(l.snapDir, 0o700); err != nil {
		return SnapshotFile{}, err
	}
	name := snapFileName(index, term)
	f, err := os.CreateTemp(l.snapDir, name+".*.tmp")
	if err != nil {
		return SnapshotFile{}, err
	}
	tmp := f.Name()
	crashed := false
	defer func() {
		if err != nil && !crashed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	crc := crc32.New(castagnoli)
	cw := &countWriter{w: io.MultiWriter(f, crc)}
	if err := fill(cw); err != nil {
		return SnapshotFile{}, err
	}
	if !l.noSync {
		if err := f.Sync(); err != nil {
			return SnapshotFile{}, err
		}
	}
	if err := f.Close(); err != nil {
		return SnapshotFile{}, err
	}
	if err := l.hook("snap-synced"); err != nil {
		crashed = true
		return SnapshotFile{}, err
	}
	final := filepath.Join(l.snapDir, name)
	if err := os.Rename(tmp, final); err != nil {
		return SnapshotFile{}, err
	}
	tmp = final // from here on, a failure removes the final file
	if err := l.hook("snap-renamed"); err != nil {
		crashed = true
		return SnapshotFile{}, err
	}
	if !l.noSync {
		if err := fsutil.SyncDir(l.snapDir); err != nil {
			return SnapshotFile{}, err
		}
	}
	return SnapshotFile{Name: name, Size: cw.n, CRC: crc.Sum32()}, nil
}

// RemoveSnapshotFile removes a file WriteSnapshotFile wrote that will not
// be recorded (a newer snapshot got there first). The recorded file is
// never removed.
func (l *LogStore) RemoveSnapshotFile(f SnapshotFile) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f.Name == "" || f.Name == l.st.snapFile.Name {
		return nil
	}
	if err := os.Remove(filepath.Join(l.snapDir, f.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kvstore: remove snapshot file: %w", err)
	}
	return nil
}

// RecordSnapshot makes the file f (written by WriteSnapshotFile) the log's
// snapshot at meta.Index (fsynced), and removes the previous snapshot's
// file. meta.Term must be the log's term at meta.Index while the log still
// holds it. The log is not compacted. It returns raft.ErrSnapOutOfDate
// when the log's snapshot is not older (f is then not recorded: remove it
// with RemoveSnapshotFile).
func (l *LogStore) RecordSnapshot(meta raft.SnapshotMeta, f SnapshotFile) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if meta.Index <= l.st.snap.Index {
		return raft.ErrSnapOutOfDate
	}
	if meta.Index > l.st.last {
		return fmt.Errorf("kvstore: record snapshot at %d beyond last index %d: %w", meta.Index, l.st.last, raft.ErrUnavailable)
	}
	if term, err := l.term(meta.Index); err == nil && term != meta.Term {
		return fmt.Errorf("kvstore: record snapshot at %d: term %d, but the log has term %d there", meta.Index, meta.Term, term)
	} else if err != nil && !errors.Is(err, raft.ErrCompacted) {
		return fmt.Errorf("kvstore: record snapshot at %d: %w", meta.Index, err)
	}
	meta.ConfState = cloneConfState(meta.ConfState)
	prev, err := l.update(true, func(tx *bolt.Tx, st *logState) error { return st.putSnapshot(tx, meta, f) })
	if err != nil {
		return fmt.Errorf("kvstore: record snapshot at %d: %w", meta.Index, err)
	}
	l.removeOld(prev.snapFile)
	return nil
}

// putSnapshot records meta and its file.
func (st *logState) putSnapshot(tx *bolt.Tx, meta raft.SnapshotMeta, f SnapshotFile) error {
	st.snap, st.snapFile = meta, f
	sb := tx.Bucket(bucketRaftState)
	if err := putMsgpack(sb, keySnapMeta, meta); err != nil {
		return err
	}
	return putMsgpack(sb, keySnapFile, f)
}

// removeOld removes the file of a snapshot that is no longer recorded. A
// failure is logged: OpenLog removes it next time.
func (l *LogStore) removeOld(old SnapshotFile) {
	if old.Name == "" || old.Name == l.st.snapFile.Name {
		return
	}
	if l.hook("snap-recorded") != nil {
		return
	}
	if err := os.Remove(filepath.Join(l.snapDir, old.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.logger.Warn("could not remove an old snapshot file; it is removed at the next start", "file", old.Name, "err", err)
	}
}

// readSnapFile reads and checks the recorded snapshot's data.
//
// The whole file is read into memory: the Raft core holds a snapshot in
// memory while it sends it (node/raft snapshotSend) or receives it
// (snapshotRecv), so a snapshot must fit in memory; see node/raft.
func (l *LogStore) readSnapFile(f SnapshotFile) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(l.snapDir, f.Name))
	if err != nil {
		return nil, err
	}
	if err := f.check(int64(len(data)), crc32.Checksum(data, castagnoli)); err != nil {
		return nil, err
	}
	return data, nil
}

func (f SnapshotFile) check(size int64, sum uint32) error {
	if size != f.Size {
		return fmt.Errorf("snapshot file %s has %d bytes, the log says %d", f.Name, size, f.Size)
	}
	if sum != f.CRC {
		return fmt.Errorf("snapshot file %s has checksum %08x, the log says %08x", f.Name, sum, f.CRC)
	}
	return nil
}

// checkSnapDir verifies the recorded snapshot's file (present, of the
// recorded size and checksum) and removes every other file of the
// snapshot directory: temporary files and snapshots no record names.
func (l *LogStore) checkSnapDir() error {
	if l.st.snap.Index != 0 {
		f := l.st.snapFile
		if f.Name == "" {
			return fmt.Errorf("snapshot at index %d names no data file", l.st.snap.Index)
		}
		if err := checkFile(filepath.Join(l.snapDir, f.Name), f); err != nil {
			return fmt.Errorf("the snapshot at index %d: %w: the data dir is damaged; restore it from a backup, "+
				"or remove this node from the cluster and add it anew with an empty data dir", l.st.snap.Index, err)
		}
	}
	ents, err := os.ReadDir(l.snapDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read snapshot dir: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if name == l.st.snapFile.Name || e.IsDir() || !(strings.HasSuffix(name, snapFileSuffix) || strings.HasSuffix(name, ".tmp")) {
			continue
		}
		if err := os.Remove(filepath.Join(l.snapDir, name)); err != nil {
			return fmt.Errorf("remove stale snapshot file: %w", err)
		}
		l.logger.Info("removed a snapshot file no log record names", "file", name)
	}
	return nil
}

// checkFile streams the file at path through its size and checksum check.
func checkFile(path string, f SnapshotFile) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("snapshot file %s: %w", f.Name, err)
	}
	defer fh.Close()
	crc := crc32.New(castagnoli)
	n, err := io.Copy(crc, fh)
	if err != nil {
		return fmt.Errorf("snapshot file %s: %w", f.Name, err)
	}
	return f.check(n, crc.Sum32())
}

func (l *LogStore) hook(step string) error {
	if l.testHook == nil {
		return nil
	}
	return l.testHook(step)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
