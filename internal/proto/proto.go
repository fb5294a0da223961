// Package proto defines the messages that raftd, the entrance and clients
// exchange over rudp, above the transport and beside Raft's own messages.
//
// Every rudp payload starts with one Kind byte; the rest is the msgpack
// encoding of the struct that kind names (Raft messages carry a
// raft.Message). Requests travel with rudp's Call and their answers in its
// reply; Raft messages and leader reports travel as one-way Sends.
//
//	kind                 direction                    body -> reply body
//	KindRaft             node -> node                 raft.Message (one-way)
//	KindClient           client -> node               ClientRequest -> ClientResponse
//	KindJoin             node -> entrance             JoinRequest -> JoinResponse
//	KindLeaderReport     leader -> entrance           LeaderReport (one-way)
//	KindWhoLeads         client -> entrance           WhoLeadsRequest -> WhoLeadsResponse
//	KindListPeers        client -> entrance           ListPeersRequest -> ListPeersResponse
//	KindAdmin            entrance/client -> node      AdminRequest -> AdminResponse
//	KindPing             entrance -> node             Ping -> Pong
//	KindDiscover         node -> broadcast            Discover (one-way)
//	KindEntranceBeacon   entrance -> node             EntranceBeacon (one-way)
//
// Decoders of anything that came off the network must use Decode (the
// bounded msgpack walk in internal/codec), never msgpack directly.
package proto

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/internal/codec"
)

// MaxMessageBytes is the largest rudp message raftd and clients exchange
// (rudp.Config.MaxMessageSize of both). It must hold one Raft message
// carrying kvstore's largest request (by default a 1 MiB value, a 4 KiB key
// and the command's envelope) with room to spare: a committed-to-be entry
// that no message can carry would stall replication for good. node checks
// this at start against its store's limits.
const MaxMessageBytes = 2 << 20

// Kind is the first byte of every payload.
//
// ONLY APPEND: values are on the wire.
type Kind uint8

const (
	KindRaft           Kind = 1
	KindClient         Kind = 2
	KindJoin           Kind = 3
	KindLeaderReport   Kind = 4
	KindWhoLeads       Kind = 5
	KindListPeers      Kind = 6
	KindAdmin          Kind = 7
	KindPing           Kind = 8
	KindDiscover       Kind = 9
	KindEntranceBeacon Kind = 10
)

// ErrMalformed means a payload could not be decoded.
var ErrMalformed = errors.New("proto: malformed payload")

// Encode returns kind followed by the msgpack encoding of body.
func Encode(kind Kind, body any) ([]byte, error) {
	k := [1]byte{byte(kind)}
	out, err := codec.MarshalAfter(k[:], body)
	if err != nil {
		return nil, fmt.Errorf("proto: encode kind %d: %w", kind, err)
	}
	return out, nil
}

// MustEncode is Encode for bodies that cannot fail to encode (the
// concrete structs of this package); it panics on error.
func MustEncode(kind Kind, body any) []byte {
	b, err := Encode(kind, body)
	if err != nil {
		panic(err)
	}
	return b
}

