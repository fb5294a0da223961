// Package kvstore is where the user's data lives: the Raft log on disk, and
// the replicated state machine the log is applied to, a multi-version
// key-value store with exactly-once client sessions. Both are bbolt files.
//
// # Basics
//
// LogStore is the Raft log. It implements raft.Storage with the semantics
// (and errors) of raft.MemoryStorage, and adds Save, which writes one
// Ready (snapshot, entries, hard state) in ONE bbolt transaction with one
// commit: group commit, however many entries the Ready carries. When Save
// returns with sync set, everything is on disk, and only then may the
// Ready's messages be sent. Buckets: raftlog (8-byte big-endian index ->
// term, type, data) and raftstate (hard state, conf state, snapshot
// metadata and data, and the index/term of the last compacted entry). An
// in-memory cache of the log's tail answers the core's reads of recent
// entries; the disk is the truth.
//
// Store is the state machine. Apply takes committed entries and applies a
// whole batch in one transaction that also records the applied index, so
// the index and the data can never disagree after a crash (the etcd 3.5
// consistent_index bug); entries at or below the applied index are
// skipped, so replaying the log after a restart is harmless. Apply returns
// one Result per applied entry, with per-command outcomes as sentinel
// errors (ErrCompareFailed, ErrValueTooLarge, ErrSessionExpired, ...);
// an error from Apply itself means an I/O failure and nothing of the batch
// was applied. ApplyThen hands the results over earlier, once the batch is
// applied inside its transaction and before the commit's fsyncs, so that a
// caller applying committed log entries can answer its clients without
// waiting for the disk; Applied() and reads still move only at the commit
// (ApplyThen's comment says why that is safe).
//
// Commands (Command, msgpack with short tags, decoded through
// internal/codec's bounded decoder) are put, delete, delete by prefix,
// compare-and-swap (compare value, mod revision, version, create revision
// or existence, then put or delete), compaction, no-op, a read (OpRange)
// for reads through the log, and closing a client's session.
//
// Multi-version: every command that changes something takes the next
// revision (a prefix delete takes one revision for all its keys). Each key
// has a create revision, a mod revision and a version (writes since
// creation). Bucket kv holds the current version of each live key, bucket
// revs every version and tombstone, keyed by the escaped key and the
// revision, so Range can read any revision not yet compacted. OpCompact
// drops the versions no read at or above its revision can see.
//
// Exactly-once: a command with a ClientID and a Seq is applied once. The
// ClientID is the client's own random 64-bit ID; the session table
// (bucket sessions, keyed by ClientID, written in the same transaction as
// the data and the applied index) keeps the last Seq and its Result. The
// first command of an unknown ClientID, which must have Seq 1, opens its
// session as it is applied: a one-shot client costs one log entry, not a
// registration and then the command. A retry with the last Seq gets the
// stored Result back (Duplicate set), a lower Seq gets ErrStaleSequence, so
// a client has one command in flight per ClientID. Sessions expire
// deterministically: each command carries the proposer's clock
// (Command.Time); the store's clock is the largest Time in the log, and
// before each such command every session idle for more than
// Config.SessionTTL on that clock is dropped (bucket sessexp indexes
// sessions by last activity). Every replica drops the same sessions at the
// same log index. A command of an unknown ClientID with Seq > 1, or with
// Seq 1 but a Command.SessionStart (when the client chose its ClientID)
// more than SessionTTL/2 behind the log clock, may be a retry of one
// applied before its session was dropped: it gets ErrSessionExpired and is
// not applied (see applyWithSession for why this rules out a double apply
// however long a client retries).
//
// Snapshots: WriteSnapshot streams a consistent copy of the store (a
// bbolt image from a read transaction, which does not block Apply) with a
// length and CRC-32C trailer; it includes the sessions and the applied
// index and revision. Restore and InstallSnapshot replace the store
// atomically: the bytes go to a temporary file that is checksummed,
// fsynced and checked by bbolt, then renamed over the store's file, and
// the directory is fsynced. A crash before the rename leaves the old
// store (Open removes the temporary file), after it the new one.
//
// # One file or two
//
// The log (raft.db) and the state machine (kv.db) are two files. Installing
// a snapshot replaces the whole state machine, and the only atomic way to
// replace a whole bbolt store without one giant transaction (which would
// hold the single bbolt writer lock while rewriting every key) is to
// rename a new file over it; with the log in the same file, that rename
// would also replace the log. Two files also keep log fsyncs, which gate
// every message the node sends, from queueing behind an apply batch or a
// compaction: bbolt allows one writer per file. The price is that a
// snapshot install and the log's truncation are not one transaction. The
// order makes that safe: the log records the snapshot (metadata and data)
// first, then the store installs it; the store's applied index is atomic
// with its data, so after a crash the store can only be behind the log,
// and Recover reinstalls the snapshot from the log.
//
// # Usage
//
//	log, err := kvstore.OpenLog(filepath.Join(dir, "raft.db"), kvstore.LogOptions{})
//	kv, err := kvstore.Open(filepath.Join(dir, "kv.db"), kvstore.Config{})
//	err = kvstore.Recover(log, kv) // after a crash during a snapshot install
//	node, err := raft.NewNode(raft.Config{ID: id, Storage: log, Applied: kv.Applied(), ...})
//
//	// The Ready loop:
//	rd := node.Ready()
//	err = log.Save(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync) // one tx, one fsync
//	send(rd.Messages)
//	if !rd.Snapshot.IsEmpty() {
//		err = kv.InstallSnapshot(rd.Snapshot)
//	}
//	results, err := kv.Apply(rd.CommittedEntries) // answer waiting clients by Result.Index
//	// (for EntryConfChange entries: cs := node.ApplyConfChange(cc); log.SetConfState(cs))
//	node.Advance(rd)
//
//	// Proposing: refuse bad requests early, then propose the bytes.
//	cmd := kvstore.Command{Op: kvstore.OpPut, Key: k, Value: v, ClientID: id, Seq: seq, Time: now.UnixNano()}
//	if err := kv.Validate(cmd); err != nil { ... }
//	data, _ := kvstore.EncodeCommand(cmd)
//	node.Propose(data)
//
//	// Reads: serializable now, linearizable after ReadIndex.
//	kvs, err := kv.Get(key, 0)                    // ErrKeyNotFound
//	res, err := kv.Range(kvstore.RangeRequest{Key: p, Prefix: true, Limit: 100, Rev: rev})
//	// A page of at most MaxBytes (by KeyValue.EncodedSizeBound); while
//	// res.More, the next page reads at res.Rev with After: the last key.
//	res, err = kv.Range(kvstore.RangeRequest{Key: p, Prefix: true, MaxBytes: 1 << 20})
//	err = kv.WaitApplied(ctx, readState.Index)     // then read
//
//	// State-machine safety in tests and simulations: replicas at the same
//	// applied index have equal fingerprints.
//	fp, err := kv.Fingerprint()
//
//	// Snapshots and compaction, now and then: pin the state where it
//	// must be consistent, write the file anywhere, record it, compact.
//	pin, err := kv.BeginSnapshot()
//	info := pin.Info()
//	f, err := log.WriteSnapshotFile(info.Applied, info.AppliedTerm, func(w io.Writer) error {
//		defer pin.Close()
//		_, err := pin.WriteTo(w)
//		return err
//	})
//	err = log.RecordSnapshot(raft.SnapshotMeta{Index: info.Applied, Term: info.AppliedTerm, ConfState: cs}, f)
//	err = log.Compact(info.Applied - keep)
//
// # Caveats
//
// Keys and values returned by reads are copies; nothing leaves a
// transaction without bytes.Clone.
//
// Config's limits (MaxKeyBytes, MaxValueBytes, MaxRequestBytes) and
// SessionTTL define the state machine: every replica must use the same
// values, or they answer the same log differently.
//
// Session expiry follows the proposers' clocks as written into the log: a
// proposer whose clock runs far ahead expires sessions early (their
// clients then get ErrSessionExpired, never a double apply).
//
// The file carries a format number (storeFormat, now 2: sessions keyed by
// ClientID). Open and snapshot installs refuse any other format with
// ErrFormat and change nothing; format 1 (sessions registered through the
// log) is not converted.
//
// The Raft log file carries a format number too (logFormat, now 2: a
// snapshot's data is a file in the snapshot directory, the log holds its
// metadata and the file's name, size and CRC-32C). OpenLog refuses format
// 1 (the data inside raft.db) with ErrFormat, and refuses a log whose
// recorded snapshot file is missing or does not match; it removes the
// snapshot files no record names (see SnapshotFile).
//
// A long snapshot read holds a bbolt read transaction; a writer that needs
// to grow the memory map waits for it, so Config.InitialMmapBytes defaults
// to 1 GiB of address space.
//
// bbolt trusts its file: a corrupt page can crash the process from a
// background goroutine. Snapshots from peers are therefore checked
// against their CRC-32C trailer before bbolt opens them.
//
// LogOptions.NoSync and Config.NoSync skip fsync. THIS IS UNSAFE outside
// tests and benchmarks.
//
// # Tests
//
// go test ./kvstore/ runs everything, including the crash tests that kill
// a child copy of the test binary with SIGKILL (TestCrashLog, TestCrashKV;
// skipped with -short). Benchmarks: go test ./kvstore/ -run '^$' -bench .
// (KVSTORE_BENCH_DIR picks the disk). Fuzzing: go test ./kvstore/ -run '^$'
// -fuzz FuzzDecodeCommand (or FuzzApply).
package kvstore
