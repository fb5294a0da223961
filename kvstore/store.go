package kvstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/internal/fsutil"
	"github.com/raftkv/raftkv/node/raft"
	bolt "go.etcd.io/bbolt"
)

// Buckets and keys of the state-machine file.
var (
	// bucketMeta holds keyState and keyFormat.
	bucketMeta = []byte("meta")
	// bucketKV maps a live key to its current record (createRev, modRev,
	// version: 8 bytes big-endian each; then the value).
	bucketKV = []byte("kv")
	// bucketRevs holds every version of every key until compacted:
	// escaped key, 0x00 0x01, 8-byte big-endian revision -> flag byte
	// (0 put, 1 tombstone), createRev, version, value. See histKey.
	bucketRevs = []byte("revs")
	// bucketSessions maps an 8-byte big-endian ClientID to its msgpack
	// sessionRecord.
	bucketSessions = []byte("sessions")
	// bucketSessionExpiry indexes sessions by last activity: 8-byte
	// big-endian clock, 8-byte big-endian id -> empty.
	bucketSessionExpiry = []byte("sessexp")

	keyState  = []byte("state")  // stateLen bytes, see metaState.encode
	keyFormat = []byte("format") // 1 byte: storeFormat
)

// storeFormat is the layout version of the state-machine file and its
// snapshots. Open and snapshot installs refuse any other version.
//
//	1: sessions keyed by the log index of an OpRegisterSession entry
//	   (the runtime mapped ClientIDs to them in its own file)
//	2: sessions keyed by the client's ClientID, opened by its first command
const storeFormat = 2

// Defaults of Config.
const (
	DefaultMaxKeyBytes      = 4 << 10
	DefaultMaxValueBytes    = 1 << 20
	DefaultSessionTTL       = time.Hour
	DefaultInitialMmapBytes = 1 << 30
	// MaxKeyBytesLimit is the largest MaxKeyBytes: an escaped key (each
	// 0x00 doubles) plus terminator and revision must fit bbolt's 32 KiB
	// key limit.
	MaxKeyBytesLimit = (bolt.MaxKeySize - 10) / 2
)

// Config configures Open. The zero value gives the defaults.
//
// MaxKeyBytes, MaxValueBytes, MaxRequestBytes and SessionTTL are part of
// the replicated state machine's definition: every replica must use the
// same values, or replicas answer the same log differently.
type Config struct {
	// MaxKeyBytes bounds keys (and range ends) in bytes; 0 means
	// DefaultMaxKeyBytes. At most MaxKeyBytesLimit.
	MaxKeyBytes int
	// MaxValueBytes bounds values in bytes; 0 means DefaultMaxValueBytes
	// (1 MiB).
	MaxValueBytes int
	// MaxRequestBytes bounds an encoded command in bytes; 0 means
	// MaxValueBytes + 2*MaxKeyBytes + 1 KiB.
	MaxRequestBytes int
	// SessionTTL is how long a session may stay idle, measured on the log
	// clock (the largest Command.Time applied), before it expires; 0
	// means DefaultSessionTTL.
	SessionTTL time.Duration
	// NoSync skips fsync on apply. THIS IS UNSAFE: a power loss can
	// corrupt the file or lose applied state the log no longer holds.
	NoSync bool
	// InitialMmapBytes is bbolt's initial mmap size (address space, not
	// memory); a large value keeps a long snapshot read from blocking a
	// writer that needs to grow the map. 0 means DefaultInitialMmapBytes.
	InitialMmapBytes int
	// Timeout is how long Open waits for the file lock held by another
	// process; 0 means one second.
	Timeout time.Duration
	// Logger receives lifecycle events; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.MaxKeyBytes == 0 {
		c.MaxKeyBytes = DefaultMaxKeyBytes
	}
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = DefaultMaxValueBytes
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = c.MaxValueBytes + 2*c.MaxKeyBytes + 1024
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.InitialMmapBytes == 0 {
		c.InitialMmapBytes = DefaultInitialMmapBytes
	}
	if c.Timeout == 0 {
		c.Timeout = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.MaxKeyBytes < 0 || c.MaxKeyBytes > MaxKeyBytesLimit:
		return c, fmt.Errorf("kvstore: MaxKeyBytes %d not in [1,%d]", c.MaxKeyBytes, MaxKeyBytesLimit)
	case c.MaxValueBytes < 0 || c.MaxRequestBytes < 0 || c.SessionTTL < 0 || c.InitialMmapBytes < 0:
		return c, errors.New("kvstore: negative limit in Config")
	}
	return c, nil
}

