package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

type delOptions struct {
	key    string
	prefix bool
}

func newDelCommand(f *factory) *cobra.Command {
	var opts delOptions
	cmd := &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete"},
		Short:   "Delete a key, or every key with a prefix",
		Long: `Delete KEY (or, with --prefix, every key starting with KEY) and print how
many keys were deleted. Deleting a missing key is not an error (prints 0).
As with etcdctl, del "" --prefix deletes every key: mind an empty shell
variable ("$PREFIX").`,
		Example: `  raftctl del greeting
  raftctl del config/ --prefix
  raftctl -o json del greeting`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.key = args[0]
			if opts.key == "" && !opts.prefix {
				return usagef("KEY must not be empty (with --prefix, \"\" means every key)")
			}
			return runDel(cmd.Context(), f, cmd, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.prefix, "prefix", false, "delete every key with KEY as prefix")
	return cmd
}

func runDel(ctx context.Context, f *factory, cmd *cobra.Command, opts delOptions) error {
	return f.withKV(ctx, func(c kv) error {
		var (
			res *client.WriteResult
			err error
		)
		if opts.prefix {
			res, err = c.DeletePrefix(ctx, opts.key)
		} else {
			res, err = c.Delete(ctx, opts.key)
		}
		if err != nil {
			return err
		}
		if f.opts.output == "json" {
			return writeJSON(cmd.OutOrStdout(), map[string]int64{"deleted": res.Deleted, "revision": res.Revision})
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), res.Deleted)
		return err
	})
}
