package entrance

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/rudp"
)

// nodeAddr is node i's address in these tests.
func nodeAddr(i int) string { return fmt.Sprintf("127.0.0.1:77%02d", i) }

// fakeCluster is a fake leader n1 (ID 1) of term 2 with voters n2..nVoters
// and learners after them up to n(voters+learners), all caught up.
func fakeCluster(voters, learners int) *fakeLeader {
	f := newFakeLeader(1, "n1", nodeAddr(1), 2)
	for i := 2; i <= voters+learners; i++ {
		f.members[uint64(i)] = &proto.Member{ID: uint64(i), Name: fmt.Sprintf("n%d", i), Addr: nodeAddr(i), Learner: i > voters}
	}
	f.pings = true
	return f
}

func (f *fakeLeader) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// reportEvery sends the fake leader's report every 300ms until the test
// ends.
func reportEvery(t *testing.T, e *Entrance, f *fakeLeader) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			e.Report(f.report(), src)
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// peer returns node name's list-peers row.
func peer(t *testing.T, e *Entrance, name string) proto.Peer {
	t.Helper()
	for _, p := range e.Peers() {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no peer %q in %+v", name, e.Peers())
	return proto.Peer{}
}

func livenessWords(e *Entrance) string {
	var s string
	for _, p := range e.Peers() {
		s += p.Name + ":" + p.Liveness + " "
	}
	return s
}

// TestPingLiveness: with one leader report and then none, pongs alone
// keep every node alive; a node that stops answering becomes suspect
// after SuspectAfter and down after DownAfter, and alive again within one
// ping interval of answering again.
func TestPingLiveness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fakeCluster(3, 0)
		e := newTest(t, t.TempDir(), nil, f, nil)
		e.Report(f.report(), src)
		runDriver(t, e)

		time.Sleep(10 * time.Second) // > DownAfter without reports
		synctest.Wait()
		if got, want := livenessWords(e), "n1:alive n2:alive n3:alive "; got != want {
			t.Fatalf("liveness %q, want %q", got, want)
		}
		if age := time.Since(time.UnixMilli(peer(t, e, "n3").LastSeen)); age > 500*time.Millisecond {
			t.Fatalf("n3 last seen %v ago; pings every 500ms", age)
		}

		f.set(func() { f.down[nodeAddr(3)] = true })
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		if got, want := livenessWords(e), "n1:alive n2:alive n3:suspect "; got != want {
			t.Fatalf("2.5s after n3 stopped answering: %q, want %q", got, want)
		}
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if got, want := livenessWords(e), "n1:alive n2:alive n3:down "; got != want {
			t.Fatalf("6.5s after n3 stopped answering: %q, want %q", got, want)
		}
		f.set(func() { f.down[nodeAddr(3)] = false })
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if got, want := livenessWords(e), "n1:alive n2:alive n3:alive "; got != want {
			t.Fatalf("one ping interval after n3 answers again: %q, want %q", got, want)
		}
	})
}

// TestPingLeaderChange: pongs show, within one ping interval and with no
// leader report, the leader stepping down, a candidate, and a new leader
// of a higher term; the new leader's first report is then accepted.
func TestPingLeaderChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fakeCluster(3, 0)
		e := newTest(t, t.TempDir(), nil, f, nil)
		e.Report(f.report(), src)
		runDriver(t, e)
		time.Sleep(time.Second)
		synctest.Wait()
		if id, _, term := e.Leader(); id != 1 || term != 2 || !e.ClusterView().HasLeader {
			t.Fatalf("leader %d term %d has_leader %v, want n1 in term 2", id, term, e.ClusterView().HasLeader)
		}

		f.set(func() { f.pongAs[nodeAddr(1)] = proto.Pong{ID: 1, Role: "follower", Term: 2} })
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if c := e.ClusterView(); c.HasLeader || peer(t, e, "n1").Role != "follower" {
			t.Fatalf("after n1's pong says follower: has_leader %v, n1 %q", c.HasLeader, peer(t, e, "n1").Role)
		}

		f.set(func() { f.pongAs[nodeAddr(2)] = proto.Pong{ID: 2, Role: "pre-candidate", Term: 3} })
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if c, role := e.ClusterView(), peer(t, e, "n2").Role; c.HasLeader || role != "candidate" {
			t.Fatalf("n2 campaigning: has_leader %v, n2 %q, want false and candidate", c.HasLeader, role)
		}

		// n3 wins term 3; nobody reports yet.
		f.set(func() { f.id, f.name, f.addr, f.term = 3, "n3", nodeAddr(3), 3; clear(f.pongAs) })
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		id, addr, term := e.Leader()
		if id != 3 || addr != nodeAddr(3) || term != 3 || !e.ClusterView().HasLeader {
			t.Fatalf("leader %d %s term %d, want n3 %s in term 3", id, addr, term, nodeAddr(3))
		}
		roles := ""
		for _, p := range e.Peers() {
			roles += p.Name + ":" + p.Role + " "
		}
		if roles != "n1:follower n2:follower n3:leader " {
			t.Fatalf("roles %q", roles)
		}
		dropped := e.Dropped()
		e.Report(f.report(), src)
		if e.Dropped() != dropped {
			t.Fatalf("the new leader's first report was dropped")
		}
	})
}

