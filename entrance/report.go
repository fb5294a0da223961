package entrance

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
)

// Report takes in a leader's report (see the package doc, "Leader
// tracking"). Reports of a lower term than the current one are stale and
// dropped; otherwise the reporter becomes the leader and its membership
// list becomes the registry's membership.
func (e *Entrance) Report(r proto.LeaderReport, from netip.AddrPort) {
	if r.ID == 0 || r.Term == 0 {
		e.countDrop("leader report without id or term", from)
		return
	}
	addr := r.Addr
	if a, err := advertised(r.Addr, from); err == nil {
		addr = a
	} else if from.IsValid() {
		addr = netip.AddrPortFrom(from.Addr().Unmap(), from.Port()).String()
	}
	now := e.cfg.Now()
	nowMS := now.UnixMilli()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	if r.ClusterID != 0 && e.meta.ClusterID != 0 && r.ClusterID != e.meta.ClusterID {
		e.dropped++
		e.log.Warn("leader report from another cluster", "leader", fmt.Sprintf("%016x", r.ID), "addr", addr,
			"cluster_id", fmt.Sprintf("%016x", r.ClusterID), "own_cluster_id", fmt.Sprintf("%016x", e.meta.ClusterID))
		return
	}
	// Reports travel one-way and may be handled out of order: within a
	// leader's term the commit index only grows, so a lower one is older.
	if r.Term < e.meta.Term || (r.Term == e.meta.Term && r.ID == e.meta.LeaderID && r.Commit < e.commit) {
		e.dropped++
		e.log.Debug("stale leader report", "leader", fmt.Sprintf("%016x", r.ID), "term", r.Term, "current_term", e.meta.Term)
		return
	}
	var dirty []*Record
	var meta *Meta
	if e.meta.ClusterID == 0 && r.ClusterID != 0 {
		m := e.meta
		m.ClusterID = r.ClusterID
		meta = &m
		e.log.Info("cluster ID learned from the leader", "cluster_id", fmt.Sprintf("%016x", r.ClusterID))
	}
	if r.ID != e.meta.LeaderID || r.Term != e.meta.Term || addr != e.meta.LeaderAddr {
		m := e.meta
		if meta != nil {
			m = *meta
		}
		e.setLeaderLocked(&m, r.ID, addr, r.Term, "leader report")
		meta = &m
	}
	e.lastReport, e.commit, e.hintAddr = now, r.Commit, ""
	e.leaderLost, e.seenTerm = false, max(e.seenTerm, r.Term)

	listed := make(map[uint64]bool, len(r.Members)+1)
	members := r.Members
	if !slices.ContainsFunc(members, func(m proto.Member) bool { return m.ID == r.ID }) {
		// A leader is a voter of its own configuration.
		members = append(slices.Clip(members), proto.Member{ID: r.ID, Name: r.Name, Addr: addr, Match: r.Commit})
	}
	for _, m := range members {
		if m.ID == 0 || listed[m.ID] {
			continue
		}
		listed[m.ID] = true
		rec := e.nodes[m.ID]
		if rec == nil {
			rec = &Record{ID: m.ID, JoinedMS: nowMS}
			e.nodes[m.ID] = rec
		}
		before := *rec
		if m.ID == r.ID {
			m.Addr, m.Learner = addr, false
			if m.Name == "" {
				m.Name = r.Name
			}
		}
		if m.Name != "" {
			rec.Name = m.Name
		}
		if m.Addr != "" {
			rec.Addr = m.Addr
		}
		rec.Role = RoleVoter
		if m.Learner {
			rec.Role = RoleLearner
		}
		if rec.State != StateAlive {
			if rec.State == StateRemoved {
				e.log.Warn("removed node listed again by leader", "name", rec.Name, "node_id", fmt.Sprintf("%016x", rec.ID))
			} else {
				e.log.Info("node is a member", "name", rec.Name, "node_id", fmt.Sprintf("%016x", rec.ID), "role", rec.Role)
			}
			rec.State = StateAlive
		}
		// Liveness from the report: the leader itself, a member the
		// leader heard from recently (Active), or whose Match moved.
		if m.ID == r.ID || m.Active || m.Match > rec.Match {
			rec.LastSeenMS = nowMS
		}
		rec.Match, rec.Term, rec.Leader = m.Match, r.Term, r.ID
		if rec.Name != before.Name || rec.Addr != before.Addr || rec.Role != before.Role || rec.State != before.State {
			dirty = append(dirty, rec)
		}
	}
	names, addrs := make(map[string]uint64, len(listed)), make(map[string]uint64, len(listed))
	for id := range listed {
		names[e.nodes[id].Name], addrs[e.nodes[id].Addr] = id, id
	}
	for _, rec := range e.nodes {
		switch {
		case rec.InConfig() && !listed[rec.ID]:
			rec.State = StateRemoved
			dirty = append(dirty, rec)
			e.log.Info("node left the configuration", "name", rec.Name, "node_id", fmt.Sprintf("%016x", rec.ID))
		case rec.State == StateJoining && (names[rec.Name] != 0 || addrs[rec.Addr] != 0):
			// The configuration holds its name or address under another
			// ID: the configuration wins, this admission is void.
			rec.State = StateRemoved
			dirty = append(dirty, rec)
			e.log.Warn("pending admission clashes with a member; dropped", "name", rec.Name, "addr", rec.Addr,
				"node_id", fmt.Sprintf("%016x", rec.ID), "member", fmt.Sprintf("%016x", max(names[rec.Name], addrs[rec.Addr])))
		}
	}
	e.confirmLocked()
	if meta != nil || len(dirty) > 0 {
		if err := e.st.save(meta, dirty...); err != nil {
			// The in-memory registry is current; the next change retries.
			e.log.Error("registry write failed", "err", err)
		}
	}
	if meta != nil {
		e.meta = *meta
	}
	e.poke()
}

