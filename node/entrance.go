package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/node/raft"
	"github.com/raftkv/raftkv/rudp"
)

func parseAddr(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, errors.New("node: empty address")
	}
	return netip.ParseAddrPort(s)
}

// entrance returns the entrance's address: Config.Entrance, or the one
// Config.FindEntrance found (zero until then).
func (n *Node) entrance() netip.AddrPort {
	if a := n.entranceAddr.Load(); a != nil {
		return *a
	}
	return netip.AddrPort{}
}

// findEntrance asks Config.FindEntrance for the entrance's address.
func (n *Node) findEntrance(ctx context.Context) error {
	a, err := n.cfg.FindEntrance(ctx)
	if err != nil {
		return fmt.Errorf("node: find the entrance: %w", err)
	}
	if !a.IsValid() {
		return fmt.Errorf("node: find the entrance: invalid address %v", a)
	}
	n.entranceAddr.Store(&a)
	n.logger().Info("found the entrance", "entrance", a.String())
	return nil
}

// join sends one JoinRequest to the entrance.
func (n *Node) join(ctx context.Context, id, cluster uint64) (proto.JoinResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req := proto.MustEncode(proto.KindJoin, proto.JoinRequest{Name: n.cfg.Name, Addr: n.cfg.AdvertiseAddr.String(), NodeID: id, ClusterID: cluster})
	b, err := n.ep.Call(ctx, n.entrance(), req)
	if err != nil {
		return proto.JoinResponse{}, fmt.Errorf("node: join via %s: %w", n.entrance(), err)
	}
	kind, body, err := proto.Split(b)
	if err != nil {
		return proto.JoinResponse{}, err
	}
	var resp proto.JoinResponse
	if kind != proto.KindJoin {
		return resp, fmt.Errorf("node: join: answer of kind %d", kind)
	}
	if err := proto.Decode(body, &resp); err != nil {
		return resp, err
	}
	return resp, nil
}

