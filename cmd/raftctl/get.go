package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

type getOptions struct {
	key          string
	rev          int64
	prefix       bool
	serializable bool
	limit        int64
}

func newGetCommand(f *factory) *cobra.Command {
	var opts getOptions
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value",
		Long: `Print the value of KEY. A missing key is an error (exit 1).

With --prefix, print every key starting with KEY and its value on
alternate lines (nothing when none matches). A large prefix is read in
pages of about 1 MiB, all at the revision of the first, so the output is
one consistent snapshot; if that revision is compacted before the last
page, the command fails (exit 1) and can be run again. With --rev, read the
store as of that revision. Reads are linearizable (confirmed by the leader) unless
--serializable, which lets any node answer from its possibly stale state.`,
		Example: `  raftctl get greeting
  raftctl get greeting --rev 3
  raftctl get config/ --prefix
  raftctl --endpoints 127.0.0.1:7702 get greeting --serializable
  raftctl -o json get greeting`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.key = args[0]
			if opts.key == "" && !opts.prefix {
				return usagef("KEY must not be empty (with --prefix, \"\" means every key)")
			}
			if opts.rev < 0 {
				return usagef("--rev must not be negative")
			}
			if opts.limit < 0 {
				return usagef("--limit must not be negative")
			}
			return runGet(cmd.Context(), f, cmd, opts)
		},
	}
	fl := cmd.Flags()
	fl.Int64Var(&opts.rev, "rev", 0, "read at this revision (0: current)")
	fl.BoolVar(&opts.prefix, "prefix", false, "read every key with KEY as prefix")
	fl.BoolVar(&opts.serializable, "serializable", false, "let any node answer from its local state (possibly stale)")
	fl.Int64Var(&opts.limit, "limit", 0, "with --prefix, at most this many keys (0: all)")
	return cmd
}

// jsonKV is a key in json output; the value is a string (bytes that are not
// UTF-8 are replaced).
type jsonKV struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
}

type jsonGet struct {
	Revision int64    `json:"revision"`
	KVs      []jsonKV `json:"kvs"`
	More     bool     `json:"more"`
}

func runGet(ctx context.Context, f *factory, cmd *cobra.Command, opts getOptions) error {
	return f.withKV(ctx, func(c kv) error {
		res, err := c.Get(ctx, opts.key, client.GetOptions{Revision: opts.rev, Prefix: opts.prefix,
			Serializable: opts.serializable, Limit: opts.limit})
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if f.opts.output == "json" {
			j := jsonGet{Revision: res.Revision, KVs: make([]jsonKV, 0, len(res.KVs)), More: res.More}
			for _, kv := range res.KVs {
				j.KVs = append(j.KVs, jsonKV{Key: kv.Key, Value: string(kv.Value), CreateRevision: kv.CreateRevision,
					ModRevision: kv.ModRevision, Version: kv.Version})
			}
			return writeJSON(out, j)
		}
		if !opts.prefix {
			_, err := fmt.Fprintf(out, "%s\n", res.KVs[0].Value)
			return err
		}
		for _, kv := range res.KVs {
			if _, err := fmt.Fprintf(out, "%s\n%s\n", kv.Key, kv.Value); err != nil {
				return err
			}
		}
		return nil
	})
}
