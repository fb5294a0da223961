package main

import "github.com/spf13/cobra"

// Exit statuses of raftctl (documented in `raftctl help exit-codes`).
const (
	exitOK            = 0
	exitError         = 1
	exitUsage         = 2
	exitUnavailable   = 3
	exitUnauthorized  = 4
	exitCompareFailed = 5
	exitInterrupted   = 130
)

// newExitCodesTopic is a help topic: `raftctl help exit-codes`.
func newExitCodesTopic() *cobra.Command {
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "What raftctl's exit status means",
		Long: `raftctl exits with:

  0  success
  1  error, or the key was not found (get of a missing key)
  2  usage: unknown command or flag, wrong number of arguments, a bad
     flag value (an address that is not host:port, a --secret-file that
     cannot be read)
  3  unavailable: no leader, no quorum, the cluster or entrance did not
     answer in time (--timeout). A write that ends like this may or may not
     have been applied ("outcome unknown"); it is never applied twice.
  4  unauthorized: the cluster or entrance refused the operation, or its
     secret differs from --secret-file's (or it has one and none was
     given): the nodes answer datagrams they cannot authenticate with a
     notice, and raftctl stops as soon as every address it knows (the
     entrance, or each of --endpoints) refused, about one attempt (0.5 s)
     each, rather than at --timeout.
  5  compare failed: a compare-and-swap's condition did not hold
130  interrupted (Ctrl-C or SIGTERM) before the command finished; an
     interrupted write may or may not have been applied, as with 3

Errors are printed on stderr as one line starting with "Error:".`,
		Example: `  raftctl help exit-codes
  raftctl get missing-key; echo $?   # prints 1`,
	}
}
