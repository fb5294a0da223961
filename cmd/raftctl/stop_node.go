package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

type stopOptions struct {
	keep  bool
	force bool
	wait  time.Duration
}

func newStopNodeCommand(f *factory) *cobra.Command {
	var opts stopOptions
	cmd := &cobra.Command{
		Use:   "stop-node NAME",
		Short: "Make the node NAME leave the cluster and exit",
		Long: `Ask the node NAME to stop. Unless --keep-membership, it first leaves the
membership (a leader hands leadership to the most caught-up voter first);
the node answers once its removal is committed, then its process exits 0.
raftctl waits (at most --wait) until the node no longer answers and, with
an entrance, until list-peers shows it removed.

--keep-membership only stops the process, for maintenance: the node stays a
voter and rejoins when restarted with the same data dir. Stopping a voter
of a three-node cluster this way leaves two voters of three, so one more
failure loses the quorum. raftctl refuses a --keep-membership stop that
would leave fewer live voters than a quorum (the cluster would stop taking
writes) unless --force.

Exit 1 when NAME is not a node or the node refuses (the last voter cannot
leave); 3 when it does not stop before --wait ends.`,
		Example: `  raftctl stop-node n3
  raftctl stop-node n1 --keep-membership
  raftctl -o json stop-node n2 --wait 1m`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.wait <= 0 {
				return usagef("--wait must be positive")
			}
			return runStopNode(cmd.Context(), f, cmd, args[0], opts)
		},
	}
	cmd.Flags().BoolVar(&opts.keep, "keep-membership", false, "only stop the process; the node stays a member")
	cmd.Flags().BoolVar(&opts.force, "force", false, "with --keep-membership, stop the node even if the quorum is lost")
	cmd.Flags().DurationVar(&opts.wait, "wait", 30*time.Second, "how long to wait for the node to leave and stop")
	return cmd
}

type jsonStop struct {
	Name    string `json:"name"`
	ID      string `json:"id"`
	Stopped bool   `json:"stopped"`
	Removed bool   `json:"removed"`
}

func runStopNode(ctx context.Context, f *factory, cmd *cobra.Command, name string, opts stopOptions) error {
	ctx, cancel := context.WithTimeout(ctx, opts.wait)
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
		if target.Liveness == "removed" {
			return fmt.Errorf("stop %s: it was already removed from the cluster", name)
		}
		if opts.keep && !opts.force {
			// Ask the nodes: the entrance's liveness lags a stop by
			// seconds (suspect after 2s, down after 6s).
			views := probe(ctx, c, peers, min(f.opts.timeout, probeTimeout))
			if err := keepsQuorum(views, target); err != nil {
				return fmt.Errorf("stop %s: %w; stop it anyway with --force", name, err)
			}
		}
		probeT := min(f.opts.timeout, probeTimeout)
		idStr := target.ID
		if idStr == "" {
			pctx, pcancel := context.WithTimeout(ctx, probeT)
			st, err := c.Status(pctx, target.Addr)
			pcancel()
			if err != nil {
				return fmt.Errorf("stop %s: %w", name, err)
			}
			idStr = st.ID
		}
		id, err := parseID(idStr)
		if err != nil {
			return fmt.Errorf("stop %s: %w", name, err)
		}

		answered := true
		var stopErr error // why the stop request got no answer
		if err := c.StopNode(ctx, target.Addr, id, opts.keep); err != nil {
			// No answer: the node may have stopped before its answer
			// left; what follows finds out.
			if !errors.Is(err, client.ErrUnavailable) || ctx.Err() != nil {
				if ctx.Err() != nil {
					return timedOut(ctx, "stop "+name, opts.wait, err.Error())
				}
				return fmt.Errorf("stop %s: %w", name, err)
			}
			answered = false
			stopErr = err
		}

		// Wait until it no longer answers.
		err = poll(ctx, func() (bool, error) {
			pctx, pcancel := context.WithTimeout(ctx, min(probeT, 500*time.Millisecond))
			defer pcancel()
			_, err := c.Status(pctx, target.Addr)
			return err != nil && ctx.Err() == nil, nil
		})
		if err != nil {
			detail := name + " still answers"
			if stopErr != nil {
				// For example a cluster without quorum cannot commit the
				// removal: say what the stop request ran into.
				detail += "; the stop request got no answer: " + stopErr.Error()
			}
			return timedOut(ctx, "stop "+name, opts.wait, detail)
		}

		removed := false
		if !opts.keep {
			switch {
			case f.opts.entrance != "":
				err = poll(ctx, func() (bool, error) {
					ps, err := c.ListPeers(ctx)
					if err != nil {
						return false, nil
					}
					p, err := findPeer(ps, name)
					return err != nil || p.Liveness == "removed", nil
				})
				if err != nil {
					return timedOut(ctx, "stop "+name, opts.wait, name+" stopped, but the entrance does not list it as removed")
				}
				removed = true
			case answered:
				// The node answers only once its removal is committed.
				removed = true
			default:
				return fmt.Errorf("stop %s: it stopped without answering; whether it left the membership is unknown: %w",
					name, client.ErrOutcomeUnknown)
			}
		}

		if f.opts.output == "json" {
			return writeJSON(cmd.OutOrStdout(), jsonStop{Name: name, ID: idStr, Stopped: true, Removed: removed})
		}
		if removed {
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s left the cluster and stopped\n", name)
		} else {
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s stopped (still a member)\n", name)
		}
		return err
	})
}

// keepsQuorum refuses to stop target (keeping it a member) when the
// voters left that answer their status would be fewer than a quorum of
// the voters.
func keepsQuorum(views []nodeView, target client.Peer) error {
	voters, alive := 0, 0
	targetVoter := false
	for _, v := range views {
		if v.peer.Liveness == "removed" || v.peer.Role == "learner" || (v.st != nil && v.st.Role == "learner") {
			continue
		}
		voters++
		if v.peer.Addr == target.Addr {
			targetVoter = v.st != nil
		} else if v.st != nil {
			alive++
		}
	}
	if !targetVoter {
		return nil // a learner, or a node that does not answer anyway
	}
	if need := voters/2 + 1; alive < need {
		return fmt.Errorf("it would leave %d of %d voters running, fewer than the %d a quorum needs: the cluster would stop accepting writes", alive, voters, need)
	}
	return nil
}
