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
// was applied.
//
// Commands (Command, msgpack with short tags, decoded through
// internal/codec's bounded decoder) are put, delete, delete by prefix,
// compare-and-swap (compare value, mod revision, version, create revision
// or existence, then put or delete), compaction, no-op, a read (OpRange)
// for reads through the log, and session registration and closing.
//
// Multi-version: every command that changes something takes the next
// revision (a prefix delete takes one revision for all its keys). Each key
// has a create revision, a mod revision and a version (writes since
// creation). Bucket kv holds the current version of each live key, bucket
// revs every version and tombstone, keyed by the escaped key and the
// revision, so Range can read any revision not yet compacted. OpCompact
// drops the versions no read at or above its revision can see.
//
// Exactly-once: OpRegisterSession opens a session whose id is its log
// index. A command with Session and Seq is applied once: the session table
// (bucket sessions, written in the same transaction as the data and the
// applied index) keeps the last Seq and its Result, so a retry with the
// same Seq gets that Result back (Duplicate set) and a lower Seq gets
// ErrStaleSequence. A client therefore has one command in flight per
// session. Sessions expire deterministically: each command carries the
// proposer's clock (Command.Time); the store's clock is the largest Time
// in the log, and before each such command every session idle for more
// than Config.SessionTTL on that clock is dropped (bucket sessexp indexes
// sessions by last activity). A command for a dropped session gets
// ErrSessionExpired and is not applied, so an expired session can never
// cause a double apply. Every replica drops the same sessions at the same
// log index.
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
//	cmd := kvstore.Command{Op: kvstore.OpPut, Key: k, Value: v, Session: sid, Seq: seq, Time: now.UnixNano()}
//	if err := kv.Validate(cmd); err != nil { ... }
//	data, _ := kvstore.EncodeCommand(cmd)
//	node.Propose(data)
//
//	// Reads: serializable now, linearizable after ReadIndex.
//	kvs, err := kv.Get(key, 0)                    // ErrKeyNotFound
//	res, err := kv.Range(kvstore.RangeRequest{Key: p, Prefix: true, Limit: 100, Rev: rev})
//	err = kv.WaitApplied(ctx, readState.Index)     // then read
//
//	// State-machine safety in tests and simulations: replicas at the same
//	// applied index have equal fingerprints.
//	fp, err := kv.Fingerprint()
//
//	// Snapshots and compaction, now and then:
//	data, info, err := kv.SnapshotBytes()
//	snap, err := log.CreateSnapshot(info.Applied, &confState, data)
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
// proposer whose clock runs far ahead expires sessions early (they then
// get ErrSessionExpired, never a double apply).
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
