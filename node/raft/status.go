package raft

import "maps"

// BasicStatus is the cheap part of Status.
type BasicStatus struct {
	ID uint64
	HardState
	SoftState
	// Applied is the highest index the application has applied.
	Applied uint64
	// LeadTransferee is the target of a leadership transfer in progress
	// (leader only), or None.
	LeadTransferee uint64
}

// Status describes a node for monitoring and tests.
type Status struct {
	BasicStatus
	// Committed is the commit index (also in HardState.Commit).
	Committed uint64
	// LastIndex is the index of the last entry in the log.
	LastIndex uint64
	// FirstIndex is the first index still in the log (snapshot index + 1).
	FirstIndex uint64
	// Config is the current membership.
	Config ConfState
	// Progress has one copy per member, on the leader only (nil otherwise).
	Progress map[uint64]Progress
}

// BasicStatus returns the node's ID, HardState, SoftState and applied index
// without allocating.
func (n *Node) BasicStatus() BasicStatus {
	r := n.r
	return BasicStatus{
		ID:             r.id,
		HardState:      r.hardState(),
		SoftState:      r.softState(),
		Applied:        r.raftLog.applied,
		LeadTransferee: r.leadTransferee,
	}
}

// Status returns a snapshot of the node's state, with per-peer progress
// when it is the leader.
func (n *Node) Status() Status {
	r := n.r
	s := Status{
		BasicStatus: n.BasicStatus(),
		Committed:   r.raftLog.committed,
		LastIndex:   r.raftLog.lastIndex(),
		FirstIndex:  r.raftLog.firstIndex(),
		Config:      cloneConfState(r.cs),
	}
	if r.state == StateLeader {
		s.Progress = make(map[uint64]Progress, len(r.prs))
		for id, pr := range maps.All(r.prs) {
			p := *pr
			p.inflights = nil
			p.snap = nil
			s.Progress[id] = p
		}
	}
	return s
}
