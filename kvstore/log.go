package kvstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/fsutil"
	"github.com/raftkv/raftkv/node/raft"
	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// Buckets and keys of the Raft log file.
var (
	// bucketRaftLog maps an 8-byte big-endian index to an encoded entry
	// (8-byte big-endian term, 1-byte type, data).
	bucketRaftLog = []byte("raftlog")
	// bucketRaftState holds the small records below.
	bucketRaftState = []byte("raftstate")

	keyHardState = []byte("hardstate") // msgpack raft.HardState
	keyConfState = []byte("confstate") // msgpack raft.ConfState
	keySnapMeta  = []byte("snapmeta")  // msgpack raft.SnapshotMeta; its data is a file, see keySnapFile
	keyLogOffset = []byte("offset")    // 16 bytes: index and term of the last compacted entry
)

// DefaultLogCacheBytes is the default size of the in-memory tail cache.
const DefaultLogCacheBytes = 8 << 20

// LogOptions configures OpenLog. The zero value is the safe default.
type LogOptions struct {
	// CacheBytes bounds the in-memory cache of the log's tail (bytes of
	// entry data plus 24 per entry); 0 means DefaultLogCacheBytes, a
	// negative value disables the cache.
	CacheBytes int
	// NoSync skips every fsync. THIS IS UNSAFE: a power loss can lose
	// acknowledged entries or corrupt the file. For tests and benchmarks.
	NoSync bool
	// Timeout is how long Open waits for the file lock held by another
	// process; 0 means one second.
	Timeout time.Duration
	// Logger receives lifecycle events; nil discards them.
	Logger *slog.Logger
	// SnapDir is the directory of the snapshot files (see SnapshotFile);
	// "" means "snap" next to the log file.
	SnapDir string
}

// LogStore is the Raft log on bbolt: it implements raft.Storage, and the
// application writes each Ready into it with Save. It mirrors
// raft.MemoryStorage: the same methods, the same errors, the same
// semantics, but every write is one bbolt transaction.
//
// All methods are safe for concurrent use; the core's goroutine is
// expected to be the only writer.
type LogStore struct {
	mu sync.Mutex
	db *bolt.DB
	// pendingHS is a hard state that Save was given without sync and
	// has not written yet (only its Commit differs from the written one;
	// the next synced write or Close writes it). bbolt has no safe
	// unsynced commit: a power loss may keep a commit's meta page and
	// lose the pages it points to, so every commit here is fsynced.
	pendingHS raft.HardState
	noSync    bool
	logger    *slog.Logger
	closed    bool
	snapDir   string
	// testHook, when set, runs at named steps of writing and recording a
	// snapshot file; an error simulates a crash at that step.
	testHook func(step string) error

	st logState

	// cache holds the log's tail, contiguous and ending at st.last.
	// Invariant: len(cache) == 0 || (cache[0].Index > st.offset &&
	// cache[len(cache)-1].Index == st.last). Entries in it are never
	// mutated (callers may hold them), so truncation clips the slice.
	cache      []raft.Entry
	cacheBytes uint64
	maxCache   uint64
}

// logState is the durable state mirrored in memory. It is copied, changed
// inside a transaction, and installed only after the commit succeeded.
type logState struct {
	hs   raft.HardState
	cs   raft.ConfState
	snap raft.SnapshotMeta
	// snapFile names snap's data. Invariant: snap.Index == 0 ||
	// snapFile.Name != "".
	snapFile SnapshotFile
	// offset and offsetTerm name the last discarded entry (the "dummy"
	// entry of MemoryStorage): FirstIndex is offset+1.
	offset, offsetTerm uint64
	// last is the last index. Invariant: last >= offset.
	last uint64
}

var _ raft.Storage = (*LogStore)(nil)

