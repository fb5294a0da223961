package entrance

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/rudp"
)

func TestHTTP(t *testing.T) {
	clk := newClock()
	e := newTest(t, t.TempDir(), clk, nil, nil)
	r1 := mustJoin(t, e, "n1", "127.0.0.1:7701", 0)
	r2 := mustJoin(t, e, "n2", "127.0.0.1:7702", 0)
	e.Report(proto.LeaderReport{ID: r1.NodeID, Name: "n1", Addr: "127.0.0.1:7701", Term: 3, Commit: 9, Members: []proto.Member{
		{ID: r1.NodeID, Name: "n1", Addr: "127.0.0.1:7701", Match: 9, Active: true},
		{ID: r2.NodeID, Name: "n2", Addr: "127.0.0.1:7702", Match: 9, Learner: true, Active: true},
	}}, src)
	srv := httptest.NewServer(e.HTTPHandler())
	defer srv.Close()

	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	if resp, b := get("/healthz"); resp.StatusCode != 200 || string(b) != "ok\n" {
		t.Fatalf("/healthz = %d %q", resp.StatusCode, b)
	}
	resp, b := get("/v1/cluster")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/v1/cluster = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got Cluster
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if d := cmp.Diff(e.ClusterView(), got); d != "" {
		t.Fatalf("/v1/cluster (-want +got):\n%s", d)
	}
	if got.LeaderName != "n1" || got.Term != 3 || len(got.Peers) != 2 || got.Peers[1].Role != "learner" || got.Voters != 5 {
		t.Fatalf("/v1/cluster = %+v", got)
	}
	// Raw field names are part of the API.
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	row := raw["peers"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "id", "addr", "role", "liveness", "last_seen_unix_ms", "term", "match_index"} {
		if _, ok := row[k]; !ok {
			t.Fatalf("peer row %v lacks %q", row, k)
		}
	}
	if resp, _ := get("/nope"); resp.StatusCode != 404 {
		t.Fatalf("/nope = %d", resp.StatusCode)
	}
}

// rudpPeer is a node or client endpoint on loopback.
type rudpPeer struct {
	ep     *rudp.Endpoint
	cancel context.CancelFunc
	done   chan struct{}
}

func newRUDPPeer(t *testing.T, secret []byte, h rudp.Handler) *rudpPeer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := rudp.New(pc, rudp.Config{Secret: secret, Handler: h, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &rudpPeer{ep: ep, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		ep.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-p.done })
	return p
}

