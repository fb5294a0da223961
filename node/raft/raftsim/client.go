package raftsim

import (
	"encoding/binary"

	"github.com/raftkv/raftkv/node/raft"
)

// ProposeResult tells a proposer what became of its command.
type ProposeResult struct {
	Node   uint64 // the node the command was proposed on
	Index  uint64 // log index it was applied at
	Term   uint64 // term of that entry
	Result []byte // what StateMachine.Apply returned on Node
	// Err is ErrNodeCrashed when Node crashed first: the command may
	// still be applied (by other nodes) or never.
	Err error
}

// ConfChangeResult tells a proposer that a membership change was applied.
type ConfChangeResult struct {
	Node      uint64
	Index     uint64
	ConfState raft.ConfState // the membership after the change
	Err       error          // ErrNodeCrashed, as for ProposeResult
}

// ReadResult answers a ReadIndex request: Node has applied at least Index,
// and SM is Node's state machine, valid only during the callback.
type ReadResult struct {
	Node  uint64
	Index uint64
	SM    StateMachine
	Err   error // ErrNodeCrashed, as for ProposeResult
}

type proposal struct {
	node uint64
	done func(ProposeResult)
}

type ccProposal struct {
	node uint64
	cc   raft.ConfChange
	done func(ConfChangeResult)
}

type readReq struct {
	node uint64
	// commitAtIssue is the highest index known committed anywhere when
	// the read was issued: a linearizable read must see at least it.
	commitAtIssue uint64
	done          func(ReadResult)
}

type waitingRead struct {
	index uint64
	req   *readReq
	key   string
}

// envelopeLen is the size of the proposal ID the simulator puts in front
// of every proposed command, so it can tell the proposer where it landed.
const envelopeLen = 8

func unwrap(data []byte) (pid uint64, payload []byte) {
	if len(data) < envelopeLen {
		return 0, data
	}
	return binary.BigEndian.Uint64(data), data[envelopeLen:]
}

// Propose proposes data on node id. done (which may be nil) is called
// once, when id applies the command, or with ErrNodeCrashed when id
// crashes first. If id's core drops the proposal (it is not leader and
// knows none, or a transfer is in progress), Propose returns
// raft.ErrProposalDropped and done is never called. A proposal the core
// forwarded to a leader that then lost it is never answered either:
// clients keep their own timeouts (with After).
func (c *Cluster) Propose(id uint64, data []byte, done func(ProposeResult)) error {
	sn := c.nodes[id]
	if sn == nil || !sn.up {
		return ErrNodeDown
	}
	c.nextProp++
	pid := c.nextProp
	env := make([]byte, envelopeLen, envelopeLen+len(data))
	binary.BigEndian.PutUint64(env, pid)
	env = append(env, data...)
	if done == nil {
		done = func(ProposeResult) {}
	}
	c.props[pid] = &proposal{node: id, done: done}
	if err := sn.rn.Propose(env); err != nil {
		delete(c.props, pid)
		c.logf("node %d: propose #%d: %v", id, pid, err)
		return err
	}
	c.logf("node %d: propose #%d (%d bytes)", id, pid, len(data))
	c.afterStep(sn)
	return nil
}

// PendingProposals returns how many proposals wait for an answer.
func (c *Cluster) PendingProposals() int { return len(c.props) }

// ProposeConfChange proposes a membership change on node id. done (which
// may be nil) is called when id applies a change of the same type and
// node, or with ErrNodeCrashed. Errors are as for Propose.
func (c *Cluster) ProposeConfChange(id uint64, cc raft.ConfChange, done func(ConfChangeResult)) error {
	sn := c.nodes[id]
	if sn == nil || !sn.up {
		return ErrNodeDown
	}
	if err := sn.rn.ProposeConfChange(cc); err != nil {
		c.logf("node %d: propose conf change %v %d: %v", id, cc.Type, cc.NodeID, err)
		return err
	}
	c.logf("node %d: propose conf change %v %d", id, cc.Type, cc.NodeID)
	c.ccProps = append(c.ccProps, &ccProposal{node: id, cc: cc, done: done})
	c.afterStep(sn)
	return nil
}

func (c *Cluster) confChangeApplied(sn *simNode, cc raft.ConfChange, e raft.Entry) {
	for i, p := range c.ccProps {
		if p.node == sn.id && p.cc.Type == cc.Type && p.cc.NodeID == cc.NodeID {
			c.ccProps = append(c.ccProps[:i], c.ccProps[i+1:]...)
			if p.done != nil {
				r := ConfChangeResult{Node: sn.id, Index: e.Index, ConfState: sn.conf}
				c.later(func() { p.done(r) })
			}
			return
		}
	}
}

// ReadIndex asks node id for a linearizable read. done is called when id
// has applied up to the read index the leader confirmed, with id's state
// machine, or with ErrNodeCrashed. A read the core drops (no leader,
// leadership lost) is never answered. The checker fails the run when the
// read index is below an index that was known committed when the read was
// issued (a stale read).
func (c *Cluster) ReadIndex(id uint64, done func(ReadResult)) error {
	sn := c.nodes[id]
	if sn == nil || !sn.up {
		return ErrNodeDown
	}
	c.nextRead++
	rctx := binary.BigEndian.AppendUint64([]byte("rd"), c.nextRead)
	c.reads[string(rctx)] = &readReq{node: id, commitAtIssue: c.chk.maxCommitted, done: done}
	c.logf("node %d: read index #%d (commit known %d)", id, c.nextRead, c.chk.maxCommitted)
	sn.rn.ReadIndex(rctx)
	c.afterStep(sn)
	return nil
}

// PendingReads returns how many reads wait for an answer.
func (c *Cluster) PendingReads() int { return len(c.reads) }

func (c *Cluster) readState(sn *simNode, rs raft.ReadState) {
	key := string(rs.RequestCtx)
	req := c.reads[key]
	if req == nil || req.node != sn.id {
		return // an answer to a request this incarnation did not make
	}
	if rs.Index < req.commitAtIssue {
		c.fail(sn.id, "stale read: read index %d below index %d known committed when the read was issued", rs.Index, req.commitAtIssue)
		return
	}
	c.logf("node %d: read state index=%d", sn.id, rs.Index)
	sn.waiting = append(sn.waiting, waitingRead{index: rs.Index, req: req, key: key})
	c.answerReads(sn)
}

func (c *Cluster) answerReads(sn *simNode) {
	kept := sn.waiting[:0]
	for _, w := range sn.waiting {
		if sn.applied >= w.index {
			if _, ok := c.reads[w.key]; ok {
				delete(c.reads, w.key)
				r, done := ReadResult{Node: sn.id, Index: w.index, SM: sn.sm}, w.req.done
				c.later(func() { done(r) })
			}
			continue
		}
		kept = append(kept, w)
	}
	sn.waiting = kept
}
