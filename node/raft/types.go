package raft

import "errors"

// None is the zero node ID: "no leader", "no vote".
const None uint64 = 0

// EntryType says how the application must interpret an Entry's Data.
//
// ONLY APPEND: values are persisted and on the wire.
type EntryType uint8

const (
	// EntryNormal carries application data (empty Data is the leader's no-op).
	EntryNormal EntryType = 0
	// EntryConfChange carries an encoded ConfChange (see ConfChange.Marshal).
	EntryConfChange EntryType = 1
)

// Entry is one slot of the replicated log.
type Entry struct {
	Term  uint64    `msgpack:"t"`
	Index uint64    `msgpack:"i"`
	Type  EntryType `msgpack:"y"`
	Data  []byte    `msgpack:"d"`
}

// HardState is the state that must be on stable storage before any message
// that depends on it is sent.
type HardState struct {
	Term   uint64 `msgpack:"t"`
	Vote   uint64 `msgpack:"v"`
	Commit uint64 `msgpack:"c"`
}

// IsEmpty reports whether hs is the zero HardState.
func (hs HardState) IsEmpty() bool { return hs == HardState{} }

// ConfState is the membership of the cluster at some log index.
// Voters and Learners are disjoint and sorted ascending.
type ConfState struct {
	Voters   []uint64 `msgpack:"v"`
	Learners []uint64 `msgpack:"l"`
}

// SnapshotMeta describes the log prefix a snapshot replaces.
type SnapshotMeta struct {
	Index     uint64    `msgpack:"i"`
	Term      uint64    `msgpack:"t"`
	ConfState ConfState `msgpack:"c"`
}

// Snapshot is the application state as of Meta.Index, with the membership
// at that index. Data is opaque to the core.
type Snapshot struct {
	Meta SnapshotMeta `msgpack:"m"`
	Data []byte       `msgpack:"d"`
}

// IsEmpty reports whether s carries no snapshot (Meta.Index == 0).
func (s Snapshot) IsEmpty() bool { return s.Meta.Index == 0 }

// ConfChangeType is the kind of a membership change.
//
// ONLY APPEND: values are persisted and on the wire.
type ConfChangeType uint8

const (
	// ConfChangeAddLearner adds a non-voting member that receives the log.
	ConfChangeAddLearner ConfChangeType = 0
	// ConfChangeAddVoter adds a voter, or promotes an existing learner.
	ConfChangeAddVoter ConfChangeType = 1
	// ConfChangeRemoveNode removes a voter or learner.
	ConfChangeRemoveNode ConfChangeType = 2
)

// ConfChange is one single-server membership change. Context is opaque
// application data (for example the node's name and address).
type ConfChange struct {
	Type    ConfChangeType `msgpack:"y"`
	NodeID  uint64         `msgpack:"n"`
	Context []byte         `msgpack:"c"`
}

// MessageType names a Raft message. Local messages never leave the node.
//
// ONLY APPEND: values are on the wire.
type MessageType uint8

const (
	MsgHup            MessageType = 0  // local: start an election
	MsgBeat           MessageType = 1  // local: leader sends heartbeats
	MsgProp           MessageType = 2  // local or follower->leader: proposal
	MsgApp            MessageType = 3  // leader->follower: append entries
	MsgAppResp        MessageType = 4  // follower->leader: append result
	MsgVote           MessageType = 5  // candidate->all: request vote
	MsgVoteResp       MessageType = 6  // vote result
	MsgPreVote        MessageType = 7  // pre-candidate->all: would you vote?
	MsgPreVoteResp    MessageType = 8  // pre-vote result
	MsgHeartbeat      MessageType = 9  // leader->follower: liveness + commit
	MsgHeartbeatResp  MessageType = 10 // follower->leader
	MsgSnap           MessageType = 11 // leader->follower: one snapshot chunk
	MsgSnapResp       MessageType = 12 // follower->leader: snapshot chunk ack
	MsgTransferLeader MessageType = 13 // local or follower->leader: move leadership
	MsgTimeoutNow     MessageType = 14 // leader->transferee: campaign now
	MsgReadIndex      MessageType = 15 // local or follower->leader: read index request
	MsgReadIndexResp  MessageType = 16 // leader->follower: read index answer
	MsgUnreachable    MessageType = 17 // local: transport could not reach a peer
)

var msgTypeNames = [...]string{
	"MsgHup", "MsgBeat", "MsgProp", "MsgApp", "MsgAppResp", "MsgVote", "MsgVoteResp",
	"MsgPreVote", "MsgPreVoteResp", "MsgHeartbeat", "MsgHeartbeatResp", "MsgSnap",
	"MsgSnapResp", "MsgTransferLeader", "MsgTimeoutNow", "MsgReadIndex", "MsgReadIndexResp",
	"MsgUnreachable",
}

