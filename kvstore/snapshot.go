package kvstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/raftkv/raftkv/internal/fsutil"
	"github.com/raftkv/raftkv/node/raft"
	bolt "go.etcd.io/bbolt"
)

// Snapshot format: snapshotMagic, the bbolt file image, then a trailer of
// the image's length (8 bytes big-endian) and CRC-32C (4 bytes
// big-endian). bbolt trusts its file (a corrupt page can crash the
// process in a background goroutine), so Restore checks the trailer before
// bbolt ever opens the image.
var snapshotMagic = []byte("RKVSNAP\x01")

const snapshotTrailerLen = 12

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SnapshotInfo describes a snapshot written by WriteSnapshot.
type SnapshotInfo struct {
	Applied     uint64 // the log index the snapshot is as of: use it as SnapshotMeta.Index
	AppliedTerm uint64 // that entry's term
	Rev         uint64 // the store's revision
	Size        int64  // bytes written
}

// WriteSnapshot streams a consistent copy of the whole store (data,
// history, sessions, applied index and revision) to w. It runs in a read
// transaction, so Apply keeps going meanwhile.
func (s *Store) WriteSnapshot(w io.Writer) (SnapshotInfo, error) {
	p, err := s.BeginSnapshot()
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer p.Close()
	if _, err := p.WriteTo(w); err != nil {
		return SnapshotInfo{}, err
	}
	return p.Info(), nil
}

// PinnedSnapshot is the store's state as of one moment, held by an open
// bbolt read transaction until Close: BeginSnapshot pins it where the
// caller needs consistency (for instance on the Raft loop, at the index
// its own tables are at) and WriteTo streams it later, on any goroutine.
//
// While it is open, Apply keeps going, but InstallSnapshot, Restore and
// Close wait for it (they swap or close the file), and bbolt cannot reuse
// the pages it pins, so the file may grow. Close it promptly; one at a
// time.
type PinnedSnapshot struct {
	s    *Store
	tx   *bolt.Tx
	info SnapshotInfo
}

// BeginSnapshot pins the store's current state for a snapshot.
func (s *Store) BeginSnapshot() (*PinnedSnapshot, error) {
	s.mu.RLock()
	if s.db == nil {
		s.mu.RUnlock()
		return nil, fmt.Errorf("kvstore: begin snapshot: %w", ErrClosed)
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		s.mu.RUnlock()
		return nil, fmt.Errorf("kvstore: begin snapshot: %w", err)
	}
	st, err := readMeta(tx)
	if err != nil {
		tx.Rollback()
		s.mu.RUnlock()
		return nil, fmt.Errorf("kvstore: begin snapshot: %w", err)
	}
	return &PinnedSnapshot{s: s, tx: tx, info: SnapshotInfo{Applied: st.applied, AppliedTerm: st.appliedTerm, Rev: st.rev}}, nil
}

// Info describes the pinned state (Size is set once WriteTo returned).
func (p *PinnedSnapshot) Info() SnapshotInfo { return p.info }

// WriteTo streams the snapshot (the format InstallSnapshot and Restore
// read) to w. It may be called once.
func (p *PinnedSnapshot) WriteTo(w io.Writer) (int64, error) {
	if p.tx == nil {
		return 0, fmt.Errorf("kvstore: write snapshot: %w", ErrClosed)
	}
	n, err := p.writeTo(w)
	if err != nil {
		return n, fmt.Errorf("kvstore: write snapshot: %w", err)
	}
	p.info.Size = n
	return n, nil
}

func (p *PinnedSnapshot) writeTo(w io.Writer) (int64, error) {
	if _, err := w.Write(snapshotMagic); err != nil {
		return 0, err
	}
	crc := crc32.New(castagnoli)
	n, err := p.tx.WriteTo(io.MultiWriter(w, crc))
	if err != nil {
		return int64(len(snapshotMagic)) + n, err
	}
	trailer := binary.BigEndian.AppendUint64(make([]byte, 0, snapshotTrailerLen), uint64(n))
	trailer = binary.BigEndian.AppendUint32(trailer, crc.Sum32())
	if _, err := w.Write(trailer); err != nil {
		return int64(len(snapshotMagic)) + n, err
	}
	return int64(len(snapshotMagic)) + n + snapshotTrailerLen, nil
}

