package node

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/internal/fsutil"
	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/kvstore"
	"github.com/raftkv/raftkv/node/raft"
	"github.com/raftkv/raftkv/rudp"
)

// Sentinel errors.
var (
	// ErrClosed means the node stopped (Close, context cancelled, removed).
	ErrClosed = errors.New("node: closed")
	// ErrRunning is returned by a second call of Run.
	ErrRunning = errors.New("node: already running")
	// ErrRefused means the entrance refused to admit this node.
	ErrRefused = errors.New("node: admission refused")
	// ErrNoIdentity means the data dir holds no node ID and there is
	// neither an entrance nor Config.NodeID to get one from.
	ErrNoIdentity = errors.New("node: no node ID: need an entrance or Config.NodeID")
	// ErrNotLeader means this node is not the leader; see NotLeaderError.
	ErrNotLeader = errors.New("node: not leader")
)

// NotLeaderError says which node leads, when known.
type NotLeaderError struct {
	LeaderID uint64
	Addr     string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == 0 {
		return "node: not leader (leader unknown)"
	}
	return fmt.Sprintf("node: not leader (leader %016x at %s)", e.LeaderID, e.Addr)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// errStop ends the loop without error (removed, or asked to stop).
var errStop = errors.New("node: stop")

// Node is the runtime around one Raft core: it owns the core, the stores
// and the rudp endpoint. See the package documentation for the loop's
// contract.
type Node struct {
	cfg  Config
	logp atomic.Pointer[slog.Logger]

	running   atomic.Bool
	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	loopDone  chan struct{} // closed when the loop stopped (waiters give up)
	ready     chan struct{} // closed when the node serves (identity known, core running)
	started   time.Time

	// Set by Run before the loop starts; read-only afterwards.
	ep        *rudp.Endpoint
	epp       atomic.Pointer[rudp.Endpoint] // ep, for scrapes
	kvp       atomic.Pointer[kvstore.Store] // kv, for scrapes
	met       *metrics
	clock     *clusterClock // the time stamped on proposed writes
	commit    atomic.Uint64 // the commit index of the last HardState
	proposing atomic.Int64  // client writes between proposal and answer
	// entranceAddr is Config.Entrance or what FindEntrance found.
	entranceAddr atomic.Pointer[netip.AddrPort]
	meta         *metaDB
	rlog         *kvstore.LogStore
	kv           *kvstore.Store
	id           atomic.Uint64
	clusterID    atomic.Uint64

	// Channels into the loop.
	recvc    chan raft.Message
	opc      chan func()
	unreachc chan uint64
	stopc    chan struct{} // capacity 1: the node asks itself to stop

	// Shared by the loop and the applier, guarded by stMu.
	stMu    sync.Mutex
	repl    replState // Members: written by the loop only (after a barrier)
	waiters map[waitKey][]chan applyResult

	// The applier goroutine applies runs of commands (see apply.go).
	applyc      chan applyJob
	applierDone chan struct{}
	applyErr    atomic.Pointer[error]

	// Owned by the loop goroutine.
	rn           *raft.Node
	ccWaiters    []*ccWaiter
	readWaiters  map[string]*readBatch // by ReadIndex request context
	pendingReads []chan uint64         // reads that arrived since the last ReadIndex
	peers        map[uint64]*peer
	snapIndex    uint64
	snapJob      *snapJob    // the snapshot being written in the background, or nil
	snapRetryAt  uint64      // after a failed snapshot: the applied index to try again at
	removed      atomic.Bool // this node was removed from the configuration (markRemoved)
	removalKnown atomic.Bool // and that is certain: Run records it in node.db (markRemoved)
	stopping     atomic.Bool // AdminStop in progress
	wasLeader    bool
	ticks        atomic.Uint64 // ticks given to the core (tests wait on it)
	reportc      chan struct{} // capacity 1: report to the entrance now
	runCtx       context.Context
	wg           *sync.WaitGroup // goroutines Run waits for

	// Shared with handlers.
	lead      atomic.Uint64
	term      atomic.Uint64
	role      atomic.Uint32 // raft.StateType
	isLearner atomic.Bool
	waiting   atomic.Int64
	reqWG     sync.WaitGroup // request goroutines answering deferred Calls
	addrMu    sync.Mutex
	addrs     map[uint64]netip.AddrPort // peer ID -> address (members table, then sources of messages)
}

// New validates cfg and returns a node. It starts nothing: call Run.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:         cfg,
		closed:      make(chan struct{}),
		loopDone:    make(chan struct{}),
		ready:       make(chan struct{}),
		recvc:       make(chan raft.Message, 4096),
		opc:         make(chan func(), 1024),
		unreachc:    make(chan uint64, 64),
		stopc:       make(chan struct{}, 1),
		reportc:     make(chan struct{}, 1),
		waiters:     map[waitKey][]chan applyResult{},
		readWaiters: map[string]*readBatch{},
		applyc:      make(chan applyJob, 256),
		applierDone: make(chan struct{}),
		peers:       map[uint64]*peer{},
		addrs:       map[uint64]netip.AddrPort{},
		clock:       newClusterClock(cfg.wallClock),
	}
	n.logp.Store(cfg.Logger.With("name", cfg.Name))
	n.met = newMetrics(n)
	if cfg.Entrance.IsValid() {
		n.entranceAddr.Store(&cfg.Entrance)
	}
	return n, nil
}