// KeyValue is one version of a key.
type KeyValue struct {
	Key   []byte `msgpack:"k"`
	Value []byte `msgpack:"v,omitempty"`
	// CreateRev is the revision that created the key (since its last
	// deletion), ModRev the revision of this version, Version the number
	// of writes since creation (1 for a new key).
	CreateRev uint64 `msgpack:"c"`
	ModRev    uint64 `msgpack:"m"`
	Version   uint64 `msgpack:"n"`
}

// Result is the answer to one applied log entry.
type Result struct {
	// Index is the log index of the entry.
	Index uint64 `msgpack:"i"`
	// Op is the command's operation (OpNoop for no-ops, configuration
	// changes and undecodable entries).
	Op Op `msgpack:"o"`
	// Rev is the store's revision after the command.
	Rev uint64 `msgpack:"r"`
	// Err is the command's outcome: nil or one of the sentinels
	// (ErrCompareFailed, ErrValueTooLarge, ErrSessionExpired, ...). Code
	// is its persisted form.
	Err  error   `msgpack:"-"`
	Code ErrCode `msgpack:"e,omitempty"`
	// KV is, for a put (also by CAS), the new version without its value;
	// for a failed CAS, the key's current version (nil if absent).
	KV *KeyValue `msgpack:"kv,omitempty"`
	// Deleted counts the keys a delete removed.
	Deleted uint64 `msgpack:"d,omitempty"`
	// KVs and More answer OpRange.
	KVs  []KeyValue `msgpack:"kvs,omitempty"`
	More bool       `msgpack:"m,omitempty"`
	// Duplicate says the answer came from the session table: the command
	// was a retry and was not applied again.
	Duplicate bool `msgpack:"-"`
	// ClientID and Seq are the command's session identity, so that the
	// runtime finds who waits for this result without decoding the entry
	// again; both 0 when the entry was not decoded (not a command, or over
	// the request limit). Not stored.
	ClientID uint64 `msgpack:"-"`
	Seq      uint64 `msgpack:"-"`
}

// metaState is the store's own state, written in the same transaction as
// every change it describes.
type metaState struct {
	applied, appliedTerm uint64 // last applied log entry
	rev                  uint64 // current revision; Invariant: compacted <= rev
	compacted            uint64 // reads below this revision fail
	clock                int64  // largest Command.Time applied
}

const stateLen = 40

func (m metaState) encode() []byte {
	b := make([]byte, 0, stateLen)
	b = binary.BigEndian.AppendUint64(b, m.applied)
	b = binary.BigEndian.AppendUint64(b, m.appliedTerm)
	b = binary.BigEndian.AppendUint64(b, m.rev)
	b = binary.BigEndian.AppendUint64(b, m.compacted)
	return binary.BigEndian.AppendUint64(b, uint64(m.clock))
}

func decodeMetaState(b []byte) (metaState, error) {
	if len(b) != stateLen {
		return metaState{}, fmt.Errorf("state record has %d bytes, want %d", len(b), stateLen)
	}
	m := metaState{
		applied:     binary.BigEndian.Uint64(b),
		appliedTerm: binary.BigEndian.Uint64(b[8:]),
		rev:         binary.BigEndian.Uint64(b[16:]),
		compacted:   binary.BigEndian.Uint64(b[24:]),
		clock:       int64(binary.BigEndian.Uint64(b[32:])),
	}
	if m.compacted > m.rev {
		return metaState{}, fmt.Errorf("compacted revision %d > revision %d", m.compacted, m.rev)
	}
	return m, nil
}