// TestPingsDoNotPileUp: pings that never get answered (each waits for its
// timeout, ten ping intervals) stay at most one per node and MaxPings in
// all; rounds skip the nodes still waiting.
func TestPingsDoNotPileUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fakeCluster(3, 2)
		f.pingBlock = make(chan struct{})
		e := newTest(t, t.TempDir(), nil, f, func(c *Config) {
			c.PingInterval, c.PingTimeout, c.MaxPings = 100*time.Millisecond, time.Second, 3
		})
		e.Report(f.report(), src)
		runDriver(t, e)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		f.mu.Lock()
		count, maxAll, maxTo := f.pingCount, f.pingMax, f.pingMaxTo
		f.mu.Unlock()
		if maxTo != 1 || maxAll != 3 {
			t.Fatalf("at most %d pings in flight to one node and %d in all; want 1 and 3", maxTo, maxAll)
		}
		// 5 s / 1 s timeout * 3 slots, plus the round in flight.
		if count > 18 || e.PingsSkipped() == 0 {
			t.Fatalf("%d pings sent, %d skipped", count, e.PingsSkipped())
		}
		close(f.pingBlock)
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		for _, p := range e.Peers() {
			if time.Since(time.UnixMilli(p.LastSeen)) > 200*time.Millisecond {
				t.Fatalf("%s not seen since pings are answered: %+v", p.Name, p)
			}
		}
	})
}

// TestPongOfAnotherNode: an answer from a different node at a registered
// address is no sign of life of the registered one.
func TestPongOfAnotherNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fakeCluster(3, 0)
		e := newTest(t, t.TempDir(), nil, f, nil)
		e.Report(f.report(), src)
		f.set(func() { f.pongAs[nodeAddr(3)] = proto.Pong{ID: 99, Role: "follower", Term: 2} })
		runDriver(t, e)
		time.Sleep(7 * time.Second)
		synctest.Wait()
		if got, want := livenessWords(e), "n1:alive n2:alive n3:down "; got != want {
			t.Fatalf("liveness %q, want %q", got, want)
		}
	})
}