func (n *Node) logger() *slog.Logger { return n.logp.Load() }

// Registry returns the node's Prometheus registry (Config.Registry, or
// one of its own): serve it with promhttp.HandlerFor.
func (n *Node) Registry() *prometheus.Registry { return n.met.reg }

// Close stops a running node (Run returns) and is idempotent. It does not
// wait for Run to return.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { close(n.closed) })
	return nil
}

// ID returns the node's ID (0 until it is known).
func (n *Node) ID() uint64 { return n.id.Load() }

// Addr returns the address the node advertises.
func (n *Node) Addr() netip.AddrPort { return n.cfg.AdvertiseAddr }

// Ready returns a channel closed once the node serves requests.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Leader returns the ID of the leader this node knows (0: none).
func (n *Node) Leader() uint64 { return n.lead.Load() }

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return raft.StateType(n.role.Load()) == raft.StateLeader }

// Run joins or rejoins the cluster, then drives the Raft core until ctx
// is done, Close is called, or the node is removed from the cluster or
// asked to stop (then it returns nil). It returns an error when the data
// dir cannot be used, admission is refused, or a store fails.
func (n *Node) Run(ctx context.Context) (err error) {
	if !n.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	n.started = time.Now()
	// ctx (the caller's, or Close) asks the node to stop; life ends the
	// node's own goroutines and transport, after a leader handed over.
	ctx, cancel := context.WithCancel(ctx)
	life, cancelLife := context.WithCancel(context.Background())
	var (
		wg       sync.WaitGroup
		epDone   chan error
		opened   bool
		loopOnce sync.Once
	)
	stopLoop := func() { loopOnce.Do(func() { close(n.loopDone) }) }
	// Teardown order: stop everything that waits on the loop, stop the
	// transport (its handlers are done when its Run returns), wait for
	// our goroutines, then close the stores nobody uses any more.
	defer func() {
		cancel()
		cancelLife()
		stopLoop()
		if n.ep != nil {
			n.ep.Close()
			if e := <-epDone; e != nil && err == nil {
				err = fmt.Errorf("node: transport: %w", e)
			}
			// No handler runs now, so no request goroutine starts.
			n.reqWG.Wait()
		} else {
			n.cfg.PacketConn.Close()
		}
		wg.Wait()
		if opened {
			n.closeStores()
		}
	}()
	wg.Go(func() {
		select {
		case <-n.closed:
			cancel()
		case <-ctx.Done():
		}
	})

	if err := fsutil.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
	}
	if err := n.openStores(); err != nil {
		return err
	}
	opened = true

	ident, known, err := n.meta.identity()
	if err != nil {
		return err
	}
	if known {
		n.id.Store(ident.NodeID)
	}
	if known && ident.Removed {
		n.logger().Warn("removed from the cluster; stopping", "node_id", fmt.Sprintf("%016x", ident.NodeID),
			"hint", "this data dir belongs to a node that was removed from the cluster; wipe it, or use another data dir, to join as a new node")
		return nil
	}
	ep, err := rudp.New(n.cfg.PacketConn, rudp.Config{
		NodeID:         ident.NodeID,
		Secret:         n.cfg.Secret,
		Handler:        n.handle,
		Logger:         n.cfg.Logger,
		HandlerWorkers: n.cfg.HandlerWorkers,
		InboxLen:       max(256, n.cfg.HandlerWorkers),
		MaxMessageSize: proto.MaxMessageBytes,
	})
	if err != nil {
		return fmt.Errorf("node: transport: %w", err)
	}
	n.ep = ep
	n.epp.Store(ep)
	epDone = make(chan error, 1)
	go func() { epDone <- ep.Run(life) }()

	finding := !n.entrance().IsValid() && n.cfg.FindEntrance != nil
	if !known {
		if finding {
			if err := n.findEntrance(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		ident, err = n.admit(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := n.meta.setIdentity(ident); err != nil {
			return err
		}
		n.id.Store(ident.NodeID)
	} else if n.entrance().IsValid() {
		wg.Go(func() { n.rejoin(life, ident) })
	} else if finding {
		// A restarted node serves at once; it looks for the entrance in
		// the background, then rejoins and reports to it.
		wg.Go(func() {
			if err := n.findEntrance(life); err != nil {
				if life.Err() == nil {
					n.logger().Warn("no entrance found", "err", err)
				}
				return
			}
			n.rejoin(life, ident)
		})
	}
	n.clusterID.Store(ident.ClusterID)
	n.logp.Store(n.logger().With("node_id", fmt.Sprintf("%016x", ident.NodeID)))

	n.runCtx, n.wg = life, &wg
	if err := n.startCore(ident); err != nil {
		return err
	}
	if n.entrance().IsValid() || finding {
		wg.Go(func() { n.reportLoop(life) })
	}
	wg.Go(func() { n.announce(life) })
	n.logger().Info("serving", "addr", n.cfg.AdvertiseAddr.String(), "applied", n.kv.Applied(),
		"cluster_id", fmt.Sprintf("%016x", ident.ClusterID))
	close(n.ready)
	go n.applier()
	err = n.loop(ctx)
	n.abortSnapshot()
	close(n.applyc)
	<-n.applierDone
	stopLoop()
	n.failAll()
	if n.removed.Load() && n.removalKnown.Load() {
		// A restart on this data dir stops at once (see Identity.Removed).
		ident.Removed = true
		if serr := n.meta.setIdentity(ident); serr != nil {
			n.logger().Warn("cannot record the removal in node.db", "err", serr)
		}
	}
	switch {
	case errors.Is(err, errStop):
		n.logger().Info("stopped")
		return nil
	case err != nil:
		n.logger().Error("runtime failed", "err", err)
		return err
	}
	n.logger().Info("shut down")
	return nil
}

func (n *Node) openStores() error {
	var err error
	n.meta, err = openMeta(filepath.Join(n.cfg.DataDir, "node.db"), n.cfg.NoSync)
	if err != nil {
		return err
	}
	n.rlog, err = kvstore.OpenLog(filepath.Join(n.cfg.DataDir, "raft.db"),
		kvstore.LogOptions{NoSync: n.cfg.NoSync, Logger: n.cfg.Logger})
	if err != nil {
		n.meta.Close()
		return err
	}
	n.kv, err = kvstore.Open(filepath.Join(n.cfg.DataDir, "kv.db"),
		kvstore.Config{NoSync: n.cfg.NoSync, Logger: n.cfg.Logger})
	if err != nil {
		n.rlog.Close()
		n.meta.Close()
		return err
	}
	if kc := n.kv.Config(); kc.MaxRequestBytes+raftEnvelopeBytes > proto.MaxMessageBytes {
		n.closeStores()
		return fmt.Errorf("node: the store accepts requests of %d bytes, but a Raft message carrying one must fit in %d bytes (proto.MaxMessageBytes): lower the store's limits", kc.MaxRequestBytes, proto.MaxMessageBytes-raftEnvelopeBytes)
	}
	if kc := n.kv.Config(); kvstore.KeyValueOverheadBytes+kc.MaxKeyBytes+kc.MaxValueBytes+replyEnvelopeBytes > proto.MaxMessageBytes {
		n.closeStores()
		return fmt.Errorf("node: the store keeps keys of %d and values of %d bytes, but a read reply carrying one must fit in %d bytes (proto.MaxMessageBytes): lower the store's limits", kc.MaxKeyBytes, kc.MaxValueBytes, proto.MaxMessageBytes)
	}
	n.kvp.Store(n.kv)
	return nil
}

// raftEnvelopeBytes is room for what a Raft message adds to the entries it
// carries (its own fields, each entry's term, index and type), beyond the
// largest request the store accepts; see proto.MaxMessageBytes.
const raftEnvelopeBytes = 64 << 10

func (n *Node) closeStores() {
	for _, c := range []interface{ Close() error }{n.kv, n.rlog, n.meta} {
		if err := c.Close(); err != nil {
			n.logger().Warn("close store", "err", err)
		}
	}
}

// startCore writes the bootstrap state if this node founds the cluster,
// recovers the stores from the log's snapshot if a crash left them behind,
// and creates the core.
func (n *Node) startCore(ident Identity) error {
	last, err := n.rlog.LastIndex()
	if err != nil {
		return err
	}
	bootstrapped := false
	if ident.Bootstrap && last == 0 {
		// The bootstrap convention (see node/raft): a snapshot at index 1,
		// term 1 naming this node the only voter; the members table in its
		// data so that every later node learns our name and address.
		self := newReplState()
		self.Members[ident.NodeID] = Member{Name: n.cfg.Name, Addr: n.cfg.AdvertiseAddr.String()}
		snap := raft.Snapshot{
			Meta: raft.SnapshotMeta{Index: 1, Term: 1, ConfState: raft.ConfState{Voters: []uint64{ident.NodeID}}},
			Data: wrapSnapshot(self, nil),
		}
		if err := n.rlog.Save(raft.HardState{Term: 1, Commit: 1}, nil, snap, true); err != nil {
			return fmt.Errorf("node: bootstrap: %w", err)
		}
		bootstrapped = true
		n.logger().Info("bootstrapped a one-node cluster")
	}
	if err := n.recoverSnapshot(); err != nil {
		return err
	}
	n.repl, err = n.meta.load()
	if err != nil {
		return err
	}
	for id, m := range n.repl.Members {
		n.learnMember(id, m)
	}
	n.snapIndex = n.rlog.SnapshotMeta().Index
	if err := n.raiseCommitToApplied(); err != nil {
		return err
	}
	seed := n.cfg.Seed
	if seed == 0 {
		var b [8]byte
		cryptorand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	n.rn, err = raft.NewNode(raft.Config{
		ID:             ident.NodeID,
		Storage:        n.rlog,
		Applied:        n.kv.Applied(),
		ElectionTicks:  n.cfg.ElectionTicks,
		HeartbeatTicks: n.cfg.HeartbeatTicks,
		Rand:           rand.New(rand.NewPCG(seed, ident.NodeID)),
		Logger:         n.cfg.Logger.With("name", n.cfg.Name),
	})
	if err != nil {
		return fmt.Errorf("node: raft: %w", err)
	}
	st := n.rn.Status()
	n.isLearner.Store(slices.Contains(st.Config.Learners, ident.NodeID))
	for _, id := range append(append([]uint64(nil), st.Config.Voters...), st.Config.Learners...) {
		if id != ident.NodeID {
			n.ensurePeer(id)
		}
	}
	if bootstrapped {
		if err := n.rn.Campaign(); err != nil {
			return fmt.Errorf("node: campaign: %w", err)
		}
	}
	return nil
}

// recoverSnapshot reinstalls the log's snapshot when the state machine is
// behind it (a crash between saving a snapshot and installing it).
func (n *Node) recoverSnapshot() error {
	meta := n.rlog.SnapshotMeta()
	if meta.Index == 0 || meta.Index <= n.kv.Applied() {
		return nil
	}
	snap, err := n.rlog.Snapshot()
	if err != nil {
		return fmt.Errorf("node: recover snapshot: %w", err)
	}
	return n.installSnapshot(snap)
}

// installSnapshot makes the state machine and the runtime's tables the
// state of snap. The tables are written first: a crash in between leaves
// the store behind the log's snapshot, and recoverSnapshot repeats both.
func (n *Node) installSnapshot(snap raft.Snapshot) error {
	repl, kvData, err := unwrapSnapshot(snap.Data)
	if err != nil {
		return fmt.Errorf("node: install snapshot %d: %w", snap.Meta.Index, err)
	}
	if err := n.meta.replace(repl); err != nil {
		return err
	}
	if err := n.kv.InstallSnapshot(raft.Snapshot{Meta: snap.Meta, Data: kvData}); err != nil {
		return fmt.Errorf("node: install snapshot %d: %w", snap.Meta.Index, err)
	}
	n.stMu.Lock()
	n.repl = repl
	n.stMu.Unlock()
	for id, m := range repl.Members {
		n.learnMember(id, m)
	}
	cs := snap.Meta.ConfState
	self := n.id.Load()
	n.isLearner.Store(slices.Contains(cs.Learners, self))
	if n.rn != nil { // nil while recovering before the core exists
		for _, id := range append(append([]uint64(nil), cs.Voters...), cs.Learners...) {
			if id != self {
				n.ensurePeer(id)
			}
		}
	}
	n.snapIndex = max(n.snapIndex, snap.Meta.Index)
	n.logger().Info("snapshot installed", "index", snap.Meta.Index, "term", snap.Meta.Term, "bytes", len(snap.Data))
	return nil
}

// markRemoved notes that this node was removed from the configuration,
// for the loop to stop. certain says this node applied its removal, its
// own stop-node removed it, or the leader said so; only then does Run
// record it in node.db. The entrance's word at rejoin is not certain: its
// registry can lag the configuration for a moment, and a live voter told
// so must be able to start again.
func (n *Node) markRemoved(certain bool) {
	if certain {
		n.removalKnown.Store(true)
	}
	n.removed.Store(true)
}

// startHandoff, on a leader that is asked to stop, starts a leadership
// transfer to the most caught-up recently active voter, so that the
// cluster does not wait an election timeout. It reports whether a transfer
// started.
func (n *Node) startHandoff() bool {
	st := n.rn.Status()
	if st.RaftState != raft.StateLeader {
		return false
	}
	target := handoffTarget(st)
	if target == 0 {
		return false
	}
	n.logger().Info("stopping: transferring leadership", "to", fmt.Sprintf("%016x", target))
	n.rn.TransferLeader(target)
	return true
}

// handoffTarget is the voter a leader with status st hands leadership to:
// the most caught-up one among those heard from recently (a dead voter with
// the best match would hold proposals for a whole transfer timeout); 0 if
// none.
func handoffTarget(st raft.Status) uint64 {
	var target, best uint64
	for _, v := range st.Config.Voters {
		pr, ok := st.Progress[v]
		if v == st.ID || !ok || !pr.RecentActive {
			continue
		}
		if target == 0 || pr.Match > best {
			target, best = v, pr.Match
		}
	}
	return target
}

// maxBatch bounds the events taken before a Ready is processed.
const maxBatch = 512

// loop is the one goroutine that touches the core.
func (n *Node) loop(ctx context.Context) error {
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	stop, stopc := ctx.Done(), n.stopc
	var (
		leaveBy  time.Time // a leader handing over before it stops
		leaveErr error     // what the loop returns once it handed over
		handing  bool      // the transfer has started
	)
	// leave stops the loop at once unless this node leads: then it hands
	// leadership over first (for up to an election timeout), so that the
	// cluster does not wait an election timeout for a new leader.
	leave := func(err error) bool {
		stop, stopc = nil, nil
		if st := n.rn.Status(); st.RaftState != raft.StateLeader || len(st.Config.Voters) <= 1 {
			return true
		}
		leaveBy = time.Now().Add(n.cfg.TickInterval * time.Duration(n.cfg.ElectionTicks))
		leaveErr = err
		handing = n.startHandoff()
		return false
	}
	for {
		select {
		case <-stop:
			if leave(nil) {
				return nil
			}
		case <-stopc:
			// AdminStop (with or without membership) or removal.
			if leave(errStop) {
				return errStop
			}
		case <-ticker.C:
			n.rn.Tick()
			n.ticks.Add(1)
			n.expireReads()
			// The core forgets who it heard from at every check-quorum
			// round: a voter that looked inactive a moment ago may be
			// a target now.
			if !leaveBy.IsZero() && !handing {
				handing = n.startHandoff()
			}
		case m := <-n.recvc:
			n.step(m)
		case f := <-n.opc:
			f()
		case id := <-n.unreachc:
			n.rn.ReportUnreachable(id)
		case r := <-n.snapDone():
			if err := n.finishSnapshot(r); err != nil {
				return err
			}
		}
		// Take what else is already waiting, so that one Ready (one fsync)
		// covers a burst of messages and proposals.
		for i := 0; i < maxBatch; i++ {
			select {
			case m := <-n.recvc:
				n.step(m)
				continue
			case f := <-n.opc:
				f()
				continue
			default:
			}
			break
		}
		n.issueReadIndex()
		for n.rn.HasReady() {
			if err := n.processReady(); err != nil {
				return err
			}
		}
		if p := n.applyErr.Load(); p != nil {
			return *p
		}
		// A node that is leaving on AdminStop stops when stop() has
		// answered (requestStop); any other removed node stops now.
		if n.removed.Load() && !n.stopping.Load() {
			n.logger().Info("removed from the cluster; stopping")
			return errStop
		}
		if !leaveBy.IsZero() {
			if lead := n.lead.Load(); lead != 0 && lead != n.id.Load() {
				n.logger().Info("handed leadership over", "leader", fmt.Sprintf("%016x", lead))
				return leaveErr
			}
			if time.Now().After(leaveBy) {
				n.logger().Warn("leadership handover timed out; stopping anyway")
				return leaveErr
			}
		}
	}
}

// raiseCommitToApplied makes the stored commit index at least the state
// machine's applied index. The log stores commit index updates lazily
// (kvstore.LogStore.Save writes them with the next fsynced write), while
// the state machine fsyncs what it applied; after a crash the applied index
// may so be ahead. Everything applied was committed, so raising it is
// safe; an applied index beyond the log's end means the log lost fsynced
// entries, and the node refuses to start.
func (n *Node) raiseCommitToApplied() error {
	hs, _, err := n.rlog.InitialState()
	if err != nil {
		return err
	}
	applied := n.kv.Applied()
	if applied <= hs.Commit {
		return nil
	}
	last, err := n.rlog.LastIndex()
	if err != nil {
		return err
	}
	if applied > last {
		return fmt.Errorf("node: the state machine applied index %d but the Raft log ends at %d: raft.db lost fsynced entries; restore this node from a backup or remove it and join it anew with an empty data dir", applied, last)
	}
	n.logger().Info("raising the stored commit index to the applied index (commit updates are written lazily)", "commit", hs.Commit, "applied", applied)
	hs.Commit = applied
	return n.rlog.SetHardState(hs)
}

func (n *Node) step(m raft.Message) {
	if err := n.rn.Step(m); err != nil {
		n.logger().Debug("step", "type", m.Type.String(), "peer", fmt.Sprintf("%016x", m.From), "err", err)
	}
}

// processReady runs one Ready through the contract: persist, send, apply,
// answer reads, advance.
//
// A leader's replication messages leave before the write (Raft thesis
// §10.2.1), so its log fsync overlaps the followers' and a write costs
// about two fsyncs in a row (leader and follower log in parallel, then the
// state machine) instead of three. Which messages may go early is
// raft.Ready.SplitMessages's rule: only MsgApp, MsgHeartbeat and MsgSnap,
// only from a Ready that changes neither term nor vote and carries no
// snapshot, and only when the commit index they announce covers entries
// that are already durable here. Nothing that claims this node's
// persistence leaves or takes effect before Save returns: vote grants,
// acks and every other message are sent after it, CommittedEntries are
// applied after it, and the followers' acks for the early entries are
// stepped by this goroutine only after processReady returned.
func (n *Node) processReady() error {
	rd := n.rn.Ready()
	if rd.SoftState != nil {
		n.onSoftState(*rd.SoftState)
	}
	if !rd.HardState.IsEmpty() {
		n.term.Store(rd.HardState.Term)
	}
	early, late := rd.SplitMessages()
	if n.cfg.lateSend {
		early, late = nil, rd.Messages
	}
	n.send(early)
	start := time.Now()
	if !rd.Snapshot.IsEmpty() {
		// Saving a snapshot replaces the log: check first that it can be
		// installed, so that a snapshot this node cannot use (damaged, or
		// from a raftkv with another format during a rolling upgrade)
		// stops it with its log intact instead of leaving a data dir that
		// fails the same way at every start.
		if err := checkSnapshot(rd.Snapshot.Data); err != nil {
			return fmt.Errorf("node: refusing the snapshot at index %d from the leader, log left as it was: %w", rd.Snapshot.Meta.Index, err)
		}
	}
	if err := n.rlog.Save(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync); err != nil {
		return err
	}
	if rd.MustSync && n.cfg.slowSync > 0 {
		time.Sleep(n.cfg.slowSync)
	}
	if rd.MustSync && !n.cfg.NoSync {
		n.met.fsyncDuration.Observe(time.Since(start).Seconds())
	}
	if !rd.HardState.IsEmpty() {
		n.commit.Store(rd.HardState.Commit)
	}
	if !rd.Snapshot.IsEmpty() {
		// A snapshot being written pins the old store, which the install
		// replaces: the received one is newer, so give ours up.
		n.abortSnapshot()
		n.barrier()
		if err := n.installSnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	n.send(late)
	if err := n.dispatch(rd.CommittedEntries); err != nil {
		return err
	}
	for _, rs := range rd.ReadStates {
		if b, ok := n.readWaiters[string(rs.RequestCtx)]; ok {
			delete(n.readWaiters, string(rs.RequestCtx))
			for _, ch := range b.chans {
				ch <- rs.Index
			}
		}
	}
	n.rn.Advance(rd)
	return n.maybeSnapshot()
}

func (n *Node) onSoftState(ss raft.SoftState) {
	if prev := n.lead.Swap(ss.Lead); ss.Lead != 0 && ss.Lead != prev {
		n.met.leaderChanges.Inc()
	}
	n.role.Store(uint32(ss.RaftState))
	isLeader := ss.RaftState == raft.StateLeader
	switch {
	case isLeader && !n.wasLeader:
		n.logger().Info("became leader", "term", n.rn.BasicStatus().Term)
		select {
		case n.reportc <- struct{}{}:
		default:
		}
	case !isLeader && n.wasLeader:
		n.logger().Info("lost leadership", "term", n.rn.BasicStatus().Term, "leader", fmt.Sprintf("%016x", ss.Lead))
		n.failWaiters()
	}
	if !isLeader && ss.Lead != 0 {
		n.logger().Debug("following", "leader", fmt.Sprintf("%016x", ss.Lead))
	}
	n.wasLeader = isLeader
}

// do runs f on the loop goroutine and waits for it.
func (n *Node) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case n.opc <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.loopDone:
		return ErrClosed
	}
	select {
	case <-done:
		return nil
	case <-n.loopDone:
		// The loop may have run f just before it stopped.
		select {
		case <-done:
			return nil
		default:
			return ErrClosed
		}
	}
}

// requestStop asks the loop to stop (removal, AdminStop).
func (n *Node) requestStop() {
	select {
	case n.stopc <- struct{}{}:
	default:
	}
}
