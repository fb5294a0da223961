package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/raftkv/raftkv/kvstore"
	"github.com/raftkv/raftkv/node/raft"
)

// Snapshot creation. Every SnapshotEntries applied entries the loop
// snapshots the state machine and compacts the log. Only the part that
// must be consistent runs on the loop (maybeSnapshot): wait for the
// applier (barrier), so that the store and the runtime's tables are at
// the same applied index; pin the store's state (a bbolt read
// transaction, kvstore.Store.BeginSnapshot); copy the tables and the
// configuration. A background goroutine then streams the envelope header
// and the pinned store into a snapshot file (kvstore.LogStore.
// WriteSnapshotFile: temporary name, fsync, rename, directory fsync), while
// the loop keeps ticking, sending heartbeats and taking proposals. When it
// is done, the loop records the file in the log (RecordSnapshot: one
// fsynced log transaction, after which the previous file is removed) and
// compacts (finishSnapshot).
//
// A crash at any step is safe: until the log records the new file, the
// log's snapshot is the previous one and the new file is an orphan that
// kvstore.OpenLog removes; once recorded, the file is complete and
// fsynced. One creation runs at a time. A received snapshot (install) and
// the loop's end cancel it (abortSnapshot). A failed write is logged and
// retried after SnapshotEntries/8 more applied entries; only a failure of
// the log's own write is fatal.
//
// The Raft core still holds a whole snapshot in memory while it sends one
// to a follower (LogStore.Snapshot reads the file) and while it receives
// one (node/raft snapshotRecv): a snapshot must fit in memory.

// snapJob is a snapshot creation in progress.
type snapJob struct {
	meta   raft.SnapshotMeta
	cancel context.CancelFunc
	done   chan snapResult // capacity 1: the writer never waits
}

type snapResult struct {
	meta    raft.SnapshotMeta
	file    kvstore.SnapshotFile
	err     error
	elapsed time.Duration
}

// snapDone is the channel the loop selects on (nil: none in progress).
func (n *Node) snapDone() <-chan snapResult {
	if n.snapJob == nil {
		return nil
	}
	return n.snapJob.done
}

// maybeSnapshot starts a snapshot creation every SnapshotEntries applied
// entries (see the comment at the top of this file).
func (n *Node) maybeSnapshot() error {
	applied := n.kv.Applied()
	if n.snapJob != nil || applied < n.snapIndex+n.cfg.SnapshotEntries || applied < n.snapRetryAt {
		return nil
	}
	// The snapshot must see the store and the tables at the same index.
	n.barrier()
	pin, err := n.kv.BeginSnapshot()
	if err != nil {
		n.snapFailed(err)
		return nil
	}
	info := pin.Info()
	meta := raft.SnapshotMeta{Index: info.Applied, Term: info.AppliedTerm, ConfState: n.rn.Status().Config}
	n.stMu.Lock()
	header := wrapSnapshot(n.repl, nil)
	n.stMu.Unlock()
	ctx, cancel := context.WithCancel(n.runCtx)
	job := &snapJob{meta: meta, cancel: cancel, done: make(chan snapResult, 1)}
	n.snapJob = job
	n.wg.Go(func() {
		defer cancel()
		start := time.Now()
		r := snapResult{meta: meta}
		r.file, r.err = n.rlog.WriteSnapshotFile(meta.Index, meta.Term, func(w io.Writer) error {
			defer pin.Close()
			w = ctxWriter{ctx: ctx, w: w}
			if _, err := w.Write(header); err != nil {
				return err
			}
			if h := n.cfg.snapWriteHook; h != nil {
				if err := h(ctx); err != nil {
					return err
				}
			}
			_, err := pin.WriteTo(w)
			return err
		})
		pin.Close() // when WriteSnapshotFile failed before fill
		r.elapsed = time.Since(start)
		job.done <- r
	})
	n.logger().Debug("snapshot started", "index", meta.Index)
	if n.cfg.syncSnapshot {
		return n.finishSnapshot(<-job.done)
	}
	return nil
}

// finishSnapshot, on the loop, records a written snapshot in the log and
// compacts.
func (n *Node) finishSnapshot(r snapResult) error {
	n.snapJob = nil
	if r.err != nil {
		n.snapFailed(r.err)
		return nil
	}
	if err := n.rlog.RecordSnapshot(r.meta, r.file); err != nil {
		if errors.Is(err, raft.ErrSnapOutOfDate) {
			// A received snapshot got there first.
			n.snapIndex = max(n.snapIndex, r.meta.Index)
			if err := n.rlog.RemoveSnapshotFile(r.file); err != nil {
				// Unrecorded: the next start removes it anyway.
				n.logger().Warn("cannot remove an unused snapshot file", "file", r.file.Name, "err", err)
			}
			return nil
		}
		return err
	}
	n.snapIndex = max(n.snapIndex, r.meta.Index)
	if r.meta.Index > n.cfg.SnapshotCatchUpEntries {
		compact := r.meta.Index - n.cfg.SnapshotCatchUpEntries
		if err := n.rlog.Compact(compact); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return err
		}
	}
	n.met.snapshots.Inc()
	n.logger().Info("snapshot created", "index", r.meta.Index, "bytes", r.file.Size, "write_ms", r.elapsed.Milliseconds())
	return nil
}

// snapFailed logs a failed snapshot creation and schedules the next try.
func (n *Node) snapFailed(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	n.snapRetryAt = n.kv.Applied() + max(1, n.cfg.SnapshotEntries/8)
	n.logger().Warn("snapshot failed; retrying later", "retry_at", n.snapRetryAt, "err", err)
}

// abortSnapshot cancels the snapshot creation in progress, if any, and
// waits for its writer (which then holds no file and no pinned state).
func (n *Node) abortSnapshot() {
	job := n.snapJob
	if job == nil {
		return
	}
	n.snapJob = nil
	job.cancel()
	r := <-job.done
	if r.err == nil {
		// It finished before the cancel: not recorded, so not needed.
		if err := n.rlog.RemoveSnapshotFile(r.file); err != nil {
			n.logger().Warn("remove unrecorded snapshot file", "err", err)
		}
	}
	n.logger().Info("snapshot creation abandoned", "index", job.meta.Index)
}

// ctxWriter fails writes once ctx is done, so that a cancelled snapshot
// write stops at its next chunk.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("snapshot write cancelled: %w", err)
	}
	return c.w.Write(p)
}