// OpenLog opens (creating if needed) the Raft log at path.
func OpenLog(path string, opts LogOptions) (*LogStore, error) {
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = time.Second
	}
	db, err := fsutil.OpenBolt(path, &bolt.Options{
		Timeout:        timeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("kvstore: raft log: %w", err)
	}
	l := &LogStore{db: db, noSync: opts.NoSync, logger: opts.Logger, snapDir: opts.SnapDir}
	if l.snapDir == "" {
		l.snapDir = filepath.Join(filepath.Dir(path), "snap")
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case opts.CacheBytes == 0:
		l.maxCache = DefaultLogCacheBytes
	case opts.CacheBytes > 0:
		l.maxCache = uint64(opts.CacheBytes)
	}
	if err := l.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("kvstore: open log %s: %w", path, err)
	}
	if err := l.checkSnapDir(); err != nil {
		db.Close()
		return nil, fmt.Errorf("kvstore: open log %s: %w", path, err)
	}
	l.logger.Info("raft log opened", "path", path, "first_index", l.st.offset+1,
		"last_index", l.st.last, "term", l.st.hs.Term, "commit", l.st.hs.Commit)
	return l, nil
}

func (l *LogStore) load() error {
	return l.db.Update(func(tx *bolt.Tx) error {
		lb, err := tx.CreateBucketIfNotExists(bucketRaftLog)
		if err != nil {
			return err
		}
		sb, err := tx.CreateBucketIfNotExists(bucketRaftState)
		if err != nil {
			return err
		}
		if err := checkLogFormat(sb, lb); err != nil {
			return err
		}
		st := &l.st
		if v := sb.Get(keyHardState); v != nil {
			if err := msgpack.Unmarshal(v, &st.hs); err != nil {
				return fmt.Errorf("decode hard state: %w", err)
			}
		}
		if v := sb.Get(keyConfState); v != nil {
			if err := msgpack.Unmarshal(v, &st.cs); err != nil {
				return fmt.Errorf("decode conf state: %w", err)
			}
		}
		if v := sb.Get(keySnapMeta); v != nil {
			if err := msgpack.Unmarshal(v, &st.snap); err != nil {
				return fmt.Errorf("decode snapshot meta: %w", err)
			}
		}
		if v := sb.Get(keySnapFile); v != nil {
			if err := msgpack.Unmarshal(v, &st.snapFile); err != nil {
				return fmt.Errorf("decode snapshot file record: %w", err)
			}
		}
		if v := sb.Get(keyLogOffset); v != nil {
			if len(v) != 16 {
				return fmt.Errorf("log offset record has %d bytes, want 16", len(v))
			}
			st.offset, st.offsetTerm = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
		}
		st.last = st.offset
		c := lb.Cursor()
		if k, _ := c.First(); k != nil {
			if got := decodeIndex(k); got != st.offset+1 {
				return fmt.Errorf("first log index %d, want offset+1 = %d", got, st.offset+1)
			}
			k, _ := c.Last()
			st.last = decodeIndex(k)
			if n := lb.Stats().KeyN; uint64(n) != st.last-st.offset {
				return fmt.Errorf("log [%d,%d] holds %d entries: holes", st.offset+1, st.last, n)
			}
		}
		return nil
	})
}

// Close closes the file. It is idempotent.
func (l *LogStore) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	var err error
	if !l.pendingHS.IsEmpty() {
		hs := l.pendingHS
		_, err = l.update(true, func(tx *bolt.Tx, st *logState) error { return st.putHardState(tx, hs) })
		if err != nil {
			err = fmt.Errorf("kvstore: close: writing the last hard state: %w", err)
		}
	}
	l.closed = true
	l.cache = nil
	return errors.Join(err, l.db.Close())
}

// Path returns the file's path.
func (l *LogStore) Path() string { return l.db.Path() }

