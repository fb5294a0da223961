package raftsim

import (
	"container/heap"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/raftkv/raftkv/node/raft"
)

// Errors reported to proposers and readers.
var (
	// ErrNodeDown means the request was made on a node that is crashed
	// or not part of the simulation.
	ErrNodeDown = errors.New("raftsim: node is down")
	// ErrNodeCrashed means the node holding a pending request crashed
	// before answering it: the request may or may not take effect.
	ErrNodeCrashed = errors.New("raftsim: node crashed with the request pending")
)

// Config describes a simulated cluster. Zero values mean the defaults.
type Config struct {
	// Seed drives every decision of the run: same seed, same run.
	Seed uint64
	// Nodes is the number of founding voters, with IDs 1..Nodes.
	Nodes int
	// Name is the test name, used in the replay command of Report.
	Name string

	// ElectionTicks and HeartbeatTicks are passed to every core (0 = 10, 1).
	ElectionTicks, HeartbeatTicks int
	// TickInterval is the virtual time between two ticks of a node (0 = 10 ms).
	TickInterval Time
	// TickSkew makes nodes tick at different rates: each node's interval
	// is TickInterval scaled by a factor drawn from [1-TickSkew, 1+TickSkew].
	TickSkew float64
	// MaxSizePerMsg, MaxInflightMsgs and SnapshotChunkBytes are passed
	// to every core (0 = the core's defaults).
	MaxSizePerMsg      uint64
	MaxInflightMsgs    int
	SnapshotChunkBytes uint64
	// DisablePreVote and DisableCheckQuorum are passed to every core.
	DisablePreVote, DisableCheckQuorum bool

	// SnapshotEvery makes each node snapshot its state machine and compact
	// its log every SnapshotEvery applied entries (0 = never).
	SnapshotEvery uint64
	// SnapshotKeep is the number of entries kept behind a snapshot when
	// the log is compacted.
	SnapshotKeep uint64
	// NewStateMachine builds a node's state machine (nil = NewHashMachine).
	NewStateMachine func() StateMachine
	// SkipSnapshotCompare turns off the byte-for-byte comparison of state
	// machine snapshots taken at the same index (for state machines whose
	// Snapshot is not deterministic).
	SkipSnapshotCompare bool

	// Network is the behaviour of every link (zero = Reliable()).
	Network LinkConfig
	// UnreachableAfter is how long after a message hit a cut link the
	// sender's core gets ReportUnreachable, as the real transport would
	// after its retries (0 = 5 ticks).
	UnreachableAfter Time

	// History is the number of recent events kept for failure reports
	// (0 = 50).
	History int
	// Logger receives the cores' logs (nil = discard).
	Logger *slog.Logger
}

func (cfg *Config) setDefaults() {
	if cfg.ElectionTicks == 0 {
		cfg.ElectionTicks = 10
	}
	if cfg.HeartbeatTicks == 0 {
		cfg.HeartbeatTicks = 1
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 10
	}
	if cfg.NewStateMachine == nil {
		cfg.NewStateMachine = NewHashMachine
	}
	if cfg.Network == (LinkConfig{}) {
		cfg.Network = Reliable()
	}
	if cfg.UnreachableAfter == 0 {
		cfg.UnreachableAfter = 5 * cfg.TickInterval
	}
	if cfg.History == 0 {
		cfg.History = 50
	}
}