// Split returns the kind of payload p and its body.
func Split(p []byte) (Kind, []byte, error) {
	if len(p) < 1 {
		return 0, nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	return Kind(p[0]), p[1:], nil
}

// Decode decodes body into v with the bounded decoder.
func Decode(body []byte, v any) error {
	if err := codec.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// Code classifies the outcome of a request. Clients map codes to typed
// errors; raftctl maps them to exit codes.
//
// ONLY APPEND: values are on the wire.
type Code uint8

const (
	CodeOK            Code = 0
	CodeNotFound      Code = 1 // the key does not exist
	CodeNotLeader     Code = 2 // ask LeaderAddr instead (may be empty: no known leader)
	CodeCompareFailed Code = 3 // a compare-and-swap's condition did not hold
	CodeInvalid       Code = 4 // the request is malformed or exceeds a limit
	CodeUnavailable   Code = 5 // no quorum, shutting down, or timed out inside the cluster
	CodeRefused       Code = 6 // admission or admin operation refused (see Message)
	CodeCompacted     Code = 7 // the revision asked for was compacted away
	CodeInternal      Code = 8 // a bug or an I/O error on the server
	// CodeSessionExpired: the write's ClientID has no session (it expired,
	// or the write is not the ClientID's first) and the write was not
	// applied; an earlier copy of it may have been. Retry only under a new
	// ClientID, and only if no other copy was sent.
	CodeSessionExpired Code = 9
)

var codeNames = [...]string{"ok", "not found", "not leader", "compare failed", "invalid",
	"unavailable", "refused", "compacted", "internal", "session expired"}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", c)
}

// Op is a client operation.
//
// ONLY APPEND: values are on the wire.
type Op uint8

const (
	OpGet          Op = 1
	OpPut          Op = 2
	OpDelete       Op = 3
	OpDeletePrefix Op = 4
	OpRange        Op = 5 // keys in [Key, End), or with prefix Key when Prefix
	OpCAS          Op = 6
	OpCompact      Op = 7
)

// Compare conditions of a compare-and-swap. ONLY APPEND.
type CompareTarget uint8

const (
	CompareValue       CompareTarget = 1 // the key's value equals Value
	CompareModRevision CompareTarget = 2 // the key's mod revision equals Revision (0: key absent)
	CompareVersion     CompareTarget = 3 // the key's version equals Revision (0: key absent)
)

// ClientRequest is one operation from a client. Writes carry the client's
// session (ClientID, Seq) so that a retry is applied at most once.
type ClientRequest struct {
	ClientID uint64 `msgpack:"c"`
	Seq      uint64 `msgpack:"s"`
	Op       Op     `msgpack:"o"`
	Key      []byte `msgpack:"k"`
	End      []byte `msgpack:"e"`
	Value    []byte `msgpack:"v"`
	Prefix   bool   `msgpack:"p"`
	Limit    int64  `msgpack:"l"`
	Revision int64  `msgpack:"r"` // get at revision; CAS compare operand; compact below
	// Serializable reads are answered from the local state without
	// confirming leadership: possibly stale, never blocked by a partition.
	Serializable bool `msgpack:"z"`
	// CAS: condition, then DeleteOnSuccess or put Value.
	Compare         CompareTarget `msgpack:"ct"`
	CompareValue    []byte        `msgpack:"cv"`
	DeleteOnSuccess bool          `msgpack:"cd"`
	// SessionStart is the client's clock (Unix nanoseconds) when it chose
	// ClientID; every request of that ClientID carries the same value. The
	// cluster opens a session for an unknown ClientID only when it is
	// recent (see kvstore's Exactly-once), so that a retry of a client's
	// first write can never reopen a session that expired after the write
	// was applied, however long the client kept retrying. 0 (an older
	// client): the cluster uses the time it proposes the write instead.
	SessionStart int64 `msgpack:"ss,omitempty"`

	// Appended for paged ranges (ONLY APPEND; a node that predates them
	// ignores both). After, for a range, skips the keys up to and
	// including After: a client continues a range after the last key of
	// the page before, reading at that page's Revision. MaxBytes bounds
	// the key-values of a range reply, counted as kvstore's
	// KeyValue.EncodedSizeBound (key, value and 64 bytes); 0, or more than
	// the node's own budget (which keeps every reply under
	// MaxMessageBytes), means the node's budget. A reply carries at least
	// one key when one matches, whatever the budget.
	After    []byte `msgpack:"af,omitempty"`
	MaxBytes int64  `msgpack:"mb,omitempty"`
}

// KeyValue is one key as stored, with its multi-version metadata.
type KeyValue struct {
	Key            []byte `msgpack:"k"`
	Value          []byte `msgpack:"v"`
	CreateRevision int64  `msgpack:"c"`
	ModRevision    int64  `msgpack:"m"`
	Version        int64  `msgpack:"n"`
}

// ClientResponse answers a ClientRequest.
type ClientResponse struct {
	Code       Code   `msgpack:"c"`
	Message    string `msgpack:"m"`
	LeaderID   uint64 `msgpack:"li"`
	LeaderAddr string `msgpack:"la"`
	// Revision is the store's revision after the operation; for a read at
	// revision 0 it is the revision the read was served at.
	Revision int64      `msgpack:"r"`
	KVs      []KeyValue `msgpack:"kv"`
	Deleted  int64      `msgpack:"d"`
	// More says a range stopped before its last matching key: at Limit,
	// or at the node's byte budget for one reply. The rest follows the
	// last key returned (ClientRequest.After).
	More      bool `msgpack:"mo"`
	Succeeded bool `msgpack:"ok"` // CAS outcome
}

// JoinRequest asks the entrance to admit a node. NodeID is 0 for a node
// that was never admitted; a node that was keeps sending the ID it got.
type JoinRequest struct {
	Name   string `msgpack:"n"`
	Addr   string `msgpack:"a"`
	NodeID uint64 `msgpack:"i"`
	// ClusterID is the cluster the node belongs to (0: unknown, never
	// admitted); an entrance that lost its registry can relearn it, and one
	// of another cluster can refuse the node.
	ClusterID uint64 `msgpack:"cl"`
}

// JoinResponse admits (Code OK) or refuses a node.
type JoinResponse struct {
	Code    Code   `msgpack:"c"`
	Message string `msgpack:"m"`
	NodeID  uint64 `msgpack:"i"`
	// Bootstrap tells the first node to start a one-node cluster.
	Bootstrap bool `msgpack:"b"`
	// ClusterID identifies the cluster; nodes refuse to mix clusters.
	ClusterID uint64 `msgpack:"cl"`
	// Removed, with CodeRefused, says the node was removed from the
	// cluster: its data dir must not serve again (the node stops).
	Removed bool `msgpack:"rm,omitempty"`
}

// Member is one node of the Raft configuration as the leader sees it.
type Member struct {
	ID      uint64 `msgpack:"i"`
	Name    string `msgpack:"n"`
	Addr    string `msgpack:"a"`
	Learner bool   `msgpack:"l"`
	Match   uint64 `msgpack:"m"` // highest log index known replicated there
	// Active says the leader heard from the member within the last
	// election timeout (Raft's RecentActive; the leader itself: true).
	Active bool `msgpack:"ra"`
}

// LeaderReport is sent by a leader to the entrance on election and then
// periodically; it is how the entrance knows the leader, term and
// membership.
type LeaderReport struct {
	ID      uint64   `msgpack:"i"`
	Name    string   `msgpack:"n"`
	Addr    string   `msgpack:"a"`
	Term    uint64   `msgpack:"t"`
	Commit  uint64   `msgpack:"c"`
	Members []Member `msgpack:"m"`
	// ClusterID is the leader's cluster (see JoinRequest.ClusterID).
	ClusterID uint64 `msgpack:"cl"`
}

// WhoLeadsRequest asks the entrance for the current leader.
type WhoLeadsRequest struct{}

// WhoLeadsResponse names the leader (LeaderAddr empty when unknown) and
// every node's address, so a client can fall back to nodes directly.
type WhoLeadsResponse struct {
	LeaderID   uint64   `msgpack:"i"`
	LeaderAddr string   `msgpack:"a"`
	Term       uint64   `msgpack:"t"`
	Addrs      []string `msgpack:"n"`
}

// ListPeersRequest asks the entrance for its registry.
type ListPeersRequest struct{}

// Peer is one row of list-peers: the entrance's view of a node.
type Peer struct {
	Name     string `msgpack:"n" json:"name"`
	ID       string `msgpack:"i" json:"id"` // %016x
	Addr     string `msgpack:"a" json:"addr"`
	Role     string `msgpack:"r" json:"role"`     // leader, follower, candidate, learner
	Liveness string `msgpack:"l" json:"liveness"` // alive, suspect, down, removed
	LastSeen int64  `msgpack:"s" json:"last_seen_unix_ms"`
	Term     uint64 `msgpack:"t" json:"term"`
	Match    uint64 `msgpack:"m" json:"match_index"`
}

// ListPeersResponse is the entrance's registry.
type ListPeersResponse struct {
	Peers []Peer `msgpack:"p"`
}

// AdminOp is an administrative operation on a node.
//
// ONLY APPEND: values are on the wire.
type AdminOp uint8

const (
	AdminAddLearner     AdminOp = 1 // leader: add NodeID (Name, Addr) as learner
	AdminPromote        AdminOp = 2 // leader: promote learner NodeID to voter
	AdminRemove         AdminOp = 3 // leader: remove NodeID from the membership
	AdminTransferLeader AdminOp = 4 // leader: move leadership to NodeID
	AdminStatus         AdminOp = 5 // any node: report its status
	AdminStop           AdminOp = 6 // any node: leave (unless KeepMembership) and exit
)

// AdminRequest is an administrative operation.
type AdminRequest struct {
	Op             AdminOp `msgpack:"o"`
	NodeID         uint64  `msgpack:"i"`
	Name           string  `msgpack:"n"`
	Addr           string  `msgpack:"a"`
	KeepMembership bool    `msgpack:"k"`
	// Removed, with AdminStop, is the leader telling a node that it was
	// removed from the configuration (the node records it and stops).
	Removed bool `msgpack:"rm,omitempty"`
}

// NodeStatus is a node's own view of itself.
type NodeStatus struct {
	ID        string `msgpack:"i" json:"id"`
	Name      string `msgpack:"n" json:"name"`
	Addr      string `msgpack:"a" json:"addr"`
	Role      string `msgpack:"r" json:"role"`
	Term      uint64 `msgpack:"t" json:"term"`
	Leader    string `msgpack:"l" json:"leader"`
	Commit    uint64 `msgpack:"c" json:"commit_index"`
	Applied   uint64 `msgpack:"p" json:"applied_index"`
	LastIndex uint64 `msgpack:"x" json:"last_index"`
	Snapshot  uint64 `msgpack:"s" json:"snapshot_index"`
	Revision  int64  `msgpack:"v" json:"revision"`
	UptimeMS  int64  `msgpack:"u" json:"uptime_ms"`

	// Appended for issue 6 (ONLY APPEND). LogEntries counts the entries
	// raft.db holds (last index minus the compaction point); LogBytes is
	// raft.db's file size, which bbolt never shrinks (freed pages are
	// reused). The Rudp* fields are the node's rudp endpoint counters since
	// it started: datagrams written (retransmissions included) and read,
	// fragments sent again, and datagrams dropped (bad MAC, malformed,
	// stale, no reassembly buffer).
	LogEntries      uint64 `msgpack:"le" json:"log_entries"`
	LogBytes        int64  `msgpack:"lb" json:"log_bytes"`
	RudpSent        uint64 `msgpack:"rs" json:"rudp_sent"`
	RudpReceived    uint64 `msgpack:"rr" json:"rudp_received"`
	RudpRetransmits uint64 `msgpack:"rx" json:"rudp_retransmits"`
	RudpDropped     uint64 `msgpack:"rd" json:"rudp_dropped"`
}

// AdminResponse answers an AdminRequest.
type AdminResponse struct {
	Code       Code        `msgpack:"c"`
	Message    string      `msgpack:"m"`
	LeaderAddr string      `msgpack:"la"`
	Status     *NodeStatus `msgpack:"s"`
}

// Ping is the entrance's liveness probe.
type Ping struct {
	Nonce uint64 `msgpack:"n"`
}

// Pong answers a Ping with the node's current view.
type Pong struct {
	Nonce  uint64 `msgpack:"n"`
	ID     uint64 `msgpack:"i"`
	Role   string `msgpack:"r"`
	Term   uint64 `msgpack:"t"`
	Leader uint64 `msgpack:"l"`
}

// Discover is broadcast by a node that has no entrance address.
type Discover struct {
	Name string `msgpack:"n"`

	// Appended (ONLY APPEND). Nonce is a random number, not 0, that the
	// finder picks for its lifetime; the beacon answering must echo it, so
	// a beacon captured earlier cannot be replayed to a later finder. 0: a
	// finder that predates the field (it accepts any beacon).
	Nonce uint64 `msgpack:"o"`
}

// EntranceBeacon answers a Discover with the entrance's address.
type EntranceBeacon struct {
	Addr string `msgpack:"a"`

	// Appended (ONLY APPEND). Nonce echoes the Nonce of the Discover
	// answered (0 from an entrance that predates the field: finders that
	// send a nonce ignore such beacons).
	Nonce uint64 `msgpack:"o"`
}
