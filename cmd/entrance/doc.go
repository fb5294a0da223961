// Command entrance runs the raftkv entrance: admission of nodes, the
// registry, leader tracking and routing for clients. See package
// github.com/raftkv/raftkv/entrance.
//
// # Usage
//
//	entrance --listen 127.0.0.1:7700 --http 127.0.0.1:7780 --data-dir DIR [--secret-file F] [--voters 5]
//	         [--ping-interval 500ms] [--suspect-after 2s] [--down-after 6s] [--down-grace 30s]
//
// The HTTP address serves a status page at / (refreshing itself every
// 2 s), the same data as JSON at /v1/cluster, Prometheus metrics at
// /metrics and /healthz. --down-grace 0 turns autopilot removal off;
// --ping-interval 0 turns pings off.
//
// Every flag can also be given as an environment variable ENTRANCE_<FLAG>
// (upper case, dashes as underscores: ENTRANCE_DATA_DIR); a flag on the
// command line wins. SIGINT or SIGTERM shuts it down cleanly (exit 0).
// Exit status 2 means a usage error, 1 any other failure.
//
// Under systemd with Type=notify ($NOTIFY_SOCKET set; internal/sdnotify)
// it sends READY=1 with STATUS=serving at ADDR, http ADDR once the
// registry is open and its ports listen, and STOPPING=1 when it shuts
// down. It does not ping a watchdog.
package main
