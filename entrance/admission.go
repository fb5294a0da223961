package entrance

import (
	"fmt"
	"net/netip"
	"unicode"

	"github.com/raftkv/raftkv/internal/proto"
)

// maxNameLen bounds node names (bytes).
const maxNameLen = 64

// Join admits a node (see the package doc, "Admission"). from is the
// address the request came from; it replaces an unspecified host in
// req.Addr (a node listening on 0.0.0.0). Joins are serialized: each one
// decides and persists under the registry lock before the next.
func (e *Entrance) Join(req proto.JoinRequest, from netip.AddrPort) proto.JoinResponse {
	resp := e.join(req, from)
	e.metrics.joins.WithLabelValues(codeWord(resp.Code)).Inc()
	return resp
}

func (e *Entrance) join(req proto.JoinRequest, from netip.AddrPort) proto.JoinResponse {
	addr, err := advertised(req.Addr, from)
	if err != nil {
		return proto.JoinResponse{Code: proto.CodeInvalid, Message: err.Error()}
	}
	if err := validName(req.Name); err != nil {
		return proto.JoinResponse{Code: proto.CodeInvalid, Message: err.Error()}
	}
	now := e.cfg.Now()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return proto.JoinResponse{Code: proto.CodeUnavailable, Message: "entrance is shutting down"}
	}
	refuse := func(format string, args ...any) proto.JoinResponse {
		msg := fmt.Sprintf(format, args...)
		e.log.Warn("join refused", "name", req.Name, "addr", addr, "node_id", fmt.Sprintf("%016x", req.NodeID), "reason", msg)
		return proto.JoinResponse{Code: proto.CodeRefused, Message: msg}
	}
	ok := func(r *Record, event string) proto.JoinResponse {
		e.log.Info(event, "name", r.Name, "addr", r.Addr, "node_id", fmt.Sprintf("%016x", r.ID),
			"bootstrap", r.Bootstrap && r.State == StateJoining)
		return proto.JoinResponse{Code: proto.CodeOK, NodeID: r.ID, ClusterID: e.meta.ClusterID,
			Bootstrap: r.Bootstrap && r.State == StateJoining}
	}
	internal := func(err error) proto.JoinResponse {
		e.log.Error("join failed", "name", req.Name, "err", err)
		return proto.JoinResponse{Code: proto.CodeInternal, Message: err.Error()}
	}

	if req.ClusterID != 0 && e.meta.ClusterID != 0 && req.ClusterID != e.meta.ClusterID {
		return refuse("node belongs to cluster %016x; this entrance serves cluster %016x", req.ClusterID, e.meta.ClusterID)
	}
	if req.NodeID != 0 {
		var meta *Meta
		if e.meta.ClusterID == 0 && req.ClusterID != 0 {
			// A lost registry relearns the cluster from its nodes.
			m := e.meta
			m.ClusterID = req.ClusterID
			meta = &m
		}
		if r := e.nodes[req.NodeID]; r != nil {
			// A known node: a restart with the same data dir.
			if r.State == StateRemoved {
				resp := refuse("node %q (%016x) was removed from the cluster; wipe its data dir to join as a new node", r.Name, r.ID)
				resp.Removed = true
				return resp
			}
			if r.Name != req.Name {
				return refuse("node %016x is registered as %q, not %q", r.ID, r.Name, req.Name)
			}
			if msg := e.conflictLocked(req.Name, addr, r.ID); msg != "" {
				return refuse("%s", msg)
			}
			upd := *r
			upd.LastSeenMS = now.UnixMilli()
			if upd.Addr != addr {
				e.log.Warn("node address changed", "name", r.Name, "node_id", fmt.Sprintf("%016x", r.ID), "old", r.Addr, "new", addr)
				upd.Addr = addr
			}
			if err := e.st.save(meta, &upd); err != nil {
				return internal(err)
			}
			e.adoptLocked(meta)
			*r = upd
			e.poke()
			return ok(r, "node rejoined")
		}
		// An ID this registry never handed out or lost (a registry rebuilt
		// from reports or wiped). The node has state; never bootstrap it.
		if msg := e.conflictLocked(req.Name, addr, req.NodeID); msg != "" {
			return refuse("%s", msg)
		}
		if e.liveCountLocked() >= e.cfg.MaxNodes {
			return refuse("the registry is full (%d nodes)", e.cfg.MaxNodes)
		}
		r := &Record{ID: req.NodeID, Name: req.Name, Addr: addr, Role: RoleLearner, State: StateJoining,
			LastSeenMS: now.UnixMilli(), JoinedMS: now.UnixMilli()}
		if err := e.st.save(meta, r); err != nil {
			return internal(err)
		}
		e.adoptLocked(meta)
		e.nodes[r.ID] = r
		e.poke()
		return ok(r, "unknown node registered")
	}

	// A node that has no ID yet. If an admission with the same name and
	// address is still pending, this is the same node retrying after the
	// answer was lost (it persists its ID before anything else, so it has
	// no Raft state): answer the same.
	for _, r := range e.nodes {
		if r.State == StateJoining && r.Name == req.Name && r.Addr == addr {
			return ok(r, "join repeated")
		}
	}
	if msg := e.conflictLocked(req.Name, addr, 0); msg != "" {
		return refuse("%s", msg)
	}
	if e.liveCountLocked() >= e.cfg.MaxNodes {
		return refuse("the registry is full (%d nodes)", e.cfg.MaxNodes)
	}
	r := &Record{ID: e.newIDLocked(), Name: req.Name, Addr: addr, Role: RoleLearner, State: StateJoining,
		LastSeenMS: now.UnixMilli(), JoinedMS: now.UnixMilli()}
	var meta *Meta
	if e.meta.ClusterID == 0 && len(e.nodes) == 0 {
		m := e.meta
		for m.ClusterID == 0 {
			m.ClusterID = e.cfg.Rand.Uint64()
		}
		meta = &m
		r.Role, r.Bootstrap = RoleVoter, true
	}
	if err := e.st.save(meta, r); err != nil {
		return internal(err)
	}
	if meta != nil {
		e.meta = *meta
		e.log.Info("cluster created", "cluster_id", fmt.Sprintf("%016x", e.meta.ClusterID))
	}
	e.nodes[r.ID] = r
	e.poke()
	return ok(r, "node admitted")
}

