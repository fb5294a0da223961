package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/node/raft"
)

// errPending means a membership change could not be proposed now (another
// one is pending, or the leader has not committed an entry of its term).
var errPending = errors.New("node: another membership change is pending; retry later")

// Admin serves an administrative request (see proto.AdminOp). Membership
// changes and leadership transfer need the leader (CodeNotLeader with its
// address otherwise) and are answered once applied; AdminStatus works on
// any node; AdminStop makes this node leave (unless KeepMembership) and
// stop.
func (n *Node) Admin(ctx context.Context, req proto.AdminRequest) proto.AdminResponse {
	select {
	case <-n.ready:
	default:
		return proto.AdminResponse{Code: proto.CodeUnavailable, Message: "node is starting"}
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	var err error
	switch req.Op {
	case proto.AdminStatus:
		st, err := n.Status(ctx)
		if err != nil {
			return n.adminErr(err)
		}
		return proto.AdminResponse{Code: proto.CodeOK, Status: &st}
	case proto.AdminAddLearner:
		if req.NodeID == 0 || req.Addr == "" {
			return proto.AdminResponse{Code: proto.CodeInvalid, Message: "add learner needs NodeID and Addr"}
		}
		err = n.changeConf(ctx, raft.ConfChange{Type: raft.ConfChangeAddLearner, NodeID: req.NodeID,
			Context: encodeMember(Member{Name: req.Name, Addr: req.Addr})})
	case proto.AdminPromote:
		err = n.changeConf(ctx, raft.ConfChange{Type: raft.ConfChangeAddVoter, NodeID: req.NodeID})
	case proto.AdminRemove:
		err = n.changeConf(ctx, raft.ConfChange{Type: raft.ConfChangeRemoveNode, NodeID: req.NodeID})
	case proto.AdminTransferLeader:
		err = n.transferLeader(ctx, req.NodeID)
	case proto.AdminStop:
		if req.NodeID != 0 && req.NodeID != n.id.Load() {
			return proto.AdminResponse{Code: proto.CodeInvalid, Message: fmt.Sprintf("this is node %016x, not %016x", n.id.Load(), req.NodeID)}
		}
		// With Removed, the leader says this node was removed (it may
		// never apply its removal itself): recorded when Run returns.
		err = n.stop(ctx, req.KeepMembership, req.Removed)
	default:
		return proto.AdminResponse{Code: proto.CodeInvalid, Message: fmt.Sprintf("unknown admin op %d", req.Op)}
	}
	if err != nil {
		return n.adminErr(err)
	}
	return proto.AdminResponse{Code: proto.CodeOK}
}

func (n *Node) adminErr(err error) proto.AdminResponse {
	if errors.Is(err, errPending) {
		return proto.AdminResponse{Code: proto.CodeRefused, Message: err.Error()}
	}
	r := n.errResponse(err)
	return proto.AdminResponse{Code: r.Code, Message: r.Message, LeaderAddr: r.LeaderAddr}
}

// changeConf proposes one membership change on the leader and waits until
// it is applied. A change that is already in effect succeeds at once.
func (n *Node) changeConf(ctx context.Context, cc raft.ConfChange) error {
	if cc.NodeID == 0 {
		return fmt.Errorf("%w: node ID 0", errInvalid)
	}
	ch := make(chan error, 1)
	var perr error
	done := false
	if err := n.do(ctx, func() {
		if raft.StateType(n.role.Load()) != raft.StateLeader {
			perr = n.notLeader()
			return
		}
		cs := n.rn.Status().Config
		voter, learner := slices.Contains(cs.Voters, cc.NodeID), slices.Contains(cs.Learners, cc.NodeID)
		switch cc.Type {
		case raft.ConfChangeAddLearner:
			done = voter || learner
			if !done {
				if m, err := decodeMember(cc.Context); err == nil {
					n.learnMember(cc.NodeID, m)
				}
			}
		case raft.ConfChangeAddVoter:
			done = voter
			if !done && !learner {
				perr = fmt.Errorf("%w: %016x is not a learner", errInvalid, cc.NodeID)
				return
			}
		case raft.ConfChangeRemoveNode:
			done = !voter && !learner
			if !done && voter && len(cs.Voters) == 1 {
				perr = fmt.Errorf("%w: cannot remove the last voter", errInvalid)
				return
			}
			// A leader that applies its own removal steps down and stops
			// at once, usually before the followers learn that the change
			// committed; with two voters the survivor then keeps waiting
			// for the removed node's vote forever. Leadership moves first
			// (stop-node does that), then the new leader removes this node.
			if !done && cc.NodeID == n.id.Load() {
				perr = fmt.Errorf("%w: this node leads and cannot remove itself; transfer leadership first (raftctl transfer-leader), or use raftctl stop-node, which does", errInvalid)
				return
			}
		}
		if done {
			return
		}
		if err := n.rn.ProposeConfChange(cc); err != nil {
			if errors.Is(err, raft.ErrProposalDropped) {
				perr = fmt.Errorf("%w (%v)", errPending, err)
			} else {
				perr = err
			}
			return
		}
		n.ccWaiters = append(n.ccWaiters, &ccWaiter{typ: cc.Type, node: cc.NodeID, ch: ch})
	}); err != nil {
		return err
	}
	if perr != nil || done {
		return perr
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("node: wait for membership change: %w", ctx.Err())
	case <-n.loopDone:
		return ErrClosed
	}
}

var errInvalid = errors.New("node: invalid request")

// transferLeader moves leadership to id and waits until id leads.
//
// The core gives a transfer one election timeout: it sends the target the
// entries it lacks, then MsgTimeoutNow, and drops the transfer if that
// does not happen in time (writes are refused meanwhile). A target that is
// still catching up, such as a member promoted a moment ago that is
// installing its snapshot, can need longer. So the transfer starts only
// once the target holds every entry committed when the request came (not
// the current commit index: under steady writes a healthy target is
// always a few entries behind that), and starts again if the core dropped
// it while this node still leads, until ctx ends.
func (n *Node) transferLeader(ctx context.Context, id uint64) error {
	t := time.NewTicker(n.cfg.TickInterval / 2)
	defer t.Stop()
	var match, commit, want uint64
	for first := true; ; first = false {
		if n.lead.Load() == id {
			return nil
		}
		var perr error
		if err := n.do(ctx, func() {
			st := n.rn.Status()
			if st.RaftState != raft.StateLeader {
				// Later on, the target (or another node) campaigns: wait
				// for the election, unless someone else won it.
				if first || (st.Lead != raft.None && st.Lead != id) {
					perr = n.notLeader()
				}
				return
			}
			if !slices.Contains(st.Config.Voters, id) {
				perr = fmt.Errorf("%w: %016x is not a voter", errInvalid, id)
				return
			}
			match, commit = st.Progress[id].Match, st.Committed
			if first {
				want = commit
			}
			if st.LeadTransferee != id && match >= want {
				n.rn.TransferLeader(id)
			}
		}); err != nil {
			return fmt.Errorf("node: leadership transfer to %016x: %w", id, err)
		}
		if perr != nil {
			return perr
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("node: leadership transfer to %016x (its log matches the leader's up to %d, waiting for %d, commit index %d): %w", id, match, want, commit, ctx.Err())
		case <-n.loopDone:
			return ErrClosed
		}
	}
}

// waitLeader waits until the known leader satisfies ok.
func (n *Node) waitLeader(ctx context.Context, ok func(lead uint64) bool) error {
	t := time.NewTicker(n.cfg.TickInterval / 2)
	defer t.Stop()
	for !ok(n.lead.Load()) {
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("node: wait for leader: %w", ctx.Err())
		case <-n.loopDone:
			return ErrClosed
		}
	}
	return nil
}

