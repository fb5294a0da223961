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
		if errors.Is(err, ErrUnauthorized) {
			// The entrance cannot verify our datagrams: retrying will
			// not change that.
			return fmt.Errorf("client: %s: entrance %s: %w: %w", what, c.cfg.Entrance, ErrUnavailable, err)
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
		case errors.Is(err, ErrUnauthorized):
			// The node cannot verify our datagrams: retrying will not
			// change that.
			return nil, fmt.Errorf("client: status of %s: %w: %w", addr, ErrUnavailable, err)
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

// adminOnce sends one admin request to addr and waits for its answer until
// ctx ends (a single rudp call, which retransmits on its own; not retried
// on top, since AdminStop must not be repeated).
func (c *Client) adminOnce(ctx context.Context, addr string, req proto.AdminRequest) (*proto.AdminResponse, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	payload, err := proto.Encode(proto.KindAdmin, &req)
	if err != nil {
		return nil, err
	}
	reply, err := c.tr.Call(ctx, addr, payload)
	if err != nil {
		return nil, authRefused(err)
	}
	var resp proto.AdminResponse
	if err := decodeReply(reply, &resp); err != nil {
		return nil, fmt.Errorf("reply from %s: %w", addr, err)
	}
	return &resp, nil
}

// transportErr classifies a failed call: ctx's end as ErrTimeout (or
// context.Canceled), anything else as ErrUnavailable.
func transportErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("%w (last error: %w)", context.Canceled, err)
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %w (last error: %w)", ErrUnavailable, ErrTimeout, err)
	default:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

// TransferLeader asks the leader at leaderAddr to hand leadership to the
// voter id and returns once that node leads (the leader answers when it
// sees the new leader). A node that does not lead answers with a redirect,
// which is followed; an attempt that gets no answer is retried until ctx
// ends (a repeated transfer is harmless). Unlike the data operations it is
// bounded by ctx only, not by Config.Timeout: a transfer waits for an
// election.
func (c *Client) TransferLeader(ctx context.Context, leaderAddr string, id uint64) error {
	if id == 0 {
		return fmt.Errorf("client: transfer leadership: %w: node ID 0", ErrInvalid)
	}
	addr := leaderAddr
	pause := c.cfg.MinBackoff
	var lastErr error
	for {
		resp, err := c.adminOnce(ctx, addr, proto.AdminRequest{Op: proto.AdminTransferLeader, NodeID: id})
		switch {
		case err != nil:
			lastErr = fmt.Errorf("%s: %w", addr, err)
			addr = leaderAddr
		case resp.Code == proto.CodeOK:
			return nil
		case resp.Code == proto.CodeNotLeader && resp.LeaderAddr != "":
			lastErr = fmt.Errorf("%s redirected to %s: %w", addr, resp.LeaderAddr, ErrNoLeader)
			addr = resp.LeaderAddr
		case resp.Code == proto.CodeNotLeader || resp.Code == proto.CodeUnavailable:
			lastErr = fmt.Errorf("%s: %w", addr, &ServerError{Code: resp.Code, Message: resp.Message})
			addr = leaderAddr
		default:
			return fmt.Errorf("client: transfer leadership to %016x: %s: %w", id, addr, &ServerError{Code: resp.Code, Message: resp.Message})
		}
		if c.backoff(ctx, &pause) != nil {
			return fmt.Errorf("client: transfer leadership to %016x: %w", id, transportErr(ctx, lastErr))
		}
	}
}

// StopNode asks the node at addr to stop: unless keepMembership it first
// leaves the membership (a leader hands leadership over first), and it
// answers once that is committed; then its process exits. id, when not 0,
// must be the node's ID (a node with another ID at addr refuses). The
// request is sent once and its answer awaited until ctx ends; bounded by
// ctx only, not by Config.Timeout. An error wrapping ErrUnavailable means
// no answer came: the node may have stopped anyway.
func (c *Client) StopNode(ctx context.Context, addr string, id uint64, keepMembership bool) error {
	resp, err := c.adminOnce(ctx, addr, proto.AdminRequest{Op: proto.AdminStop, NodeID: id, KeepMembership: keepMembership})
	if err != nil {
		return fmt.Errorf("client: stop node at %s: %w", addr, transportErr(ctx, err))
	}
	if resp.Code != proto.CodeOK {
		return fmt.Errorf("client: stop node at %s: %w", addr, &ServerError{Code: resp.Code, Message: resp.Message})
	}
	return nil
}
