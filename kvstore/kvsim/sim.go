package kvsim

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/kvstore"
	"github.com/raftkv/raftkv/node/raft"
	"github.com/raftkv/raftkv/node/raft/raftsim"
)

// Config describes a simulated kvstore cluster and its clients.
type Config struct {
	// Seed drives the whole run (raftsim's random source).
	Seed uint64
	// Nodes is the cluster size (IDs 1..Nodes).
	Nodes int
	// Name is the test name, used in the replay command.
	Name string
	// Dir holds one data directory per node (required).
	Dir string
	// Network is every link's behaviour (zero = raftsim.Reliable()).
	Network raftsim.LinkConfig
	// SnapshotEvery and SnapshotKeep are raftsim's log compaction knobs;
	// SnapshotChunkBytes is the size of the MsgSnap chunks (0 = the
	// core's default).
	SnapshotEvery, SnapshotKeep uint64
	SnapshotChunkBytes          uint64
	// Clients is the number of clients (0 = 1).
	Clients int
	// ClientTimeout is how long a client waits for an answer before it
	// retries elsewhere (0 = 2 election timeouts).
	ClientTimeout raftsim.Time
	// ClientDelay is the longest one-way latency between a client and a
	// node (0 = 3 ms; the shortest is 1 ms).
	ClientDelay raftsim.Time
	// ReplyLoss is the probability that an answer to a client is lost.
	ReplyLoss float64
	// LogReads is the fraction of gets served through the log (OpRange)
	// instead of ReadIndex.
	LogReads float64
	// ViaFollower is the probability that a follower that knows a leader
	// serves a request itself instead of redirecting the client: its
	// core forwards the proposal (MsgProp) or the read (MsgReadIndex) to
	// the leader. A duplicated MsgProp can commit a write twice; the
	// session must answer the second copy without applying it.
	ViaFollower float64
	// SessionTTL is the store's session TTL (0 = kvstore's default).
	SessionTTL time.Duration
	// Logger receives the cores' and stores' logs (nil = discard).
	Logger *slog.Logger
}

// Sim is a raftsim cluster whose state machine is the real kvstore.Store,
// with simulated clients and a recorded history. It is driven by one
// goroutine and is not safe for concurrent use.
type Sim struct {
	// C is the simulated Raft cluster. Crash and restart nodes through
	// Sim (Crash, CrashAt, Restart), never through C: the Sim must
	// reopen the node's store.
	C   *raftsim.Cluster
	cfg Config
	dir string

	machines map[uint64]*machine // the current incarnation of each node's store
	booting  uint64              // the node whose state machine raftsim builds now
	bootNext uint64              // founders boot in order during raftsim.New
	inNew    bool

	err       error
	fps       map[uint64]kvstore.Fingerprint // by applied index
	fpChecks  int
	stats     Stats
	hist      []porcupine.Operation
	clients   []*Client
	lastStamp int64
	stopped   bool // no new operations
	halted    bool // clients gone: requests still on the way are lost

	// Planted bugs (self-tests): a write that is not applied (on some
	// nodes), and gets served from the local store of whatever node the
	// client reaches, without ReadIndex.
	dropWrite  func(node uint64, e raft.Entry) bool
	staleReads bool
}

// New builds the cluster and its clients. Nothing runs until the
// simulation is stepped.
func New(cfg Config) (*Sim, error) {
	if cfg.Dir == "" {
		return nil, errors.New("kvsim: config: Dir is required")
	}
	if cfg.Clients == 0 {
		cfg.Clients = 1
	}
	if cfg.ClientDelay == 0 {
		cfg.ClientDelay = 3
	}
	s := &Sim{cfg: cfg, dir: cfg.Dir, machines: map[uint64]*machine{}, fps: map[uint64]kvstore.Fingerprint{}}
	for id := 1; id <= cfg.Nodes; id++ {
		if err := os.MkdirAll(filepath.Join(s.dir, fmt.Sprintf("n%d", id)), 0o700); err != nil {
			return nil, fmt.Errorf("kvsim: %w", err)
		}
	}
	s.inNew = true
	c, err := raftsim.New(raftsim.Config{
		Seed: cfg.Seed, Nodes: cfg.Nodes, Name: cfg.Name,
		SnapshotEvery: cfg.SnapshotEvery, SnapshotKeep: cfg.SnapshotKeep, SnapshotChunkBytes: cfg.SnapshotChunkBytes,
		SkipSnapshotCompare: true, // bbolt images differ byte for byte; fingerprints are compared instead
		NewStateMachine:     s.newMachine,
		Network:             cfg.Network,
		Logger:              cfg.Logger,
		History:             100,
	})
	s.inNew = false
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("kvsim: %w", err)
	}
	if s.err != nil {
		s.Close()
		return nil, s.err
	}
	s.C = c
	if s.cfg.ClientTimeout == 0 {
		s.cfg.ClientTimeout = 2 * c.ElectionTimeout()
	}
	for i := range cfg.Clients {
		s.clients = append(s.clients, &Client{s: s, ID: i, guess: uint64(1 + i%cfg.Nodes)})
	}
	return s, nil
}

