// Command raftd runs one raftkv node: the Raft runtime of package
// github.com/raftkv/raftkv/node on a UDP socket, with its log and state
// machine under --data-dir.
//
// # Usage
//
//	raftd --name n1 --listen 127.0.0.1:7701 --data-dir DIR --entrance 127.0.0.1:7700 [--secret-file F]
//	      [--advertise ADDR] [--http ADDR] [--tick-interval 100ms] [--snapshot-entries 10000]
//	      [--log-level info] [--log-format text]
//
// A node with an empty data dir joins through the entrance (retrying until
// admitted) and keeps the node ID it gets; restarted with the same data dir
// it comes back as the same node and catches up. Every flag can also be
// given as an environment variable RAFTD_<FLAG> (upper case, dashes as
// underscores: RAFTD_DATA_DIR); a flag on the command line wins.
//
// With --http, GET /healthz answers "ok" once the node serves and GET
// /v1/status the node's status as JSON (id, name, role, term, leader,
// commit, applied, last and snapshot index, revision, uptime).
//
// Logs are slog lines on stderr. Lines tests and operators can rely on:
// "admitted" (first join), "rejoined", "serving" (the node answers
// requests), "became leader", "lost leadership", "removed from the
// cluster; stopping", "shut down", "raftd stopped".
//
// SIGINT or SIGTERM shuts down cleanly. Exit status: 0 after a clean stop
// (signal, removal from the cluster, stop-node), 1 on a failure, 2 on a
// usage error, 4 when the entrance refuses to admit the node.
package main
