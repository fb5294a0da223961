package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/raftkv/raftkv/kvstore"
	"github.com/raftkv/raftkv/node/raft"
)

// waitKey names a proposed command: its ClientID and sequence number
// (ClientID 0: a command without a session, Seq a random tag).
type waitKey struct{ client, seq uint64 }

// applyResult is what a waiting writer gets.
type applyResult struct {
	res kvstore.Result
	err error // ErrNotLeader (leadership lost), ErrClosed
}

// ccWaiter waits for a configuration change to be applied.
type ccWaiter struct {
	typ  raft.ConfChangeType
	node uint64
	ch   chan error // capacity 1
}

// applyJob is work for the applier: a run of committed entries without
// configuration changes, or (done != nil) a barrier that is closed once
// everything before it is applied.
type applyJob struct {
	ents []raft.Entry
	done chan struct{}
}

// maxApplyBatch bounds the entries the applier coalesces into one kvstore
// transaction.
const maxApplyBatch = 4096

// dispatch hands committed entries to the applier, so that the state
// machine's fsync overlaps the log's in the loop. Configuration changes,
// which change the core and the members table, are applied by the loop
// itself after a barrier (the applier is idle then), table first: a crash
// in between re-applies the entry after the restart, and the table update
// is idempotent. (Client sessions live in kvstore alone: an ordinary
// command opens its client's session.)
func (n *Node) dispatch(ents []raft.Entry) error {
	start := 0
	flush := func(end int) {
		if end > start {
			n.applyc <- applyJob{ents: slices.Clone(ents[start:end])}
		}
	}
	for i, e := range ents {
		if e.Type != raft.EntryConfChange {
			continue
		}
		flush(i)
		start = i + 1
		n.barrier()
		if p := n.applyErr.Load(); p != nil {
			return *p
		}
		if err := n.applyConfChange(e); err != nil {
			return err
		}
	}
	flush(len(ents))
	return nil
}

// barrier waits until the applier applied everything dispatched so far.
func (n *Node) barrier() {
	done := make(chan struct{})
	n.applyc <- applyJob{done: done}
	<-done
}

// applier applies runs of commands in order, coalescing what is queued
// into one kvstore transaction (one fsync), and answers waiting writers.
// It never waits for the loop. After an error it only releases barriers;
// the loop sees applyErr and stops.
func (n *Node) applier() {
	defer close(n.applierDone)
	open := true
	for open {
		j, ok := <-n.applyc
		if !ok {
			return
		}
		ents, done := j.ents, j.done
	coalesce:
		for done == nil && len(ents) < maxApplyBatch {
			select {
			case j2, ok := <-n.applyc:
				if !ok {
					open = false
					break coalesce
				}
				ents, done = append(ents, j2.ents...), j2.done
			default:
				break coalesce
			}
		}
		if len(ents) > 0 && n.applyErr.Load() == nil {
			if err := n.applyRun(ents); err != nil {
				n.applyErr.Store(&err)
				// Wake the loop so it notices.
				select {
				case n.opc <- func() {}:
				default:
				}
			}
		}
		if done != nil {
			close(done)
		}
	}
}