// newMachine is raftsim's NewStateMachine: it reopens the booting node's
// store from its file.
func (s *Sim) newMachine() raftsim.StateMachine {
	id := s.booting
	if id == 0 {
		if !s.inNew {
			// raftsim restarted a node behind the Sim's back (its
			// nemesis or CheckLiveness): the store cannot be reopened
			// for an unknown node.
			panic("kvsim: raftsim booted a node not restarted through Sim.Restart")
		}
		s.bootNext++
		id = s.bootNext
	}
	m, err := s.openMachine(id)
	if err != nil {
		panic(fmt.Sprintf("kvsim: reopen store of node %d: %v", id, err))
	}
	s.machines[id] = m
	return m
}

// Config returns the configuration (with defaults).
func (s *Sim) Config() Config { return s.cfg }

// Clients returns the clients.
func (s *Sim) Clients() []*Client { return s.clients }

// Store returns the current store of node id (nil when it never ran).
// It is closed once the node crashes and restarts.
func (s *Sim) Store(id uint64) *kvstore.Store {
	if m := s.machines[id]; m != nil {
		return m.store
	}
	return nil
}

// Crash kills node id now and closes its store: what the store committed
// survives, the rest of the node is lost.
func (s *Sim) Crash(id uint64) {
	s.C.Crash(id)
	s.closeMachine(id)
}

// CrashAt arms node id to crash at point p of its next Ready.
func (s *Sim) CrashAt(id uint64, p raftsim.CrashPoint) { s.C.CrashAt(id, p) }

func (s *Sim) closeMachine(id uint64) {
	if m := s.machines[id]; m != nil && !s.C.IsUp(id) {
		if err := m.close(); err != nil {
			s.failf("node %d: close store: %v", id, err)
		}
		delete(s.machines, id)
	}
}

// Restart brings node id back: its store reopened from its file, the core
// from its disk, and the log above the store's applied index re-applied.
func (s *Sim) Restart(id uint64) error {
	if s.C.IsUp(id) {
		return nil
	}
	s.closeMachine(id)
	s.booting = id
	defer func() { s.booting = 0 }()
	if err := s.C.Restart(id); err != nil {
		return fmt.Errorf("kvsim: restart %d: %w", id, err)
	}
	if m := s.machines[id]; m != nil {
		s.checkFingerprint(m)
	}
	return nil
}

// AddNode adds a node with an empty disk and an empty store, as a machine
// joining the cluster: it does nothing until a leader adds it (as a
// learner) and catches it up, from a snapshot of the store.
func (s *Sim) AddNode(id uint64) error {
	if err := os.MkdirAll(filepath.Join(s.dir, fmt.Sprintf("n%d", id)), 0o700); err != nil {
		return fmt.Errorf("kvsim: %w", err)
	}
	s.booting = id
	defer func() { s.booting = 0 }()
	if err := s.C.AddNode(id); err != nil {
		return fmt.Errorf("kvsim: %w", err)
	}
	return nil
}

// Remove takes node id out of the simulation for good (after its removal
// from the membership) and closes its store.
func (s *Sim) Remove(id uint64) {
	s.C.Remove(id)
	s.closeMachine(id)
}

// RestartAll restarts every node that is down.
func (s *Sim) RestartAll() error {
	for _, id := range s.C.IDs() {
		if err := s.Restart(id); err != nil {
			return err
		}
	}
	return nil
}

// Close closes every open store.
func (s *Sim) Close() {
	ids := make([]uint64, 0, len(s.machines))
	for id := range s.machines {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s.machines[id].close()
		delete(s.machines, id)
	}
}

// Err returns the first failure: a raftsim invariant violation, a store
// error, or a divergence of replicas.
func (s *Sim) Err() error {
	if s.err != nil {
		return s.err
	}
	if s.C != nil {
		return s.C.Err()
	}
	return nil
}

func (s *Sim) failf(format string, args ...any) {
	if s.err == nil {
		now := raftsim.Time(0)
		if s.C != nil {
			now = s.C.Now()
		}
		s.err = fmt.Errorf("kvsim: t=%dms: %s", now, fmt.Sprintf(format, args...))
	}
}

