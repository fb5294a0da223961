package entrance

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/raftkv/raftkv/internal/proto"
)

func TestLeaderTracking(t *testing.T) {
	e := newTest(t, t.TempDir(), newClock(), nil, nil)
	if id, addr, term := e.Leader(); id != 0 || addr != "" || term != 0 {
		t.Fatalf("Leader() before reports = %d %q %d", id, addr, term)
	}
	if w := e.WhoLeads(); w.LeaderAddr != "" || len(w.Addrs) != 0 {
		t.Fatalf("WhoLeads before reports = %+v", w)
	}
	a, b, c := uint64(0xa), uint64(0xb), uint64(0xc)
	members := []proto.Member{{ID: a, Name: "a", Addr: "127.0.0.1:1"}, {ID: b, Name: "b", Addr: "127.0.0.1:2"}, {ID: c, Name: "c", Addr: "127.0.0.1:3"}}
	rep := func(id uint64, term uint64) proto.LeaderReport {
		return proto.LeaderReport{ID: id, Name: members[id-a].Name, Addr: members[id-a].Addr, Term: term, Commit: 10, Members: members}
	}
	steps := []struct {
		name     string
		report   proto.LeaderReport
		wantID   uint64
		wantTerm uint64
		dropped  uint64
	}{
		{"first report", rep(a, 3), a, 3, 0},
		{"stale term ignored", rep(b, 2), a, 3, 1},
		{"equal term: the reporter", rep(b, 3), b, 3, 1},
		{"higher term", rep(c, 5), c, 5, 1},
		{"old leader's late report", rep(a, 4), c, 5, 2},
		{"same leader, lower commit (reordered)", proto.LeaderReport{ID: c, Name: "c", Addr: "127.0.0.1:3", Term: 5, Commit: 9}, c, 5, 3},
		{"no term", proto.LeaderReport{ID: a}, c, 5, 4},
		{"no id", proto.LeaderReport{Term: 9}, c, 5, 5},
	}
	for _, s := range steps {
		e.Report(s.report, src)
		id, addr, term := e.Leader()
		if id != s.wantID || term != s.wantTerm || addr != members[s.wantID-a].Addr {
			t.Fatalf("%s: Leader() = %x %s %d, want %x %s %d", s.name, id, addr, term, s.wantID, members[s.wantID-a].Addr, s.wantTerm)
		}
		if got := e.Dropped(); got != s.dropped {
			t.Fatalf("%s: Dropped() = %d, want %d", s.name, got, s.dropped)
		}
	}
	w := e.WhoLeads()
	want := proto.WhoLeadsResponse{LeaderID: c, LeaderAddr: "127.0.0.1:3", Term: 5, Addrs: []string{"127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:2"}}
	if d := cmp.Diff(want, w); d != "" {
		t.Fatalf("WhoLeads (-want +got):\n%s", d)
	}
	// The report's source address stands in for an unspecified host.
	e.Report(proto.LeaderReport{ID: a, Name: "a", Addr: "0.0.0.0:1", Term: 6, Members: members}, src)
	if _, addr, _ := e.Leader(); addr != "127.0.0.1:1" {
		t.Fatalf("leader addr = %s, want 127.0.0.1:1", addr)
	}
}

func TestMembershipFromReports(t *testing.T) {
	clk := newClock()
	e := newTest(t, t.TempDir(), clk, nil, nil)
	n1 := mustJoin(t, e, "n1", "127.0.0.1:7701", 0).NodeID
	n2 := mustJoin(t, e, "n2", "127.0.0.1:7702", 0).NodeID
	n3 := mustJoin(t, e, "n3", "127.0.0.1:7703", 0).NodeID
	report := func(commit uint64, ms ...proto.Member) {
		e.Report(proto.LeaderReport{ID: n1, Name: "n1", Addr: "127.0.0.1:7701", Term: 2, Commit: commit, Members: ms}, src)
	}
	m1 := proto.Member{ID: n1, Name: "n1", Addr: "127.0.0.1:7701", Match: 10}
	m2 := proto.Member{ID: n2, Name: "n2", Addr: "127.0.0.1:7702", Learner: true, Match: 10}
	report(10, m1, m2)
	states := func() map[string]string {
		out := map[string]string{}
		for _, r := range e.Records() {
			out[r.Name] = r.Role.String() + "/" + r.State.String()
		}
		return out
	}
	want := map[string]string{"n1": "voter/alive", "n2": "learner/alive", "n3": "learner/joining"}
	if d := cmp.Diff(want, states()); d != "" {
		t.Fatalf("after first report (-want +got):\n%s", d)
	}
	// A node the registry never saw (lost registry) appears from a report.
	m2.Learner = false
	m4 := proto.Member{ID: 0x44, Name: "n4", Addr: "127.0.0.1:7704", Match: 10}
	report(11, m1, m2, m4)
	want = map[string]string{"n1": "voter/alive", "n2": "voter/alive", "n3": "learner/joining", "n4": "voter/alive"}
	if d := cmp.Diff(want, states()); d != "" {
		t.Fatalf("after promotion (-want +got):\n%s", d)
	}
	// n2 leaves the configuration.
	report(12, m1, m4)
	want["n2"] = "voter/removed"
	if d := cmp.Diff(want, states()); d != "" {
		t.Fatalf("after removal (-want +got):\n%s", d)
	}
	_ = n3
	// A pending admission whose name the configuration gives to another
	// ID is void.
	n5 := mustJoin(t, e, "n5", "127.0.0.1:7705", 0).NodeID
	report(12, m1, m4, proto.Member{ID: 0x55, Name: "n5", Addr: "127.0.0.1:7755", Match: 1})
	if r := recordOf(t, e, n5); r.State != StateRemoved {
		t.Fatalf("clashing admission %+v, want removed", r)
	}
	report(12, m1, m4)
	delete(e.nodes, n5)
	delete(e.nodes, 0x55)
	peers := e.Peers()
	wantPeers := []proto.Peer{
		{Name: "n1", Role: "leader", Liveness: "alive", Term: 2, Match: 10},
		{Name: "n2", Role: "follower", Liveness: "removed", Term: 2, Match: 10},
		{Name: "n3", Role: "learner", Liveness: "alive"},
		{Name: "n4", Role: "follower", Liveness: "alive", Term: 2, Match: 10},
	}
	for i := range peers {
		peers[i].ID, peers[i].Addr, peers[i].LastSeen = "", "", 0
	}
	if d := cmp.Diff(wantPeers, peers); d != "" {
		t.Fatalf("Peers (-want +got):\n%s", d)
	}
}