// update runs fn in one write transaction (one commit, one fsync unless
// sync is false) over a copy of the mirrored state, and installs the copy
// only when the commit succeeded.
func (l *LogStore) update(sync bool, fn func(tx *bolt.Tx, st *logState) error) (logState, error) {
	if l.closed {
		return logState{}, ErrClosed
	}
	st := l.st
	l.db.NoSync = l.noSync || !sync
	committing := false
	err := l.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx, &st); err != nil {
			return err
		}
		// A hard state Save deferred goes with this commit, unless the
		// commit wrote a newer one.
		if !l.pendingHS.IsEmpty() && l.pendingHS.Commit > st.hs.Commit && l.pendingHS.Term == st.hs.Term && l.pendingHS.Vote == st.hs.Vote {
			if err := st.putHardState(tx, l.pendingHS); err != nil {
				return err
			}
		}
		committing = true
		return nil
	})
	l.db.NoSync = l.noSync
	if err != nil {
		if committing {
			err = fmt.Errorf("%w: %w", errCommitUnknown, err)
		}
		return logState{}, err
	}
	l.pendingHS = raft.HardState{}
	prev := l.st
	l.st = st
	return prev, nil
}

// Save writes one Ready: the snapshot (if not empty), then the entries,
// then the hard state (if not empty), all in ONE bbolt transaction with
// one commit, fsynced before Save returns; only then may the caller send
// the Ready's messages.
//
// Without sync (raft's MustSync false: no entries, no snapshot, the same
// term and vote, so only the commit index moved) nothing is written now:
// the hard state is kept and written with the next write or by Close. A
// crash may so lose commit index updates, which is harmless: the commit
// index needs no persistence, and a restarted node whose state machine
// applied beyond the stored commit index may raise it to the applied
// index (everything applied was committed). Writing it unsynced would not
// be: bbolt's commits are safe only when fsynced.
func (l *LogStore) Save(hs raft.HardState, ents []raft.Entry, snap raft.Snapshot, sync bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !sync && len(ents) == 0 && snap.IsEmpty() {
		if l.closed {
			return ErrClosed
		}
		if !hs.IsEmpty() {
			if hs.Term != l.st.hs.Term || hs.Vote != l.st.hs.Vote {
				return fmt.Errorf("kvstore: save: term/vote change (%d/%d -> %d/%d) without sync", l.st.hs.Term, l.st.hs.Vote, hs.Term, hs.Vote)
			}
			l.pendingHS = hs
		}
		return nil
	}
	var sf SnapshotFile
	if !snap.IsEmpty() {
		var err error
		if sf, err = l.snapshotFile(snap); err != nil {
			return fmt.Errorf("kvstore: save: %w", err)
		}
	}
	prev, err := l.update(true, func(tx *bolt.Tx, st *logState) error {
		if !snap.IsEmpty() {
			if err := st.applySnapshot(tx, snap.Meta, sf); err != nil {
				return err
			}
		}
		if err := st.append(tx, ents); err != nil {
			return err
		}
		if !hs.IsEmpty() {
			if err := st.putHardState(tx, hs); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		l.dropUnrecorded(sf, err)
		if len(ents) > 0 {
			return fmt.Errorf("kvstore: save [%d,%d]: %w", ents[0].Index, ents[len(ents)-1].Index, err)
		}
		return fmt.Errorf("kvstore: save: %w", err)
	}
	if !snap.IsEmpty() {
		l.dropCache()
		l.removeOld(prev.snapFile)
	}
	l.cacheAppend(prev, ents)
	return nil
}

// Append adds ents like raft.MemoryStorage.Append: entries at or below the
// first index are ignored, and a suffix after the new entries is
// discarded. The write is fsynced.
func (l *LogStore) Append(ents []raft.Entry) error {
	return l.Save(raft.HardState{}, ents, raft.Snapshot{}, true)
}

// SetHardState saves hs (fsynced).
func (l *LogStore) SetHardState(hs raft.HardState) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.update(true, func(tx *bolt.Tx, st *logState) error { return st.putHardState(tx, hs) })
	if err != nil {
		return fmt.Errorf("kvstore: set hard state: %w", err)
	}
	return nil
}

// SetConfState saves the membership the application got from
// Node.ApplyConfChange, so that InitialState returns it after a restart.
func (l *LogStore) SetConfState(cs raft.ConfState) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.update(true, func(tx *bolt.Tx, st *logState) error {
		st.cs = cloneConfState(cs)
		return putMsgpack(tx.Bucket(bucketRaftState), keyConfState, st.cs)
	})
	if err != nil {
		return fmt.Errorf("kvstore: set conf state: %w", err)
	}
	return nil
}

