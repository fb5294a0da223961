package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/raftkv/raftkv/internal/proto"
)

// Peer is one row of list-peers: a node as the entrance sees it (name, id
// as %016x, address, role word, liveness word, last seen, term, match).
type Peer = proto.Peer

// NodeStatus is a node's own view of itself.
type NodeStatus = proto.NodeStatus

// retryEntrance calls the entrance until it answers or ctx ends.
func (c *Client) retryEntrance(ctx context.Context, what string, kind proto.Kind, req, resp any) error {
	if c.cfg.Entrance == "" {
		return fmt.Errorf("client: %s: no entrance configured", what)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	pause := c.cfg.MinBackoff
	var lastErr error
	for {
		err := c.call(ctx, c.cfg.Entrance, kind, req, resp)
		if err == nil {
			return nil
		}
		lastErr = err
		if c.backoff(ctx, &pause) != nil {
			break
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("client: %s: %w (last error: %w)", what, context.Canceled, lastErr)
	}
	return fmt.Errorf("client: %s: entrance %s: %w: %w (last error: %w)", what, c.cfg.Entrance, ErrUnavailable, ErrTimeout, lastErr)
}

// ListPeers returns the cluster's nodes, sorted by name. With an entrance
// it returns the entrance's registry. Without one it asks every endpoint
// for its status: a node that answers is "alive" with the role it reports,
// one that does not is "down" (its name is then its address).
func (c *Client) ListPeers(ctx context.Context) ([]Peer, error) {
	var peers []Peer
	if c.cfg.Entrance != "" {
		var resp proto.ListPeersResponse
		if err := c.retryEntrance(ctx, "list peers", proto.KindListPeers, &proto.ListPeersRequest{}, &resp); err != nil {
			return nil, err
		}
		peers = resp.Peers
	} else {
		addrs := c.snapshotAddrs()
		peers = make([]Peer, len(addrs))
		var wg sync.WaitGroup
		for i, a := range addrs {
			wg.Go(func() {
				sctx, cancel := context.WithTimeout(ctx, 2*c.cfg.AttemptTimeout)
				defer cancel()
				st, err := c.Status(sctx, a)
				if err != nil {
					peers[i] = Peer{Name: a, Addr: a, Role: "unknown", Liveness: "down"}
					return
				}
				peers[i] = Peer{Name: st.Name, ID: st.ID, Addr: a, Role: st.Role, Liveness: "alive",
					Term: st.Term, Match: st.Applied}
			})
		}
		wg.Wait()
	}
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return peers, nil
}

// Status asks the node at addr for its own view (one attempt bounded by
// Config.AttemptTimeout, retried until ctx or Config.Timeout ends).
func (c *Client) Status(ctx context.Context, addr string) (*NodeStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	pause := c.cfg.MinBackoff
	var lastErr error
	for {
		var resp proto.AdminResponse
		err := c.call(ctx, addr, proto.KindAdmin, &proto.AdminRequest{Op: proto.AdminStatus}, &resp)
		switch {
		case err != nil:
			lastErr = err
		case resp.Code != proto.CodeOK:
			return nil, fmt.Errorf("client: status of %s: %w", addr, &ServerError{Code: resp.Code, Message: resp.Message})
		case resp.Status == nil:
			return nil, fmt.Errorf("client: status of %s: %w: empty status", addr, ErrInternal)
		default:
			return resp.Status, nil
		}
		if c.backoff(ctx, &pause) != nil {
			return nil, fmt.Errorf("client: status of %s: %w: %w (last error: %w)", addr, ErrUnavailable, ErrTimeout, lastErr)
		}
	}
}
