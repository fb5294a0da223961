package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newTransferLeaderCommand(f *factory) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "transfer-leader NAME",
		Short: "Move leadership to the node NAME",
		Long: `Ask the current leader to hand leadership to the voter NAME, then wait
until NAME says it leads (at most --wait). Prints the new leader and its
term. If NAME already leads, nothing is changed.

Exit 1 when NAME is not a node or not a voter; 3 when no leader is known or
NAME does not lead before --wait ends.`,
		Example: `  raftctl transfer-leader n2
  raftctl transfer-leader n2 --wait 1m
  raftctl -o json transfer-leader n3`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait <= 0 {
				return usagef("--wait must be positive")
			}
			return runTransferLeader(cmd.Context(), f, cmd, args[0], wait)
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for NAME to lead")
	return cmd
}

type jsonTransfer struct {
	Leader    string `json:"leader"`
	Term      uint64 `json:"term"`
	Unchanged bool   `json:"unchanged"`
}

func runTransferLeader(ctx context.Context, f *factory, cmd *cobra.Command, name string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return f.withKV(ctx, func(c kv) error {
		peers, err := c.ListPeers(ctx)
		if err != nil {
			return err
		}
		target, err := findPeer(peers, name)
		if err != nil {
			return err
		}
		probeT := min(f.opts.timeout, probeTimeout)
		// Find the leader (and the target's ID, which with --endpoints only
		// its own status tells).
		var (
			views  []nodeView
			lead   = -1
			tindex = -1
		)
		err = poll(ctx, func() (bool, error) {
			views = probe(ctx, c, peers, probeT)
			lead = leaderView(views)
			for i, v := range views {
				if v.peer.Name == name {
					tindex = i
				}
			}
			return lead >= 0, nil
		})
		if err != nil {
			return timedOut(ctx, "transfer leadership to "+name, wait, "no node says it leads")
		}
		idStr := target.ID
		if idStr == "" && views[tindex].st != nil {
			idStr = views[tindex].st.ID
		}
		if idStr == "" {
			return fmt.Errorf("transfer leadership to %s: its ID is unknown (it did not answer: %w)", name, views[tindex].err)
		}
		id, err := parseID(idStr)
		if err != nil {
			return fmt.Errorf("transfer leadership to %s: %w", name, err)
		}
		if views[lead].peer.Name == name {
			return printTransfer(cmd, f.opts.output, name, views[lead].st.Term, true)
		}
		from := views[lead].peer.Name
		if err := c.TransferLeader(ctx, views[lead].peer.Addr, id); err != nil {
			if ctx.Err() != nil {
				return timedOut(ctx, "transfer leadership from "+from+" to "+name, wait, err.Error())
			}
			return fmt.Errorf("transfer leadership from %s to %s: %w", from, name, err)
		}
		// The old leader saw the target lead; confirm with the target itself.
		var term uint64
		err = poll(ctx, func() (bool, error) {
			pctx, pcancel := context.WithTimeout(ctx, probeT)
			defer pcancel()
			st, err := c.Status(pctx, target.Addr)
			if err == nil && st.Role == "leader" {
				term = st.Term
				return true, nil
			}
			return false, nil
		})
		if errors.Is(err, context.DeadlineExceeded) {
			return timedOut(ctx, "transfer leadership to "+name, wait, name+" does not say it leads")
		} else if err != nil {
			return err
		}
		return printTransfer(cmd, f.opts.output, name, term, false)
	})
}

func printTransfer(cmd *cobra.Command, output, name string, term uint64, unchanged bool) error {
	if output == "json" {
		return writeJSON(cmd.OutOrStdout(), jsonTransfer{Leader: name, Term: term, Unchanged: unchanged})
	}
	if unchanged {
		_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s already leads (term %d)\n", name, term)
		return err
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s leads (term %d)\n", name, term)
	return err
}
