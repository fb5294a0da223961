package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/raftkv/raftkv/kvstore"
	"github.com/raftkv/raftkv/node/raft"
)

// waitKey names a proposed command: its kvstore session and sequence
// number (session 0: a command without a session, Seq a random tag).
type waitKey struct{ session, seq uint64 }

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

// apply applies committed entries. Runs of ordinary commands go to
// kvstore in one transaction each; configuration changes and session
// registrations, which also change the runtime's tables, are applied one
// at a time, tables first: a crash in between re-applies the entry after
// the restart, and both table updates are idempotent.
func (n *Node) apply(ents []raft.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	var (
		batch []raft.Entry
		cmds  []*kvstore.Command // parallel to batch; nil for no-ops and undecodable data
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := n.kv.Apply(batch)
		if err != nil {
			return err
		}
		n.deliver(batch, cmds, res)
		batch, cmds = batch[:0], cmds[:0]
		return nil
	}
	for _, e := range ents {
		if e.Type == raft.EntryConfChange {
			if err := flush(); err != nil {
				return err
			}
			if err := n.applyConfChange(e); err != nil {
				return err
			}
			continue
		}
		var cmd *kvstore.Command
		if len(e.Data) > 0 {
			if c, err := kvstore.DecodeCommand(e.Data); err == nil {
				cmd = &c
			}
		}
		if cmd != nil && cmd.Op == kvstore.OpRegisterSession && len(cmd.Key) == 8 {
			if err := flush(); err != nil {
				return err
			}
			if err := n.applyRegister(e, binary.BigEndian.Uint64(cmd.Key)); err != nil {
				return err
			}
			continue
		}
		batch = append(batch, e)
		cmds = append(cmds, cmd)
	}
	return flush()
}

// deliver hands results to waiting writers and forgets expired sessions.
func (n *Node) deliver(batch []raft.Entry, cmds []*kvstore.Command, res []kvstore.Result) {
	var expired []uint64
	// kvstore skips entries it already applied; results start at the first
	// one it did apply.
	off := len(batch) - len(res)
	for i, r := range res {
		cmd := cmds[off+i]
		if cmd == nil {
			continue
		}
		if cmd.Session != 0 && errors.Is(r.Err, kvstore.ErrSessionExpired) {
			if c, ok := n.sessionOf[cmd.Session]; ok {
				delete(n.sessionOf, cmd.Session)
				delete(n.repl.Clients, c)
				expired = append(expired, c)
			}
		}
		k := waitKey{cmd.Session, cmd.Seq}
		if ws, ok := n.waiters[k]; ok {
			delete(n.waiters, k)
			for _, ch := range ws {
				ch <- applyResult{res: r}
			}
		}
	}
	if len(expired) > 0 {
		if err := n.meta.putClients(nil, expired); err != nil {
			// The mapping stays on disk; the next command with it gets
			// ErrSessionExpired again and retries the removal.
			n.logger().Warn("forget expired sessions", "err", err)
		}
	}
}

// applyRegister records ClientID -> session (the entry's index) unless the
// client already has a session (concurrent first requests: first wins).
func (n *Node) applyRegister(e raft.Entry, client uint64) error {
	if _, ok := n.repl.Clients[client]; !ok {
		if err := n.meta.putClients(map[uint64]uint64{client: e.Index}, nil); err != nil {
			return err
		}
		n.repl.Clients[client] = e.Index
		n.sessionOf[e.Index] = client
	}
	if _, err := n.kv.Apply([]raft.Entry{e}); err != nil {
		return err
	}
	sess := n.repl.Clients[client]
	for _, ch := range n.regWaiters[client] {
		ch <- sess
	}
	delete(n.regWaiters, client)
	return nil
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
			n.removed.Store(true)
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
	for k, ws := range n.waiters {
		for _, ch := range ws {
			ch <- applyResult{err: ErrNotLeader}
		}
		delete(n.waiters, k)
	}
	for c, ws := range n.regWaiters {
		for _, ch := range ws {
			close(ch)
		}
		delete(n.regWaiters, c)
	}
	for _, w := range n.ccWaiters {
		w.ch <- ErrNotLeader
	}
	n.ccWaiters = nil
	for k, ch := range n.readWaiters {
		close(ch)
		delete(n.readWaiters, k)
	}
}

// failAll runs when the loop stopped.
func (n *Node) failAll() {
	n.failWaiters()
}
