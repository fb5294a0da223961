package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

func newStatusCommand(f *factory) *cobra.Command {
	return &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show each node's own view: role, term, leader, indexes, uptime",
		Long: `Ask every node (or only NAME) for its status: role, term, the leader it
knows, commit and applied index, last log index, snapshot index, the
store's revision, uptime, the log size (LOG: entries raft.db holds since
compaction; LOG_SIZE: raft.db's file size, which never shrinks) and the
rudp datagram counters since the node started (SENT, RECV, RETX
retransmitted fragments, DROP datagrams dropped as bad/stale/unbuffered). The nodes are the ones list-peers names.

Without NAME, a node that does not answer is shown as unreachable (or
removed, when the entrance says so); that is not an error unless no node
answers (exit 3). With NAME, an unreachable node is an error (exit 3) and
an unknown name exits 1. -o json prints an array (one object for NAME).`,
		Example: `  raftctl status
  raftctl status n2
  raftctl -o json status
  raftctl --endpoints 127.0.0.1:7701,127.0.0.1:7702,127.0.0.1:7703 status`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("status takes at most one node name, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return runStatus(cmd.Context(), f, cmd, name)
		},
	}
}

// statusRow is one node in -o json: the list-peers name and address, and
// the node's status fields when it answered.
type statusRow struct {
	Name       string `json:"name"`
	Addr       string `json:"addr"`
	Reachable  bool   `json:"reachable"`
	Error      string `json:"error,omitempty"`
	LeaderName string `json:"leader_name,omitempty"`
	*client.NodeStatus
}

func runStatus(ctx context.Context, f *factory, cmd *cobra.Command, name string) error {
	return f.withKV(ctx, func(c kv) error {
		peers, err := c.ListPeers(ctx)
		if err != nil {
			return err
		}
		asked := peers
		if name != "" {
			p, err := findPeer(peers, name)
			if err != nil {
				return err
			}
			asked = []client.Peer{p}
		}
		// Every peer (not only NAME) names the leader in the LEADER column.
		views := probe(ctx, c, asked, min(f.opts.timeout, probeTimeout))
		for i, v := range views {
			// A removed entry whose address now answers with another ID
			// is a new node at that address (listed too), not this one.
			if v.peer.Liveness == "removed" && v.st != nil && v.peer.ID != "" && v.st.ID != v.peer.ID {
				views[i].st, views[i].err = nil, fmt.Errorf("removed; %s is now node %s", v.peer.Addr, v.st.ID)
			}
		}
		answered := 0
		for _, v := range views {
			if v.st != nil {
				answered++
			}
		}
		if err := printStatus(cmd, f.opts.output, views, peers); err != nil {
			return err
		}
		switch {
		case name != "" && answered == 0:
			return fmt.Errorf("status of %s (%s): %w", name, views[0].peer.Addr, views[0].err)
		case len(views) > 0 && answered == 0:
			return fmt.Errorf("status: %w: no node answered", client.ErrUnavailable)
		}
		return nil
	})
}

func printStatus(cmd *cobra.Command, output string, views []nodeView, peers []client.Peer) error {
	if output == "json" {
		rows := make([]statusRow, 0, len(views))
		for _, v := range views {
			r := statusRow{Name: v.peer.Name, Addr: v.peer.Addr, Reachable: v.st != nil, NodeStatus: v.st}
			if v.err != nil {
				r.Error = strings.ReplaceAll(v.err.Error(), "client: ", "")
			}
			if v.st != nil {
				r.LeaderName = nameOf(peers, v.st.Leader)
			}
			rows = append(rows, r)
		}
		return writeJSON(cmd.OutOrStdout(), rows)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tADDRESS\tROLE\tTERM\tLEADER\tCOMMIT\tAPPLIED\tLAST\tSNAPSHOT\tREVISION\tUPTIME\tLOG\tLOG_SIZE\tSENT\tRECV\tRETX\tDROP")
	for _, v := range views {
		p := v.peer
		if v.st == nil {
			word := "unreachable"
			if p.Liveness == "removed" {
				word = "removed"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n", p.Name, dash(p.ID), p.Addr, word)
			continue
		}
		s := v.st
		leader := nameOf(peers, s.Leader)
		if leader == "" {
			leader = dash(s.Leader)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%d\t%d\t%d\t%d\n", p.Name, dash(s.ID), p.Addr, s.Role, s.Term,
			leader, s.Commit, s.Applied, s.LastIndex, s.Snapshot, s.Revision,
			(time.Duration(s.UptimeMS) * time.Millisecond).Round(time.Second),
			s.LogEntries, byteSize(s.LogBytes), s.RudpSent, s.RudpReceived, s.RudpRetransmits, s.RudpDropped)
	}
	return tw.Flush()
}

// byteSize formats n bytes with a binary unit: 512B, 32KiB, 1.5MiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + [...]string{"KiB", "MiB", "GiB", "TiB"}[i]
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
