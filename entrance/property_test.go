package entrance

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/raftkv/raftkv/internal/proto"
)

// TestAdmissionProperties drives the registry with random joins (new,
// repeated, rejoining, clashing, forged IDs), leader reports (members
// added, promoted and removed) and restarts, and checks after every step:
// names and addresses are unique among nodes that are not removed; IDs
// are non-zero and a new node never gets an ID seen before; at most one
// node is ever told to bootstrap; an admitted node is registered under
// its name and not removed; a removed node is never admitted again with
// its ID.
func TestAdmissionProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir, err := os.MkdirTemp("", "entrance-prop")
		if err != nil {
			rt.Fatal(err)
		}
		defer os.RemoveAll(dir)
		clk := newClock()
		open := func() *Entrance {
			e, err := New(Config{DataDir: dir, Now: clk.Now, Rand: rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "seed"), 0))})
			if err != nil {
				rt.Fatal(err)
			}
			return e
		}
		e := open()
		defer func() { e.Close() }()

		seen := map[uint64]bool{}
		var bootstrapped []uint64
		removed := map[uint64]bool{}
		term := uint64(1)
		names := []string{"a", "b", "c", "d", "e"}
		addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5"}

		steps := rapid.IntRange(1, 25).Draw(rt, "steps")
		for range steps {
			switch op := rapid.IntRange(0, 9).Draw(rt, "op"); {
			case op <= 5: // join
				name := rapid.SampledFrom(names).Draw(rt, "name")
				addr := rapid.SampledFrom(addrs).Draw(rt, "addr")
				var id uint64
				switch rapid.IntRange(0, 2).Draw(rt, "id kind") {
				case 1:
					if recs := e.Records(); len(recs) > 0 {
						id = rapid.SampledFrom(recs).Draw(rt, "known").ID
					}
				case 2:
					id = rapid.Uint64Range(1, 8).Draw(rt, "forged")
				}
				before := map[uint64]bool{}
				for _, r := range e.Records() {
					before[r.ID] = true
				}
				resp := join(e, name, addr, id)
				switch resp.Code {
				case proto.CodeOK:
					rec := recordOf(rt, e, resp.NodeID)
					if rec.Name != name || rec.State == StateRemoved {
						rt.Fatalf("admitted %q as %+v", name, rec)
					}
					if id != 0 && resp.NodeID != id {
						rt.Fatalf("rejoin with %x answered %x", id, resp.NodeID)
					}
					if id == 0 && !before[resp.NodeID] && seen[resp.NodeID] {
						rt.Fatalf("ID %x reused", resp.NodeID)
					}
					if id != 0 && removed[id] {
						rt.Fatalf("removed node %x admitted again", id)
					}
					seen[resp.NodeID] = true
					if resp.Bootstrap && !slices.Contains(bootstrapped, resp.NodeID) {
						bootstrapped = append(bootstrapped, resp.NodeID)
					}
				case proto.CodeRefused:
					if resp.Message == "" {
						rt.Fatalf("refusal without a message")
					}
				default:
					rt.Fatalf("join = %+v", resp)
				}
			case op <= 8: // a leader reports a membership drawn from the registry
				recs := e.Records()
				if len(recs) == 0 {
					continue
				}
				if rapid.Bool().Draw(rt, "new term") {
					term++
				}
				var members []proto.Member
				for _, r := range recs {
					if r.State == StateRemoved || !rapid.Bool().Draw(rt, fmt.Sprintf("member %x", r.ID)) {
						continue
					}
					members = append(members, proto.Member{ID: r.ID, Name: r.Name, Addr: r.Addr,
						Learner: rapid.Bool().Draw(rt, "learner"), Match: 1, Active: true})
				}
				if len(members) == 0 {
					continue
				}
				l := members[0]
				inConfig := map[uint64]bool{}
				for _, r := range recs {
					inConfig[r.ID] = r.InConfig()
				}
				e.Report(proto.LeaderReport{ID: l.ID, Name: l.Name, Addr: l.Addr, Term: term, Commit: 1, Members: members}, src)
				if id, _, tm := e.Leader(); id != l.ID || tm != term {
					rt.Fatalf("leader %x term %d after a report of %x term %d", id, tm, l.ID, term)
				}
				listed := map[uint64]bool{}
				for _, m := range members {
					listed[m.ID] = true
				}
				for id, was := range inConfig {
					if was && !listed[id] {
						removed[id] = true
					}
				}
			default: // restart
				if err := e.Close(); err != nil {
					rt.Fatal(err)
				}
				e = open()
			}

			names, addrs := map[string]uint64{}, map[string]uint64{}
			boots := 0
			for _, r := range e.Records() {
				if r.ID == 0 {
					rt.Fatalf("record with ID 0")
				}
				if r.Bootstrap {
					boots++
				}
				if r.State == StateRemoved {
					continue
				}
				if o, dup := names[r.Name]; dup {
					rt.Fatalf("name %q held by %x and %x", r.Name, o, r.ID)
				}
				if o, dup := addrs[r.Addr]; dup {
					rt.Fatalf("address %s held by %x and %x", r.Addr, o, r.ID)
				}
				names[r.Name], addrs[r.Addr] = r.ID, r.ID
			}
			if boots > 1 || len(bootstrapped) > 1 {
				rt.Fatalf("%d bootstrap records, bootstrap answered to %x", boots, bootstrapped)
			}
		}
	})
}
