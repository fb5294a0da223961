// Package entrance is the cluster's front door: it admits nodes, keeps a
// persisted registry of them, drives membership changes through the
// leader, tracks the leader from its reports, and answers clients' "who
// leads" and "list peers" questions. It is not on the data path: once a
// client knows the leader it talks to it directly, and the cluster keeps
// serving while the entrance is down.
//
// # Registry
//
// One bbolt file, DataDir/entrance.db: bucket "meta" holds the cluster ID
// (created once, when the first node bootstraps) and the latest accepted
// leader (ID, address, term); bucket "nodes" holds one Record per node ID
// (big-endian key): name, address, role (voter or learner), state
// (joining, alive, suspect, down, removed), match index, the term and
// leader of the latest report that listed it, last seen and admission
// time. Structural changes (admission, membership, role, address, leader)
// are written at once; last seen and match are written on those writes
// and on Close. The Raft configuration is the truth: every leader report
// overwrites the membership part of the registry, so a lost registry is
// rebuilt by the next report.
//
// # Admission
//
// A JoinRequest with NodeID 0 is a node that was never admitted:
//   - its name or address held by another node that is not removed:
//     CodeRefused, the message naming the conflict ("name "n1" is already
//     used by node 3f2a... at 127.0.0.1:7701");
//   - the same name and address as an admission still joining: the same
//     answer again (the first answer was lost);
//   - no cluster yet (no cluster ID, empty registry): a fresh random node
//     ID, a fresh cluster ID, Bootstrap true: the node founds a one-node
//     cluster;
//   - otherwise a fresh node ID and Bootstrap false; the node waits, empty,
//     to be added.
//
// A JoinRequest with a NodeID is a restart. A known, not removed node with
// the same name is answered OK (its address is updated if it moved);
// Bootstrap is repeated only while the bootstrap node was never seen as a
// member (it may have crashed before writing its bootstrap state; a node
// that has Raft state ignores Bootstrap). A removed node is refused. An ID
// the registry does not know (a lost registry) is registered as joining
// without bootstrap, and answered with the cluster ID, 0 when unknown. A
// request naming another cluster ID is refused; a registry without a
// cluster ID takes the one a rejoining node or a leader report brings.
//
// Node IDs are random, non-zero and never reused (removed records stay).
// Joins are serialized under one lock and persisted before the answer.
// Past MaxNodes records that are not removed (default 1000) joins are
// refused ("the registry is full").
//
// # Membership driver
//
// One goroutine (started by Run) makes membership changes through the
// leader with AdminRequest calls, one call at a time: first
// AdminAddLearner for the oldest node still joining (name and address in
// the request, for the ConfChange context), else AdminRemove for a node
// down past its grace period (see Autopilot), else AdminPromote for the
// oldest learner that is alive, has Match > 0 and Match + PromoteLag >=
// the leader's commit, while the voters (counting promotions the leader
// applied that no report shows yet) are fewer than Voters (default 5; the
// rest stay learners). The leader answers OK once the change is applied,
// so the next call follows at once; the registry itself changes only from
// reports. A change applied but not seen in a report within
// ConfirmTimeout is asked again (the leader treats an add of a member or a
// promote of a voter as done). CodeRefused (another change pending),
// timeouts and unreachable leaders are retried with backoff from
// RetryInterval doubling up to 16 times that; CodeNotLeader with an
// address sends the next try there. With no leader known, joins stay
// queued until the first report; promotions wait for a report since the
// entrance started.
//
// # Leader tracking
//
// A LeaderReport of another cluster, with a term lower than the current
// one, or from the current leader in its term with a lower commit index
// than its previous report (reordered), is dropped (counted in Dropped). Otherwise (higher term, or equal term:
// the reporter) the reporter becomes the leader, and its member list
// becomes the membership: listed nodes become members with the listed
// role, registered ones not listed any more become removed (and a removed
// node listed again becomes a member again: the configuration is the
// truth); a pending admission whose name or address the configuration
// gives to another ID is void (removed).
//
// # Liveness
//
// Run pings every node that is not removed (proto.KindPing over a rudp
// Call, timeout PingTimeout) every PingInterval (default 500ms). At most
// one ping per node is in flight and at most MaxPings in all; a node
// whose previous ping is still out, or that finds no free slot, is
// skipped that round, and rounds go longest-unpinged first, so pings never
// pile up and nobody starves. A pong counts only when its nonce and node
// ID match the registered node (another process at that address is no
// sign of life).
//
// A node's last seen time is the latest of: its pong; for the leader, the
// arrival of its report; for another member, a report that marks it
// Active (the leader heard from it within an election timeout) or in
// which its Match grew; for a node not yet a member, its join or rejoin.
// The liveness word is "removed" for removed nodes, else "alive" when
// last seen at most SuspectAfter ago (default 2s, 4 missed pings),
// "suspect" up to DownAfter (default 6s, 12 missed pings), "down"
// beyond; a node that answers again is alive at once. Changes of the
// word are logged.
//
// A pong carries the node's role, term and leader, so leader changes
// show within one ping interval, before any report: a pong saying
// "leader" in a term above the current one, or naming the leader of such
// a term, makes that node the leader (persisted; the membership driver
// starts over with it, and waits for its first report before promoting
// or removing anything); the current leader's pong saying it no longer
// leads (a step down) or any pong of a newer term with no leader means
// there is no leader for now (HasLeader false, role word "follower" for
// the old leader). The role word is "leader" for the current leader,
// "candidate" for a node whose pong of the last SuspectAfter says it
// campaigns, "learner" for learners and nodes not yet added, "follower"
// for other voters.
//
// # Autopilot
//
// With DownGrace > 0 (cmd/entrance: --down-grace, default 30s; the
// library's zero value is off) the membership driver removes a member
// (not the leader) that has been down for DownAfter + DownGrace with
// AdminRemove through the leader. Only what this entrance observed
// counts: a last seen time from before its start does not start the
// grace period, and neither does one from before a stall of the entrance
// itself. A stall (a long GC or scheduling pause, CPU starvation, a
// paused VM) ages every node's last seen alike although nobody was
// silent: the liveness loop (the ping rounds; every SuspectAfter/4 with
// pings off) notices a round more than max(SuspectAfter, 2 rounds) after
// the previous one, logs "entrance stalled", and the grace periods
// restart at that round; while a round is that overdue, nothing is
// removed. A voter is removed only when removalSafe allows it: the live
// ("alive", not suspect) voters are at least a quorum of the current
// configuration, and the voters left still hold a live quorum of the new
// one; a down learner may always go. Adding joined nodes comes first,
// then one removal, then promotions: the removal frees a voter slot and
// the oldest caught-up live learner is promoted in its place. Removals
// wait for a report since the start or the last leader change, and go one
// change at a time like every other (the node shows "removed" once the
// leader's report no longer lists it). raftkv_entrance_removals_total
// counts the removals the leader applied.
//
// # Wire
//
// Handle takes rudp payloads (proto Kind byte + msgpack body): KindJoin,
// KindWhoLeads and KindListPeers are answered with the same Kind byte and
// the response body; KindLeaderReport is one-way. The rudp endpoint uses
// ClusterID 0 (a joining node cannot know the cluster ID yet); the cluster
// secret, when set, authenticates every datagram.
//
// # HTTP
//
// GET / is a small HTML page (html/template, embedded; no script) that
// refreshes itself every 2 s: cluster ID, leader, term, the leader's
// commit index and per node its name, ID, address, role, liveness, last
// seen, term, match and lag (leader commit - match, members only). GET
// /v1/cluster answers a Cluster as JSON (the same data: the list-peers
// rows, leader_commit, has_leader); GET /healthz answers "ok"; GET
// /metrics serves the Entrance's own Prometheus registry (no global
// state): raftkv_entrance_nodes{state=joining|alive|suspect|down|removed},
// raftkv_entrance_has_leader, raftkv_entrance_term (highest seen),
// raftkv_entrance_leader_changes_seen_total,
// raftkv_entrance_removals_total,
// raftkv_entrance_joins_total{result=ok|refused|invalid|...},
// raftkv_build_info{version,goversion,component="entrance"}, and the Go
// runtime and process collectors.
//
// # Usage
//
//	pc, _ := net.ListenPacket("udp", "127.0.0.1:7700")
//	ln, _ := net.Listen("tcp", "127.0.0.1:7780")
//	e, err := entrance.New(entrance.Config{DataDir: dir, PacketConn: pc, HTTPListener: ln, Logger: log,
//		DownGrace: 30 * time.Second}) // pings every 500ms; removal after 6s + 30s down
//	if err != nil { ... }
//	defer e.Close()
//	err = e.Run(ctx) // until ctx is done
package entrance