// Store is the replicated state machine: a multi-version key-value store
// with exactly-once client sessions, in one bbolt file.
//
// Apply, InstallSnapshot and Restore are serialized; reads and snapshots
// run concurrently with them.
type Store struct {
	cfg  Config
	path string

	// applyMu serializes writers: Apply, Restore, InstallSnapshot, Close.
	applyMu sync.Mutex
	// mu guards db: readers and Apply hold it shared; swapping the file
	// (Restore) and Close hold it exclusively.
	mu sync.RWMutex
	db *bolt.DB // nil once closed

	// st mirrors the meta record; written under applyMu and mu (shared).
	st      metaState
	applied atomic.Uint64

	waitMu sync.Mutex
	waitCh chan struct{} // closed and replaced whenever applied grows

	// testHook, when set, runs at named steps of Restore and before
	// ApplyThen's commit ("apply-commit"); an error simulates a crash at
	// that step.
	testHook func(step string) error
}

// Open opens (creating if needed) the state machine's file at path. A
// leftover temporary file from an interrupted Restore is removed.
func Open(path string, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, path: path, waitCh: make(chan struct{})}
	if err := os.Remove(s.tmpPath()); err == nil {
		cfg.Logger.Warn("removed interrupted snapshot install", "path", s.tmpPath())
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("kvstore: open %s: %w", path, err)
	}
	if err := s.openDB(); err != nil {
		return nil, err
	}
	cfg.Logger.Info("kv store opened", "path", path, "applied", s.st.applied, "rev", s.st.rev)
	return s, nil
}

func (s *Store) tmpPath() string { return s.path + ".restore.tmp" }

// openDB opens s.path and loads the meta state. Callers hold mu
// exclusively (or own s exclusively).
func (s *Store) openDB() error {
	db, err := fsutil.OpenBolt(s.path, s.boltOptions())
	if err != nil {
		return fmt.Errorf("kvstore: %w", err)
	}
	var st metaState
	if err := db.Update(func(tx *bolt.Tx) error {
		var err error
		st, err = initBuckets(tx)
		return err
	}); err != nil {
		db.Close()
		return fmt.Errorf("kvstore: open %s: %w", s.path, err)
	}
	db.NoSync = s.cfg.NoSync
	s.db, s.st = db, st
	s.setApplied(st.applied)
	return nil
}

func (s *Store) boltOptions() *bolt.Options {
	return &bolt.Options{
		Timeout:         s.cfg.Timeout,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: s.cfg.InitialMmapBytes,
	}
}

// initBuckets creates missing buckets and returns the meta state.
func initBuckets(tx *bolt.Tx) (metaState, error) {
	for _, name := range [][]byte{bucketMeta, bucketKV, bucketRevs, bucketSessions, bucketSessionExpiry} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return metaState{}, err
		}
	}
	mb := tx.Bucket(bucketMeta)
	if v := mb.Get(keyFormat); v == nil {
		if err := mb.Put(keyFormat, []byte{storeFormat}); err != nil {
			return metaState{}, err
		}
	} else if len(v) != 1 || v[0] != storeFormat {
		return metaState{}, formatError(v)
	}
	v := mb.Get(keyState)
	if v == nil {
		return metaState{}, mb.Put(keyState, metaState{}.encode())
	}
	return decodeMetaState(v)
}