// TestPingOverRUDP: the entrance pings a node over real rudp with a
// secret; the node's pong keeps it alive and, saying it leads a newer
// term, makes it the leader without any report.
func TestPingOverRUDP(t *testing.T) {
	secret := []byte("s3cret")
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newTest(t, t.TempDir(), nil, nil, func(c *Config) {
		c.PacketConn, c.Secret, c.PingInterval = pc, secret, 50*time.Millisecond
	})
	entranceAddr := netip.MustParseAddrPort(pc.LocalAddr().String())
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	runStart := time.Now()
	go func() { runErr <- e.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	var id, term atomic.Uint64
	var pings atomic.Int64
	node := newRUDPPeer(t, secret, func(ctx context.Context, m rudp.Message) []byte {
		kind, body, err := proto.Split(m.Payload)
		var p proto.Ping
		if err != nil || kind != proto.KindPing || proto.Decode(body, &p) != nil {
			return nil
		}
		pings.Add(1)
		role := "follower"
		if term.Load() > 0 {
			role = "leader"
		}
		return proto.MustEncode(proto.KindPing, &proto.Pong{Nonce: p.Nonce, ID: id.Load(), Role: role, Term: term.Load()})
	})
	var j proto.JoinResponse
	node.call(t, entranceAddr, proto.KindJoin, &proto.JoinRequest{Name: "n1", Addr: node.ep.AddrPort().String()}, &j)
	if j.Code != proto.CodeOK {
		t.Fatalf("join = %+v", j)
	}
	id.Store(j.NodeID)
	joined := e.Records()[0].LastSeenMS
	waitFor(t, "a pong to refresh last seen", func() bool { return e.Records()[0].LastSeenMS > joined })
	term.Store(4)
	waitFor(t, "the leader from a pong", func() bool {
		lid, addr, lterm := e.Leader()
		return lid == j.NodeID && addr == node.ep.AddrPort().String() && lterm == 4
	})
	// At most one ping per round (one node): rounds start with Run and
	// come no faster than every PingInterval (a late ticker drops ticks).
	// Skips depend on the machine's load (a ping still out when the next
	// round starts), so they bound nothing here.
	if n, rounds := pings.Load(), int64(time.Since(runStart)/(50*time.Millisecond))+1; n > rounds {
		t.Fatalf("%d pings received in %d rounds", n, rounds)
	}
}

func FuzzDecodePong(f *testing.F) {
	f.Add(proto.MustEncode(proto.KindPing, &proto.Pong{Nonce: 1, ID: 2, Role: "leader", Term: 3, Leader: 2}))
	f.Add(proto.MustEncode(proto.KindPing, &proto.Ping{Nonce: 1}))
	f.Add(proto.MustEncode(proto.KindAdmin, &proto.AdminResponse{}))
	f.Add([]byte{byte(proto.KindPing), 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		var pong proto.Pong
		if err := decodePong(p, &pong); err == nil {
			if k, _, _ := proto.Split(p); k != proto.KindPing {
				t.Fatalf("decoded a pong from kind %d", k)
			}
		}
	})
}

// TestStalePongOfTheNewLeader: a candidate's pong that arrives after the
// node's report as leader of the same term does not mark it stepped
// down; a pong to a later ping does.
func TestStalePongOfTheNewLeader(t *testing.T) {
	clk := newClock()
	f := fakeCluster(3, 0)
	e := newTest(t, t.TempDir(), clk, f, nil)
	e.Report(f.report(), src)
	sent := clk.Now()
	clk.Advance(100 * time.Millisecond)
	f.set(func() { f.id, f.term = 2, 3 })
	e.Report(f.report(), src)
	e.pong(2, proto.Pong{ID: 2, Role: "candidate", Term: 3}, sent)
	if c := e.ClusterView(); !c.HasLeader || peer(t, e, "n2").Role != "leader" {
		t.Fatalf("a stale candidate pong: has_leader %v, n2 %q", c.HasLeader, peer(t, e, "n2").Role)
	}
	clk.Advance(100 * time.Millisecond)
	e.Pong(2, proto.Pong{ID: 2, Role: "follower", Term: 3})
	if c := e.ClusterView(); c.HasLeader || peer(t, e, "n2").Role != "follower" {
		t.Fatalf("a fresh follower pong of the leader: has_leader %v, n2 %q", c.HasLeader, peer(t, e, "n2").Role)
	}
}

// TestPingRemovedAndListedAgain: a node removed while a ping to it is
// out, whose pong comes back after the removal (and is ignored), is
// pinged again once a report lists it again (the configuration is the
// truth), so that pongs alone keep it alive.
func TestPingRemovedAndListedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fakeCluster(3, 0)
		f.pingBlock = make(chan struct{})
		e := newTest(t, t.TempDir(), nil, f, func(c *Config) { c.PingTimeout = 2 * time.Second })
		e.Report(f.report(), src)
		runDriver(t, e)
		time.Sleep(100 * time.Millisecond) // the first round's pings are out
		synctest.Wait()

		var n3 proto.Member
		f.set(func() {
			n3 = *f.members[3]
			delete(f.members, 3)
			f.pongAs[nodeAddr(3)] = proto.Pong{ID: 3, Role: "follower", Term: 2, Leader: 1}
		})
		e.Report(f.report(), src)
		close(f.pingBlock) // n3's pong arrives after its removal
		time.Sleep(time.Second)
		synctest.Wait()
		if p := peer(t, e, "n3"); p.Liveness != "removed" {
			t.Fatalf("n3 %+v, want removed", p)
		}

		f.set(func() { f.members[3] = &n3; delete(f.pongAs, nodeAddr(3)) })
		e.Report(f.report(), src) // the last report: from now on only pongs count
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got, want := livenessWords(e), "n1:alive n2:alive n3:alive "; got != want {
			t.Fatalf("5 s after n3 was listed again: %q, want %q", got, want)
		}
	})
}
