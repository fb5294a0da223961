package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/raftkv/raftkv/client"
)

// errNoSuchNode: a NAME argument names no node of the cluster (exit 1).
var errNoSuchNode = errors.New("no such node")

// probeTimeout bounds the status call to one node.
const probeTimeout = 2 * time.Second

// pollInterval is how often the waiting commands look at the cluster.
const pollInterval = 100 * time.Millisecond

// nodeView is a node as list-peers names it plus its own status (st nil
// and err set when it did not answer).
type nodeView struct {
	peer client.Peer
	st   *client.NodeStatus
	err  error
}

// probe asks every peer for its status in parallel.
func probe(ctx context.Context, c kv, peers []client.Peer, timeout time.Duration) []nodeView {
	views := make([]nodeView, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		views[i].peer = p
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			views[i].st, views[i].err = c.Status(pctx, p.Addr)
		})
	}
	wg.Wait()
	return views
}

// findPeer returns the peer called name. A node that left and joined
// again under its name (with a wiped data dir) is listed twice, once
// removed: the member wins over the removed entry.
func findPeer(peers []client.Peer, name string) (client.Peer, error) {
	found := -1
	for i, p := range peers {
		if p.Name == name && (found < 0 || peers[found].Liveness == "removed") {
			found = i
		}
	}
	if found >= 0 {
		return peers[found], nil
	}
	names := make([]string, 0, len(peers))
	for _, p := range peers {
		names = append(names, p.Name)
	}
	return client.Peer{}, fmt.Errorf("%w: %q (nodes: %v)", errNoSuchNode, name, names)
}

// parseID parses a node ID printed as %016x.
func parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("bad node ID %q", s)
	}
	return id, nil
}

// leaderView returns the index of the node that says it leads with the
// highest term (-1: none).
func leaderView(views []nodeView) int {
	idx := -1
	for i, v := range views {
		if v.st != nil && v.st.Role == "leader" && (idx < 0 || v.st.Term > views[idx].st.Term) {
			idx = i
		}
	}
	return idx
}

// nameOf maps a node ID (%016x) to its name through the peers ("" unknown).
func nameOf(peers []client.Peer, id string) string {
	for _, p := range peers {
		if p.ID == id && id != "" {
			return p.Name
		}
	}
	return ""
}

// poll calls cond every pollInterval until it returns true or an error, or
// ctx ends (then it returns ctx's error).
func poll(ctx context.Context, cond func() (bool, error)) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		ok, err := cond()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// timedOut wraps a waiting command's failure as a timeout (exit 3), or,
// when ctx was cancelled (Ctrl-C) rather than timed out, as that.
func timedOut(ctx context.Context, what string, wait time.Duration, detail string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%s: %w (%s)", what, context.Canceled, detail)
	}
	return fmt.Errorf("%s: %w after %v: %s", what, client.ErrTimeout, wait, detail)
}