// checkFingerprint records m's fingerprint and fails the run when another
// replica had a different one at the same applied index.
func (s *Sim) checkFingerprint(m *machine) {
	fp, err := m.store.Fingerprint()
	if err != nil {
		s.failf("node %d: fingerprint: %v", m.id, err)
		return
	}
	s.fpChecks++
	if prev, ok := s.fps[fp.Applied]; ok && prev.Sum != fp.Sum {
		s.failf("node %d: state machine diverged: fingerprint %x at applied %d, another replica had %x",
			m.id, fp.Sum[:8], fp.Applied, prev.Sum[:8])
		return
	}
	s.fps[fp.Applied] = fp
}

// Stats counts what the clients and stores went through, so tests can
// show that a scenario exercised what it claims to.
type Stats struct {
	Duplicates  int // commands the session table answered without applying them (on any node)
	Skipped     int // entries a restarted store had applied already
	Expired     int // answers saying the client's session had expired
	Redirects   int // requests a node refused (not leader, down, crashed, outcome unknown)
	Timeouts    int // attempts the client gave up waiting for
	ViaFollower int // requests a follower served through its core
}

// Stats returns the counters of the run so far.
func (s *Sim) Stats() Stats { return s.stats }

// FingerprintChecks returns how many fingerprints were compared.
func (s *Sim) FingerprintChecks() int { return s.fpChecks }

// stamp returns the current virtual time in nanoseconds, strictly
// increasing across calls, so the history orders events exactly as the
// simulation ran them.
func (s *Sim) stamp() int64 {
	t := int64(s.C.Now()) * int64(time.Millisecond)
	if t <= s.lastStamp {
		t = s.lastStamp + 1
	}
	s.lastStamp = t
	return t
}

func (s *Sim) record(op porcupine.Operation) { s.hist = append(s.hist, op) }

// History returns the recorded operations.
func (s *Sim) History() []porcupine.Operation { return s.hist }

// Idle reports whether no client has an operation in flight.
func (s *Sim) Idle() bool {
	for _, c := range s.clients {
		if c.cur != nil {
			return false
		}
	}
	return true
}

// StopClients stops every client: no new operations start; a write still
// in flight is recorded with an unknown outcome (Return math.MaxInt64), a
// read in flight is dropped, and requests still on their way to a node
// are lost.
func (s *Sim) StopClients() {
	s.stopped, s.halted = true, true
	for _, c := range s.clients {
		c.abandon()
	}
}

// Settle stops the clients from starting new operations, heals the
// network, restarts every node and lets every operation in flight finish, for at most limit of virtual time: after the faults,
// the cluster must make progress (liveness).
func (s *Sim) Settle(limit raftsim.Time) error {
	s.stopped = true // no new operations
	s.C.Heal()
	s.C.SetNetwork(raftsim.Reliable())
	for _, c := range s.clients {
		c.nodes = nil
	}
	if !s.runUp(s.Idle, limit) {
		if err := s.Err(); err != nil {
			return err
		}
		return fmt.Errorf("kvsim: liveness: %d clients still busy %dms after the faults healed", s.busy(), limit)
	}
	return s.Err()
}

// runUp runs until cond holds, at most limit, restarting every node that
// is down (a crash armed with CrashAt may fire late). It reports whether
// cond held.
func (s *Sim) runUp(cond func() bool, limit raftsim.Time) bool {
	end := s.C.Now() + limit
	for s.Err() == nil {
		if cond() {
			return true
		}
		if s.C.Now() >= end {
			return false
		}
		if err := s.RestartAll(); err != nil {
			s.failf("%v", err)
			return false
		}
		s.C.RunUntil(func() bool { return cond() || len(s.C.UpIDs()) < len(s.C.IDs()) || s.Err() != nil }, end-s.C.Now())
	}
	return false
}

func (s *Sim) busy() int {
	n := 0
	for _, c := range s.clients {
		if c.cur != nil {
			n++
		}
	}
	return n
}