func (t MessageType) String() string {
	if int(t) < len(msgTypeNames) {
		return msgTypeNames[t]
	}
	return "MsgUnknown"
}

// IsLocal reports whether messages of type t are only ever generated and
// consumed on one node (they must never be accepted from the network).
func (t MessageType) IsLocal() bool {
	return t == MsgHup || t == MsgBeat || t == MsgUnreachable
}

// SnapshotChunk is one piece of a snapshot in flight (Raft paper, figure 13).
// Offset is the byte offset of Data in the full snapshot; Total is the full
// size; Checksum is the CRC-32C (Castagnoli) of the full snapshot data.
type SnapshotChunk struct {
	Meta     SnapshotMeta `msgpack:"m"`
	Offset   uint64       `msgpack:"o"`
	Total    uint64       `msgpack:"n"`
	Checksum uint32       `msgpack:"k"`
	Data     []byte       `msgpack:"d"`
}

// Message is the unit of communication between cores. Which fields are
// meaningful depends on Type; unused fields are zero.
type Message struct {
	Type    MessageType `msgpack:"y"`
	To      uint64      `msgpack:"to"`
	From    uint64      `msgpack:"f"`
	Term    uint64      `msgpack:"t"`
	LogTerm uint64      `msgpack:"lt"` // MsgApp: term of entry at Index; votes: last log term
	Index   uint64      `msgpack:"i"`  // MsgApp: index preceding Entries; resps: see handlers
	Entries []Entry     `msgpack:"e"`
	Commit  uint64      `msgpack:"c"`
	Reject  bool        `msgpack:"r"`
	// RejectHint is the follower's hint for fast backtracking: on a rejected
	// MsgApp, the index to retry from, with LogTerm the term at that index.
	RejectHint uint64         `msgpack:"h"`
	Snapshot   *SnapshotChunk `msgpack:"s"`
	// Context is opaque: the ReadIndex request context, or the campaign
	// kind for a forced election triggered by leadership transfer.
	Context []byte `msgpack:"x"`
	// WallTime is the sender's wall clock in Unix nanoseconds, set by the
	// runtime when it sends the message and read by the runtime of the
	// receiver (node.clusterClock); the core neither sets nor reads it.
	WallTime int64 `msgpack:"w,omitempty"`
}

// StateType is a node's role.
type StateType uint8

const (
	StateFollower     StateType = 0
	StateCandidate    StateType = 1
	StateLeader       StateType = 2
	StatePreCandidate StateType = 3
)

func (s StateType) String() string {
	switch s {
	case StateFollower:
		return "follower"
	case StateCandidate:
		return "candidate"
	case StateLeader:
		return "leader"
	case StatePreCandidate:
		return "pre-candidate"
	}
	return "unknown"
}

// SoftState is volatile state that need not be persisted.
type SoftState struct {
	Lead      uint64
	RaftState StateType
}

// ReadState answers a ReadIndex request: once the application has applied
// up to Index, a read issued before the request is linearizable.
type ReadState struct {
	Index      uint64
	RequestCtx []byte
}

// Ready is a batch of work for the application. Contract, in order:
//  1. persist Entries, HardState and Snapshot (fsync when MustSync);
//  2. only then send Messages;
//  3. apply CommittedEntries (and install Snapshot into the state machine);
//  4. answer ReadStates once applied >= Index;
//  5. call Advance.
//
// A leader may relax step 2 (thesis §10.2.1): the messages SplitMessages
// returns as early may be sent before step 1 starts, so that the leader's
// fsync overlaps the followers' (see SplitMessages for the rule).
type Ready struct {
	// SoftState is nil when it did not change since the last Ready.
	*SoftState
	// HardState is empty when it did not change since the last Ready.
	HardState HardState
	// Entries must be appended to stable storage before Messages are sent.
	Entries []Entry
	// Snapshot, when not empty, must be saved to stable storage.
	Snapshot Snapshot
	// CommittedEntries are committed and must be applied in order.
	CommittedEntries []Entry
	// Messages go out after Entries, HardState and Snapshot are durable.
	Messages []Message
	// ReadStates answer earlier ReadIndex calls.
	ReadStates []ReadState
	// MustSync says whether the write of this Ready needs an fsync.
	MustSync bool

	// earlyOK is set by Node.Ready when this Ready changes neither Term
	// nor Vote and carries no Snapshot: only then may SplitMessages
	// return early messages. The zero value is the safe "no".
	earlyOK bool
}