// Leader returns the current leader's ID, address and term (zero values
// when no leader has reported yet).
func (e *Entrance) Leader() (id uint64, addr string, term uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.meta.LeaderID, e.meta.LeaderAddr, e.meta.Term
}

// ClusterID returns the cluster ID (0 before the first node bootstrapped).
func (e *Entrance) ClusterID() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.meta.ClusterID
}

// WhoLeads answers a client: the latest reported leader (possibly dead:
// clients follow redirects and fall back to Addrs) and the address of
// every member, the leader's first.
func (e *Entrance) WhoLeads() proto.WhoLeadsResponse {
	e.mu.Lock()
	defer e.mu.Unlock()
	resp := proto.WhoLeadsResponse{LeaderID: e.meta.LeaderID, LeaderAddr: e.meta.LeaderAddr, Term: e.meta.Term}
	if resp.LeaderAddr != "" {
		resp.Addrs = append(resp.Addrs, resp.LeaderAddr)
	}
	for _, r := range e.sortedLocked() {
		if r.InConfig() && r.Addr != "" && r.Addr != resp.LeaderAddr {
			resp.Addrs = append(resp.Addrs, r.Addr)
		}
	}
	return resp
}

// Records returns a copy of the registry, sorted by name then ID.
func (e *Entrance) Records() []Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Record
	for _, r := range e.sortedLocked() {
		out = append(out, *r)
	}
	return out
}

// Peers returns the list-peers rows (see the package doc, "Liveness"),
// sorted by name then ID.
func (e *Entrance) Peers() []proto.Peer {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]proto.Peer, 0, len(e.nodes))
	for _, r := range e.sortedLocked() {
		out = append(out, proto.Peer{
			Name:     r.Name,
			ID:       fmt.Sprintf("%016x", r.ID),
			Addr:     r.Addr,
			Role:     e.roleWordLocked(r, now),
			Liveness: e.livenessLocked(r, now).String(),
			LastSeen: r.LastSeenMS,
			Term:     r.Term,
			Match:    r.Match,
		})
	}
	return out
}

func (e *Entrance) sortedLocked() []*Record {
	recs := make([]*Record, 0, len(e.nodes))
	for _, r := range e.nodes {
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b *Record) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return recs
}

// roleWordLocked is the list-peers role: leader for the current leader
// (unless its own pong says it stepped down), candidate for a node whose
// fresh pong says it campaigns, learner for learners and nodes not yet in
// the configuration (the bootstrap node: follower), follower for the
// other voters.
func (e *Entrance) roleWordLocked(r *Record, now time.Time) string {
	ps := e.pings[r.ID]
	switch {
	case r.State != StateRemoved && r.ID == e.meta.LeaderID && !e.leaderLost:
		return "leader"
	case r.State != StateRemoved && ps != nil && !ps.pongAt.IsZero() && now.Sub(ps.pongAt) <= e.cfg.SuspectAfter &&
		(ps.role == "candidate" || ps.role == "pre-candidate"):
		return "candidate"
	case r.Role == RoleLearner:
		return "learner"
	}
	return "follower"
}

// livenessLocked maps a record to alive, suspect, down or removed by the
// age of its last sign of life.
func (e *Entrance) livenessLocked(r *Record, now time.Time) State {
	if r.State == StateRemoved {
		return StateRemoved
	}
	age := now.Sub(r.LastSeen())
	switch {
	case age <= e.cfg.SuspectAfter:
		return StateAlive
	case age <= e.cfg.DownAfter:
		return StateSuspect
	}
	return StateDown
}