// Close releases the pinned state. It is idempotent.
func (p *PinnedSnapshot) Close() error {
	if p.tx == nil {
		return nil
	}
	err := p.tx.Rollback()
	p.tx = nil
	p.s.mu.RUnlock()
	return err
}

// SnapshotBytes returns WriteSnapshot's output as one slice (the Data of a
// raft.Snapshot at info.Applied).
func (s *Store) SnapshotBytes() ([]byte, SnapshotInfo, error) {
	var buf bytes.Buffer
	info, err := s.WriteSnapshot(&buf)
	if err != nil {
		return nil, SnapshotInfo{}, err
	}
	return buf.Bytes(), info, nil
}

// InstallSnapshot makes the store the state of snap: its Data (written by
// WriteSnapshot as of snap.Meta.Index), or an empty store at
// snap.Meta.Index when Data is empty (the bootstrap snapshot). A snapshot
// at or below Applied() is ignored. On return the store is entirely the
// old state (on error) or entirely the new one, also across a crash.
func (s *Store) InstallSnapshot(snap raft.Snapshot) error {
	if snap.Meta.Index <= s.Applied() {
		s.cfg.Logger.Info("ignored stale snapshot", "index", snap.Meta.Index, "applied", s.Applied())
		return nil
	}
	if len(snap.Data) == 0 {
		return s.install(func(f *os.File) error { return nil }, &snap.Meta, true)
	}
	return s.Restore(bytes.NewReader(snap.Data), snap.Meta.Index)
}

// CheckSnapshot checks that data is a whole kvstore snapshot (header,
// length and checksum), without installing it. A node checks a received
// snapshot before it lets the snapshot replace its log, so that bytes it
// could never install do not cost it the log it has.
func CheckSnapshot(data []byte) error {
	if !bytes.HasPrefix(data, snapshotMagic) {
		return fmt.Errorf("%w: missing header", ErrBadSnapshot)
	}
	// The trailer checks of a streamed install, on the slice as it is
	// (trailerWriter.Write would copy all of it to hold back the trailer).
	body := data[len(snapshotMagic):]
	tw := &trailerWriter{crc: crc32.New(castagnoli)}
	if len(body) >= snapshotTrailerLen {
		image := body[:len(body)-snapshotTrailerLen]
		tw.crc.Write(image)
		tw.n, tw.tail = int64(len(image)), body[len(image):]
	}
	return tw.check()
}

// Restore replaces the store with the snapshot read from r. When index is
// not 0, the snapshot must be as of that log index (ErrBadSnapshot
// otherwise), and it is ignored when the store has applied that index
// already. The replacement is atomic and survives a crash at any step:
// the snapshot goes to a temporary file, which is fsynced and checked,
// then renamed over the store's file, and the directory is fsynced.
func (s *Store) Restore(r io.Reader, index uint64) error {
	return s.install(func(f *os.File) error {
		head := make([]byte, len(snapshotMagic))
		if _, err := io.ReadFull(r, head); err != nil || !bytes.Equal(head, snapshotMagic) {
			return fmt.Errorf("%w: missing header", ErrBadSnapshot)
		}
		tw := &trailerWriter{w: f, crc: crc32.New(castagnoli)}
		if _, err := io.Copy(tw, r); err != nil {
			return err
		}
		return tw.check()
	}, &raft.SnapshotMeta{Index: index}, false)
}

