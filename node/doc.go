// Package node is the runtime that drives the Raft core (node/raft) for
// raftd: it owns the core, the Raft log and state machine (kvstore), and
// the node's rudp endpoint, and serves clients, the entrance and admin
// requests.
//
// # The loop
//
// One goroutine owns raft.Node. It selects on the ticker (one tick every
// Config.TickInterval), Raft messages from the network (the rudp handler
// decodes them and queues them without blocking), closures from request
// handlers (propose, ReadIndex, membership changes, status) and
// "unreachable" reports from the senders, then processes every Ready in
// this order, which is a contract:
//
//  1. persist HardState, Entries and Snapshot in ONE bbolt transaction of
//     the log (kvstore.LogStore.Save), fsynced when Ready.MustSync; install
//     a received snapshot into the state machine. A leader queues its
//     replication messages (MsgApp, MsgHeartbeat, MsgSnap) before this
//     write, so that its fsync overlaps the followers' (Raft thesis
//     §10.2.1; raft.Ready.SplitMessages has the rule and why it is safe);
//  2. only then queue the other Messages to the per-peer senders (bounded
//     queues, never blocking the loop; a full queue drops, Raft
//     retransmits; a send that rudp gives up on reports the peer
//     unreachable to the core);
//  3. apply CommittedEntries: runs of commands go to the applier goroutine,
//     which coalesces what is queued into one kvstore transaction (its fsync
//     overlaps the loop's next log fsync) and answers waiting writers once
//     the transaction has applied them, before its commit and fsync
//     (kvstore.Store.ApplyThen; the store's applied index, which reads
//     wait for, advances after the commit);
//     configuration changes (raft.Node.ApplyConfChange, the log's
//     ConfState, the members table), snapshot installs and the start of a
//     snapshot creation wait for the applier to drain (a barrier) and run
//     on the loop;
//  4. answer ReadStates (the read waits until applied >= index);
//  5. Advance; every Config.SnapshotEntries applied entries, start a
//     snapshot: the loop pins the state machine's state and copies its
//     tables, a background goroutine writes the snapshot file, and the
//     loop records it in the log and compacts (SnapshotCatchUpEntries
//     kept) when it is done (see snapshot.go).
//
// Asked to stop (Close, the context, SIGTERM in raftd), a leader first
// transfers leadership to the most caught-up active voter and stops once
// it knows its successor (at most one election timeout later).
//
// A client is answered only after its entry is committed (durable on a
// quorum) and applied in the state machine's open transaction: a SIGKILL at
// any moment loses no acknowledged write, since a restarted node re-applies
// the log above the store's committed applied index, with the same results
// (the session table answers a retry with the answer already given).
//
// # Requests
//
// Writes go to the leader (elsewhere CodeNotLeader with the leader's
// address). A write carries the client's session (ClientID, Seq); a retry
// with the same pair is answered from kvstore's session table and applied
// at most once. The session table is kvstore's alone, keyed by ClientID:
// a client's first write (Seq 1) opens its session in the same log entry
// and transaction as its data, so a one-shot write costs one entry and one
// commit round. A write whose ClientID has no session and is not its first
// (the session expired) is refused with CodeSessionExpired and not
// applied; the node never retries it under another session (an earlier
// copy may have been applied). One ClientID must have one write
// outstanding at a time: the session keeps only the last sequence number,
// so an older Seq arriving after a newer one is refused (CodeInvalid,
// stale sequence).
// Linearizable reads run on the leader after a ReadIndex round (reads that
// arrive together share one round: each arrived before it was issued);
// serializable reads are served at once from the local store on any node,
// from what it has committed: on the leader too they may miss a write
// answered a moment ago, whose state machine batch is still committing.
//
// # Membership and identity
//
// With an entrance, a node with an empty data dir joins (retrying until
// admitted) and keeps the node ID and cluster ID it gets in node.db; the
// first node admitted founds a one-node cluster (the bootstrap convention
// of node/raft). A restarted node serves at once and rejoins in the
// background. Config.FindEntrance stands for an unknown entrance address
// (LAN discovery): a new node waits for it before joining, a restarted one
// looks in the background. Without an entrance, Config.NodeID and Config.Bootstrap stand
// for the entrance's answer and members are added with Admin on the leader.
// ConfChange contexts carry {Name, Addr}; applying them maintains the
// members table (replicated, carried by snapshots), from which peers'
// addresses are learned; the source address of incoming Raft messages
// updates them too, and a node announces itself with a ping to every known
// peer when it starts (a learner restarted on a new address never
// campaigns, so the leader would not find it otherwise). A node removed
// from the configuration stops (Run returns nil; the leader also tells it
// with AdminStop, since it stops replicating to it), and node.db records
// it (Identity.Removed), so Run on that data dir returns nil at once. A
// restarted node that the entrance answers was removed while it was down
// stops too, without recording it: the entrance's registry can lag the
// configuration for a moment, and a live voter must be able to start
// again. The leader reports to
// the entrance on election and every Config.ReportInterval.
//
// # Metrics
//
// Every Node has its own prometheus.Registry (Config.Registry or a new
// one; Node.Registry), so several nodes fit in one process. Names follow
// etcd's: raftkv_server_has_leader, _is_leader, _term,
// _leader_changes_seen_total (a new non-zero leader), _snapshots_total,
// _proposals_committed_total and _applied_total (gauges: the commit and
// applied index, as in etcd), _proposals_pending (client writes between
// proposal and answer), _proposals_failed_total (client writes answered
// with an error: not leader, dropped, timed out, shutting down);
// raftkv_disk_log_fsync_duration_seconds (Raft log saves that fsync) and
// raftkv_disk_backend_commit_duration_seconds (state machine batches),
// histograms with ExponentialBuckets(0.001, 2, 14), not observed with
// NoSync; raftkv_rudp_* read from rudp's Stats at scrape time
// (datagrams/messages sent and received, retransmits, duplicates,
// dropped_total{reason}, unreachable, peer restarts, peers, reassembly
// bytes); raftkv_build_info{version,goversion,component="raftd"}.
//
// # Files
//
// DataDir/raft.db is the Raft log, DataDir/snap/ holds the file of the
// log's latest snapshot (<term>-<index>.snap, named by raft.db with its
// size and checksum), DataDir/kv.db the state machine, DataDir/node.db
// the identity, the members table and the data dir's format (metaFormat:
// a data dir of another format is refused with ErrDataFormat, as kv.db
// and raft.db are with kvstore.ErrFormat).
//
// # Usage
//
//	pc, _ := net.ListenPacket("udp", "127.0.0.1:7701")
//	n, err := node.New(node.Config{
//		Name: "n1", DataDir: dir, PacketConn: pc,
//		Entrance: netip.MustParseAddrPort("127.0.0.1:7700"),
//		Logger:   slog.Default(),
//	})
//	if err != nil { ... }
//	go func() { <-ctx.Done(); n.Close() }()
//	err = n.Run(ctx) // blocks; nil on a clean stop
//
// In-process callers can use Do (client requests) and Admin (admin
// requests) directly; over the network they arrive as proto.KindClient and
// proto.KindAdmin.
//
// # Testing
//
// The tests run clusters of runtimes in-process over real loopback UDP
// sockets (some wrapped in internal/faultnet). RAFTKV_NODE_LOG=1 prints the
// nodes' logs. BenchmarkPut3Nodes runs with fsync on; RAFTKV_BENCH_NOSYNC=1
// turns it off. BenchmarkEarlySend compares puts with and without the
// leader's early send.
package node
