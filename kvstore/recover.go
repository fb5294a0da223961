package kvstore

import "fmt"

// Recover brings kv up to the log's snapshot after a restart. The log
// records a snapshot (metadata and data) before the store installs it, so
// a crash in between leaves the store behind the log's first index; Recover
// reinstalls the snapshot from the log in that case. Call it after opening
// both files and before creating the Raft node with Config.Applied =
// kv.Applied().
func Recover(log *LogStore, kv *Store) error {
	meta := log.SnapshotMeta()
	if meta.Index <= kv.Applied() {
		return nil
	}
	snap, err := log.Snapshot()
	if err != nil {
		return fmt.Errorf("kvstore: recover: %w", err)
	}
	if err := kv.InstallSnapshot(snap); err != nil {
		return fmt.Errorf("kvstore: recover: %w", err)
	}
	return nil
}
