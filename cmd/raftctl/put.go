package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// maxStdinValueBytes bounds a value read from standard input; the cluster
// refuses values above its own limit (1 MiB by default) anyway.
const maxStdinValueBytes = 64 << 20

type putOptions struct {
	key   string
	value []byte
}

func newPutCommand(f *factory) *cobra.Command {
	var opts putOptions
	return &cobra.Command{
		Use:   "put KEY [VALUE]",
		Short: "Set a key to a value",
		Long: `Set KEY to VALUE through the leader. Prints OK (text) or the new revision
(json). When no answer comes in time the write may or may not have been
applied: raftctl then exits 3 and says "outcome unknown".

Without VALUE, the value is read from standard input, byte for byte (as
etcdctl does): use it for values too large for the command line or that
hold binary data. raftctl refuses to wait for a value typed at a terminal.`,
		Example: `  raftctl put greeting hello
  raftctl -o json put config/limit 10
  raftctl put config/app.json < app.json
  printf 'no newline' | raftctl put note`,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.key = args[0]
			if opts.key == "" {
				return usagef("KEY must not be empty")
			}
			if len(args) == 2 {
				opts.value = []byte(args[1])
			} else {
				v, err := f.readStdinValue()
				if err != nil {
					return err
				}
				opts.value = v
			}
			return runPut(cmd.Context(), f, cmd, opts)
		},
	}
}

// readStdinValue reads a put's value from standard input, refusing a
// terminal (a user who forgot VALUE would wait forever) and bounding it.
func (f *factory) readStdinValue() ([]byte, error) {
	if f.stdin == nil || f.stdinIsTerminal() {
		return nil, usagef("put needs a VALUE argument, or the value on standard input (raftctl put KEY < FILE)")
	}
	v, err := io.ReadAll(io.LimitReader(f.stdin, maxStdinValueBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the value from standard input: %w", err)
	}
	if len(v) > maxStdinValueBytes {
		return nil, usagef("the value on standard input is over %d MiB", maxStdinValueBytes>>20)
	}
	return v, nil
}

func runPut(ctx context.Context, f *factory, cmd *cobra.Command, opts putOptions) error {
	return f.withKV(ctx, func(c kv) error {
		res, err := c.Put(ctx, opts.key, opts.value)
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