// ApplySnapshot replaces the whole log with s (fsynced), like
// raft.MemoryStorage.ApplySnapshot: raft.ErrSnapOutOfDate when s is not
// newer than the current snapshot.
func (l *LogStore) ApplySnapshot(s raft.Snapshot) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	sf, err := l.snapshotFile(s)
	if err != nil {
		return fmt.Errorf("kvstore: apply snapshot at %d: %w", s.Meta.Index, err)
	}
	prev, err := l.update(true, func(tx *bolt.Tx, st *logState) error { return st.applySnapshot(tx, s.Meta, sf) })
	if err != nil {
		l.dropUnrecorded(sf, err)
		return fmt.Errorf("kvstore: apply snapshot at %d: %w", s.Meta.Index, err)
	}
	l.dropCache()
	l.removeOld(prev.snapFile)
	return nil
}

// snapshotFile writes s's data to a new snapshot file (before the log
// transaction that names it), after checking that s is newer than the
// log's snapshot. Callers hold mu.
func (l *LogStore) snapshotFile(s raft.Snapshot) (SnapshotFile, error) {
	if l.closed {
		return SnapshotFile{}, ErrClosed
	}
	if s.Meta.Index <= l.st.snap.Index {
		return SnapshotFile{}, raft.ErrSnapOutOfDate
	}
	return l.writeSnapFile(s.Meta.Index, s.Meta.Term, func(w io.Writer) error {
		_, err := w.Write(s.Data)
		return err
	})
}

// errCommitUnknown marks an error of the commit itself (its write or
// fsync): the transaction may be on disk all the same.
var errCommitUnknown = errors.New("commit failed; it may be on disk")

// dropUnrecorded removes a file written for a transaction that failed
// (err), unless the commit itself failed: then the log may name the file
// after all, and the next OpenLog removes it if it does not.
func (l *LogStore) dropUnrecorded(f SnapshotFile, err error) {
	if errors.Is(err, errCommitUnknown) {
		return
	}
	if f.Name != "" && f.Name != l.st.snapFile.Name {
		os.Remove(filepath.Join(l.snapDir, f.Name))
	}
}

// CreateSnapshot records a snapshot of the application state as of index
// i, like raft.MemoryStorage.CreateSnapshot; the log is not compacted.
// data is written to a snapshot file first (WriteSnapshotFile, then
// RecordSnapshot); a caller with a large state should call those two
// itself and stream the data.
func (l *LogStore) CreateSnapshot(i uint64, cs *raft.ConfState, data []byte) (raft.Snapshot, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return raft.Snapshot{}, ErrClosed
	}
	if i <= l.st.snap.Index {
		return raft.Snapshot{}, raft.ErrSnapOutOfDate
	}
	if i > l.st.last {
		return raft.Snapshot{}, fmt.Errorf("kvstore: create snapshot at %d beyond last index %d: %w", i, l.st.last, raft.ErrUnavailable)
	}
	term, err := l.term(i)
	if err != nil {
		return raft.Snapshot{}, fmt.Errorf("kvstore: create snapshot at %d: %w", i, err)
	}
	meta := raft.SnapshotMeta{Index: i, Term: term}
	if cs != nil {
		meta.ConfState = cloneConfState(*cs)
	} else {
		meta.ConfState = cloneConfState(l.st.cs)
	}
	sf, err := l.snapshotFile(raft.Snapshot{Meta: meta, Data: data})
	if err != nil {
		return raft.Snapshot{}, fmt.Errorf("kvstore: create snapshot at %d: %w", i, err)
	}
	prev, err := l.update(true, func(tx *bolt.Tx, st *logState) error { return st.putSnapshot(tx, meta, sf) })
	if err != nil {
		l.dropUnrecorded(sf, err)
		return raft.Snapshot{}, fmt.Errorf("kvstore: create snapshot at %d: %w", i, err)
	}
	l.removeOld(prev.snapFile)
	return raft.Snapshot{Meta: meta, Data: data}, nil
}