// stop makes the node leave the cluster (unless keep) and then stop: a
// leader first hands leadership to the most caught-up voter, then the
// leader removes this node.
//
// removed says the leader reported this node removed: it is marked so
// before the stop is scheduled, so that Run, which may return any time
// after, records it.
func (n *Node) stop(ctx context.Context, keep, removed bool) (err error) {
	self := n.id.Load()
	n.stopping.Store(true)
	if removed {
		n.markRemoved(true)
	}
	defer func() {
		if err != nil {
			n.stopping.Store(false)
		}
	}()
	if !keep {
		if n.IsLeader() {
			// The core forgets who it heard from at every check-quorum
			// round, so a live voter can look inactive for a moment:
			// look again for up to an election timeout.
			var (
				target uint64
				voters int
			)
			deadline := time.Now().Add(n.cfg.TickInterval * time.Duration(n.cfg.ElectionTicks))
			for {
				if err := n.do(ctx, func() {
					st := n.rn.Status()
					target, voters = handoffTarget(st), len(st.Config.Voters)
				}); err != nil {
					return err
				}
				if target != 0 || voters <= 1 || time.Now().After(deadline) {
					break
				}
				select {
				case <-time.After(n.cfg.TickInterval):
				case <-ctx.Done():
					return fmt.Errorf("node: stop: find a voter to hand leadership to: %w", ctx.Err())
				}
			}
			if target == 0 {
				if voters <= 1 {
					return fmt.Errorf("%w: the last voter cannot leave", errInvalid)
				}
				return fmt.Errorf("%w: no other voter has been heard from recently, so leadership cannot move; bring one back first", errInvalid)
			}
			n.logger().Info("stop: transferring leadership", "to", fmt.Sprintf("%016x", target))
			if err := n.transferLeader(ctx, target); err != nil {
				return err
			}
		}
		if err := n.askRemoval(ctx, self); err != nil {
			return err
		}
		n.markRemoved(true)
	}
	n.logger().Info("stop requested", "keep_membership", keep)
	// Stop once the answer had a moment to leave (courtesy, not safety:
	// the removal is already committed).
	time.AfterFunc(100*time.Millisecond, n.requestStop)
	return nil
}

