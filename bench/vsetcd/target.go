package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftkv/raftkv/client"
)

// kv is one benchmark client: one connection (etcd: one gRPC connection;
// raftkv: one client with its own UDP socket) used by one goroutine.
type kv interface {
	Put(ctx context.Context, key string, value []byte) error
	// Get reads key linearizably and returns the length of its value.
	Get(ctx context.Context, key string) (int, error)
	Close() error
}

// errMissing is a get that found no key (after a prefill: a defect).
var errMissing = errors.New("key not found")

// cluster opens benchmark clients of one system.
type cluster interface {
	// Wait returns once the cluster accepts writes and has its three
	// members, or fails when ctx ends.
	Wait(ctx context.Context) error
	Dial(ctx context.Context) (kv, error)
	// Describe says where the clients are sent (for the results).
	Describe() string
}

// ---- etcd ----

type etcdCluster struct {
	endpoints []string // every member's client URL host:port
	mode      string   // "leader": clients use the leader's endpoint only; "all": every endpoint
	use       []string // endpoints the clients dial (set by Wait)
}

func (e *etcdCluster) Describe() string {
	return fmt.Sprintf("etcd clients dial %s (%s)", strings.Join(e.use, ","), e.mode)
}

func (e *etcdCluster) Wait(ctx context.Context) error {
	var last error
	for {
		leaderEP, err := e.leader(ctx)
		if err == nil {
			if e.mode == "leader" {
				e.use = []string{leaderEP}
			} else {
				e.use = e.endpoints
			}
			c, err := e.Dial(ctx)
			if err == nil {
				err = c.Put(ctx, "vsetcd/ready", []byte("1"))
				_ = c.Close()
			}
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd cluster %s not ready: %w (last: %v)", strings.Join(e.endpoints, ","), ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// leader returns the endpoint of the member that leads, once all members
// answer and agree on one leader.
func (e *etcdCluster) leader(ctx context.Context) (string, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: e.endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return "", err
	}
	defer func() { _ = c.Close() }()
	var leaderID uint64
	leaderEP := ""
	for _, ep := range e.endpoints {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := c.Status(sctx, ep)
		cancel()
		if err != nil {
			return "", fmt.Errorf("status of %s: %w", ep, err)
		}
		if st.Leader == 0 || (leaderID != 0 && st.Leader != leaderID) {
			return "", fmt.Errorf("members disagree on the leader (or have none)")
		}
		leaderID = st.Leader
		if st.Header.MemberId == st.Leader {
			leaderEP = ep
		}
	}
	if leaderEP == "" {
		return "", errors.New("no member says it leads")
	}
	return leaderEP, nil
}

func (e *etcdCluster) Dial(ctx context.Context) (kv, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: e.use, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return &etcdKV{c: c}, nil
}

type etcdKV struct{ c *clientv3.Client }

func (k *etcdKV) Put(ctx context.Context, key string, value []byte) error {
	_, err := k.c.Put(ctx, key, string(value))
	return err
}

func (k *etcdKV) Get(ctx context.Context, key string) (int, error) {
	resp, err := k.c.Get(ctx, key) // linearizable: the default
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, errMissing
	}
	return len(resp.Kvs[0].Value), nil
}

func (k *etcdKV) Close() error { return k.c.Close() }

// ---- raftkv ----

type raftkvCluster struct {
	entrance  string
	endpoints []string
}

func (r *raftkvCluster) Describe() string {
	return fmt.Sprintf("raftkv clients ask entrance %s and use nodes %s (writes and reads go to the leader)",
		r.entrance, strings.Join(r.endpoints, ","))
}

func (r *raftkvCluster) Wait(ctx context.Context) error {
	c, err := client.New(ctx, client.Config{Entrance: r.entrance, Endpoints: r.endpoints})
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	var last error
	for {
		last = r.ready(ctx, c)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raftkv cluster (entrance %s) not ready: %w (last: %v)", r.entrance, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ready: one leader and two followers alive (the entrance adds nodes as
// learners first, so a write can succeed on a one-node cluster), and a put
// goes through.
func (r *raftkvCluster) ready(ctx context.Context, c *client.Client) error {
	peers, err := c.ListPeers(ctx)
	if err != nil {
		return err
	}
	leaders, followers := 0, 0
	for _, p := range peers {
		if p.Liveness != "alive" {
			continue
		}
		switch p.Role {
		case "leader":
			leaders++
		case "follower":
			followers++
		}
	}
	if leaders != 1 || followers != 2 {
		return fmt.Errorf("%d leaders and %d followers alive, want 1 and 2", leaders, followers)
	}
	_, err = c.Put(ctx, "vsetcd/ready", []byte("1"))
	return err
}

func (r *raftkvCluster) Dial(ctx context.Context) (kv, error) {
	c, err := client.New(ctx, client.Config{Entrance: r.entrance, Endpoints: r.endpoints})
	if err != nil {
		return nil, err
	}
	return &raftkvKV{c: c}, nil
}

type raftkvKV struct{ c *client.Client }

func (k *raftkvKV) Put(ctx context.Context, key string, value []byte) error {
	_, err := k.c.Put(ctx, key, value)
	return err
}

func (k *raftkvKV) Get(ctx context.Context, key string) (int, error) {
	res, err := k.c.Get(ctx, key, client.GetOptions{}) // linearizable (ReadIndex)
	if errors.Is(err, client.ErrNotFound) {
		return 0, errMissing
	}
	if err != nil {
		return 0, err
	}
	return len(res.KVs[0].Value), nil
}

func (k *raftkvKV) Close() error { return k.c.Close() }