// Compact discards all entries before compactIndex, like
// raft.MemoryStorage.Compact: the entry at compactIndex becomes the one
// whose term answers Term(compactIndex).
func (l *LogStore) Compact(compactIndex uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if compactIndex <= l.st.offset {
		return raft.ErrCompacted
	}
	if compactIndex > l.st.last {
		return fmt.Errorf("kvstore: compact %d beyond last index %d: %w", compactIndex, l.st.last, raft.ErrUnavailable)
	}
	term, err := l.term(compactIndex)
	if err != nil {
		return fmt.Errorf("kvstore: compact %d: %w", compactIndex, err)
	}
	_, err = l.update(true, func(tx *bolt.Tx, st *logState) error {
		b := tx.Bucket(bucketRaftLog)
		for i := st.offset + 1; i <= compactIndex; i++ {
			if err := b.Delete(encodeIndex(i)); err != nil {
				return err
			}
		}
		st.offset, st.offsetTerm = compactIndex, term
		return st.putOffset(tx)
	})
	if err != nil {
		return fmt.Errorf("kvstore: compact %d: %w", compactIndex, err)
	}
	if n := len(l.cache); n > 0 && l.cache[0].Index <= compactIndex {
		drop := min(compactIndex-l.cache[0].Index+1, uint64(n))
		for _, e := range l.cache[:drop] {
			l.cacheBytes -= entrySize(e)
		}
		l.cache = l.cache[drop:]
	}
	return nil
}

// InitialState implements raft.Storage.
func (l *LogStore) InitialState() (raft.HardState, raft.ConfState, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.hs, cloneConfState(l.st.cs), nil
}

// Entries implements raft.Storage.
func (l *LogStore) Entries(lo, hi, maxBytes uint64) ([]raft.Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if lo <= l.st.offset {
		return nil, raft.ErrCompacted
	}
	if hi > l.st.last+1 {
		return nil, fmt.Errorf("kvstore: entries [%d,%d) beyond last index %d: %w", lo, hi, l.st.last, raft.ErrUnavailable)
	}
	if lo >= hi {
		return nil, nil
	}
	if len(l.cache) > 0 && lo >= l.cache[0].Index {
		c0 := l.cache[0].Index
		ents := limitSize(l.cache[lo-c0:hi-c0], maxBytes)
		return ents[:len(ents):len(ents)], nil
	}
	var ents []raft.Entry
	err := l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRaftLog).Cursor()
		var size uint64
		want := lo
		for k, v := c.Seek(encodeIndex(lo)); k != nil && want < hi; k, v = c.Next() {
			e, err := decodeEntry(k, v)
			if err != nil {
				return err
			}
			if e.Index != want {
				return fmt.Errorf("log hole: found index %d, want %d", e.Index, want)
			}
			size += entrySize(e)
			if len(ents) > 0 && size > maxBytes {
				break
			}
			ents = append(ents, e)
			want++
		}
		if len(ents) == 0 {
			return fmt.Errorf("log hole: index %d missing", lo)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kvstore: entries [%d,%d): %w", lo, hi, err)
	}
	return ents, nil
}

// Term implements raft.Storage.
func (l *LogStore) Term(i uint64) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	return l.term(i)
}

func (l *LogStore) term(i uint64) (uint64, error) {
	switch {
	case i < l.st.offset:
		return 0, raft.ErrCompacted
	case i == l.st.offset:
		return l.st.offsetTerm, nil
	case i > l.st.last:
		return 0, raft.ErrUnavailable
	}
	if len(l.cache) > 0 && i >= l.cache[0].Index {
		return l.cache[i-l.cache[0].Index].Term, nil
	}
	var term uint64
	err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRaftLog).Get(encodeIndex(i))
		if len(v) < 9 {
			return fmt.Errorf("log hole or corrupt entry at index %d", i)
		}
		term = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("kvstore: term %d: %w", i, err)
	}
	return term, nil
}