// TestLiveness: rows age from alive to suspect to down; a report in which
// a member is Active or its Match moved refreshes it.
func TestLiveness(t *testing.T) {
	clk := newClock()
	e := newTest(t, t.TempDir(), clk, nil, func(c *Config) { c.SuspectAfter, c.DownAfter = 2*time.Second, 6*time.Second })
	l, f, g := uint64(1), uint64(2), uint64(3)
	rep := func(commit, matchF, matchG uint64, activeG bool) {
		e.Report(proto.LeaderReport{ID: l, Name: "l", Addr: "127.0.0.1:1", Term: 1, Commit: commit, Members: []proto.Member{
			{ID: l, Name: "l", Addr: "127.0.0.1:1", Match: commit, Active: true},
			{ID: f, Name: "f", Addr: "127.0.0.1:2", Match: matchF},
			{ID: g, Name: "g", Addr: "127.0.0.1:3", Match: matchG, Active: activeG},
		}}, src)
	}
	live := func() string {
		var s string
		for _, p := range e.Peers() {
			s += p.Name + ":" + p.Liveness + " "
		}
		return s
	}
	type r struct {
		commit, matchF, matchG uint64
		activeG                bool
	}
	steps := []struct {
		advance time.Duration
		report  *r // nil: no report
		want    string
	}{
		{0, &r{10, 10, 5, false}, "f:alive g:alive l:alive "},
		{1500 * time.Millisecond, &r{12, 12, 5, false}, "f:alive g:alive l:alive "}, // g: seen 1.5s ago
		{1 * time.Second, &r{14, 14, 5, false}, "f:alive g:suspect l:alive "},       // g: 2.5s, no progress
		{4 * time.Second, &r{16, 16, 5, false}, "f:alive g:down l:alive "},          // g: 6.5s
		{0, &r{16, 16, 9, false}, "f:alive g:alive l:alive "},                       // g's Match moved
		{3 * time.Second, &r{16, 16, 9, true}, "f:suspect g:alive l:alive "},        // idle: f caught up but not Active; g Active
		{4 * time.Second, &r{16, 16, 9, true}, "f:down g:alive l:alive "},
		{3 * time.Second, nil, "f:down g:suspect l:suspect "}, // leader silent
		{4 * time.Second, nil, "f:down g:down l:down "},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if s.report != nil {
			rep(s.report.commit, s.report.matchF, s.report.matchG, s.report.activeG)
		}
		if got := live(); got != s.want {
			t.Fatalf("step %d: liveness %q, want %q", i, got, s.want)
		}
	}
}