// install writes the new file with fill (an empty fill makes an empty
// store at want.Index), checks it, and swaps it in.
func (s *Store) install(fill func(f *os.File) error, want *raft.SnapshotMeta, empty bool) (err error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed() {
		return ErrClosed
	}
	if want.Index != 0 && want.Index <= s.st.applied {
		// Apply got there first (checked again under applyMu).
		s.cfg.Logger.Info("ignored stale snapshot", "index", want.Index, "applied", s.st.applied)
		return nil
	}
	tmp := s.tmpPath()
	defer func() {
		if err != nil {
			if !errors.Is(err, errTestCrash) {
				os.Remove(tmp)
			}
			err = fmt.Errorf("kvstore: install snapshot at %d: %w", want.Index, err)
		}
	}()
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	st, err := s.prepareFile(tmp, want, empty)
	if err != nil {
		return err
	}
	if err := s.hook("synced"); err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return err
	}
	s.db = nil
	if err := os.Rename(tmp, s.path); err != nil {
		// The old file is intact: reopen it.
		return errors.Join(err, s.openDB())
	}
	if err := s.hook("renamed"); err != nil {
		return err
	}
	if err := fsutil.SyncDir(filepath.Dir(s.path)); err != nil {
		return errors.Join(err, s.openDB())
	}
	if err := s.hook("dir-synced"); err != nil {
		return err
	}
	if err := s.openDB(); err != nil {
		return err
	}
	s.cfg.Logger.Info("snapshot installed", "index", st.applied, "term", st.appliedTerm, "rev", st.rev)
	return nil
}

// prepareFile opens the candidate file, creating the buckets of an empty
// store (with the applied index of want) or checking a snapshot's
// structure and applied index, and returns its meta state.
func (s *Store) prepareFile(path string, want *raft.SnapshotMeta, empty bool) (st metaState, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: s.cfg.Timeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return metaState{}, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
		// bbolt panics on some corrupt pages; a peer's bytes must not
		// crash the node.
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrBadSnapshot, p)
		}
	}()
	err = db.Update(func(tx *bolt.Tx) error {
		fresh := tx.Bucket(bucketMeta) == nil
		if fresh != empty {
			return fmt.Errorf("%w: not a kvstore file", ErrBadSnapshot)
		}
		if !fresh {
			var first error
			for cerr := range tx.Check() { // drain: Check's goroutine sends every error
				if first == nil {
					first = cerr
				}
			}
			if first != nil {
				return fmt.Errorf("%w: %v", ErrBadSnapshot, first)
			}
		}
		var err error
		if st, err = initBuckets(tx); err != nil {
			return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
		}
		if fresh {
			st.applied, st.appliedTerm = want.Index, want.Term
			return tx.Bucket(bucketMeta).Put(keyState, st.encode())
		}
		if want.Index != 0 && st.applied != want.Index {
			return fmt.Errorf("%w: snapshot is at index %d, want %d", ErrBadSnapshot, st.applied, want.Index)
		}
		return nil
	})
	return st, err
}

func (s *Store) closed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db == nil
}

// errTestCrash is what a test hook returns to simulate a crash: install
// then stops without cleaning up, as a killed process would.
var errTestCrash = errors.New("kvstore: simulated crash")

func (s *Store) hook(step string) error {
	if s.testHook == nil {
		return nil
	}
	return s.testHook(step)
}

// trailerWriter writes all but the last snapshotTrailerLen bytes through,
// checksumming them, and keeps the last ones: the trailer.
type trailerWriter struct {
	w    io.Writer
	crc  hash.Hash32
	n    int64
	tail []byte
}

func (t *trailerWriter) Write(p []byte) (int, error) {
	buf := append(t.tail, p...)
	if len(buf) <= snapshotTrailerLen {
		t.tail = buf
		return len(p), nil
	}
	out := buf[:len(buf)-snapshotTrailerLen]
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	t.crc.Write(out)
	t.n += int64(len(out))
	t.tail = append(make([]byte, 0, snapshotTrailerLen), buf[len(out):]...)
	return len(p), nil
}

func (t *trailerWriter) check() error {
	if len(t.tail) != snapshotTrailerLen || t.n == 0 {
		return fmt.Errorf("%w: truncated", ErrBadSnapshot)
	}
	if n := binary.BigEndian.Uint64(t.tail); n != uint64(t.n) {
		return fmt.Errorf("%w: %d image bytes, trailer says %d", ErrBadSnapshot, t.n, n)
	}
	if sum := binary.BigEndian.Uint32(t.tail[8:]); sum != t.crc.Sum32() {
		return fmt.Errorf("%w: checksum %08x, trailer says %08x", ErrBadSnapshot, t.crc.Sum32(), sum)
	}
	return nil
}
