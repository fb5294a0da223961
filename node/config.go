package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/kvstore"
)

// Defaults of Config.
const (
	DefaultTickInterval    = 100 * time.Millisecond
	DefaultElectionTicks   = 10
	DefaultSnapshotEntries = 10000
	DefaultReportInterval  = 400 * time.Millisecond
	DefaultRequestTimeout  = 5 * time.Second
	DefaultSendQueueLen    = 4096
	DefaultMaxWaiting      = 4096
	DefaultHandlerWorkers  = 16
)

// Config configures a Node. A zero value for a tunable means its default.
type Config struct {
	// Name is the node's name, unique in the cluster; required.
	Name string
	// DataDir holds raft.db (the log), snap/ (the log's snapshot file),
	// kv.db (the state machine) and node.db (identity, members); required. It is
	// created if missing.
	DataDir string
	// PacketConn is the node's UDP socket; required. The node owns it from
	// Run on and closes it when Run returns.
	PacketConn net.PacketConn
	// AdvertiseAddr is the address other nodes and clients reach this node
	// at; the zero value means PacketConn's local address.
	AdvertiseAddr netip.AddrPort
	// Secret is the cluster secret rudp authenticates datagrams with
	// (empty: unauthenticated).
	Secret []byte

	// Entrance is the entrance's address. When set, the node joins through
	// it (once; the ID it gets is kept in DataDir), rejoins after a
	// restart, and its leader reports to it. When zero, NodeID and
	// Bootstrap below stand for the entrance's answer.
	Entrance netip.AddrPort
	// FindEntrance, when Entrance is zero, finds the entrance (LAN
	// discovery: internal/discovery's Finder.Find). A node with an empty
	// DataDir calls it before joining (Run waits); a restarted node serves
	// at once and calls it in the background, then rejoins and reports.
	// An error other than ctx's ends Run (empty DataDir) or is logged.
	FindEntrance func(ctx context.Context) (netip.AddrPort, error)
	// NodeID is the node's ID when there is no entrance and DataDir holds
	// none yet. Ignored with an entrance.
	NodeID uint64
	// ClusterID goes with NodeID when there is no entrance.
	ClusterID uint64
	// Bootstrap, without an entrance, makes a node with an empty DataDir
	// found a one-node cluster. Other nodes wait to be added (AdminAddLearner
	// on the leader).
	Bootstrap bool

	// TickInterval is the duration of one Raft tick. Default 100ms.
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks. Default 10.
	ElectionTicks int
	// HeartbeatTicks is the heartbeat interval in ticks. Default 1.
	HeartbeatTicks int
	// SnapshotEntries is how many applied entries trigger a snapshot and
	// log compaction. Default 10000.
	SnapshotEntries uint64
	// SnapshotCatchUpEntries is how many entries compaction keeps behind a
	// snapshot for slow followers. Default SnapshotEntries/2.
	SnapshotCatchUpEntries uint64
	// ReportInterval is the period of a leader's reports to the entrance.
	// Default 400ms.
	ReportInterval time.Duration
	// RequestTimeout bounds how long a client request waits inside the
	// node (commit, apply, read index). Default 5s.
	RequestTimeout time.Duration
	// SendQueueLen bounds each peer's outbound queue, in messages; when it
	// is full messages are dropped (Raft retransmits). Default 4096.
	SendQueueLen int
	// HandlerWorkers is rudp's handler goroutines. Default 16 (requests
	// that wait are answered from goroutines of their own).
	HandlerWorkers int
	// MaxWaiting bounds the client requests that wait for a commit or a
	// read index at the same time; more are answered CodeUnavailable.
	// Default 4096.
	MaxWaiting int
	// NoSync skips fsync in every store. UNSAFE: for tests and benchmarks.
	NoSync bool
	// Seed seeds the Raft core's randomness; 0 picks a random seed.
	Seed uint64
	// Logger receives events; nil discards them.
	Logger *slog.Logger
	// Registry receives the node's Prometheus metrics (Node.Registry); nil
	// gives the node a registry of its own, with the Go and process
	// collectors. Never share one registry between nodes.
	Registry *prometheus.Registry
	// Version labels raftkv_build_info; empty means "unknown".
	Version string

	// lateSend turns the leader's early send off: every message waits for
	// the Ready's write (benchmarks compare both; see processReady).
	lateSend bool
	// slowSync is added to every log write that fsyncs, modelling a slower
	// disk per node (benchmarks; the nodes of a test share one disk).
	slowSync time.Duration
	// wallClock, when set, replaces time.Now as this node's wall clock
	// (tests of a node whose clock is off).
	wallClock func() time.Time
	// beforeStateCommit, when set, runs after the applier answered a
	// batch's writers and before the state machine commits it; an error
	// rolls the batch back and stops the node, as a crash between answer
	// and commit would (tests).
	beforeStateCommit func([]kvstore.Result) error
	// snapWriteHook, when set, runs in the background snapshot writer
	// after the envelope's header was written and before the store's
	// image; an error fails the write (tests block it to hold a snapshot
	// creation in progress).
	snapWriteHook func(ctx context.Context) error
	// syncSnapshot makes the loop wait for the snapshot it started, as
	// it did before snapshots were written in the background (the
	// benchmark compares both; see BenchmarkSnapshotLoopStall).
	syncSnapshot bool
}

func (c *Config) validate() error {
	switch {
	case c.Name == "":
		return errors.New("node: config: Name is required")
	case c.DataDir == "":
		return errors.New("node: config: DataDir is required")
	case c.PacketConn == nil:
		return errors.New("node: config: PacketConn is required")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	def(&c.ElectionTicks, DefaultElectionTicks)
	def(&c.HeartbeatTicks, 1)
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = DefaultSnapshotEntries
	}
	if c.SnapshotCatchUpEntries == 0 {
		c.SnapshotCatchUpEntries = c.SnapshotEntries / 2
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = DefaultReportInterval
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	def(&c.SendQueueLen, DefaultSendQueueLen)
	def(&c.HandlerWorkers, DefaultHandlerWorkers)
	def(&c.MaxWaiting, DefaultMaxWaiting)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if !c.AdvertiseAddr.IsValid() {
		ap, err := netip.ParseAddrPort(c.PacketConn.LocalAddr().String())
		if err != nil {
			return fmt.Errorf("node: config: advertise address from %s: %w", c.PacketConn.LocalAddr(), err)
		}
		c.AdvertiseAddr = ap
	}
	switch {
	case c.TickInterval < 0 || c.ElectionTicks <= c.HeartbeatTicks:
		return fmt.Errorf("node: config: tick interval %v, election ticks %d, heartbeat ticks %d invalid",
			c.TickInterval, c.ElectionTicks, c.HeartbeatTicks)
	case c.MaxWaiting < 1 || c.HandlerWorkers < 1:
		return fmt.Errorf("node: config: MaxWaiting %d and HandlerWorkers %d must be positive", c.MaxWaiting, c.HandlerWorkers)
	case c.SnapshotCatchUpEntries > c.SnapshotEntries:
		return fmt.Errorf("node: config: SnapshotCatchUpEntries %d > SnapshotEntries %d", c.SnapshotCatchUpEntries, c.SnapshotEntries)
	case !c.Entrance.IsValid() && c.FindEntrance == nil && c.NodeID == 0 && c.Bootstrap:
		return errors.New("node: config: Bootstrap without an entrance needs NodeID")
	}
	return nil
}