// formatError explains a store format this build cannot read.
func formatError(v []byte) error {
	if len(v) == 1 && v[0] < storeFormat {
		return fmt.Errorf("%w: store format %d was written by an older raftkv (this build reads format %d only; "+
			"format %d keyed sessions differently): keep the older raftkv for this data, or start from an empty data dir (a new cluster, or a node joining a cluster that runs this build)",
			ErrFormat, v[0], storeFormat, v[0])
	}
	return fmt.Errorf("%w: unknown store format %x (this build reads format %d; was it written by a newer raftkv?)", ErrFormat, v, storeFormat)
}

// readMeta reads the meta state inside a transaction.
func readMeta(tx *bolt.Tx) (metaState, error) {
	mb := tx.Bucket(bucketMeta)
	if mb == nil {
		return metaState{}, errors.New("missing meta bucket")
	}
	return decodeMetaState(mb.Get(keyState))
}

// Close closes the file. It is idempotent.
func (s *Store) Close() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Config returns the configuration with defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Applied returns the index of the last applied log entry. After a
// ReadIndex answer with index i, a read served once Applied() >= i is
// linearizable; any read now is serializable.
func (s *Store) Applied() uint64 { return s.applied.Load() }

func (s *Store) setApplied(i uint64) {
	s.applied.Store(i)
	s.waitMu.Lock()
	close(s.waitCh)
	s.waitCh = make(chan struct{})
	s.waitMu.Unlock()
}

// WaitApplied blocks until Applied() >= index or ctx is done.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	for {
		s.waitMu.Lock()
		ch := s.waitCh
		s.waitMu.Unlock()
		if s.applied.Load() >= index {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kvstore: wait for applied index %d: %w", index, ctx.Err())
		case <-ch:
		}
	}
}

// Status is a summary of the store.
type Status struct {
	Applied     uint64 // last applied log index
	AppliedTerm uint64 // its term
	Rev         uint64 // current revision
	CompactRev  uint64 // reads below it fail with ErrCompacted
	Clock       int64  // log clock, Unix nanoseconds
	Sessions    int    // live sessions
	Keys        int    // live keys
	SizeBytes   int64  // file size
}

// Status returns a consistent summary.
func (s *Store) Status() (Status, error) {
	var out Status
	err := s.view(func(tx *bolt.Tx) error {
		st, err := readMeta(tx)
		if err != nil {
			return err
		}
		out = Status{
			Applied: st.applied, AppliedTerm: st.appliedTerm, Rev: st.rev, CompactRev: st.compacted,
			Clock: st.clock, SizeBytes: tx.Size(),
			Sessions: tx.Bucket(bucketSessions).Stats().KeyN,
			Keys:     tx.Bucket(bucketKV).Stats().KeyN,
		}
		return nil
	})
	if err != nil {
		return Status{}, fmt.Errorf("kvstore: status: %w", err)
	}
	return out, nil
}

func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	return s.db.View(fn)
}

// Apply applies committed entries in order, in ONE bbolt transaction that
// also records the new applied index, and returns one Result per entry it
// applied. Entries at or below Applied() are skipped (applying is
// idempotent), so the result may be shorter than ents; an entry that does
// not follow the applied index fails with ErrApplyGap.
//
// Per-command failures (a failed compare, a value too large, an expired
// session) are in Result.Err. An error returned by Apply itself is an I/O
// or invariant failure: nothing of the batch was applied.
//
// Entries with empty Data and EntryConfChange entries only advance the
// applied index (the caller applies configuration changes to the core).
func (s *Store) Apply(ents []raft.Entry) ([]Result, error) {
	return s.ApplyThen(ents, nil)
}