// SplitMessages divides rd.Messages into early, which may be sent before
// rd's Entries, HardState and Snapshot are durable (while they are being
// written and fsynced), and late, which must wait until they are. Order
// within each part is kept. An application that sends everything after
// the write (the plain contract) is also correct.
//
// A message is early when all of these hold:
//
//   - it is MsgApp, MsgHeartbeat or MsgSnap: the only messages a leader
//     sends to replicate, and only a leader sends them. They promise
//     nothing about the sender's disk except through their Commit field.
//     Everything else waits: vote requests and grants (they claim a
//     durable Term and Vote), MsgAppResp and MsgSnapResp (they claim
//     durable entries), MsgTimeoutNow (the transferee must not out-run the
//     leader's durable log), MsgReadIndexResp, forwarded proposals, etc.;
//   - rd changes neither Term nor Vote (thesis §10.2.1: term and vote are
//     durable before any message of that term leaves) and carries no
//     Snapshot;
//   - its Commit is below the first index of rd.Entries (when there are
//     any), that is the commit index it announces covers only entries
//     already durable on the leader. The leader counts its own log toward
//     the commit index as soon as entries are appended, so a single voter
//     (with learners, or after a conf change shrank the quorum) commits
//     entries in the same Ready that carries them; announcing that commit
//     before the fsync could make a learner apply an entry that a crash
//     then erases from the only voter.
//
// The application must not Step anything into the Node between sending
// the early messages and the end of the write (node.Node and raftsim
// drive Step, Ready and Advance from one goroutine). That is why the
// leader's own persistence still precedes every claim on it: a
// follower's ack for entries sent early is stepped after the write, so
// the leader's Match for itself, counted toward commit, is durable by
// then; with more than one voter the commit index needs a
// follower's ack, which can only cover entries the leader already wrote.
// If the leader crashes before its fsync, the entries it sent early may
// survive on followers although the leader lost them: they were never
// counted as committed by anyone (no announced commit index covers them),
// so a later leader may keep or overwrite them, as with any uncommitted
// entry. The restarted leader is a follower of a term it already voted in
// and cannot lead again before a new term. ReadIndex heartbeats going
// early carry only a request context; the read index (the commit index)
// reaches the reader through ReadStates or MsgReadIndexResp, both after
// the write. A leader stepping down inside the Ready changes the term
// (nothing goes early) or stays in its term as a follower, where it has
// nothing of that term to claim.
func (rd Ready) SplitMessages() (early, late []Message) {
	if !rd.earlyOK {
		return nil, rd.Messages
	}
	limit := ^uint64(0) // commit indexes below limit are durable
	if len(rd.Entries) > 0 {
		limit = rd.Entries[0].Index
	}
	for _, m := range rd.Messages {
		switch {
		case m.Type != MsgApp && m.Type != MsgHeartbeat && m.Type != MsgSnap,
			m.Commit >= limit:
			late = append(late, m)
		default:
			early = append(early, m)
		}
	}
	return early, late
}

// Storage is the core's read access to the stable log. The application
// writes to it (after persisting each Ready); the core only reads.
// Implementations must be safe for the single goroutine that drives the
// core; entries returned must not be mutated afterwards.
type Storage interface {
	// InitialState returns the persisted HardState and ConfState.
	InitialState() (HardState, ConfState, error)
	// Entries returns entries in [lo, hi), limited to about maxBytes in
	// total but always at least one entry when lo < hi. ErrCompacted if
	// lo <= the snapshot index, ErrUnavailable if hi > LastIndex()+1.
	Entries(lo, hi, maxBytes uint64) ([]Entry, error)
	// Term returns the term of entry i, which must be in
	// [FirstIndex()-1, LastIndex()]; the term at FirstIndex()-1 is the
	// snapshot's term. ErrCompacted or ErrUnavailable otherwise.
	Term(i uint64) (uint64, error)
	// LastIndex returns the index of the last entry (the snapshot index if
	// the log is empty).
	LastIndex() (uint64, error)
	// FirstIndex returns the index of the first entry that may be read
	// with Entries (snapshot index + 1).
	FirstIndex() (uint64, error)
	// Snapshot returns the most recent snapshot.
	// ErrSnapshotTemporarilyUnavailable means "try again later".
	Snapshot() (Snapshot, error)
}

// Errors from Storage. Implementations return them unwrapped or wrapped.
var (
	// ErrCompacted means the requested index is below the first index.
	ErrCompacted = errors.New("raft: requested index is unavailable due to compaction")
	// ErrSnapOutOfDate means a snapshot older than the current one was offered.
	ErrSnapOutOfDate = errors.New("raft: requested index is older than the existing snapshot")
	// ErrUnavailable means the requested index is beyond the last index.
	ErrUnavailable = errors.New("raft: requested entry at index is unavailable")
	// ErrSnapshotTemporarilyUnavailable means the snapshot is being made.
	ErrSnapshotTemporarilyUnavailable = errors.New("raft: snapshot is temporarily unavailable")
)
