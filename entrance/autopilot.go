package entrance

import (
	"fmt"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
)

// quorum is the number of votes a configuration of n voters needs.
func quorum(n int) int { return n/2 + 1 }

// removalSafe reports whether node id may leave a configuration whose
// voters are the keys of voters (true: live). A learner (not a key) may
// always leave. A voter may leave only if the live voters are at least a
// quorum of the current configuration (so the change can commit) and the
// remaining voters still hold a live quorum of the new configuration
// (so the cluster keeps serving without it); the last voter never leaves.
func removalSafe(voters map[uint64]bool, id uint64) bool {
	live, ok := voters[id]
	if !ok {
		return true
	}
	n, nLive := len(voters), 0
	for _, l := range voters {
		if l {
			nLive++
		}
	}
	after, afterLive := n-1, nLive
	if live {
		afterLive--
	}
	return after >= 1 && nLive >= quorum(n) && afterLive >= quorum(after)
}

// removalLocked picks a node for autopilot removal: a member (not the
// leader) that has been down, as this entrance observed since it
// started and since its latest stall (see observe), for DownAfter +
// DownGrace, whose removal removalSafe allows.
// The oldest admission goes first.
func (e *Entrance) removalLocked(recs []*Record, now time.Time) (proto.AdminRequest, bool) {
	if e.cfg.DownGrace <= 0 || e.lastReport.IsZero() || e.leaderLost || !e.observingLocked(now) {
		// No removal on a stale view: with no current report, or while
		// the entrance's own liveness round is overdue (it stalled, and
		// every node's last sign of life aged by the stall).
		return proto.AdminRequest{}, false
	}
	voters := make(map[uint64]bool)
	for _, r := range recs {
		c := e.applied[r.ID]
		if !r.InConfig() || (c != nil && c.op == proto.AdminRemove) {
			continue
		}
		if r.Role == RoleVoter || (c != nil && c.op == proto.AdminPromote) {
			voters[r.ID] = e.livenessLocked(r, now) == StateAlive
		}
	}
	for _, r := range recs {
		if !r.InConfig() || r.ID == e.meta.LeaderID || e.applied[r.ID] != nil {
			continue
		}
		if e.livenessLocked(r, now) != StateDown {
			continue
		}
		// Only what this entrance saw counts: a last seen time from before
		// its start, or from before its latest stall (it was not looking),
		// does not start the grace period.
		since := r.LastSeen()
		for _, t := range []time.Time{e.started, e.observedSince} {
			if since.Before(t) {
				since = t
			}
		}
		if now.Sub(since) < e.cfg.DownAfter+e.cfg.DownGrace {
			continue
		}
		if !removalSafe(voters, r.ID) {
			if !e.unsafeLogged[r.ID] {
				e.unsafeLogged[r.ID] = true
				e.log.Warn("down node kept: removing it would leave too few live voters", "name", r.Name,
					"node_id", fmt.Sprintf("%016x", r.ID), "voters", len(voters))
			}
			continue
		}
		delete(e.unsafeLogged, r.ID)
		e.log.Info("autopilot: removing down node", "name", r.Name, "node_id", fmt.Sprintf("%016x", r.ID),
			"role", r.Role.String(), "last_seen", r.LastSeen().UTC().Format(time.RFC3339Nano))
		return proto.AdminRequest{Op: proto.AdminRemove, NodeID: r.ID, Name: r.Name, Addr: r.Addr}, true
	}
	return proto.AdminRequest{}, false
}
