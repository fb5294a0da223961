package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"

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
	// Limit bounds the number of keys of a prefix read (0: no limit),
	// counted over all the pages of the read.
	Limit int64
	// PageBytes bounds the key-values of one reply of a range or prefix
	// read, each counted as its key, its value and 64 bytes (0: the
	// node's budget, 1 MiB; a larger value means the node's budget). A read with more pages through
	// them; smaller pages cost more round trips and less memory per reply.
	PageBytes int64
	// Serializable lets any node answer from its local state, without
	// confirming leadership: possibly stale, but available during an
	// election or a partition.
	Serializable bool
}

// GetResult is the answer to Get and Range.
type GetResult struct {
	KVs []KeyValue
	// Revision is the store's revision when the read (its first page) was
	// served: the revision the keys are as of, unless
	// GetOptions.Revision asked for an older one.
	Revision int64
	More     bool // the read stopped at its limit
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
// key (possibly none), read in pages as Range does.
func (c *Client) Get(ctx context.Context, key string, opts GetOptions) (*GetResult, error) {
	if opts.Prefix {
		req := &proto.ClientRequest{Op: proto.OpRange, Key: []byte(key), Prefix: true}
		return c.collect(ctx, fmt.Sprintf("get %q", key), req, opts)
	}
	req := &proto.ClientRequest{Op: proto.OpGet, Key: []byte(key), Revision: opts.Revision,
		Serializable: opts.Serializable}
	resp, err := c.do(ctx, fmt.Sprintf("get %q", key), req)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, &KeyNotFoundError{Key: key, Revision: opts.Revision}
		}
		return nil, err
	}
	res := &GetResult{KVs: toKVs(resp.KVs), Revision: resp.Revision, More: resp.More}
	if len(res.KVs) == 0 {
		return nil, &KeyNotFoundError{Key: key, Revision: opts.Revision}
	}
	return res, nil
}

// Range reads the keys in [start, end) (end "" means only start), at most
// opts.Limit of them. opts.Prefix is ignored.
//
// A range larger than one reply (GetOptions.PageBytes) is read in pages:
// the first page as asked (linearizable unless Serializable), every later
// one after the last key so far, at the first page's revision, read the
// same way and first asked of the node that answered the page before. The
// result is thus one consistent snapshot even while writes continue. If
// the cluster compacts that revision between two pages, the read fails
// with a *RangeCompactedError (ErrCompacted): retry it.
func (c *Client) Range(ctx context.Context, start, end string, opts GetOptions) (*GetResult, error) {
	req := &proto.ClientRequest{Op: proto.OpRange, Key: []byte(start), End: []byte(end)}
	return c.collect(ctx, fmt.Sprintf("range [%q, %q)", start, end), req, opts)
}

// Scan yields the keys that start with prefix, in key order, read in pages
// as Range does, without holding more than one page: a range of any size in
// bounded memory. opts.Prefix is ignored. After an error it yields the
// error once, with a zero KeyValue, and stops; a *RangeCompactedError means
// the keys yielded so far were a consistent snapshot, but it could not be
// finished.
func (c *Client) Scan(ctx context.Context, prefix string, opts GetOptions) iter.Seq2[KeyValue, error] {
	return func(yield func(KeyValue, error) bool) {
		req := &proto.ClientRequest{Op: proto.OpRange, Key: []byte(prefix), Prefix: true}
		stopped := false
		_, _, err := c.pages(ctx, fmt.Sprintf("scan %q", prefix), req, opts, func(kvs []KeyValue) bool {
			for _, kv := range kvs {
				if !yield(kv, nil) {
					stopped = true
					return false
				}
			}
			return true
		})
		if err != nil && !stopped {
			yield(KeyValue{}, err)
		}
	}
}

// collect reads req in pages and returns all of them as one result.
func (c *Client) collect(ctx context.Context, what string, req *proto.ClientRequest, opts GetOptions) (*GetResult, error) {
	res := &GetResult{KVs: []KeyValue{}}
	var err error
	res.Revision, res.More, err = c.pages(ctx, what, req, opts, func(kvs []KeyValue) bool {
		res.KVs = append(res.KVs, kvs...)
		return true
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// pages reads the range req (Key, End, Prefix) page by page and hands each
// page to yield until it returns false. rev is the revision of the first
// reply (GetResult.Revision); more says opts.Limit stopped the read with
// keys left. Later pages continue after the last key (After), at the first
// page's revision (or opts.Revision), with the keys left of opts.Limit.
func (c *Client) pages(ctx context.Context, what string, req *proto.ClientRequest, opts GetOptions,
	yield func([]KeyValue) bool) (rev int64, more bool, err error) {
	if opts.Limit < 0 || opts.PageBytes < 0 {
		return 0, false, fmt.Errorf("client: %s: %w: negative limit or page bytes", what, ErrInvalid)
	}
	req.Revision, req.Serializable, req.MaxBytes = opts.Revision, opts.Serializable, opts.PageBytes
	var (
		left  = opts.Limit // keys left of opts.Limit (when it is not 0)
		read  int          // keys yielded so far
		addr  string       // the node that answered the last page
		last  []byte       // the last key so far
		first = true
	)
	for {
		req.Limit, req.After = left, last
		resp, from, err := c.doAt(ctx, what, req, addr)
		switch {
		case err != nil && errors.Is(err, ErrNotFound) && resp != nil:
			// A node answers "not found" only for a single-key read.
			if first {
				rev = resp.Revision
			}
			return rev, false, nil
		case err != nil && !first && errors.Is(err, ErrCompacted):
			return rev, false, &RangeCompactedError{Revision: req.Revision, Read: read, Err: err}
		case err != nil:
			return rev, false, err
		}
		if first {
			rev = resp.Revision
			if req.Revision == 0 {
				req.Revision = resp.Revision // pin the later pages
			}
			first = false
		}
		if len(resp.KVs) > 0 && last != nil && bytes.Compare(resp.KVs[0].Key, last) <= 0 {
			return rev, false, fmt.Errorf("client: %s: %w: %s answered a page starting at %q, not after %q (does it predate paged ranges? upgrade it)",
				what, ErrInternal, from, resp.KVs[0].Key, last)
		}
		if resp.More && len(resp.KVs) == 0 {
			return rev, false, fmt.Errorf("client: %s: %w: %s answered an empty page with more to come", what, ErrInternal, from)
		}
		if opts.Limit > 0 && int64(len(resp.KVs)) > left {
			resp.KVs, resp.More = resp.KVs[:left], true
		}
		read += len(resp.KVs)
		if !yield(toKVs(resp.KVs)) {
			return rev, false, nil
		}
		if opts.Limit > 0 {
			left -= int64(len(resp.KVs))
		}
		if !resp.More {
			return rev, false, nil
		}
		if opts.Limit > 0 && left == 0 {
			return rev, true, nil
		}
		last, addr = resp.KVs[len(resp.KVs)-1].Key, from
	}
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