// adoptLocked takes in a cluster ID a rejoining node brought (meta nil:
// none).
func (e *Entrance) adoptLocked(meta *Meta) {
	if meta != nil {
		e.meta = *meta
		e.log.Info("cluster ID learned from a node", "cluster_id", fmt.Sprintf("%016x", meta.ClusterID))
	}
}

// conflictLocked returns why name or addr cannot be used by node id (0: a
// new node), or "" when they can: another node that is not removed holds it.
func (e *Entrance) conflictLocked(name, addr string, id uint64) string {
	for _, r := range e.nodes {
		if r.ID == id || r.State == StateRemoved {
			continue
		}
		if r.Name == name {
			return fmt.Sprintf("name %q is already used by node %016x at %s", name, r.ID, r.Addr)
		}
		if r.Addr == addr {
			return fmt.Sprintf("address %s is already used by node %q (%016x)", addr, r.Name, r.ID)
		}
	}
	return ""
}

// liveCountLocked is the number of records that are not removed.
func (e *Entrance) liveCountLocked() int {
	n := 0
	for _, r := range e.nodes {
		if r.State != StateRemoved {
			n++
		}
	}
	return n
}

// newIDLocked draws a random non-zero ID that no record (removed ones
// included) has: IDs are never reused.
func (e *Entrance) newIDLocked() uint64 {
	for {
		id := e.cfg.Rand.Uint64()
		if _, used := e.nodes[id]; id != 0 && !used {
			return id
		}
	}
}

// advertised parses a node's address; an unspecified host (0.0.0.0, ::)
// takes the host the request came from.
func advertised(addr string, from netip.AddrPort) (string, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q is not ip:port", addr)
	}
	if ap.Port() == 0 {
		return "", fmt.Errorf("address %q has port 0", addr)
	}
	if ap.Addr().IsUnspecified() {
		if !from.IsValid() || from.Addr().IsUnspecified() {
			return "", fmt.Errorf("address %q is unspecified and the request's source is unknown", addr)
		}
		ap = netip.AddrPortFrom(from.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
}

func validName(name string) error {
	if name == "" {
		return fmt.Errorf("node name is empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("node name is longer than %d bytes", maxNameLen)
	}
	for _, c := range name {
		if !unicode.IsPrint(c) || unicode.IsSpace(c) {
			return fmt.Errorf("node name %q has a space or unprintable character", name)
		}
	}
	return nil
}