// backoff waits before the next attempt; false when ctx ended.
func backoff(ctx context.Context, attempt int) bool {
	d := min(100*time.Millisecond<<min(attempt, 5), 2*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// admit gets this node's identity: from the entrance (retrying until it
// answers), or from Config without one.
func (n *Node) admit(ctx context.Context) (Identity, error) {
	if !n.entrance().IsValid() {
		if n.cfg.NodeID == 0 {
			return Identity{}, ErrNoIdentity
		}
		return Identity{NodeID: n.cfg.NodeID, ClusterID: n.cfg.ClusterID, Name: n.cfg.Name, Bootstrap: n.cfg.Bootstrap}, nil
	}
	for attempt := 0; ; attempt++ {
		resp, err := n.join(ctx, 0, 0)
		switch {
		case err == nil && resp.Code == proto.CodeOK && resp.NodeID != 0:
			n.logger().Info("admitted", "node_id", fmt.Sprintf("%016x", resp.NodeID), "bootstrap", resp.Bootstrap,
				"cluster_id", fmt.Sprintf("%016x", resp.ClusterID), "entrance", n.entrance().String())
			return Identity{NodeID: resp.NodeID, ClusterID: resp.ClusterID, Name: n.cfg.Name, Bootstrap: resp.Bootstrap}, nil
		case err == nil && resp.Code == proto.CodeRefused:
			return Identity{}, fmt.Errorf("%w: %s", ErrRefused, resp.Message)
		case err == nil:
			n.logger().Warn("join not accepted; retrying", "code", resp.Code.String(), "msg", resp.Message)
		case errors.Is(err, rudp.ErrAuthFailed):
			n.logger().Error("join refused: the cluster secret differs (check --secret-file); retrying",
				"entrance", n.entrance().String(), "err", err)
		default:
			n.logger().Warn("join failed; retrying", "err", err)
		}
		if !backoff(ctx, attempt) {
			return Identity{}, ctx.Err()
		}
	}
}

// rejoin tells the entrance that a known node is back. The node serves
// meanwhile: the entrance is not on the data path.
func (n *Node) rejoin(ctx context.Context, ident Identity) {
	for attempt := 0; ; attempt++ {
		resp, err := n.join(ctx, ident.NodeID, ident.ClusterID)
		switch {
		case err == nil && resp.Code == proto.CodeOK:
			if resp.ClusterID != 0 && ident.ClusterID != 0 && resp.ClusterID != ident.ClusterID {
				n.logger().Error("entrance belongs to another cluster", "cluster_id", fmt.Sprintf("%016x", ident.ClusterID),
					"entrance_cluster_id", fmt.Sprintf("%016x", resp.ClusterID))
				return
			}
			n.logger().Info("rejoined", "entrance", n.entrance().String())
			return
		case err == nil && resp.Code == proto.CodeRefused && resp.Removed:
			// The loop notices and stops ("removed from the cluster;
			// stopping"). Not recorded in node.db: the entrance's registry
			// can briefly lag the configuration (a new leader reports
			// before it applied an earlier AddVoter), so a live voter
			// restarted in that window must be able to start again.
			n.logger().Warn("the entrance says this node was removed from the cluster; stopping (start it again if it is still a member)", "msg", resp.Message)
			n.markRemoved(false)
			return
		case err == nil && resp.Code == proto.CodeRefused:
			n.logger().Error("entrance refused the rejoin", "msg", resp.Message)
			return
		case err == nil:
			n.logger().Warn("rejoin not accepted; retrying", "code", resp.Code.String(), "msg", resp.Message)
		case ctx.Err() == nil && errors.Is(err, rudp.ErrAuthFailed):
			n.logger().Error("rejoin refused: the cluster secret differs (check --secret-file); retrying",
				"entrance", n.entrance().String(), "err", err)
		case ctx.Err() == nil:
			n.logger().Debug("rejoin failed; retrying", "err", err)
		}
		if !backoff(ctx, attempt) {
			return
		}
	}
}

// reportLoop sends LeaderReports to the entrance while this node leads:
// right after it became leader and then every ReportInterval. A report is
// one-way with a short deadline; an unreachable entrance costs nothing
// else.
func (n *Node) reportLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.reportc:
		}
		if !n.IsLeader() || !n.entrance().IsValid() {
			continue
		}
		rep, ok := n.leaderReport(ctx)
		if !ok {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, n.cfg.ReportInterval)
		err := n.ep.Send(sctx, n.entrance(), proto.MustEncode(proto.KindLeaderReport, rep))
		cancel()
		if err != nil && ctx.Err() == nil {
			n.logger().Debug("leader report failed", "err", err)
		}
	}
}

func (n *Node) leaderReport(ctx context.Context) (proto.LeaderReport, bool) {
	var rep proto.LeaderReport
	ok := false
	_ = n.do(ctx, func() {
		st := n.rn.Status()
		if st.RaftState != raft.StateLeader {
			return
		}
		ok = true
		rep = proto.LeaderReport{ClusterID: n.clusterID.Load(), ID: st.ID, Name: n.cfg.Name, Addr: n.cfg.AdvertiseAddr.String(), Term: st.Term, Commit: st.Committed}
		add := func(id uint64, learner bool) {
			m := proto.Member{ID: id, Learner: learner}
			if mb, ok := n.repl.Members[id]; ok {
				m.Name, m.Addr = mb.Name, mb.Addr
			}
			// The address messages last came from beats the table's.
			if ap, ok := n.addrOf(id); ok {
				m.Addr = ap.String()
			}
			if pr, ok := st.Progress[id]; ok {
				m.Match, m.Active = pr.Match, pr.RecentActive
			}
			if id == st.ID {
				m.Name, m.Addr, m.Match, m.Active = n.cfg.Name, n.cfg.AdvertiseAddr.String(), st.LastIndex, true
			}
			rep.Members = append(rep.Members, m)
		}
		for _, v := range st.Config.Voters {
			add(v, false)
		}
		for _, l := range st.Config.Learners {
			if !slices.Contains(st.Config.Voters, l) {
				add(l, true)
			}
		}
	})
	return rep, ok
}
