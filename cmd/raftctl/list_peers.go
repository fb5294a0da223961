package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

func newListPeersCommand(f *factory) *cobra.Command {
	return &cobra.Command{
		Use:   "list-peers",
		Short: "List the cluster's nodes with role and liveness",
		Long: `Print one row per node: name, id, address, role (leader, follower,
candidate, learner), liveness (alive, suspect, down, removed), term, match
index and when the entrance last heard from it. -o json prints the same rows
as a JSON array.

With --endpoints and no entrance, each endpoint is asked for its own status:
a node that answers is alive, one that does not is down.`,
		Example: `  raftctl list-peers
  raftctl -o json list-peers
  raftctl --endpoints 127.0.0.1:7701,127.0.0.1:7702,127.0.0.1:7703 list-peers`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runListPeers(cmd.Context(), f, cmd)
		},
	}
}

func runListPeers(ctx context.Context, f *factory, cmd *cobra.Command) error {
	return f.withKV(ctx, func(c kv) error {
		peers, err := c.ListPeers(ctx)
		if err != nil {
			return err
		}
		if f.opts.output == "json" {
			if peers == nil {
				peers = []client.Peer{}
			}
			return writeJSON(cmd.OutOrStdout(), peers)
		}
		return printPeers(cmd, peers, time.Now())
	})
}

func printPeers(cmd *cobra.Command, peers []client.Peer, now time.Time) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tADDRESS\tROLE\tLIVENESS\tTERM\tMATCH\tLAST SEEN")
	for _, p := range peers {
		seen := "-"
		if p.LastSeen > 0 {
			seen = now.Sub(time.UnixMilli(p.LastSeen)).Round(time.Millisecond).String() + " ago"
		}
		id := p.ID
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", p.Name, id, p.Addr, p.Role, p.Liveness, p.Term, p.Match, seen)
	}
	return tw.Flush()
}
