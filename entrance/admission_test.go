package entrance

import (
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/raftkv/raftkv/internal/proto"
)

func TestBootstrapFirstNode(t *testing.T) {
	e := newTest(t, t.TempDir(), newClock(), nil, nil)
	r1 := mustJoin(t, e, "n1", "127.0.0.1:7701", 0)
	if !r1.Bootstrap || r1.ClusterID == 0 {
		t.Fatalf("first join = %+v, want Bootstrap with a cluster ID", r1)
	}
	r2 := mustJoin(t, e, "n2", "127.0.0.1:7702", 0)
	if r2.Bootstrap || r2.ClusterID != r1.ClusterID || r2.NodeID == r1.NodeID {
		t.Fatalf("second join = %+v, want no bootstrap, cluster %016x, a new ID", r2, r1.ClusterID)
	}
	if got := e.ClusterID(); got != r1.ClusterID {
		t.Fatalf("ClusterID() = %016x, want %016x", got, r1.ClusterID)
	}
}

// admissionFixture builds a registry with: n1 (bootstrap, leader, voter),
// n2 (learner member), n3 (admitted, still joining), n4 (removed).
type admissionFixture struct {
	e              *Entrance
	n1, n2, n3, n4 uint64
}

func newAdmissionFixture(t *testing.T) admissionFixture {
	e := newTest(t, t.TempDir(), newClock(), nil, nil)
	var fx admissionFixture
	fx.e = e
	fx.n1 = mustJoin(t, e, "n1", "127.0.0.1:7701", 0).NodeID
	fx.n2 = mustJoin(t, e, "n2", "127.0.0.1:7702", 0).NodeID
	fx.n4 = mustJoin(t, e, "n4", "127.0.0.1:7704", 0).NodeID
	members := []proto.Member{
		{ID: fx.n1, Name: "n1", Addr: "127.0.0.1:7701", Match: 5},
		{ID: fx.n2, Name: "n2", Addr: "127.0.0.1:7702", Learner: true, Match: 5},
		{ID: fx.n4, Name: "n4", Addr: "127.0.0.1:7704", Learner: true, Match: 5},
	}
	e.Report(proto.LeaderReport{ID: fx.n1, Name: "n1", Addr: "127.0.0.1:7701", Term: 2, Commit: 5, Members: members}, src)
	e.Report(proto.LeaderReport{ID: fx.n1, Name: "n1", Addr: "127.0.0.1:7701", Term: 2, Commit: 6, Members: members[:2]}, src)
	fx.n3 = mustJoin(t, e, "n3", "127.0.0.1:7703", 0).NodeID
	return fx
}

