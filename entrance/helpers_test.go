package entrance

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/internal/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a manual clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTest opens an entrance on dir with a manual clock (nil: real time)
// and the given caller; it is closed when the test ends.
func newTest(t *testing.T, dir string, clk *clock, caller Caller, mod func(*Config)) *Entrance {
	t.Helper()
	cfg := Config{DataDir: dir, Caller: caller, Logger: testLogger(t), Rand: rand.New(rand.NewPCG(1, uint64(len(dir))))}
	if clk != nil {
		cfg.Now = clk.Now
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

var src = netip.MustParseAddrPort("127.0.0.1:40000")

func join(e *Entrance, name, addr string, id uint64) proto.JoinResponse {
	return e.Join(proto.JoinRequest{Name: name, Addr: addr, NodeID: id}, src)
}

func mustJoin(t *testing.T, e *Entrance, name, addr string, id uint64) proto.JoinResponse {
	t.Helper()
	r := join(e, name, addr, id)
	if r.Code != proto.CodeOK || r.NodeID == 0 {
		t.Fatalf("join %s %s id %016x = %+v, want OK with an ID", name, addr, id, r)
	}
	return r
}

// fakeLeader plays the Raft leader for the membership driver: it keeps a
// configuration and applies AddLearner/Promote like the runtime does
// (idempotently, answering OK once applied). It records the most voters
// the configuration ever had and whether two calls ever overlapped.
type fakeLeader struct {
	mu         sync.Mutex
	id         uint64
	name, addr string
	term       uint64
	commit     uint64
	members    map[uint64]*proto.Member
	dead       map[uint64]bool // members whose Match never moves
	refuseNext int             // refuse this many calls (change pending)
	calls      []proto.AdminRequest
	tos        []netip.AddrPort
	inCall     int
	overlap    int // calls that arrived while another was in progress
	maxVoters  int
	callErr    error
	redirect   map[netip.AddrPort]string // answer NotLeader with this address

	// Pings (see ping): answered only when pings is set.
	pings     bool
	down      map[string]bool       // addresses that do not answer (until ctx ends)
	pongAs    map[string]proto.Pong // addresses answering this instead
	pingBlock chan struct{}         // when set, pings wait for it (or ctx)
	pingCount int
	pingNow   map[string]int // pings in flight by address
	pingAll   int            // pings in flight
	pingMax   int            // most pings in flight at once
	pingMaxTo int            // most pings in flight to one address
}

func newFakeLeader(id uint64, name, addr string, term uint64) *fakeLeader {
	f := &fakeLeader{id: id, name: name, addr: addr, term: term, commit: 1,
		members: map[uint64]*proto.Member{}, dead: map[uint64]bool{},
		down: map[string]bool{}, pongAs: map[string]proto.Pong{}, pingNow: map[string]int{}}
	f.members[id] = &proto.Member{ID: id, Name: name, Addr: addr, Match: 1}
	return f
}

func (f *fakeLeader) Call(ctx context.Context, to netip.AddrPort, payload []byte) ([]byte, error) {
	kind, body, err := proto.Split(payload)
	if err == nil && kind == proto.KindPing {
		return f.ping(ctx, to, body)
	}
	if err != nil || kind != proto.KindAdmin {
		return nil, err
	}
	var req proto.AdminRequest
	if err := proto.Decode(body, &req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.inCall++
	if f.inCall > 1 {
		f.overlap++
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inCall--
		f.mu.Unlock()
	}()
	// Let a concurrent caller, if any, run into this call.
	runtime.Gosched()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	f.tos = append(f.tos, to)
	answer := func(r proto.AdminResponse) ([]byte, error) { return proto.MustEncode(proto.KindAdmin, &r), nil }
	if f.callErr != nil {
		return nil, f.callErr
	}
	if a, ok := f.redirect[to]; ok {
		return answer(proto.AdminResponse{Code: proto.CodeNotLeader, LeaderAddr: a})
	}
	if f.refuseNext > 0 {
		f.refuseNext--
		return answer(proto.AdminResponse{Code: proto.CodeRefused, Message: "a configuration change is pending"})
	}
	m := f.members[req.NodeID]
	switch req.Op {
	case proto.AdminAddLearner:
		if m == nil {
			f.members[req.NodeID] = &proto.Member{ID: req.NodeID, Name: req.Name, Addr: req.Addr, Learner: true}
			f.commit++
		}
	case proto.AdminRemove:
		if m != nil {
			delete(f.members, req.NodeID)
			f.commit++
		}
	case proto.AdminPromote:
		if m == nil {
			return answer(proto.AdminResponse{Code: proto.CodeInvalid, Message: "not a learner"})
		}
		if m.Learner {
			m.Learner = false
			f.commit++
		}
	default:
		return answer(proto.AdminResponse{Code: proto.CodeInvalid})
	}
	v := 0
	for _, m := range f.members {
		if !m.Learner {
			v++
		}
	}
	f.maxVoters = max(f.maxVoters, v)
	return answer(proto.AdminResponse{Code: proto.CodeOK})
}

// report advances the log by one entry, replicates it to every live
// member and returns the leader's report.
func (f *fakeLeader) report() proto.LeaderReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commit++
	r := proto.LeaderReport{ID: f.id, Name: f.name, Addr: f.addr, Term: f.term, Commit: f.commit}
	for _, m := range f.members {
		if !f.dead[m.ID] {
			m.Match, m.Active = f.commit, true
		} else if m.ID != f.id {
			m.Active = false
		}
		r.Members = append(r.Members, *m)
	}
	slices.SortFunc(r.Members, func(a, b proto.Member) int { return cmp.Compare(a.ID, b.ID) })
	return r
}

func (f *fakeLeader) counts() (voters, learners int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.members {
		if m.Learner {
			learners++
		} else {
			voters++
		}
	}
	return voters, learners
}

func (f *fakeLeader) callsSnapshot() []proto.AdminRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// ping answers a ping sent to address to like a node there would: the
// member with that address answers with its role, the leader's term and
// ID, unless its address is down (no answer until ctx ends) or pongAs
// overrides the answer.
func (f *fakeLeader) ping(ctx context.Context, to netip.AddrPort, body []byte) ([]byte, error) {
	var p proto.Ping
	if err := proto.Decode(body, &p); err != nil {
		return nil, err
	}
	addr := to.String()
	f.mu.Lock()
	f.pingCount++
	f.pingNow[addr]++
	f.pingAll++
	f.pingMax, f.pingMaxTo = max(f.pingMax, f.pingAll), max(f.pingMaxTo, f.pingNow[addr])
	block := f.pingBlock
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.pingNow[addr]--
		f.pingAll--
		f.mu.Unlock()
	}()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	var pong *proto.Pong
	if !f.pings || f.down[addr] {
	} else if pa, ok := f.pongAs[addr]; ok {
		pong = &pa
	} else {
		for _, m := range f.members {
			if m.Addr != addr {
				continue
			}
			role := "follower"
			switch {
			case m.ID == f.id:
				role = "leader"
			case m.Learner:
				role = "learner"
			}
			pong = &proto.Pong{ID: m.ID, Role: role, Term: f.term, Leader: f.id}
		}
	}
	f.mu.Unlock()
	if pong == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	pong.Nonce = p.Nonce
	return proto.MustEncode(proto.KindPing, pong), nil
}