// ApplyThen is Apply that hands the results over before the commit: then,
// when not nil, receives them once every entry of the batch is applied
// inside the write transaction, before that transaction commits (two
// fsyncs unless NoSync). Apply's contract holds otherwise: the same
// results are returned, and the applied index advances only after the
// commit. If then returns an error, the transaction rolls back (nothing of
// the batch is applied) and ApplyThen returns that error.
//
// then runs with the store's locks held, inside bbolt's write
// transaction: it must not call any method of s, and should only hand the
// results on (answer waiting clients). The results stay valid after
// ApplyThen returns.
//
// Why answering before the commit is safe, for a caller that applies only
// entries committed in the Raft log (as package node does):
//
//   - The results are decided. Apply is deterministic: an entry's result
//     depends only on the entries before it in the log (the log clock is
//     Command.Time, the session table lives in this same file), and a
//     committed entry never changes. If the process dies before the commit
//     (or the commit fails), the file still holds the state at the old
//     applied index, Raft hands the entries above it over again after the
//     restart, and re-applying them yields the same results, session table
//     included: a client that retries a write whose answer it already got
//     (or lost) gets that same answer back as a duplicate, not a second
//     application.
//   - Linearizable reads never see uncommitted state and never miss an
//     answered write. Applied() and WaitApplied advance only after the
//     commit has returned, and every read (Range, Status, snapshots) runs
//     in a bbolt read transaction, which sees committed state only. A write
//     answered here has log index w <= the leader's commit index; a
//     ReadIndex read that starts after the answer gets a read index
//     i >= w (the leader's commit index once it committed an entry of its
//     term, which covers every committed entry) and is served once
//     Applied() >= i, so after the commit of a transaction that contains w:
//     the read sees the write. A read at an applied index below w would be
//     stale, and that is what a serializable read may be, by definition
//     (it may even miss a write whose answer its client has received from
//     this very node, until the commit returns).
//   - Only one write transaction runs at a time (applyMu), so at most one
//     batch is answered and not committed, and batch n+1 starts from the
//     committed state of batch n.
func (s *Store) ApplyThen(ents []raft.Entry, then func([]Result) error) ([]Result, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	for len(ents) > 0 && ents[0].Index <= s.st.applied {
		ents = ents[1:]
	}
	if len(ents) == 0 {
		return nil, nil
	}
	if ents[0].Index != s.st.applied+1 {
		return nil, fmt.Errorf("kvstore: apply %d after applied %d: %w", ents[0].Index, s.st.applied, ErrApplyGap)
	}
	var (
		results []Result
		st      metaState
	)
	err := s.db.Update(func(tx *bolt.Tx) error {
		st = s.st
		results = make([]Result, 0, len(ents))
		w := &applier{tx: tx, st: &st, cfg: &s.cfg}
		for _, e := range ents {
			if e.Index != st.applied+1 {
				return fmt.Errorf("apply %d after applied %d: %w", e.Index, st.applied, ErrApplyGap)
			}
			r, err := w.applyEntry(e)
			if err != nil {
				return fmt.Errorf("entry %d: %w", e.Index, err)
			}
			st.applied, st.appliedTerm = e.Index, e.Term
			results = append(results, r)
		}
		if err := tx.Bucket(bucketMeta).Put(keyState, st.encode()); err != nil {
			return err
		}
		if then != nil {
			if err := then(results); err != nil {
				return err
			}
		}
		return s.hook("apply-commit")
	})
	if err != nil {
		return nil, fmt.Errorf("kvstore: apply [%d,%d]: %w", ents[0].Index, ents[len(ents)-1].Index, err)
	}
	s.st = st
	s.setApplied(st.applied)
	return results, nil
}

// applier applies commands inside one write transaction.
type applier struct {
	tx  *bolt.Tx
	st  *metaState
	cfg *Config
}

func (w *applier) applyEntry(e raft.Entry) (Result, error) {
	r := Result{Index: e.Index}
	if e.Type != raft.EntryNormal || len(e.Data) == 0 {
		r.Rev = w.st.rev
		return r, nil
	}
	if len(e.Data) > w.cfg.MaxRequestBytes {
		return w.fail(r, fmt.Errorf("%w: %d bytes > %d", ErrRequestTooLarge, len(e.Data), w.cfg.MaxRequestBytes)), nil
	}
	cmd, err := DecodeCommand(e.Data)
	if err != nil {
		return w.fail(r, err), nil
	}
	res, err := w.applyCommand(r, &cmd)
	res.ClientID, res.Seq = cmd.ClientID, cmd.Seq
	return res, err
}