// LastIndex implements raft.Storage.
func (l *LogStore) LastIndex() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.last, nil
}

// FirstIndex implements raft.Storage.
func (l *LogStore) FirstIndex() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.offset + 1, nil
}

// Snapshot implements raft.Storage. The data is read from the snapshot
// file (and checked against its recorded size and checksum) on each call:
// the caller holds it in memory.
func (l *LogStore) Snapshot() (raft.Snapshot, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return raft.Snapshot{}, ErrClosed
	}
	s := raft.Snapshot{Meta: l.st.snap}
	s.Meta.ConfState = cloneConfState(s.Meta.ConfState)
	if s.Meta.Index == 0 {
		return s, nil
	}
	data, err := l.readSnapFile(l.st.snapFile)
	if err != nil {
		return raft.Snapshot{}, fmt.Errorf("kvstore: read snapshot at %d: %w", s.Meta.Index, err)
	}
	if len(data) > 0 {
		s.Data = data
	}
	return s, nil
}

// SnapshotMeta returns the current snapshot's metadata without its data.
func (l *LogStore) SnapshotMeta() raft.SnapshotMeta {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.st.snap
	m.ConfState = cloneConfState(m.ConfState)
	return m
}

// --- transaction helpers over logState ---

func (st *logState) putHardState(tx *bolt.Tx, hs raft.HardState) error {
	st.hs = hs
	return putMsgpack(tx.Bucket(bucketRaftState), keyHardState, hs)
}

func (st *logState) putOffset(tx *bolt.Tx) error {
	var v [16]byte
	binary.BigEndian.PutUint64(v[:], st.offset)
	binary.BigEndian.PutUint64(v[8:], st.offsetTerm)
	return tx.Bucket(bucketRaftState).Put(keyLogOffset, v[:])
}

func (st *logState) applySnapshot(tx *bolt.Tx, meta raft.SnapshotMeta, f SnapshotFile) error {
	if meta.Index <= st.snap.Index {
		return raft.ErrSnapOutOfDate
	}
	if err := tx.DeleteBucket(bucketRaftLog); err != nil {
		return err
	}
	if _, err := tx.CreateBucket(bucketRaftLog); err != nil {
		return err
	}
	meta.ConfState = cloneConfState(meta.ConfState)
	if err := st.putSnapshot(tx, meta, f); err != nil {
		return err
	}
	st.cs = cloneConfState(meta.ConfState)
	st.offset, st.offsetTerm, st.last = meta.Index, meta.Term, meta.Index
	sb := tx.Bucket(bucketRaftState)
	if err := putMsgpack(sb, keyConfState, st.cs); err != nil {
		return err
	}
	return st.putOffset(tx)
}

// append writes ents with MemoryStorage.Append's semantics.
func (st *logState) append(tx *bolt.Tx, ents []raft.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	first := st.offset + 1
	last := ents[0].Index + uint64(len(ents)) - 1
	if last < first {
		return nil // all compacted already
	}
	if first > ents[0].Index {
		ents = ents[first-ents[0].Index:]
	}
	for i := 1; i < len(ents); i++ {
		if ents[i].Index != ents[i-1].Index+1 {
			return fmt.Errorf("append: entry %d follows %d", ents[i].Index, ents[i-1].Index)
		}
	}
	if ents[0].Index > st.last+1 {
		return fmt.Errorf("append: missing log entry [last: %d, append at: %d]", st.last, ents[0].Index)
	}
	b := tx.Bucket(bucketRaftLog)
	// Discard the old suffix beyond the new entries; the overlap is
	// overwritten by the puts below.
	for i := last + 1; i <= st.last; i++ {
		if err := b.Delete(encodeIndex(i)); err != nil {
			return err
		}
	}
	for _, e := range ents {
		// bbolt keeps the value until commit: one buffer per entry.
		if err := b.Put(encodeIndex(e.Index), encodeEntry(make([]byte, 0, 9+len(e.Data)), e)); err != nil {
			return err
		}
	}
	st.last = last
	return nil
}

