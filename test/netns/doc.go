// Package netns tests raftkv on a LAN built from Linux network namespaces:
// the way it runs on real machines, with each process on its own host and
// address, and raftd finding the entrance by UDP broadcast.
//
// TestNamespaceLAN builds raftd, entrance and raftctl (without -race), then
// creates a hub namespace holding a bridge and one namespace per host,
// joined to the bridge by veth pairs, on 10.213.X.0/24 with X chosen per run
// and namespace names unique per run (prefix "rkvnt-" plus random hex). The
// entrance runs on .1, three raftd on .2-.4 WITHOUT --entrance (they find it
// by broadcast to 10.213.X.255:7799), and raftctl runs in a client namespace
// on .100 through `ip netns exec`. The test writes and reads, cuts one
// follower off by taking its bridge-side veth down (a silent partition both
// ways), waits until list-peers reports it suspect and then down (the
// entrance runs with --suspect-after 1s --down-after 3s --down-grace 0, so
// the node is never removed), writes and reads again with the follower cut
// off, brings the link up, and waits until the follower is alive again and
// has the write it missed. Processes are stopped by pid (SIGTERM, then
// SIGKILL) and the namespaces it created are deleted in t.Cleanup, also on
// failure; on failure the tail of every process's log is printed.
//
// It needs root and iproute2's `ip netns`. Otherwise it skips with the
// reason, unless RAFTKV_NETNS_REQUIRED=1, which turns the skip into a
// failure (for CI, which runs as root). It runs in about 10 s.
//
// # Usage
//
//	sudo go test ./test/netns/ -v
//	RAFTKV_NETNS_REQUIRED=1 go test ./test/netns/
package netns
