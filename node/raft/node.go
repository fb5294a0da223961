package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
)

// ErrProposalDropped means a proposal was not appended: there is no known
// leader, this node is the leader but is transferring leadership or was
// removed, or (for a conf change) another change is pending or the leader
// has not yet applied an entry of its own term. Retry later, possibly on
// another node. Errors wrapping it may add the reason.
var ErrProposalDropped = errors.New("raft: proposal dropped")

// ErrLocalMessage is returned by Node.Step for message types that only the
// node itself may generate (MsgHup, MsgBeat, MsgUnreachable).
var ErrLocalMessage = errors.New("raft: local message type from the network")

// Config configures a Node. A zero value for a tunable means its default.
type Config struct {
	// ID is this node's ID; non-zero.
	ID uint64
	// Storage is the stable log; required.
	Storage Storage
	// Applied is the last index the application applied before a restart
	// (0 = FirstIndex()-1, normally the snapshot index). It must be within
	// [FirstIndex()-1, HardState.Commit]: an application whose state is
	// older than the stored snapshot restores the snapshot first. The
	// ConfState that Storage.InitialState returns should be the membership
	// as of Applied; if it is newer (persisted after applying later
	// changes), re-applying those changes converges to the same membership
	// and the node does not campaign until they are all applied again.
	Applied uint64
	// ElectionTicks is the number of ticks without hearing from a leader
	// before a follower campaigns; the actual timeout is randomized in
	// [ElectionTicks, 2*ElectionTicks). 0 = 10. Must exceed HeartbeatTicks.
	ElectionTicks int
	// HeartbeatTicks is the number of ticks between leader heartbeats. 0 = 1.
	HeartbeatTicks int
	// MaxSizePerMsg caps the bytes of entries in one MsgApp (at least one
	// entry is always sent). 0 = 64 KiB.
	MaxSizePerMsg uint64
	// MaxInflightMsgs caps unacknowledged MsgApps per follower while
	// replicating. 0 = 256.
	MaxInflightMsgs int
	// SnapshotChunkBytes is the data size of one MsgSnap chunk. 0 = 64 KiB.
	SnapshotChunkBytes uint64
	// MaxCommittedSizePerReady caps the bytes of CommittedEntries in one
	// Ready (at least one entry). 0 = 4 MiB.
	MaxCommittedSizePerReady uint64
	// DisablePreVote turns PreVote (thesis §9.6) off. It is on by default.
	DisablePreVote bool
	// DisableCheckQuorum turns CheckQuorum (thesis §6.2) off. It is on by
	// default: a leader steps down when it has not heard from a quorum for
	// an election timeout, and a node that heard from a leader within the
	// election timeout ignores vote requests.
	DisableCheckQuorum bool
	// Rand randomizes election timeouts; required (the core never uses the
	// global source, so a seed replays a run).
	Rand *rand.Rand
	// Logger receives role changes at Info and per-message detail at Debug.
	// nil discards.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.ID == None {
		return errors.New("raft: config: ID must not be 0")
	}
	if c.Storage == nil {
		return errors.New("raft: config: Storage is required")
	}
	if c.Rand == nil {
		return errors.New("raft: config: Rand is required")
	}
	if c.HeartbeatTicks < 0 || c.ElectionTicks < 0 || c.MaxInflightMsgs < 0 {
		return fmt.Errorf("raft: config: negative ticks or inflight (heartbeat %d, election %d, inflight %d)",
			c.HeartbeatTicks, c.ElectionTicks, c.MaxInflightMsgs)
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = 1
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = 10
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		return fmt.Errorf("raft: config: ElectionTicks %d must be greater than HeartbeatTicks %d", c.ElectionTicks, c.HeartbeatTicks)
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = 64 << 10
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = 256
	}
	if c.SnapshotChunkBytes == 0 {
		c.SnapshotChunkBytes = 64 << 10
	}
	if c.MaxCommittedSizePerReady == 0 {
		c.MaxCommittedSizePerReady = 4 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Node is one Raft participant: a deterministic state machine with no
// goroutines, clocks or I/O. One goroutine drives it: it calls Tick on a
// timer, Step for each message from the network, the Propose/ReadIndex/...
// methods for local requests, and then processes Ready and calls Advance.
type Node struct {
	r *raft
	// prevSoft and prevHard are what the last Ready reported.
	prevSoft SoftState
	prevHard HardState
}

// NewNode validates cfg and restores the node from cfg.Storage. It starts
// as a follower. Storage may be empty (a node that will join later).
func NewNode(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r, err := newRaft(&cfg)
	if err != nil {
		return nil, err
	}
	return &Node{r: r, prevSoft: r.softState(), prevHard: r.hardState()}, nil
}

// Tick advances the logical clock by one tick.
func (n *Node) Tick() { n.r.tick() }

// Step processes a message from the network. Messages of local types are
// refused with ErrLocalMessage; errors for malformed messages say why (the
// message is then dropped, the node is unaffected).
func (n *Node) Step(m Message) error {
	if m.Type.IsLocal() {
		return fmt.Errorf("%w: %s from %d", ErrLocalMessage, m.Type, m.From)
	}
	if m.Type > MsgUnreachable {
		return fmt.Errorf("raft: unknown message type %d from %d", m.Type, m.From)
	}
	if m.From == None {
		return fmt.Errorf("raft: %s without sender", m.Type)
	}
	if m.To != n.r.id {
		return fmt.Errorf("raft: %s from %d addressed to %d, not to this node %d", m.Type, m.From, m.To, n.r.id)
	}
	if m.Type == MsgProp && len(m.Entries) == 0 {
		return fmt.Errorf("raft: empty MsgProp from %d", m.From)
	}
	if m.Type == MsgReadIndex && len(m.Entries) != 1 {
		return fmt.Errorf("raft: MsgReadIndex from %d with %d entries", m.From, len(m.Entries))
	}
	// Only forwarded proposals and read requests travel without a term;
	// the core treats term 0 as "local".
	if m.Term == 0 && m.Type != MsgProp && m.Type != MsgReadIndex {
		return fmt.Errorf("raft: %s from %d without term", m.Type, m.From)
	}
	return n.r.Step(m)
}

// Campaign starts an election now (with PreVote when enabled).
func (n *Node) Campaign() error { return n.r.Step(Message{Type: MsgHup}) }

// Propose appends data to the log (on the leader, or forwarded to it from
// a follower). It returns ErrProposalDropped when it cannot.
func (n *Node) Propose(data []byte) error {
	return n.r.Step(Message{Type: MsgProp, From: n.r.id, Entries: []Entry{{Data: data}}})
}

// ProposeConfChange proposes a membership change. On the leader it returns
// ErrProposalDropped (wrapped with the reason) when a change is pending,
// the leader has not applied an entry of its term yet, or the change is
// invalid (removing the last voter, node ID 0). On a follower the proposal
// is forwarded and any refusal happens silently on the leader.
func (n *Node) ProposeConfChange(cc ConfChange) error {
	return n.r.Step(Message{Type: MsgProp, From: n.r.id,
		Entries: []Entry{{Type: EntryConfChange, Data: cc.Marshal()}}})
}

// ApplyConfChange applies a committed EntryConfChange. The application
// calls it when it applies the entry and persists the returned ConfState
// together with its applied index.
func (n *Node) ApplyConfChange(cc ConfChange) ConfState { return n.r.applyConfChange(cc) }

// ReadIndex asks for a linearizable read point. The answer comes in a later
// Ready as a ReadState with the same RequestCtx, or never if leadership is
// lost first: the caller times out and retries. rctx must be unique across
// the cluster (requests from followers meet on the leader), for example the
// node ID and a counter.
func (n *Node) ReadIndex(rctx []byte) {
	_ = n.r.Step(Message{Type: MsgReadIndex, From: n.r.id, Entries: []Entry{{Data: rctx}}})
}

// TransferLeader asks the leader to hand leadership to transferee (a
// voter). Requests to self, to learners or unknown nodes are ignored.
func (n *Node) TransferLeader(transferee uint64) {
	_ = n.r.Step(Message{Type: MsgTransferLeader, From: transferee})
}

// ReportUnreachable tells the leader that the transport gave up on id: the
// follower goes back to probing (or the snapshot transfer rewinds).
func (n *Node) ReportUnreachable(id uint64) {
	_ = n.r.Step(Message{Type: MsgUnreachable, From: id})
}

// HasReady reports whether Ready would return anything.
func (n *Node) HasReady() bool {
	r := n.r
	r.flushAppends()
	if r.softState() != n.prevSoft {
		return true
	}
	if hs := r.hardState(); !hs.IsEmpty() && hs != n.prevHard {
		return true
	}
	if r.raftLog.hasUnstableSnapshot() {
		return true
	}
	return len(r.msgs) > 0 || len(r.raftLog.unstableEntries()) > 0 ||
		r.raftLog.hasNextEnts() || len(r.readStates) > 0
}

// Ready returns the pending work. The application must process it (persist,
// send, apply; see the Ready type) and call Advance(rd) before the next
// call to Ready.
func (n *Node) Ready() Ready {
	r := n.r
	r.flushAppends()
	rd := Ready{
		Entries:          r.raftLog.unstableEntries(),
		CommittedEntries: r.raftLog.nextEnts(),
		Messages:         r.msgs,
		ReadStates:       r.readStates,
	}
	if ss := r.softState(); ss != n.prevSoft {
		rd.SoftState = &ss
		n.prevSoft = ss
	}
	if r.raftLog.unstable.snapshot != nil {
		rd.Snapshot = *r.raftLog.unstable.snapshot
	}
	// Term and Vote must be durable before any message leaves; a commit
	// index alone may be lost (it is re-learned from the leader).
	rd.MustSync = len(rd.Entries) > 0 || !rd.Snapshot.IsEmpty()
	rd.earlyOK = rd.Snapshot.IsEmpty()
	if hs := r.hardState(); hs != n.prevHard {
		rd.HardState = hs
		termOrVote := hs.Term != n.prevHard.Term || hs.Vote != n.prevHard.Vote
		rd.MustSync = rd.MustSync || termOrVote
		rd.earlyOK = rd.earlyOK && !termOrVote
		n.prevHard = hs
	}
	r.msgsCap = min(len(r.msgs), 1024)
	r.msgs = nil
	r.readStates = nil
	return rd
}

// Advance tells the node that rd was processed: its entries and snapshot
// are durable and its committed entries applied.
func (n *Node) Advance(rd Ready) {
	l := n.r.raftLog
	if !rd.Snapshot.IsEmpty() {
		l.stableSnapTo(rd.Snapshot.Meta.Index)
		if l.applied < rd.Snapshot.Meta.Index {
			if rd.Snapshot.Meta.Index > l.committed {
				panic(fmt.Sprintf("raft: advance: snapshot index %d > committed %d", rd.Snapshot.Meta.Index, l.committed))
			}
			l.applied = rd.Snapshot.Meta.Index
		}
	}
	if k := len(rd.CommittedEntries); k > 0 {
		l.appliedTo(rd.CommittedEntries[k-1].Index)
	}
	if k := len(rd.Entries); k > 0 {
		e := rd.Entries[k-1]
		l.stableTo(e.Index, e.Term)
	}
	n.r.maybeDeferredCampaign()
}
