// Command raftd runs one raftkv node: the Raft runtime of package
// github.com/raftkv/raftkv/node on a UDP socket, with its log and state
// machine under --data-dir.
//
// # Usage
//
//	raftd --name n1 --listen 127.0.0.1:7701 --data-dir DIR [--entrance 127.0.0.1:7700] [--secret-file F]
//	      [--discovery-port 7799] [--discovery-addr 192.168.1.255,...]
//	      [--advertise ADDR] [--http ADDR] [--tick-interval 100ms] [--snapshot-entries 10000]
//	      [--log-level info] [--log-format text]
//
// A node with an empty data dir joins through the entrance (retrying until
// admitted) and keeps the node ID it gets; restarted with the same data dir
// it comes back as the same node and catches up. Every flag can also be
// given as an environment variable RAFTD_<FLAG> (upper case, dashes as
// underscores: RAFTD_DATA_DIR); a flag on the command line wins.
//
// Without --entrance the node finds the entrance by LAN broadcast
// (internal/discovery): it sends a Discover datagram to UDP port
// --discovery-port of every interface's subnet broadcast address (or of
// --discovery-addr; never 255.255.255.255), retrying with backoff, and
// logs "found the entrance" (entrance=ADDR) when the entrance's responder
// answers. A node with an empty data dir waits for that answer before it
// joins; a restarted node serves at once and looks in the background.
//
// With --http, GET /healthz answers "ok" once the node serves and GET
// /v1/status the node's status as JSON (id, name, role, term, leader,
// commit, applied, last and snapshot index, revision, uptime). GET /metrics
// serves Prometheus metrics in etcd's style: raftkv_server_* (has_leader,
// is_leader, term, leader_changes_seen_total, proposals_*),
// raftkv_disk_log_fsync_duration_seconds,
// raftkv_disk_backend_commit_duration_seconds, raftkv_rudp_* (the
// transport's counters, dropped_total by reason), raftkv_build_info, and
// the Go and process collectors.
//
// Logs are slog lines on stderr. Lines tests and operators can rely on:
// "found the entrance", "admitted" (first join), "rejoined", "serving" (the node answers
// requests), "became leader", "lost leadership", "removed from the
// cluster; stopping", "shut down", "raftd stopped".
//
// Under systemd with Type=notify ($NOTIFY_SOCKET set; internal/sdnotify)
// it sends STATUS=looking for the entrance (...) or STATUS=joining via ADDR
// while it starts, READY=1 once the node serves (the moment "serving" is
// logged: admitted, or restarted with its identity), then every second a
// status check that the node's loop goroutine answers: a STATUS= line when
// role, term or leader changed ("follower, term 5, leader
// 00000000000000a2"), and WATCHDOG=1 when $WATCHDOG_USEC is set (checks
// then run at least every half interval; a check unanswered for half the
// interval sends nothing, so systemd restarts a node whose loop hangs).
// STOPPING=1 when it shuts down.
//
// SIGINT or SIGTERM shuts down cleanly. Exit status: 0 after a clean stop
// (signal, removal from the cluster, stop-node), 1 on a failure, 2 on a
// usage error, 4 when the entrance refuses to admit the node. A node
// removed from the cluster (also while it was down: the entrance says so
// when it rejoins) records that in its data dir; started again on it, it
// logs "removed from the cluster; stopping" and exits 0 at once.
package main