// Cluster is a simulated Raft cluster driven by one goroutine and one
// seeded random source. It is not safe for concurrent use.
type Cluster struct {
	cfg   Config
	rng   *rand.Rand
	now   Time
	seq   uint64
	queue eventQueue
	nodes map[uint64]*simNode
	ids   []uint64 // sorted IDs of nodes in the simulation
	net   *network
	chk   *checker
	err   error
	hist  []histEntry
	histN int
	stats Stats

	nextProp uint64
	props    map[uint64]*proposal
	ccProps  []*ccProposal
	nextRead uint64
	reads    map[string]*readReq
	unreach  map[link]bool   // an unreachable report is pending
	gone     map[uint64]bool // removed from the simulation: IDs are never reused

	sameTime  int      // events processed at the current virtual time
	depth     int      // nesting of afterStep
	callbacks []func() // answers to proposers and readers, run by flush

	// tapDeliver sees every message just before it is stepped into its
	// receiver (tests use it to replay stale messages on cue).
	tapDeliver func(m raft.Message)
	// Test hooks that plant bugs, to prove the checker can fail.
	tamperApply   func(id uint64, e *raft.Entry)
	tamperPersist func(id uint64, rd *raft.Ready)
}

// New builds a cluster of cfg.Nodes founding voters, bootstrapped as every
// package does (a snapshot at index 1, term 1 naming the founders) and
// starts their clocks. Nothing runs until Step, RunFor or RunUntil.
func New(cfg Config) (*Cluster, error) {
	cfg.setDefaults()
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("raftsim: config: Nodes = %d, want >= 1", cfg.Nodes)
	}
	c := &Cluster{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		nodes:   map[uint64]*simNode{},
		net:     newNetwork(cfg.Network),
		props:   map[uint64]*proposal{},
		reads:   map[string]*readReq{},
		unreach: map[link]bool{},
		gone:    map[uint64]bool{},
		hist:    make([]histEntry, cfg.History),
	}
	c.chk = newChecker(c)
	var founders []uint64
	for i := 1; i <= cfg.Nodes; i++ {
		founders = append(founders, uint64(i))
	}
	boot := raft.Snapshot{Meta: raft.SnapshotMeta{Index: 1, Term: 1, ConfState: raft.ConfState{Voters: founders}}}
	c.chk.recordSnapshot(0, 1, boot.Data)
	for _, id := range founders {
		disk := raft.NewMemoryStorage()
		if err := disk.ApplySnapshot(boot); err != nil {
			return nil, fmt.Errorf("raftsim: bootstrap node %d: %w", id, err)
		}
		if err := disk.SetHardState(raft.HardState{Term: 1, Commit: 1}); err != nil {
			return nil, fmt.Errorf("raftsim: bootstrap node %d: %w", id, err)
		}
		if err := c.startNode(id, disk); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// AddNode adds a node with empty storage, as a machine joining the
// cluster: it does nothing until a leader adds it (as a learner) and
// catches it up. IDs must never be reused.
func (c *Cluster) AddNode(id uint64) error {
	if _, ok := c.nodes[id]; ok || id == 0 || c.gone[id] {
		return fmt.Errorf("raftsim: add node %d: id in use, reused or zero", id)
	}
	return c.startNode(id, raft.NewMemoryStorage())
}

func (c *Cluster) startNode(id uint64, disk *raft.MemoryStorage) error {
	sn := &simNode{id: id, disk: disk}
	f := 1 + (c.rng.Float64()*2-1)*c.cfg.TickSkew
	sn.tickEvery = max(1, Time(float64(c.cfg.TickInterval)*f+0.5))
	c.nodes[id] = sn
	c.ids = append(c.ids, id)
	slices.Sort(c.ids)
	c.logf("add node %d tick=%dms", id, sn.tickEvery)
	return c.boot(sn)
}

// Remove takes id out of the simulation for good (after its removal from
// the membership, for example). Its disk is discarded.
func (c *Cluster) Remove(id uint64) {
	sn := c.nodes[id]
	if sn == nil {
		return
	}
	if sn.up {
		c.crash(sn, "removed from the simulation")
		c.flush()
	}
	delete(c.nodes, id)
	c.gone[id] = true
	c.ids = slices.DeleteFunc(c.ids, func(x uint64) bool { return x == id })
	for l := range c.net.blocked {
		if l.from == id || l.to == id {
			delete(c.net.blocked, l)
		}
	}
}

// Seed returns the seed of the run.
func (c *Cluster) Seed() uint64 { return c.cfg.Seed }

// Config returns the cluster's configuration (with defaults filled in).
func (c *Cluster) Config() Config { return c.cfg }

// Now returns the virtual time.
func (c *Cluster) Now() Time { return c.now }

// Rand returns the simulation's random source. Tests and harnesses built
// on the cluster draw from it too, so one seed decides the whole run.
func (c *Cluster) Rand() *rand.Rand { return c.rng }

// Err returns the first invariant violation (a *Violation) or internal
// error; once set, the simulation stops.
func (c *Cluster) Err() error { return c.err }

// IDs returns the sorted IDs of the nodes in the simulation, up or down.
func (c *Cluster) IDs() []uint64 { return slices.Clone(c.ids) }

// UpIDs returns the sorted IDs of the nodes that are running.
func (c *Cluster) UpIDs() []uint64 {
	var out []uint64
	for _, id := range c.ids {
		if c.nodes[id].up {
			out = append(out, id)
		}
	}
	return out
}

// IsUp reports whether id is running.
func (c *Cluster) IsUp(id uint64) bool {
	sn := c.nodes[id]
	return sn != nil && sn.up
}

// Node returns id's core, or nil when it is down. Calls that change the
// core must go through Do so the Ready is processed.
func (c *Cluster) Node(id uint64) *raft.Node {
	if sn := c.nodes[id]; sn != nil && sn.up {
		return sn.rn
	}
	return nil
}

// Do runs fn on id's core (Campaign, TransferLeader, ...) and then
// processes its Ready as the application loop would. It returns fn's
// error, or ErrNodeDown.
func (c *Cluster) Do(id uint64, what string, fn func(n *raft.Node) error) error {
	sn := c.nodes[id]
	if sn == nil || !sn.up {
		return ErrNodeDown
	}
	err := fn(sn.rn)
	c.logf("node %d: %s: err=%v", id, what, err)
	c.afterStep(sn)
	return err
}

// Storage returns id's disk (what survives a crash).
func (c *Cluster) Storage(id uint64) *raft.MemoryStorage {
	if sn := c.nodes[id]; sn != nil {
		return sn.disk
	}
	return nil
}

// StateMachine returns id's state machine, or nil when it is down.
func (c *Cluster) StateMachine(id uint64) StateMachine {
	if sn := c.nodes[id]; sn != nil && sn.up {
		return sn.sm
	}
	return nil
}

// Applied returns the index id's state machine has applied (0 when down).
func (c *Cluster) Applied(id uint64) uint64 {
	if sn := c.nodes[id]; sn != nil && sn.up {
		return sn.applied
	}
	return 0
}

// ConfState returns the membership id has applied.
func (c *Cluster) ConfState(id uint64) raft.ConfState {
	if sn := c.nodes[id]; sn != nil {
		return sn.conf
	}
	return raft.ConfState{}
}

// Status returns id's core status (zero when down).
func (c *Cluster) Status(id uint64) raft.Status {
	if sn := c.nodes[id]; sn != nil && sn.up {
		return sn.rn.Status()
	}
	return raft.Status{}
}

// Leader returns the running node that is leader in the highest term, or
// 0 when no running node is leader.
func (c *Cluster) Leader() uint64 {
	var lead, term uint64
	for _, id := range c.ids {
		sn := c.nodes[id]
		if !sn.up {
			continue
		}
		st := sn.rn.BasicStatus()
		if st.RaftState == raft.StateLeader && st.Term >= term {
			lead, term = id, st.Term
		}
	}
	return lead
}

// Term returns id's current term (0 when down).
func (c *Cluster) Term(id uint64) uint64 {
	if sn := c.nodes[id]; sn != nil && sn.up {
		return sn.rn.BasicStatus().Term
	}
	return 0
}

// MaxTerm returns the highest current term among running nodes.
func (c *Cluster) MaxTerm() uint64 {
	var t uint64
	for _, id := range c.UpIDs() {
		t = max(t, c.Term(id))
	}
	return t
}

// Committed returns the highest index known committed anywhere.
func (c *Cluster) Committed() uint64 { return c.chk.maxCommitted }

// CommittedData returns the payload (without envelope) and term of the
// committed entry at index i, if the checker saw it.
func (c *Cluster) CommittedData(i uint64) (data []byte, term uint64, ok bool) {
	if i >= uint64(len(c.chk.committed)) || !c.chk.committed[i].known {
		return nil, 0, false
	}
	r := c.chk.committed[i]
	return r.data, r.term, true
}

// After schedules fn at virtual time Now()+d. Harnesses use it for client
// think times, timeouts and fault schedules.
func (c *Cluster) After(d Time, name string, fn func()) {
	c.push(&event{at: c.now + max(d, 0), kind: evFunc, fn: fn, text: name})
}

// maxEventsPerInstant bounds the events at one virtual time (messages
// with zero latency answered with zero latency, forever).
const maxEventsPerInstant = 200_000

// Step processes the next event. It returns false when the simulation
// stopped (a violation) or has nothing left to do.
func (c *Cluster) Step() bool {
	if c.err != nil || c.queue.Len() == 0 {
		return false
	}
	ev := heap.Pop(&c.queue).(*event)
	if ev.at == c.now {
		c.sameTime++
		if c.sameTime > maxEventsPerInstant {
			c.fail(ev.node, "livelock: more than %d events at t=%dms", maxEventsPerInstant, c.now)
			return false
		}
	} else {
		c.sameTime = 0
	}
	c.now = ev.at
	switch ev.kind {
	case evTick:
		sn := c.nodes[ev.node]
		if sn == nil || !sn.up || sn.inc != ev.inc {
			break
		}
		sn.rn.Tick()
		c.afterStep(sn)
		if sn.up && sn.inc == ev.inc {
			c.push(&event{at: c.now + sn.tickEvery, kind: evTick, node: sn.id, inc: sn.inc})
		}
	case evDeliver:
		c.deliver(ev)
	case evUnreachable:
		delete(c.unreach, link{ev.from, ev.node})
		sn := c.nodes[ev.from]
		if sn == nil || !sn.up {
			break
		}
		c.record(histEntry{text: fmt.Sprintf("node %d: report %d unreachable", ev.from, ev.node)})
		sn.rn.ReportUnreachable(ev.node)
		c.afterStep(sn)
	case evFunc:
		if ev.text != "" {
			c.logf("%s", ev.text)
		}
		ev.fn()
	}
	return c.err == nil
}

// RunFor runs the simulation for d of virtual time. It returns Err().
func (c *Cluster) RunFor(d Time) error {
	end := c.now + d
	for c.err == nil && c.queue.Len() > 0 && c.queue[0].at <= end {
		c.Step()
	}
	if c.err == nil {
		c.now = end
	}
	return c.err
}

// RunTicks runs the simulation for n ticks of TickInterval.
func (c *Cluster) RunTicks(n int) error { return c.RunFor(Time(n) * c.cfg.TickInterval) }

// RunUntil runs until cond holds (checked before the first event and
// after each one), at most for limit of virtual time. It reports whether
// cond held; it is false too when the simulation stopped on a violation.
func (c *Cluster) RunUntil(cond func() bool, limit Time) bool {
	end := c.now + limit
	for c.err == nil {
		if cond() {
			return true
		}
		if c.queue.Len() == 0 || c.queue[0].at > end {
			c.now = max(c.now, end)
			return false
		}
		c.Step()
	}
	return false
}

// WaitLeader runs until some running node is leader, at most limit. It
// returns the leader, or 0.
func (c *Cluster) WaitLeader(limit Time) uint64 {
	c.RunUntil(func() bool { return c.Leader() != 0 }, limit)
	return c.Leader()
}

// ElectionTimeout is the longest virtual time a follower waits before
// campaigning (2 × ElectionTicks ticks of the slowest possible clock).
func (c *Cluster) ElectionTimeout() Time {
	return Time(float64(2*c.cfg.ElectionTicks)*float64(c.cfg.TickInterval)*(1+c.cfg.TickSkew)) + 1
}

// Crash kills id now: its core, state machine and everything not on its
// disk are lost. Pending requests on it fail with ErrNodeCrashed.
func (c *Cluster) Crash(id uint64) {
	if sn := c.nodes[id]; sn != nil && sn.up {
		c.crash(sn, "crash")
		c.flush()
	}
}

// CrashPoint is where in the handling of its next Ready a node dies.
type CrashPoint uint8

const (
	// CrashBeforePersist loses the whole Ready's write: a crash after the
	// core produced it but before the write reached the disk (or before
	// fsync). A random prefix (possibly none, possibly all) of its early
	// messages (raft.Ready.SplitMessages) was sent.
	CrashBeforePersist CrashPoint = iota + 1
	// CrashBeforeSend persists the Ready and sends its early messages but
	// none of the others.
	CrashBeforeSend
	// CrashBeforeApply persists and sends, but applies nothing.
	CrashBeforeApply
	// CrashAfterEarlySend sends all of the Ready's early messages, then
	// loses its write (CrashBeforePersist with the whole prefix).
	CrashAfterEarlySend
)

func (p CrashPoint) String() string {
	switch p {
	case CrashBeforePersist:
		return "before-persist"
	case CrashBeforeSend:
		return "before-send"
	case CrashBeforeApply:
		return "before-apply"
	case CrashAfterEarlySend:
		return "after-early-send"
	}
	return "none"
}

// CrashAt arms id to crash at point p of its next Ready.
func (c *Cluster) CrashAt(id uint64, p CrashPoint) {
	if sn := c.nodes[id]; sn != nil && sn.up {
		sn.crashAt = p
		c.logf("node %d: armed crash %v", id, p)
	}
}

// Restart brings a crashed node back from its disk.
func (c *Cluster) Restart(id uint64) error {
	sn := c.nodes[id]
	if sn == nil {
		return fmt.Errorf("raftsim: restart %d: %w", id, ErrNodeDown)
	}
	if sn.up {
		return nil
	}
	return c.boot(sn)
}

// SetTickInterval changes how often id ticks (from its next tick).
func (c *Cluster) SetTickInterval(id uint64, d Time) {
	if sn := c.nodes[id]; sn != nil {
		sn.tickEvery = max(1, d)
		c.logf("node %d: tick=%dms", id, sn.tickEvery)
	}
}

// Stats returns the message counters since the last ResetStats.
func (c *Cluster) Stats() Stats { return c.stats }

// ResetStats zeroes the message counters.
func (c *Cluster) ResetStats() { c.stats = Stats{} }

// Stats counts what the nodes sent (before the network dropped anything).
type Stats struct {
	Msgs  uint64 // messages sent
	Bytes uint64 // encoded bytes sent
	// ByType counts messages and bytes per raft.MessageType.
	ByType [32]struct{ Msgs, Bytes uint64 }
	// AppEntries and AppEntryBytes count entries (and their Data bytes)
	// carried by MsgApp.
	AppEntries, AppEntryBytes uint64
	// AppRejects counts rejected MsgAppResp (log backtracking rounds).
	AppRejects         uint64
	Delivered, Dropped uint64
	// EarlyMsgs counts messages sent before their Ready was persisted
	// (raft.Ready.SplitMessages), crashes aside.
	EarlyMsgs uint64
}

// Violation is a broken invariant.
type Violation struct {
	At   Time
	Node uint64
	What string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("raftsim: invariant violated at t=%dms on node %d: %s", v.At, v.Node, v.What)
}

func (c *Cluster) fail(node uint64, format string, args ...any) {
	if c.err != nil {
		return
	}
	c.err = &Violation{At: c.now, Node: node, What: fmt.Sprintf(format, args...)}
	c.record(histEntry{text: "VIOLATION: " + c.err.Error()})
}

// Report describes the run for a failure message: the error, the seed,
// the replay command and the last events.
func (c *Cluster) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "error: %v\n", c.err)
	fmt.Fprintf(&b, "seed: %#x (nodes=%d, t=%dms)\n", c.cfg.Seed, c.cfg.Nodes, c.now)
	name := c.cfg.Name
	if name == "" {
		name = "TestSimulation"
	}
	fmt.Fprintf(&b, "replay: RAFT_SIM_SEED=%#x go test ./node/raft/raftsim -run '^%s$' -v\n", c.cfg.Seed, name)
	fmt.Fprintf(&b, "   or: go test ./node/raft/raftsim -run '^%s$' -v -seed=%#x\n", name, c.cfg.Seed)
	fmt.Fprintf(&b, "nodes:\n")
	for _, id := range c.ids {
		sn := c.nodes[id]
		hs, _, _ := sn.disk.InitialState()
		last, _ := sn.disk.LastIndex()
		state := "down"
		if sn.up {
			st := sn.rn.BasicStatus()
			state = fmt.Sprintf("%v lead=%d", st.RaftState, st.Lead)
		}
		fmt.Fprintf(&b, "  %d: %s disk{term=%d vote=%d commit=%d last=%d} applied=%d conf=%v\n",
			id, state, hs.Term, hs.Vote, hs.Commit, last, sn.applied, sn.conf)
	}
	if bl := c.net.blockedPairs(); len(bl) > 0 {
		fmt.Fprintf(&b, "blocked links: %v\n", bl)
	}
	fmt.Fprintf(&b, "last events:\n")
	for _, e := range c.Events() {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

// Events returns the last Config.History events, oldest first.
func (c *Cluster) Events() []string {
	n := len(c.hist)
	var out []string
	for i := 0; i < n; i++ {
		e := c.hist[(c.histN+i)%n]
		if e.text == "" && e.m == nil {
			continue
		}
		out = append(out, e.String())
	}
	return out
}

func (c *Cluster) logf(format string, args ...any) {
	c.record(histEntry{text: fmt.Sprintf(format, args...)})
}

func (c *Cluster) record(e histEntry) {
	e.at = c.now
	c.hist[c.histN%len(c.hist)] = e
	c.histN++
}

// histEntry is one remembered event; messages are formatted lazily.
type histEntry struct {
	at   Time
	text string
	m    *raft.Message
	note string
}

func (e histEntry) String() string {
	if e.m == nil {
		return fmt.Sprintf("t=%-6d %s", e.at, e.text)
	}
	m := e.m
	s := fmt.Sprintf("t=%-6d %s %d->%d term=%d logterm=%d index=%d commit=%d", e.at, m.Type, m.From, m.To, m.Term, m.LogTerm, m.Index, m.Commit)
	if len(m.Entries) > 0 {
		s += fmt.Sprintf(" ents=[%d..%d]", m.Entries[0].Index, m.Entries[len(m.Entries)-1].Index)
	}
	if m.Reject {
		s += fmt.Sprintf(" reject hint=%d", m.RejectHint)
	}
	if m.Snapshot != nil {
		s += fmt.Sprintf(" snap=%d/%d off=%d len=%d", m.Snapshot.Meta.Index, m.Snapshot.Meta.Term, m.Snapshot.Offset, len(m.Snapshot.Data))
	}
	if e.note != "" {
		s += " (" + e.note + ")"
	}
	return s
}

type eventKind uint8

const (
	evTick eventKind = iota
	evDeliver
	evUnreachable
	evFunc
)

type event struct {
	at   Time
	seq  uint64
	kind eventKind
	node uint64 // tick: the node; deliver: the receiver; unreachable: the peer
	from uint64
	inc  uint64
	data []byte
	fn   func()
	text string
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}

func (c *Cluster) push(e *event) {
	c.seq++
	e.seq = c.seq
	heap.Push(&c.queue, e)
}
