package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/internal/sdnotify"
)

// statusEvery is how often, under systemd, the node's status is polled
// for STATUS= lines (and, at most half the watchdog interval, WATCHDOG=1).
const statusEvery = time.Second

// statusText is the STATUS= line for a node's status: role, term and
// leader ("follower, term 5, leader 00000000000000a2").
func statusText(st proto.NodeStatus) string {
	switch {
	case st.Role == "leader":
		return fmt.Sprintf("leader, term %d", st.Term)
	case st.Leader == "":
		return fmt.Sprintf("%s, term %d, no leader", st.Role, st.Term)
	}
	return fmt.Sprintf("%s, term %d, leader %s", st.Role, st.Term, st.Leader)
}

// supervise runs while the node serves under systemd. Every interval it
// asks the node for its status; the node's own loop goroutine answers
// (node.Status runs on it), so an answer within timeout shows the loop is
// alive: then it pings the watchdog (when watchdog is set) and sends a
// STATUS= line if role, term or leader changed. A check that fails or
// times out sends nothing, and systemd restarts a node whose loop hangs
// for the watchdog interval. It returns when ctx is done.
func supervise(ctx context.Context, sd *sdnotify.Notifier, status func(context.Context) (proto.NodeStatus, error),
	interval, timeout time.Duration, watchdog bool, log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last string
	failing := false
	for {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		st, err := status(cctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				log.Warn("node did not answer a status check; not pinging the systemd watchdog", "timeout", timeout, "err", err)
			}
			failing = true
		default:
			if failing {
				log.Info("node answers status checks again")
			}
			failing = false
			if watchdog {
				if err := sd.Watchdog(); err != nil {
					log.Debug("systemd watchdog ping failed", "err", err)
				}
			}
			if s := statusText(st); s != last {
				if err := sd.Status(s); err != nil {
					log.Debug("systemd status failed", "err", err)
				}
				last = s
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// superviseTiming returns supervise's interval and check timeout for a
// watchdog interval (0: none): checks every statusEvery, or every half of
// the watchdog interval if that is shorter, each given half the watchdog
// interval (5s without one) to answer.
func superviseTiming(watchdog time.Duration) (interval, timeout time.Duration) {
	if watchdog <= 0 {
		return statusEvery, 5 * time.Second
	}
	half := max(watchdog/2, time.Millisecond)
	return min(statusEvery, half), half
}