// --- cache ---

func (l *LogStore) dropCache() {
	l.cache, l.cacheBytes = nil, 0
}

// cacheAppend mirrors a successful append of ents into the cache. prev is
// the state before the write.
func (l *LogStore) cacheAppend(prev logState, ents []raft.Entry) {
	if l.maxCache == 0 || len(ents) == 0 {
		return
	}
	first := l.st.offset + 1
	if ents[len(ents)-1].Index < first {
		return
	}
	if ents[0].Index < first {
		ents = ents[first-ents[0].Index:]
	}
	start := ents[0].Index
	if n := len(l.cache); n > 0 && start >= l.cache[0].Index && start <= prev.last+1 {
		keep := start - l.cache[0].Index
		if keep < uint64(n) {
			// A conflicting suffix is replaced: slices of it that Entries
			// returned may still be in use, so the new entries must not
			// overwrite them in place (the next append reallocates).
			for _, e := range l.cache[keep:] {
				l.cacheBytes -= entrySize(e)
			}
			l.cache = slices.Clip(l.cache[:keep])
		}
		// A plain append writes past len(l.cache) only, where no slice
		// that Entries returned reaches (their capacity ends at their
		// length), so it may reuse the spare capacity: clipping here
		// would copy the whole cache at every Save.
	} else {
		l.dropCache()
	}
	for _, e := range ents {
		e.Data = slices.Clone(e.Data)
		l.cache = append(l.cache, e)
		l.cacheBytes += entrySize(e)
	}
	drop := 0
	for drop < len(l.cache)-1 && l.cacheBytes > l.maxCache {
		l.cacheBytes -= entrySize(l.cache[drop])
		drop++
	}
	l.cache = l.cache[drop:]
	if l.cacheBytes > l.maxCache {
		l.dropCache()
	}
}

// --- encoding ---

func encodeIndex(i uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), i)
}

func decodeIndex(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

func encodeEntry(buf []byte, e raft.Entry) []byte {
	buf = binary.BigEndian.AppendUint64(buf, e.Term)
	buf = append(buf, byte(e.Type))
	return append(buf, e.Data...)
}

// decodeEntry decodes a log record, copying its data out of the tx.
func decodeEntry(k, v []byte) (raft.Entry, error) {
	if len(k) != 8 || len(v) < 9 {
		return raft.Entry{}, errors.New("corrupt log record")
	}
	e := raft.Entry{
		Index: binary.BigEndian.Uint64(k),
		Term:  binary.BigEndian.Uint64(v),
		Type:  raft.EntryType(v[8]),
	}
	if len(v) > 9 {
		e.Data = slices.Clone(v[9:])
	}
	return e, nil
}

// entrySize is the byte cost of e used by the size limits; it matches
// node/raft's accounting (data plus 24 bytes).
func entrySize(e raft.Entry) uint64 { return uint64(len(e.Data)) + 24 }

// limitSize returns the longest prefix of ents whose size is at most
// maxBytes, but always at least one entry.
func limitSize(ents []raft.Entry, maxBytes uint64) []raft.Entry {
	if len(ents) == 0 {
		return ents
	}
	size := entrySize(ents[0])
	for i := 1; i < len(ents); i++ {
		size += entrySize(ents[i])
		if size > maxBytes {
			return ents[:i]
		}
	}
	return ents
}

func putMsgpack(b *bolt.Bucket, k []byte, v any) error {
	data, err := msgpack.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}

func cloneConfState(cs raft.ConfState) raft.ConfState {
	return raft.ConfState{Voters: slices.Clone(cs.Voters), Learners: slices.Clone(cs.Learners)}
}
