package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

type putOptions struct {
	key, value string
}

func newPutCommand(f *factory) *cobra.Command {
	var opts putOptions
	return &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Set a key to a value",
		Long: `Set KEY to VALUE through the leader. Prints OK (text) or the new revision
(json). When no answer comes in time the write may or may not have been
applied: raftctl then exits 3 and says "outcome unknown".`,
		Example: `  raftctl put greeting hello
  raftctl -o json put config/limit 10`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.key, opts.value = args[0], args[1]
			return runPut(cmd.Context(), f, cmd, opts)
		},
	}
}

func runPut(ctx context.Context, f *factory, cmd *cobra.Command, opts putOptions) error {
	return f.withKV(ctx, func(c kv) error {
		res, err := c.Put(ctx, opts.key, []byte(opts.value))
		if err != nil {
			return err
		}
		if f.opts.output == "json" {
			return writeJSON(cmd.OutOrStdout(), map[string]int64{"revision": res.Revision})
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), "OK")
		return err
	})
}