func TestAdmission(t *testing.T) {
	tests := []struct {
		name string
		req  func(fx admissionFixture) proto.JoinRequest
		from string
		code proto.Code
		msg  string                           // substring of the message
		id   func(fx admissionFixture) uint64 // expected NodeID; nil: a fresh one
		boot bool                             // expected Bootstrap
		addr string                           // expected registered address
	}{
		{name: "new node", req: func(admissionFixture) proto.JoinRequest { return proto.JoinRequest{Name: "n5", Addr: "127.0.0.1:7705"} },
			code: proto.CodeOK, addr: "127.0.0.1:7705"},
		{name: "duplicate name", req: func(admissionFixture) proto.JoinRequest { return proto.JoinRequest{Name: "n2", Addr: "127.0.0.1:7799"} },
			code: proto.CodeRefused, msg: `name "n2" is already used by node`},
		{name: "duplicate address", req: func(admissionFixture) proto.JoinRequest { return proto.JoinRequest{Name: "n9", Addr: "127.0.0.1:7702"} },
			code: proto.CodeRefused, msg: `address 127.0.0.1:7702 is already used by node "n2"`},
		{name: "duplicate name of a joining node at another address", req: func(admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n3", Addr: "127.0.0.1:7798"}
		}, code: proto.CodeRefused, msg: `name "n3" is already used`},
		{name: "duplicate name from another known node", req: func(fx admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n1", Addr: "127.0.0.1:7702", NodeID: fx.n2}
		}, code: proto.CodeRefused, msg: `is registered as "n2", not "n1"`},
		{name: "address of another node on rejoin", req: func(fx admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n2", Addr: "127.0.0.1:7701", NodeID: fx.n2}
		}, code: proto.CodeRefused, msg: `address 127.0.0.1:7701 is already used by node "n1"`},
		{name: "name and address of a removed node are free", req: func(admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n4", Addr: "127.0.0.1:7704"}
		}, code: proto.CodeOK, addr: "127.0.0.1:7704"},
		{name: "removed node rejoins", req: func(fx admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n4", Addr: "127.0.0.1:7704", NodeID: fx.n4}
		}, code: proto.CodeRefused, msg: "was removed from the cluster"},
		{name: "member rejoins", req: func(fx admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n2", Addr: "127.0.0.1:7702", NodeID: fx.n2}
		}, code: proto.CodeOK, id: func(fx admissionFixture) uint64 { return fx.n2 }, addr: "127.0.0.1:7702"},
		{name: "bootstrap node rejoins as a member", req: func(fx admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n1", Addr: "127.0.0.1:7701", NodeID: fx.n1}
		}, code: proto.CodeOK, id: func(fx admissionFixture) uint64 { return fx.n1 }, addr: "127.0.0.1:7701"},
		{name: "member rejoins from a new address", req: func(fx admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n2", Addr: "127.0.0.1:7712", NodeID: fx.n2}
		}, code: proto.CodeOK, id: func(fx admissionFixture) uint64 { return fx.n2 }, addr: "127.0.0.1:7712"},
		{name: "joining node repeats its join (answer lost)", req: func(admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n3", Addr: "127.0.0.1:7703"}
		}, code: proto.CodeOK, id: func(fx admissionFixture) uint64 { return fx.n3 }, addr: "127.0.0.1:7703"},
		{name: "unknown id (lost registry) is registered", req: func(admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n7", Addr: "127.0.0.1:7707", NodeID: 0xabc}
		}, code: proto.CodeOK, id: func(admissionFixture) uint64 { return 0xabc }, addr: "127.0.0.1:7707"},
		{name: "unknown id with a taken name", req: func(admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n1", Addr: "127.0.0.1:7707", NodeID: 0xabc}
		}, code: proto.CodeRefused, msg: `name "n1"`},
		{name: "unspecified host takes the source address", req: func(admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n6", Addr: "0.0.0.0:7706"}
		}, from: "127.0.0.9:5555", code: proto.CodeOK, addr: "127.0.0.9:7706"},
		{name: "address without port", req: func(admissionFixture) proto.JoinRequest { return proto.JoinRequest{Name: "n6", Addr: "127.0.0.1"} },
			code: proto.CodeInvalid, msg: "not ip:port"},
		{name: "port zero", req: func(admissionFixture) proto.JoinRequest { return proto.JoinRequest{Name: "n6", Addr: "127.0.0.1:0"} },
			code: proto.CodeInvalid, msg: "port 0"},
		{name: "empty name", req: func(admissionFixture) proto.JoinRequest { return proto.JoinRequest{Addr: "127.0.0.1:7706"} },
			code: proto.CodeInvalid, msg: "empty"},
		{name: "name with a space", req: func(admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: "n 6", Addr: "127.0.0.1:7706"}
		},
			code: proto.CodeInvalid, msg: "space"},
		{name: "name too long", req: func(admissionFixture) proto.JoinRequest {
			return proto.JoinRequest{Name: strings.Repeat("x", 65), Addr: "127.0.0.1:7706"}
		}, code: proto.CodeInvalid, msg: "longer than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newAdmissionFixture(t)
			from := src
			if tt.from != "" {
				from = netip.MustParseAddrPort(tt.from)
			}
			req := tt.req(fx)
			got := fx.e.Join(req, from)
			if got.Code != tt.code || !strings.Contains(got.Message, tt.msg) {
				t.Fatalf("Join(%+v) = %+v, want code %v with message containing %q", req, got, tt.code, tt.msg)
			}
			if got.Bootstrap != tt.boot {
				t.Fatalf("Bootstrap = %v, want %v", got.Bootstrap, tt.boot)
			}
			if tt.code != proto.CodeOK {
				if got.NodeID != 0 {
					t.Fatalf("refused join carries NodeID %016x", got.NodeID)
				}
				return
			}
			if got.ClusterID != fx.e.ClusterID() || got.ClusterID == 0 {
				t.Fatalf("ClusterID = %016x, want %016x", got.ClusterID, fx.e.ClusterID())
			}
			if tt.id != nil {
				if want := tt.id(fx); got.NodeID != want {
					t.Fatalf("NodeID = %016x, want %016x", got.NodeID, want)
				}
			} else {
				for _, old := range []uint64{fx.n1, fx.n2, fx.n3, fx.n4, 0} {
					if got.NodeID == old {
						t.Fatalf("new node got a used ID %016x", got.NodeID)
					}
				}
			}
			rec := recordOf(t, fx.e, got.NodeID)
			if rec.Addr != tt.addr || rec.Name != req.Name {
				t.Fatalf("registered %q at %s, want %q at %s", rec.Name, rec.Addr, req.Name, tt.addr)
			}
		})
	}
}