func (p *rudpPeer) call(t *testing.T, to netip.AddrPort, kind proto.Kind, req, resp any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := p.ep.Call(ctx, to, proto.MustEncode(kind, req))
	if err != nil {
		t.Fatalf("call kind %d: %v", kind, err)
	}
	k, body, err := proto.Split(b)
	if err != nil || k != kind {
		t.Fatalf("reply kind %d err %v, want kind %d", k, err, kind)
	}
	if err := proto.Decode(body, resp); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond (a condition, not a sleep for correctness) until it
// holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunOverRUDP runs the entrance on real loopback sockets with a
// secret: a node joins and bootstraps, reports as leader, a second node
// joins and the entrance asks the leader (a real rudp endpoint) to add
// it; a client asks who leads and lists peers; HTTP serves; a peer with
// the wrong secret gets nothing.
func TestRunOverRUDP(t *testing.T) {
	secret := []byte("s3cret")
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newTest(t, t.TempDir(), nil, nil, func(c *Config) {
		c.PacketConn, c.HTTPListener, c.Secret = pc, ln, secret
	})
	entranceAddr := netip.MustParseAddrPort(pc.LocalAddr().String())
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- e.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	var mu sync.Mutex
	var adminReqs []proto.AdminRequest
	leader := newRUDPPeer(t, secret, func(ctx context.Context, m rudp.Message) []byte {
		kind, body, err := proto.Split(m.Payload)
		if err != nil || kind != proto.KindAdmin {
			return nil
		}
		var req proto.AdminRequest
		if proto.Decode(body, &req) != nil {
			return nil
		}
		mu.Lock()
		adminReqs = append(adminReqs, req)
		mu.Unlock()
		return proto.MustEncode(proto.KindAdmin, &proto.AdminResponse{Code: proto.CodeOK})
	})
	leaderAddr := leader.ep.AddrPort().String()
	var j1 proto.JoinResponse
	leader.call(t, entranceAddr, proto.KindJoin, &proto.JoinRequest{Name: "n1", Addr: leaderAddr}, &j1)
	if j1.Code != proto.CodeOK || !j1.Bootstrap {
		t.Fatalf("first join = %+v", j1)
	}
	rep := proto.LeaderReport{ClusterID: j1.ClusterID, ID: j1.NodeID, Name: "n1", Addr: leaderAddr, Term: 2, Commit: 3,
		Members: []proto.Member{{ID: j1.NodeID, Name: "n1", Addr: leaderAddr, Match: 3, Active: true}}}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := leader.ep.Send(sctx, entranceAddr, proto.MustEncode(proto.KindLeaderReport, &rep)); err != nil {
		t.Fatal(err)
	}
	scancel()
	waitFor(t, "leader from report", func() bool { id, _, _ := e.Leader(); return id == j1.NodeID })

	node2 := newRUDPPeer(t, secret, nil)
	var j2 proto.JoinResponse
	node2.call(t, entranceAddr, proto.KindJoin, &proto.JoinRequest{Name: "n2", Addr: "0.0.0.0:7702"}, &j2)
	if j2.Code != proto.CodeOK || j2.Bootstrap || j2.ClusterID != j1.ClusterID {
		t.Fatalf("second join = %+v", j2)
	}
	waitFor(t, "add-learner call at the leader", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(adminReqs) > 0
	})
	mu.Lock()
	got := adminReqs[0]
	mu.Unlock()
	if want := (proto.AdminRequest{Op: proto.AdminAddLearner, NodeID: j2.NodeID, Name: "n2", Addr: "127.0.0.1:7702"}); got != want {
		t.Fatalf("admin request %+v, want %+v", got, want)
	}

	client := newRUDPPeer(t, secret, nil)
	var who proto.WhoLeadsResponse
	client.call(t, entranceAddr, proto.KindWhoLeads, &proto.WhoLeadsRequest{}, &who)
	if who.LeaderID != j1.NodeID || who.LeaderAddr != leaderAddr || who.Term != 2 || len(who.Addrs) != 1 { // n2 is not a member yet
		t.Fatalf("who leads = %+v", who)
	}
	var lp proto.ListPeersResponse
	client.call(t, entranceAddr, proto.KindListPeers, &proto.ListPeersRequest{}, &lp)
	if len(lp.Peers) != 2 || lp.Peers[0].Name != "n1" || lp.Peers[0].Role != "leader" || lp.Peers[1].Name != "n2" {
		t.Fatalf("list peers = %+v", lp.Peers)
	}

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}

	intruder := newRUDPPeer(t, []byte("wrong"), nil)
	ictx, icancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer icancel()
	if _, err := intruder.ep.Call(ictx, entranceAddr, proto.MustEncode(proto.KindListPeers, &proto.ListPeersRequest{})); err == nil {
		t.Fatal("a peer with the wrong secret got an answer")
	}
}

func TestRunAfterClose(t *testing.T) {
	e, err := New(Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
	rec := httptest.NewRecorder()
	e.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz after Close = %d, want 503", rec.Code)
	}
	if r := join(e, "n1", "127.0.0.1:7701", 0); r.Code != proto.CodeUnavailable {
		t.Fatalf("join after Close = %+v, want unavailable", r)
	}
}

// TestCloseStopsRun: Close ends a running Run with ErrClosed.
func TestCloseStopsRun(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{DataDir: t.TempDir(), PacketConn: pc})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- e.Run(context.Background()) }()
	waitFor(t, "Run to start", func() bool { e.mu.Lock(); defer e.mu.Unlock(); return e.running })
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

func FuzzHandle(f *testing.F) {
	f.Add(proto.MustEncode(proto.KindJoin, &proto.JoinRequest{Name: "n1", Addr: "127.0.0.1:7701"}))
	f.Add(proto.MustEncode(proto.KindJoin, &proto.JoinRequest{Name: "n2", Addr: "0.0.0.0:7702", NodeID: 3, ClusterID: 4}))
	f.Add(proto.MustEncode(proto.KindLeaderReport, &proto.LeaderReport{ID: 1, Term: 2, Commit: 3,
		Members: []proto.Member{{ID: 1, Name: "n1", Addr: "127.0.0.1:7701"}, {ID: 2, Learner: true}}}))
	f.Add(proto.MustEncode(proto.KindWhoLeads, &proto.WhoLeadsRequest{}))
	f.Add(proto.MustEncode(proto.KindListPeers, &proto.ListPeersRequest{}))
	f.Add([]byte{byte(proto.KindJoin), 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	e, err := New(Config{DataDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	defer e.Close()
	f.Fuzz(func(t *testing.T, p []byte) {
		reply := e.Handle(context.Background(), src, p)
		kind, _, err := proto.Split(p)
		if err != nil {
			return
		}
		switch kind {
		case proto.KindJoin, proto.KindWhoLeads, proto.KindListPeers:
			if k, _, err := proto.Split(reply); err != nil || k != kind {
				t.Fatalf("reply to kind %d: kind %d, %v", kind, k, err)
			}
		}
		// Every row stays well-formed whatever came in.
		for _, p := range e.Peers() {
			if p.ID == "0000000000000000" {
				t.Fatalf("a row with node ID 0: %+v", p)
			}
		}
	})
}
