// Command raftctl is the command-line client of a raftkv cluster, built on
// package client. One file per subcommand (put.go, get.go, del.go,
// list_peers.go, version.go); root.go holds the global flags, their
// environment variables and the mapping of errors to exit statuses.
//
// # Usage
//
//	raftctl [--entrance ADDR | --endpoints A,B,C] [--secret-file F] [-o text|json] [--timeout D] COMMAND
//	  put KEY VALUE
//	  get KEY [--rev N] [--prefix] [--serializable] [--limit N]
//	  del KEY [--prefix]
//	  list-peers
//	  version
//	  completion bash|zsh|fish|powershell
//	  help exit-codes
//
// RAFTCTL_ENTRANCE, RAFTCTL_ENDPOINTS and RAFTCTL_SECRET_FILE stand for the
// flags; a flag wins (naming either address flag ignores both address
// variables). Without any address raftctl uses the entrance at
// 127.0.0.1:7700, where `make run` puts it.
//
// Errors are one line on stderr starting with "Error:". Exit statuses: 0 ok,
// 1 error or key not found, 2 usage, 3 unavailable (including a write whose
// outcome is unknown), 4 unauthorized, 5 compare failed.
package main