// TestClusterID: nodes and leaders of another cluster are refused; an
// entrance that lost its registry relearns the cluster ID from a
// rejoining node or from a leader report, and does not bootstrap.
func TestClusterID(t *testing.T) {
	e := newTest(t, t.TempDir(), newClock(), nil, nil)
	r1 := mustJoin(t, e, "n1", "127.0.0.1:7701", 0)
	if r := join2(e, "n1", "127.0.0.1:7701", r1.NodeID, r1.ClusterID+1); r.Code != proto.CodeRefused || !strings.Contains(r.Message, "belongs to cluster") {
		t.Fatalf("join from another cluster = %+v, want refused", r)
	}
	e.Report(proto.LeaderReport{ClusterID: r1.ClusterID + 1, ID: 9, Term: 7, Commit: 1}, src)
	if id, _, _ := e.Leader(); id != 0 {
		t.Fatalf("report of another cluster accepted: leader %016x", id)
	}

	lost := newTest(t, t.TempDir(), newClock(), nil, nil)
	if r := join2(lost, "n1", "127.0.0.1:7701", r1.NodeID, r1.ClusterID); r.Code != proto.CodeOK || r.Bootstrap || r.ClusterID != r1.ClusterID {
		t.Fatalf("rejoin at a lost registry = %+v, want OK, no bootstrap, cluster %016x", r, r1.ClusterID)
	}
	if r := mustJoin(t, lost, "n2", "127.0.0.1:7702", 0); r.Bootstrap || r.ClusterID != r1.ClusterID {
		t.Fatalf("new node at a relearned registry = %+v", r)
	}

	lost2 := newTest(t, t.TempDir(), newClock(), nil, nil)
	lost2.Report(proto.LeaderReport{ClusterID: 0x77, ID: 5, Name: "n5", Addr: "127.0.0.1:7705", Term: 3, Commit: 4}, src)
	if got := lost2.ClusterID(); got != 0x77 {
		t.Fatalf("cluster ID from a report = %016x, want 77", got)
	}
	if r := mustJoin(t, lost2, "n6", "127.0.0.1:7706", 0); r.Bootstrap || r.ClusterID != 0x77 {
		t.Fatalf("new node after a rebuilt registry = %+v", r)
	}
}

func join2(e *Entrance, name, addr string, id, cluster uint64) proto.JoinResponse {
	return e.Join(proto.JoinRequest{Name: name, Addr: addr, NodeID: id, ClusterID: cluster}, src)
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	e, err := New(Config{DataDir: dir, Now: clk.Now, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	r1 := mustJoin(t, e, "n1", "127.0.0.1:7701", 0)
	r2 := mustJoin(t, e, "n2", "127.0.0.1:7702", 0)
	r3 := mustJoin(t, e, "n3", "127.0.0.1:7703", 0)
	r4 := mustJoin(t, e, "n4", "127.0.0.1:7704", 0)
	members := []proto.Member{{ID: r1.NodeID, Name: "n1", Addr: "127.0.0.1:7701", Match: 7},
		{ID: r2.NodeID, Name: "n2", Addr: "127.0.0.1:7702", Learner: true, Match: 7},
		{ID: r4.NodeID, Name: "n4", Addr: "127.0.0.1:7704", Learner: true, Match: 7}}
	e.Report(proto.LeaderReport{ID: r1.NodeID, Name: "n1", Addr: "127.0.0.1:7701", Term: 4, Commit: 7, Members: members}, src)
	e.Report(proto.LeaderReport{ID: r1.NodeID, Name: "n1", Addr: "127.0.0.1:7701", Term: 4, Commit: 7, Members: members[:2]}, src)
	before := e.Records()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	e2 := newTest(t, dir, clk, nil, nil)
	if d := cmp.Diff(before, e2.Records()); d != "" {
		t.Fatalf("registry after restart (-before +after):\n%s", d)
	}
	if got := e2.ClusterID(); got != r1.ClusterID {
		t.Fatalf("cluster ID after restart %016x, want %016x", got, r1.ClusterID)
	}
	if id, addr, term := e2.Leader(); id != r1.NodeID || addr != "127.0.0.1:7701" || term != 4 {
		t.Fatalf("leader after restart = %x %s %d", id, addr, term)
	}
	// Known nodes rejoin, the joining one keeps its ID, the removed one is
	// refused, a new node still does not bootstrap.
	if r := mustJoin(t, e2, "n2", "127.0.0.1:7702", r2.NodeID); r.NodeID != r2.NodeID || r.Bootstrap || r.ClusterID != r1.ClusterID {
		t.Fatalf("rejoin after restart = %+v", r)
	}
	if r := mustJoin(t, e2, "n3", "127.0.0.1:7703", 0); r.NodeID != r3.NodeID {
		t.Fatalf("repeated join after restart got %016x, want %016x", r.NodeID, r3.NodeID)
	}
	if r := join(e2, "n4", "127.0.0.1:7704", r4.NodeID); r.Code != proto.CodeRefused {
		t.Fatalf("removed node rejoin after restart = %+v, want refused", r)
	}
	if r := mustJoin(t, e2, "n5", "127.0.0.1:7705", 0); r.Bootstrap {
		t.Fatalf("join after restart = %+v, want no bootstrap", r)
	}
	// A stale report is still stale after the restart.
	e2.Report(proto.LeaderReport{ID: r2.NodeID, Term: 3, Members: members}, src)
	if id, _, _ := e2.Leader(); id != r1.NodeID {
		t.Fatalf("stale report after restart changed the leader to %016x", id)
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{DataDir: t.TempDir(), Voters: -1},
		{DataDir: t.TempDir(), SuspectAfter: 5 * time.Second, DownAfter: time.Second},
	} {
		if e, err := New(cfg); err == nil {
			e.Close()
			t.Fatalf("New(%+v) succeeded", cfg)
		}
	}
}