// applyCommand applies the decoded command of entry r.Index.
func (w *applier) applyCommand(r Result, cmd *Command) (Result, error) {
	r.Op = cmd.Op
	if cmd.Time > w.st.clock {
		w.st.clock = cmd.Time
		if err := w.expireSessions(); err != nil {
			return r, err
		}
	}
	if cmd.Op == OpRegisterSession {
		return w.fail(r, fmt.Errorf("%w: register-session is retired (store format %d keys sessions by ClientID); the entry was written by an older raftkv", ErrBadCommand, storeFormat)), nil
	}
	if cmd.ClientID == 0 || cmd.Op == OpRange {
		return w.exec(r, cmd)
	}
	return w.applyWithSession(r, cmd)
}

func (w *applier) fail(r Result, err error) Result {
	r.Err, r.Code, r.Rev = err, CodeOf(err), w.st.rev
	return r
}

// exec runs a decoded command. Only I/O errors are returned as errors.
func (w *applier) exec(r Result, cmd *Command) (Result, error) {
	if err := w.cfg.check(cmd); err != nil {
		return w.fail(r, err), nil
	}
	var err error
	switch cmd.Op {
	case OpNoop, OpCloseSession:
	case OpPut:
		r.KV, err = w.put(cmd.Key, cmd.Value)
	case OpDelete:
		r.Deleted, err = w.deleteKeys([][]byte{cmd.Key})
	case OpDeletePrefix:
		var keys [][]byte
		keys, err = scanKeys(w.tx, cmd.Key)
		if err == nil {
			r.Deleted, err = w.deleteKeys(keys)
		}
	case OpCAS:
		r, err = w.cas(r, cmd)
	case OpCompact:
		err = w.compact(cmd.Rev)
	case OpRange:
		var rr RangeResult
		rr, err = readRange(w.tx, *w.st, RangeRequest{Key: cmd.Key, End: cmd.End, Prefix: cmd.Prefix, Limit: cmd.Limit, Rev: cmd.Rev})
		r.KVs, r.More = rr.KVs, rr.More
	default:
		err = fmt.Errorf("%w: op %d", ErrBadCommand, cmd.Op)
	}
	if err != nil {
		if CodeOf(err) != CodeBadCommand || errors.Is(err, ErrBadCommand) {
			return w.fail(r, err), nil
		}
		return r, err
	}
	r.Rev = w.st.rev
	return r, nil
}

// check validates a command's sizes and fields against the limits.
func (c *Config) check(cmd *Command) error {
	needKey := false
	switch cmd.Op {
	case OpPut, OpDelete, OpCAS:
		needKey = true
	case OpRange:
		needKey = !cmd.Prefix && len(cmd.End) == 0
	}
	if needKey && len(cmd.Key) == 0 {
		return ErrEmptyKey
	}
	if len(cmd.Key) > c.MaxKeyBytes || len(cmd.End) > c.MaxKeyBytes {
		return fmt.Errorf("%w: %d bytes > %d", ErrKeyTooLarge, max(len(cmd.Key), len(cmd.End)), c.MaxKeyBytes)
	}
	if len(cmd.Value) > c.MaxValueBytes {
		return fmt.Errorf("%w: %d bytes > %d", ErrValueTooLarge, len(cmd.Value), c.MaxValueBytes)
	}
	if cmd.Op == OpCAS {
		if cmd.Compare == nil || cmd.Compare.Target > CompareExists {
			return fmt.Errorf("%w: cas needs a known compare target", ErrBadCommand)
		}
		if cmd.Then != OpPut && cmd.Then != OpDelete {
			return fmt.Errorf("%w: cas then must be put or delete, not %v", ErrBadCommand, cmd.Then)
		}
		if len(cmd.Compare.Value) > c.MaxValueBytes {
			return fmt.Errorf("%w: compare value %d bytes > %d", ErrValueTooLarge, len(cmd.Compare.Value), c.MaxValueBytes)
		}
	}
	return nil
}

