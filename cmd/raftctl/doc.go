// Command raftctl is the command-line client of a raftkv cluster, built on
// package client. One file per subcommand (put.go, get.go, del.go,
// list_peers.go, status.go, transfer_leader.go, stop_node.go, bench.go,
// version.go); root.go holds the global flags, their environment variables
// and the mapping of errors to exit statuses; cluster.go the helpers the
// operations commands share (probe every node, find the leader, poll).
//
// # Usage
//
//	raftctl [--entrance ADDR | --endpoints A,B,C] [--secret-file F] [-o text|json] [--timeout D] COMMAND
//	  put KEY [VALUE]            (without VALUE: the value is standard input)
//	  get KEY [--rev N] [--prefix] [--serializable] [--limit N]
//	  del KEY [--prefix]
//	  list-peers
//	  status [NAME]
//	  transfer-leader NAME [--wait D]
//	  stop-node NAME [--keep-membership] [--wait D]
//	  bench put|get [--clients N] [--requests M] [--value-size B] [--keys K] [--serializable] [--prefill=false]
//	  version
//	  completion bash|zsh|fish|powershell
//	  help exit-codes
//
// RAFTCTL_ENTRANCE, RAFTCTL_ENDPOINTS and RAFTCTL_SECRET_FILE stand for the
// flags; a flag wins (naming either address flag ignores both address
// variables). Without any address raftctl uses the entrance at
// 127.0.0.1:7700, where `make run` puts it.
//
// status asks each node list-peers names for its own status (AdminStatus)
// and prints one row per node; a node that does not answer is shown as
// unreachable (or removed), not an error, unless none answers.
// transfer-leader sends AdminTransferLeader to the leader and waits until
// the target says it leads. stop-node sends AdminStop to the node and waits
// until it no longer answers and, with an entrance, list-peers shows it
// removed. bench reports ops/s and nearest-rank latency percentiles of the
// operations that succeeded.
//
// Errors are one line on stderr starting with "Error:". Exit statuses: 0 ok,
// 1 error or key not found, 2 usage, 3 unavailable (including a write whose
// outcome is unknown), 4 unauthorized, 5 compare failed, 130 interrupted.
package main
