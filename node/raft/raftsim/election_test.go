package raftsim

import (
	"testing"

	"github.com/raftkv/raftkv/node/raft"
)

func TestInitialElection(t *testing.T) {
	for _, n := range []int{3, 5, 7} {
		h := newHarness(t, Config{Nodes: n})
		lead := h.checkOneLeader()
		term := h.Term(lead)
		if term < 2 {
			h.fatalf("term %d after the first election, want >= 2", term)
		}
		// No failures: leader and term stay put.
		h.ticks(10 * h.Config().ElectionTicks)
		if got := h.checkOneLeader(); got != lead || h.Term(lead) != term {
			h.fatalf("leader moved from %d/%d to %d/%d without failures", lead, term, got, h.Term(got))
		}
	}
}

func TestReElection(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	l1 := h.checkOneLeader()

	// Leader disconnected: a new one is elected.
	h.Isolate(l1)
	l2 := h.checkOneLeader()
	if l2 == l1 {
		h.fatalf("isolated leader %d still the only leader", l1)
	}
	// The old leader rejoins: it must not disturb the new one.
	h.Reconnect(l1)
	if l3 := h.checkOneLeader(); l3 != l2 {
		h.fatalf("old leader rejoining moved leadership from %d to %d", l2, l3)
	}
	// No quorum: no leader.
	h.Isolate(l2)
	h.Isolate(others(h.IDs(), l2)[0])
	h.ticks(4 * h.Config().ElectionTicks)
	h.checkNoLeader(h.IDs()...)
	// Quorum back: a leader.
	h.Reconnect(others(h.IDs(), l2)[0])
	h.checkOneLeader()
	// Everyone back: still a leader.
	h.Heal()
	h.checkOneLeader()
}

func TestManyElections(t *testing.T) {
	h := newHarness(t, Config{Nodes: 7})
	h.checkOneLeader()
	rng := h.Rand()
	for range 10 {
		ids := h.IDs()
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		for _, id := range ids[:3] {
			h.Isolate(id)
		}
		// Four connected nodes always elect a leader among themselves.
		lead := h.checkOneLeader()
		for _, id := range ids[:3] {
			if id == lead && h.Term(id) == h.MaxTerm() {
				// An isolated leader may linger only until CheckQuorum.
				h.ticks(3 * h.Config().ElectionTicks)
			}
		}
		h.Heal()
	}
	h.checkOneLeader()
}

func TestNoQuorumNoLeader(t *testing.T) {
	for _, n := range []int{3, 5, 7} {
		h := newHarness(t, Config{Nodes: n})
		h.checkOneLeader()
		// Cut every node off: nobody may lead, however long we wait.
		for _, id := range h.IDs() {
			h.Isolate(id)
		}
		h.ticks(4 * h.Config().ElectionTicks) // CheckQuorum steps the leader down
		for range 5 {
			h.ticks(h.Config().ElectionTicks * 4)
			h.checkNoLeader(h.IDs()...)
		}
		// A minority partition of the largest size: still nobody.
		minority := h.IDs()[:n/2]
		h.Partition(minority) // everyone else is isolated
		h.ticks(8 * h.Config().ElectionTicks)
		h.checkNoLeader(h.IDs()...)
		h.Heal()
		h.checkOneLeader()
	}
}

func TestPreVoteRejoinDoesNotDisrupt(t *testing.T) {
	h := newHarness(t, Config{Nodes: 5})
	lead := h.checkOneLeader()
	h.one(cmd("a"), 5, false)
	term := h.Term(lead)
	victim := others(h.IDs(), lead)[0]
	h.Isolate(victim)
	// Long enough for many election timeouts: with PreVote the isolated
	// node never raises its term.
	h.ticks(20 * h.Config().ElectionTicks)
	if got := h.Term(victim); got != term {
		h.fatalf("isolated node %d moved from term %d to %d despite PreVote", victim, term, got)
	}
	h.Reconnect(victim)
	h.ticks(10 * h.Config().ElectionTicks)
	if got := h.checkOneLeader(); got != lead || h.Term(lead) != term {
		h.fatalf("rejoining node disrupted the leader: %d/%d -> %d/%d", lead, term, got, h.Term(got))
	}
	h.one(cmd("b"), 5, false)
}

func TestCheckQuorumIsolatedLeaderStepsDown(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	lead := h.checkOneLeader()
	h.Isolate(lead)
	// Within about an election timeout the isolated leader must step down.
	if !h.RunUntil(func() bool {
		return h.Node(lead).BasicStatus().RaftState != raft.StateLeader
	}, 3*h.ElectionTimeout()) {
		h.fatalf("isolated leader %d still leads after 3 election timeouts", lead)
	}
	h.ok()
	// The others elect a new one and make progress; the old leader cannot.
	newLead := h.checkOneLeader()
	if newLead == lead {
		h.fatalf("isolated node %d is the leader", lead)
	}
	h.one(cmd("x"), 2, true)
	h.Heal()
	h.one(cmd("y"), 3, true)
}
