package entrance

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
)

// change is a membership change the leader applied (it answers OK only
// once the change is applied) that no report shows yet. The driver makes
// one call at a time, so the leader sees one change at a time; the
// registry still changes only from reports (the configuration is the
// truth), and these entries keep the driver from asking again meanwhile.
type change struct {
	op     proto.AdminOp
	sentAt time.Time
}

// drive is the membership driver: one goroutine that, whenever a join or
// a report arrives or a retry is due, asks the leader for the next single
// change (add the oldest joining node as a learner, else remove a node
// down past its grace period, else promote the oldest caught-up learner
// while voters < Voters), one call at a time.
func (e *Entrance) drive(ctx context.Context, c Caller) {
	t := time.NewTimer(e.cfg.RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-t.C:
		}
		for ctx.Err() == nil && e.step(ctx, c) {
		}
		t.Reset(e.cfg.RetryInterval)
	}
}

// step makes at most one admin call. It reports whether another decision
// may follow at once (the change was applied, or the call was redirected
// to the leader's address).
func (e *Entrance) step(ctx context.Context, c Caller) bool {
	req, to, ok := e.next()
	if !ok {
		return false
	}
	ap, err := netip.ParseAddrPort(to)
	var resp proto.AdminResponse
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, e.cfg.AdminTimeout)
		var reply []byte
		reply, err = c.Call(cctx, ap, proto.MustEncode(proto.KindAdmin, &req))
		cancel()
		if err == nil {
			err = decodeReply(reply, &resp)
		}
	}
	if ctx.Err() != nil {
		return false // shutting down; the call's outcome does not matter
	}
	return e.result(req, to, resp, err)
}

// next decides the next admin call and the leader address to send it to.
func (e *Entrance) next() (proto.AdminRequest, string, bool) {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	to := cmp.Or(e.hintAddr, e.meta.LeaderAddr)
	if to == "" || e.closed {
		return proto.AdminRequest{}, "", false
	}
	e.confirmLocked()
	for id, c := range e.applied {
		if now.Sub(c.sentAt) >= e.cfg.ConfirmTimeout {
			e.log.Warn("applied membership change not seen in reports; asking again", "op", opName(c.op),
				"node_id", fmt.Sprintf("%016x", id))
			delete(e.applied, id)
		}
	}
	if now.Before(e.notBefore) {
		return proto.AdminRequest{}, "", false
	}
	recs := e.sortedLocked()
	slices.SortStableFunc(recs, func(a, b *Record) int { return cmp.Compare(a.JoinedMS, b.JoinedMS) })
	for _, r := range recs {
		// The bootstrap node founds the cluster itself; nobody adds it.
		if r.State == StateJoining && !r.Bootstrap && e.applied[r.ID] == nil {
			return proto.AdminRequest{Op: proto.AdminAddLearner, NodeID: r.ID, Name: r.Name, Addr: r.Addr}, to, true
		}
	}
	if req, ok := e.removalLocked(recs, now); ok {
		return req, to, true
	}
	voters := 0
	for _, r := range recs {
		c := e.applied[r.ID]
		switch {
		case c != nil && c.op == proto.AdminRemove:
		case (r.InConfig() && r.Role == RoleVoter) || (c != nil && c.op == proto.AdminPromote):
			voters++
		}
	}
	if voters >= e.cfg.Voters || e.lastReport.IsZero() {
		// Promotions need a current view: a report since this start.
		return proto.AdminRequest{}, "", false
	}
	for _, r := range recs {
		if e.applied[r.ID] == nil && e.promotableLocked(r, now) {
			return proto.AdminRequest{Op: proto.AdminPromote, NodeID: r.ID, Name: r.Name, Addr: r.Addr}, to, true
		}
	}
	return proto.AdminRequest{}, "", false
}

// promotableLocked: a learner in the configuration, alive, that has
// received something and is within PromoteLag of the leader's commit.
func (e *Entrance) promotableLocked(r *Record, now time.Time) bool {
	if !r.InConfig() || r.Role != RoleLearner || r.Match == 0 {
		return false
	}
	if e.livenessLocked(r, now) != StateAlive {
		return false
	}
	return r.Match+e.cfg.PromoteLag >= e.commit
}

// result records the outcome of an admin call.
func (e *Entrance) result(req proto.AdminRequest, to string, resp proto.AdminResponse, err error) bool {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	id := fmt.Sprintf("%016x", req.NodeID)
	if err == nil && resp.Code == proto.CodeOK {
		e.failures, e.notBefore = 0, time.Time{}
		e.applied[req.NodeID] = &change{op: req.Op, sentAt: now}
		e.log.Info("membership change applied", "op", opName(req.Op), "node_id", id, "name", req.Name, "leader_addr", to)
		if req.Op == proto.AdminRemove {
			e.metrics.removals.Inc()
		}
		e.confirmLocked()
		return true
	}
	e.failures++
	backoff := e.cfg.RetryInterval << min(e.failures-1, 4)
	e.notBefore = now.Add(backoff)
	switch {
	case err != nil:
		e.log.Warn("admin call failed", "op", opName(req.Op), "node_id", id, "leader_addr", to, "err", err, "retry_in", backoff)
	case resp.Code == proto.CodeNotLeader:
		e.log.Info("admin call reached a non-leader", "op", opName(req.Op), "node_id", id, "addr", to, "leader_addr", resp.LeaderAddr)
		if resp.LeaderAddr != "" && resp.LeaderAddr != to {
			// Follow the redirect at once (a few times in a row at most).
			e.hintAddr = resp.LeaderAddr
			e.notBefore = time.Time{}
			return e.failures <= 3
		}
		e.hintAddr = ""
	case resp.Code == proto.CodeRefused:
		// Normal while another change is pending: retry later.
		e.log.Info("membership change refused, will retry", "op", opName(req.Op), "node_id", id, "reason", resp.Message, "retry_in", backoff)
	default:
		e.log.Warn("membership change failed", "op", opName(req.Op), "node_id", id, "code", resp.Code, "reason", resp.Message, "retry_in", backoff)
	}
	return false
}

// confirmLocked forgets applied changes that the registry (fed by
// reports) shows, or that became moot (the node left).
func (e *Entrance) confirmLocked() {
	for id, c := range e.applied {
		r := e.nodes[id]
		switch {
		case r == nil || r.State == StateRemoved:
		case c.op == proto.AdminAddLearner && r.InConfig():
		case c.op == proto.AdminPromote && r.InConfig() && r.Role == RoleVoter:
		default:
			continue
		}
		delete(e.applied, id)
	}
}

func opName(op proto.AdminOp) string {
	switch op {
	case proto.AdminAddLearner:
		return "add-learner"
	case proto.AdminPromote:
		return "promote"
	case proto.AdminRemove:
		return "remove"
	}
	return fmt.Sprintf("op(%d)", op)
}

// decodeReply decodes a reply body, with or without the leading Kind byte
// (a msgpack map or nil never starts below 0x80).
func decodeReply(p []byte, v any) error {
	if len(p) > 0 && p[0] < 0x80 {
		p = p[1:]
	}
	return proto.Decode(p, v)
}