// CheckReplicas proposes a marker command, waits until the store of every
// member (voter or learner when the marker was applied; a node removed
// from the membership no longer gets the log) applied it and all are at
// the same applied index, and checks that they have the same fingerprint. Call it after Settle and
// StopClients.
func (s *Sim) CheckReplicas(limit raftsim.Time) error {
	var (
		idx     uint64
		members []uint64 // the membership when the marker was applied
	)
	data, err := kvstore.EncodeCommand(kvstore.Command{Op: kvstore.OpNoop, Time: int64(s.C.Now()) * int64(time.Millisecond)})
	if err != nil {
		return err
	}
	end := s.C.Now() + limit
	for idx == 0 && s.C.Now() < end && s.Err() == nil {
		if err := s.RestartAll(); err != nil {
			return err
		}
		lead := s.C.WaitLeader(end - s.C.Now())
		if lead == 0 {
			break
		}
		proposed := false
		if s.C.Propose(lead, data, func(r raftsim.ProposeResult) {
			if r.Err == nil {
				idx = r.Index
				cs := s.C.ConfState(r.Node)
				members = append(slices.Clone(cs.Voters), cs.Learners...)
			}
		}) == nil {
			proposed = true
		}
		if proposed {
			s.C.RunUntil(func() bool { return idx != 0 }, 4*s.C.ElectionTimeout())
		} else {
			s.C.RunTicks(1)
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	if idx == 0 {
		return fmt.Errorf("kvsim: replicas: marker command not committed within %dms", limit)
	}
	// (A learner whose node left the simulation before its addition
	// committed has no store to compare.)
	ids := slices.DeleteFunc(s.C.IDs(), func(id uint64) bool { return !slices.Contains(members, id) })
	all := func() bool { // every store applied the marker, and all are at the same index
		var at uint64
		for i, id := range ids {
			st := s.Store(id)
			if !s.C.IsUp(id) || st == nil || st.Applied() < idx || (i > 0 && st.Applied() != at) {
				return false
			}
			at = st.Applied()
		}
		return true
	}
	if !s.runUp(all, end-s.C.Now()) {
		if err := s.Err(); err != nil {
			return err
		}
		return fmt.Errorf("kvsim: replicas: not every store applied the marker at %d within %dms", idx, limit)
	}
	var first kvstore.Fingerprint
	for i, id := range ids {
		fp, err := s.Store(id).Fingerprint()
		if err != nil {
			return fmt.Errorf("kvsim: node %d: fingerprint: %w", id, err)
		}
		s.fpChecks++
		if i == 0 {
			first = fp
			continue
		}
		if fp != first {
			return fmt.Errorf("kvsim: replicas diverged: node %d at applied %d has %x, node %d at applied %d has %x",
				ids[0], first.Applied, first.Sum[:8], id, fp.Applied, fp.Sum[:8])
		}
	}
	return s.Err()
}

// CheckResult is the outcome of a linearizability check.
type CheckResult struct {
	Ops     int    // operations checked
	Unknown int    // writes with unknown outcome among them
	HTML    string // path of porcupine's visualization, written on failure
}

// CheckLinearizable checks the recorded history with porcupine against
// Model. On failure it writes porcupine's visualization to a file in
// htmlDir and returns an error naming it, the seed and the replay command.
func (s *Sim) CheckLinearizable(htmlDir string, timeout time.Duration) (CheckResult, error) {
	res := CheckResult{Ops: len(s.hist)}
	for _, op := range s.hist {
		if op.Return == math.MaxInt64 {
			res.Unknown++
		}
	}
	out, info := porcupine.CheckOperationsVerbose(Model, s.hist, timeout)
	if out == porcupine.Ok {
		return res, nil
	}
	what := "not linearizable"
	if out == porcupine.Unknown {
		what = fmt.Sprintf("linearizability check timed out after %v", timeout)
	}
	f, err := os.CreateTemp(htmlDir, fmt.Sprintf("kvsim-%s-seed%#x-*.html", sanitize(s.cfg.Name), s.cfg.Seed))
	if err == nil {
		res.HTML = f.Name()
		err = porcupine.Visualize(Model, info, f)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		return res, fmt.Errorf("kvsim: history of %d operations %s (seed %#x; writing the visualization failed: %v)\nreplay: %s",
			len(s.hist), what, s.cfg.Seed, err, s.Replay())
	}
	return res, fmt.Errorf("kvsim: history of %d operations %s (seed %#x)\nvisualization: %s\nreplay: %s",
		len(s.hist), what, s.cfg.Seed, res.HTML, s.Replay())
}

// Replay returns the command that replays this run.
func (s *Sim) Replay() string {
	return fmt.Sprintf("KV_SIM_SEED=%#x go test ./kvstore/kvsim -run '^%s$' -v", s.cfg.Seed, s.cfg.Name)
}

// Report describes a failed run: the error, the seed, the replay command
// and raftsim's recent events.
func (s *Sim) Report(err error) string {
	r := fmt.Sprintf("%v\nseed %#x; replay: %s", err, s.cfg.Seed, s.Replay())
	if s.C != nil {
		r += "\n" + s.C.Report()
	}
	return r
}

func sanitize(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}
