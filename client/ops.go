package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/internal/proto"
)

// KeyValue is one key as stored, with its multi-version metadata.
type KeyValue struct {
	Key            string `json:"key"`
	Value          []byte `json:"value"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
}

// GetOptions modify a read. The zero value is a linearizable read of one
// key at the current revision.
type GetOptions struct {
	// Revision reads the store as of that revision (0: current).
	Revision int64
	// Prefix reads every key that starts with the key (a range).
	Prefix bool
	// Limit bounds the number of keys of a prefix read (0: no limit).
	Limit int64
	// Serializable lets any node answer from its local state, without
	// confirming leadership: possibly stale, but available during an
	// election or a partition.
	Serializable bool
}

// GetResult is the answer to Get and Range.
type GetResult struct {
	KVs      []KeyValue
	Revision int64 // store revision when the read was served
	More     bool  // the read stopped at its limit
}

// WriteResult is the answer to a write.
type WriteResult struct {
	Revision int64 // store revision after the write
	Deleted  int64 // keys deleted (Delete, DeletePrefix, CAS with Delete)
}

func toKVs(in []proto.KeyValue) []KeyValue {
	out := make([]KeyValue, len(in))
	for i, kv := range in {
		out[i] = KeyValue{Key: string(kv.Key), Value: kv.Value, CreateRevision: kv.CreateRevision,
			ModRevision: kv.ModRevision, Version: kv.Version}
	}
	return out
}

// Put sets key to value.
func (c *Client) Put(ctx context.Context, key string, value []byte) (*WriteResult, error) {
	resp, err := c.do(ctx, fmt.Sprintf("put %q", key), &proto.ClientRequest{Op: proto.OpPut, Key: []byte(key), Value: value})
	if err != nil {
		return nil, err
	}
	return &WriteResult{Revision: resp.Revision}, nil
}

// Get reads key. Without Prefix a missing key is ErrNotFound and the result
// has exactly one KeyValue; with Prefix the result lists every matching
// key (possibly none).
func (c *Client) Get(ctx context.Context, key string, opts GetOptions) (*GetResult, error) {
	req := &proto.ClientRequest{Op: proto.OpGet, Key: []byte(key), Revision: opts.Revision,
		Serializable: opts.Serializable}
	if opts.Prefix {
		req.Op, req.Prefix, req.Limit = proto.OpRange, true, opts.Limit
	}
	resp, err := c.do(ctx, fmt.Sprintf("get %q", key), req)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			if opts.Prefix {
				return &GetResult{Revision: resp.Revision}, nil
			}
			return nil, &KeyNotFoundError{Key: key, Revision: opts.Revision}
		}
		return nil, err
	}
	res := &GetResult{KVs: toKVs(resp.KVs), Revision: resp.Revision, More: resp.More}
	if !opts.Prefix && len(res.KVs) == 0 {
		return nil, &KeyNotFoundError{Key: key, Revision: opts.Revision}
	}
	return res, nil
}

// Range reads the keys in [start, end) (end "" means only start), at most
// opts.Limit of them. opts.Prefix is ignored.
func (c *Client) Range(ctx context.Context, start, end string, opts GetOptions) (*GetResult, error) {
	req := &proto.ClientRequest{Op: proto.OpRange, Key: []byte(start), End: []byte(end), Limit: opts.Limit,
		Revision: opts.Revision, Serializable: opts.Serializable}
	resp, err := c.do(ctx, fmt.Sprintf("range [%q, %q)", start, end), req)
	if err != nil {
		if errors.Is(err, ErrNotFound) && resp != nil {
			return &GetResult{Revision: resp.Revision}, nil
		}
		return nil, err
	}
	return &GetResult{KVs: toKVs(resp.KVs), Revision: resp.Revision, More: resp.More}, nil
}

// Delete deletes key. Deleting a missing key is not an error
// (WriteResult.Deleted is 0).
func (c *Client) Delete(ctx context.Context, key string) (*WriteResult, error) {
	return c.deleteOp(ctx, fmt.Sprintf("delete %q", key), proto.OpDelete, key)
}

// DeletePrefix deletes every key that starts with prefix.
func (c *Client) DeletePrefix(ctx context.Context, prefix string) (*WriteResult, error) {
	return c.deleteOp(ctx, fmt.Sprintf("delete prefix %q", prefix), proto.OpDeletePrefix, prefix)
}

func (c *Client) deleteOp(ctx context.Context, what string, op proto.Op, key string) (*WriteResult, error) {
	resp, err := c.do(ctx, what, &proto.ClientRequest{Op: op, Key: []byte(key), Prefix: op == proto.OpDeletePrefix})
	if err != nil {
		if errors.Is(err, ErrNotFound) && resp != nil {
			return &WriteResult{Revision: resp.Revision}, nil
		}
		return nil, err
	}
	return &WriteResult{Revision: resp.Revision, Deleted: resp.Deleted}, nil
}

// CompareTarget is what a compare-and-swap compares.
type CompareTarget = proto.CompareTarget

// Compare targets.
const (
	CompareValue       = proto.CompareValue       // the key exists and its value equals Compare.Value
	CompareModRevision = proto.CompareModRevision // the key's mod revision equals Compare.Revision (0: absent)
	CompareVersion     = proto.CompareVersion     // the key's version equals Compare.Revision (0: absent)
)

// Compare is the condition of a compare-and-swap.
type Compare struct {
	Target   CompareTarget
	Value    []byte
	Revision int64
}

// CAS writes value to key (or deletes key when del is true) if cmp holds,
// atomically. When it does not hold, nothing changes and the error is
// ErrCompareFailed.
func (c *Client) CAS(ctx context.Context, key string, cmp Compare, value []byte, del bool) (*WriteResult, error) {
	req := &proto.ClientRequest{Op: proto.OpCAS, Key: []byte(key), Value: value, Compare: cmp.Target,
		CompareValue: cmp.Value, Revision: cmp.Revision, DeleteOnSuccess: del}
	resp, err := c.do(ctx, fmt.Sprintf("cas %q", key), req)
	if err != nil {
		return nil, err
	}
	return &WriteResult{Revision: resp.Revision, Deleted: resp.Deleted}, nil
}

// Compact drops the history below revision rev; reads at older revisions
// then fail with ErrCompacted.
func (c *Client) Compact(ctx context.Context, rev int64) error {
	_, err := c.do(ctx, fmt.Sprintf("compact %d", rev), &proto.ClientRequest{Op: proto.OpCompact, Revision: rev})
	return err
}
