// Command entrance runs the raftkv entrance: admission of nodes, the
// registry, leader tracking and routing for clients. See package
// github.com/raftkv/raftkv/entrance.
//
// # Usage
//
//	entrance --listen 127.0.0.1:7700 --http 127.0.0.1:7780 --data-dir DIR [--secret-file F] [--voters 5]
//
// Every flag can also be given as an environment variable ENTRANCE_<FLAG>
// (upper case, dashes as underscores: ENTRANCE_DATA_DIR); a flag on the
// command line wins. SIGINT or SIGTERM shuts it down cleanly (exit 0).
// Exit status 2 means a usage error, 1 any other failure.
package main