// Validate checks cmd against the store's limits before it is proposed,
// so that an oversized or malformed request is refused without taking a
// log slot. Apply performs the same checks.
func (s *Store) Validate(cmd Command) error {
	_, err := s.EncodeChecked(cmd)
	return err
}

// EncodeChecked checks cmd as Validate does and returns its encoding, the
// entry data to propose: the size checked is the size of what is proposed,
// session fields and time included, so a command that passes is never
// refused at apply for its size.
func (s *Store) EncodeChecked(cmd Command) ([]byte, error) {
	if cmd.Op > OpCloseSession || cmd.Op == OpRegisterSession {
		return nil, fmt.Errorf("%w: unknown op %v", ErrBadCommand, cmd.Op)
	}
	if err := s.cfg.check(&cmd); err != nil {
		return nil, err
	}
	b, err := EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	if len(b) > s.cfg.MaxRequestBytes {
		return nil, fmt.Errorf("%w: %d bytes > %d", ErrRequestTooLarge, len(b), s.cfg.MaxRequestBytes)
	}
	return b, nil
}

func (w *applier) cas(r Result, cmd *Command) (Result, error) {
	cur, ok, err := getCurrent(w.tx, cmd.Key, true)
	if err != nil {
		return r, err
	}
	var hold bool
	c := cmd.Compare
	switch c.Target {
	case CompareValue:
		hold = ok && bytes.Equal(cur.Value, c.Value)
	case CompareModRev:
		hold = (ok && cur.ModRev == c.Rev) || (!ok && c.Rev == 0)
	case CompareVersion:
		hold = (ok && cur.Version == c.Rev) || (!ok && c.Rev == 0)
	case CompareCreateRev:
		hold = (ok && cur.CreateRev == c.Rev) || (!ok && c.Rev == 0)
	case CompareExists:
		hold = ok
	}
	if !hold {
		if ok {
			r.KV = &cur
		}
		return r, ErrCompareFailed
	}
	if cmd.Then == OpPut {
		r.KV, err = w.put(cmd.Key, cmd.Value)
	} else {
		r.Deleted, err = w.deleteKeys([][]byte{cmd.Key})
	}
	return r, err
}

func (s *Store) String() string { return fmt.Sprintf("kvstore.Store(%s)", s.path) }

// Fingerprint is a digest of the whole replicated state at an applied
// index: two replicas that applied the same log prefix have equal
// fingerprints (a state-machine safety check for tests and simulations).
type Fingerprint struct {
	Applied uint64
	Sum     [sha256.Size]byte
}

// Fingerprint hashes every bucket (data, history, sessions, meta) in one
// read transaction. It reads the whole store: not for hot paths.
func (s *Store) Fingerprint() (Fingerprint, error) {
	var fp Fingerprint
	err := s.view(func(tx *bolt.Tx) error {
		st, err := readMeta(tx)
		if err != nil {
			return err
		}
		fp.Applied = st.applied
		h := sha256.New()
		var n [8]byte
		write := func(b []byte) {
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
		for _, name := range [][]byte{bucketMeta, bucketKV, bucketRevs, bucketSessions, bucketSessionExpiry} {
			write(name)
			if err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				write(k)
				write(v)
				return nil
			}); err != nil {
				return err
			}
		}
		h.Sum(fp.Sum[:0])
		return nil
	})
	if err != nil {
		return Fingerprint{}, fmt.Errorf("kvstore: fingerprint: %w", err)
	}
	return fp, nil
}
