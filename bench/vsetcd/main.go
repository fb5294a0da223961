// Command vsetcd drives a raftkv cluster and an etcd cluster with the same
// workload, so the two can be compared side by side on one machine.
//
// It is the load generator behind bench/vsetcd/run.sh (which starts and
// stops the clusters); see bench/vsetcd/README.md. It lives in its own Go
// module so that the etcd client and its gRPC dependencies never enter
// raftkv's main module.
//
// # Usage
//
//	vsetcd run --system etcd --endpoints 127.0.0.1:2379,... --round 1 --out results.jsonl
//	vsetcd run --system raftkv --entrance 127.0.0.1:7700 --endpoints 127.0.0.1:7701,... --round 1 --out results.jsonl
//	vsetcd report results.jsonl
//	vsetcd fsync --dir DIR
//	vsetcd ports N
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage:
  vsetcd run --system etcd|raftkv [flags]   run the workloads against one cluster, append JSON lines
  vsetcd report FILE.jsonl [--machine FILE]  print the side-by-side table of a results file
  vsetcd fsync --dir DIR [--duration 2s]     measure write+fdatasync and write+fsync rates in DIR
  vsetcd ports N                              print N loopback ports free for both TCP and UDP
run 'vsetcd COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(realMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr)
	case "report":
		err = cmdReport(args[1:], stdout)
	case "fsync":
		err = cmdFsync(ctx, args[1:], stdout)
	case "ports":
		err = cmdPorts(args[1:], stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "vsetcd: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}