// applyRun applies ordinary entries in one kvstore transaction and answers
// their waiting writers as soon as the transaction has applied them, before
// it commits (kvstore.Store.ApplyThen, whose comment has the argument): the
// entries are committed in the Raft log, so their results are decided, and
// a crash before the commit re-applies them after the restart with the same
// results (a client's retry is answered from the session table). The
// state machine's two fsyncs so leave the write's latency. Linearizable
// reads still see only committed state: the store's applied index, which
// they wait for, advances after the commit.
func (n *Node) applyRun(batch []raft.Entry) error {
	start := time.Now()
	_, err := n.kv.ApplyThen(batch, func(res []kvstore.Result) error {
		n.deliver(batch, res)
		if n.cfg.beforeStateCommit != nil {
			return n.cfg.beforeStateCommit(res)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !n.cfg.NoSync {
		n.met.commitDur.Observe(time.Since(start).Seconds())
	}
	return nil
}

// deliver hands results to waiting writers. It runs inside the state
// machine's write transaction (see applyRun): it must not call n.kv.
func (n *Node) deliver(batch []raft.Entry, res []kvstore.Result) {
	n.stMu.Lock()
	defer n.stMu.Unlock()
	// kvstore skips entries it already applied; results start at the first
	// one it did apply.
	off := len(batch) - len(res)
	for i, r := range res {
		k := waitKey{r.ClientID, r.Seq}
		if k.seq == 0 {
			// kvstore did not decode it (over the request limit: refused
			// unread); its proposer may still wait for the refusal.
			e := batch[off+i]
			if e.Type != raft.EntryNormal || len(e.Data) == 0 {
				continue
			}
			c, err := kvstore.DecodeCommand(e.Data)
			if err != nil {
				continue
			}
			k = waitKey{c.ClientID, c.Seq}
		}
		if ws, ok := n.waiters[k]; ok {
			delete(n.waiters, k)
			for _, ch := range ws {
				ch <- applyResult{res: r}
			}
		}
	}
}

// applyConfChange applies a membership change to the core, the log's
// ConfState, the members table and the peers, then advances the store.
func (n *Node) applyConfChange(e raft.Entry) error {
	var cc raft.ConfChange
	if err := cc.Unmarshal(e.Data); err != nil {
		n.logger().Error("undecodable conf change; skipped", "index", e.Index, "err", err)
		_, err := n.kv.Apply([]raft.Entry{e})
		return err
	}
	cs := n.rn.ApplyConfChange(cc)
	if err := n.rlog.SetConfState(cs); err != nil {
		return err
	}
	self := n.id.Load()
	n.isLearner.Store(slices.Contains(cs.Learners, self))
	peer := fmt.Sprintf("%016x", cc.NodeID)
	switch cc.Type {
	case raft.ConfChangeAddLearner, raft.ConfChangeAddVoter:
		m, ok := n.repl.Members[cc.NodeID]
		if len(cc.Context) > 0 {
			if cm, err := decodeMember(cc.Context); err == nil {
				m, ok = cm, true
			} else {
				n.logger().Warn("conf change with a bad context", "peer", peer, "err", err)
			}
		}
		if ok {
			if err := n.meta.putMember(cc.NodeID, m, false); err != nil {
				return err
			}
			n.repl.Members[cc.NodeID] = m
			n.learnMember(cc.NodeID, m)
		}
		if cc.NodeID != self {
			n.ensurePeer(cc.NodeID)
		}
		what := "learner added"
		if cc.Type == raft.ConfChangeAddVoter {
			what = "voter added"
		}
		n.logger().Info(what, "peer", peer, "peer_name", m.Name, "index", e.Index,
			"voters", len(cs.Voters), "learners", len(cs.Learners))
	case raft.ConfChangeRemoveNode:
		if err := n.meta.putMember(cc.NodeID, Member{}, true); err != nil {
			return err
		}
		delete(n.repl.Members, cc.NodeID)
		if cc.NodeID == self {
			n.markRemoved(true)
		} else {
			if addr, ok := n.addrOf(cc.NodeID); ok && n.rn.BasicStatus().RaftState == raft.StateLeader {
				// The leader stops replicating to a removed node, so it may
				// never see its own removal: tell it.
				n.wg.Go(func() { n.notifyRemoved(cc.NodeID, addr) })
			}
			n.dropPeer(cc.NodeID)
		}
		n.logger().Info("member removed", "peer", peer, "index", e.Index, "voters", len(cs.Voters), "learners", len(cs.Learners))
	}
	if _, err := n.kv.Apply([]raft.Entry{e}); err != nil {
		return err
	}
	kept := n.ccWaiters[:0]
	for _, w := range n.ccWaiters {
		if w.typ == cc.Type && w.node == cc.NodeID {
			w.ch <- nil
			continue
		}
		kept = append(kept, w)
	}
	n.ccWaiters = kept
	return nil
}

// failWaiters answers every waiting writer with ErrNotLeader: this node
// lost leadership, so their entries may never commit (a client retry with
// the same session and sequence number is applied at most once).
func (n *Node) failWaiters() {
	n.stMu.Lock()
	for k, ws := range n.waiters {
		for _, ch := range ws {
			ch <- applyResult{err: ErrNotLeader}
		}
		delete(n.waiters, k)
	}
	n.stMu.Unlock()
	for _, w := range n.ccWaiters {
		w.ch <- ErrNotLeader
	}
	n.ccWaiters = nil
	for k, b := range n.readWaiters {
		for _, ch := range b.chans {
			close(ch)
		}
		delete(n.readWaiters, k)
	}
	for _, ch := range n.pendingReads {
		close(ch)
	}
	n.pendingReads = nil
}

// failAll runs when the loop stopped.
func (n *Node) failAll() {
	n.failWaiters()
}
