package raft

import (
	"slices"
	"testing"
)

func TestSingleNodeElectsItselfAndCommits(t *testing.T) {
	nw := newNetwork(t, 1)
	nw.tickAll(20)
	r := nw.raft(1)
	if r.state != StateLeader {
		t.Fatalf("state = %s, want leader", r.state)
	}
	if err := nw.propose(1, "a"); err != nil {
		t.Fatal(err)
	}
	if got := nw.appliedData(1); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("applied %v, want [a]", got)
	}
}

func TestThreeNodeElectionAndReplication(t *testing.T) {
	nw := newNetwork(t, 1, 2, 3)
	nw.elect(1)
	for _, id := range []uint64{2, 3} {
		if r := nw.raft(id); r.state != StateFollower || r.lead != 1 {
			t.Fatalf("node %d: %s lead %d", id, r.state, r.lead)
		}
	}
	for _, d := range []string{"a", "b", "c"} {
		if err := nw.propose(1, d); err != nil {
			t.Fatal(err)
		}
	}
	// A follower's proposal is forwarded.
	if err := nw.propose(2, "d"); err != nil {
		t.Fatal(err)
	}
	nw.tickAll(2) // heartbeats carry the commit index
	for _, id := range []uint64{1, 2, 3} {
		if got := nw.appliedData(id); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
			t.Fatalf("node %d applied %v", id, got)
		}
	}
	nw.checkLogsMatch()
}