func recordOf(t interface {
	Helper()
	Fatalf(string, ...any)
}, e *Entrance, id uint64) Record {
	t.Helper()
	for _, r := range e.Records() {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no record for %016x", id)
	return Record{}
}

// TestBootstrapRepeatedUntilSeen: the bootstrap node may crash after
// saving its ID and before writing its bootstrap state; its rejoin is told
// to bootstrap again until a leader report shows it a member.
func TestBootstrapRepeatedUntilSeen(t *testing.T) {
	e := newTest(t, t.TempDir(), newClock(), nil, nil)
	r := mustJoin(t, e, "n1", "127.0.0.1:7701", 0)
	if again := mustJoin(t, e, "n1", "127.0.0.1:7701", 0); again != r {
		t.Fatalf("repeated join = %+v, want %+v", again, r)
	}
	if re := mustJoin(t, e, "n1", "127.0.0.1:7701", r.NodeID); !re.Bootstrap {
		t.Fatalf("rejoin before any report = %+v, want Bootstrap", re)
	}
	e.Report(proto.LeaderReport{ID: r.NodeID, Name: "n1", Addr: "127.0.0.1:7701", Term: 2, Commit: 2}, src)
	if re := mustJoin(t, e, "n1", "127.0.0.1:7701", r.NodeID); re.Bootstrap {
		t.Fatalf("rejoin after the node led = %+v, want no Bootstrap", re)
	}
}

// TestConcurrentJoins: many nodes at once, some with clashing names;
// exactly one bootstraps, every name is admitted once, IDs are unique.
func TestConcurrentJoins(t *testing.T) {
	e := newTest(t, t.TempDir(), newClock(), nil, nil)
	const n = 32
	res := make([]proto.JoinResponse, 2*n)
	var wg sync.WaitGroup
	for i := range 2 * n {
		wg.Go(func() {
			// Pairs 2k and 2k+1 claim the same name from different addresses.
			name := "n" + string(rune('A'+i/2%26)) + string(rune('a'+i/2/26))
			addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(20000+i)).String()
			res[i] = join(e, name, addr, 0)
		})
	}
	wg.Wait()
	boots, ids := 0, map[uint64]bool{}
	for k := range n {
		a, b := res[2*k], res[2*k+1]
		if (a.Code == proto.CodeOK) == (b.Code == proto.CodeOK) {
			t.Fatalf("pair %d: %+v and %+v, want exactly one admitted", k, a, b)
		}
		ok := a
		if b.Code == proto.CodeOK {
			ok = b
		} else if b.Code != proto.CodeRefused {
			t.Fatalf("pair %d: loser answered %+v, want refused", k, b)
		}
		if ids[ok.NodeID] {
			t.Fatalf("ID %016x handed out twice", ok.NodeID)
		}
		ids[ok.NodeID] = true
		if ok.Bootstrap {
			boots++
		}
	}
	if boots != 1 {
		t.Fatalf("%d nodes told to bootstrap, want 1", boots)
	}
	if got := len(e.Records()); got != n {
		t.Fatalf("%d records, want %d", got, n)
	}
}

func TestRegistryFull(t *testing.T) {
	e := newTest(t, t.TempDir(), newClock(), nil, func(c *Config) { c.Voters, c.MaxNodes = 1, 2 })
	mustJoin(t, e, "n1", "127.0.0.1:7701", 0)
	mustJoin(t, e, "n2", "127.0.0.1:7702", 0)
	for _, id := range []uint64{0, 0x99} {
		if r := join(e, "n3", "127.0.0.1:7703", id); r.Code != proto.CodeRefused || !strings.Contains(r.Message, "registry is full") {
			t.Fatalf("join beyond MaxNodes (id %x) = %+v, want refused", id, r)
		}
	}
}