// notifyRemoved tells a removed node to stop (AdminStop with
// KeepMembership: it is no longer a member), retrying for a while.
func (n *Node) notifyRemoved(id uint64, addr netip.AddrPort) {
	ctx, cancel := context.WithTimeout(n.runCtx, 5*time.Second)
	defer cancel()
	req := proto.MustEncode(proto.KindAdmin, proto.AdminRequest{Op: proto.AdminStop, NodeID: id, KeepMembership: true, Removed: true})
	for attempt := 0; ; attempt++ {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		_, err := n.ep.Call(cctx, addr, req)
		ccancel()
		if err == nil {
			n.logger().Info("told removed node to stop", "peer", fmt.Sprintf("%016x", id))
			return
		}
		if !backoff(ctx, attempt) {
			return
		}
	}
}

// askRemoval asks the leader to remove id, following redirects until the
// removal is applied or ctx ends.
func (n *Node) askRemoval(ctx context.Context, id uint64) error {
	req := proto.MustEncode(proto.KindAdmin, proto.AdminRequest{Op: proto.AdminRemove, NodeID: id})
	for {
		if n.removed.Load() {
			n.logger().Info("left the cluster")
			return nil
		}
		if err := n.waitLeader(ctx, func(lead uint64) bool { return n.removed.Load() || (lead != 0 && lead != n.id.Load()) }); err != nil {
			return err
		}
		_, addr := n.leaderAddr()
		if ap, err := parseAddr(addr); err == nil && !n.removed.Load() {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			b, err := n.ep.Call(cctx, ap, req)
			cancel()
			if err == nil {
				var resp proto.AdminResponse
				if kind, body, err := proto.Split(b); err == nil && kind == proto.KindAdmin && proto.Decode(body, &resp) == nil {
					if resp.Code == proto.CodeOK {
						n.logger().Info("left the cluster")
						return nil
					}
					n.logger().Info("removal not done yet", "code", resp.Code.String(), "msg", resp.Message)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node: leave the cluster: %w", ctx.Err())
		case <-time.After(n.cfg.TickInterval):
		}
	}
}

// Membership returns the voters and learners of the configuration as this
// node has applied it.
func (n *Node) Membership(ctx context.Context) (voters, learners []uint64, err error) {
	err = n.do(ctx, func() {
		cs := n.rn.Status().Config
		voters, learners = cs.Voters, cs.Learners
	})
	return voters, learners, err
}

// Status returns the node's view of itself.
func (n *Node) Status(ctx context.Context) (proto.NodeStatus, error) {
	var st proto.NodeStatus
	err := n.do(ctx, func() {
		rs := n.rn.Status()
		st = proto.NodeStatus{
			ID: fmt.Sprintf("%016x", rs.ID), Name: n.cfg.Name, Addr: n.cfg.AdvertiseAddr.String(),
			Role: n.roleWord(), Term: rs.Term, Commit: rs.Committed, Applied: n.kv.Applied(),
			LastIndex: rs.LastIndex, Snapshot: n.snapIndex, UptimeMS: time.Since(n.started).Milliseconds(),
		}
		if rs.Lead != 0 {
			st.Leader = fmt.Sprintf("%016x", rs.Lead)
		}
		first, ferr := n.rlog.FirstIndex()
		last, lerr := n.rlog.LastIndex()
		if ferr == nil && lerr == nil && last >= first {
			st.LogEntries = last - first + 1
		}
	})
	if err != nil {
		return proto.NodeStatus{}, err
	}
	if ks, err := n.kv.Status(); err == nil {
		st.Revision = int64(ks.Rev)
	}
	if fi, err := os.Stat(n.rlog.Path()); err == nil {
		st.LogBytes = fi.Size()
	}
	if ep := n.epp.Load(); ep != nil {
		rs := ep.Stats()
		st.RudpSent, st.RudpReceived, st.RudpRetransmits = rs.DatagramsSent, rs.DatagramsReceived, rs.Retransmits
		st.RudpDropped = rs.DroppedBadMAC + rs.DroppedMalformed + rs.DroppedStale + rs.DroppedNoBuffer
	}
	return st, nil
}
