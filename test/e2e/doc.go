// Package e2e holds integration tests that run raftkv as real processes:
// TestMain builds raftd, entrance and raftctl (without -race) into a
// temporary directory, and each test starts an entrance and three raftd on
// free 127.0.0.1 ports, with data under t.TempDir(). Processes are stopped
// (SIGTERM, then SIGKILL) by pid in t.Cleanup; when a test fails, the tail of
// every process's log is printed.
//
// The tests: a cluster forms and serves raftctl (TestClusterFormsAndServes),
// leader SIGKILL and catch-up (TestLeaderKillFailover), SIGKILL of every node
// during writes (TestKillAllDuringWrites), porcupine-checked histories while
// nodes are killed and restarted (TestLinearizableUnderCrashes; on failure
// it writes an HTML visualization and prints its path), compare-and-swaps
// retried across leader kills (TestCASAcrossLeaderKill), the data path
// without the entrance (TestEntranceDownEndpointsServe), and `make run`'s
// deploy/local-cluster.sh, which must build, serve raftctl and stop every
// process on Ctrl-C (TestLocalClusterScript). The operations commands:
// raftctl status shows three nodes that name one leader, transfer-leader
// moves leadership to a follower, bench put/get runs through the binary,
// and stop-node --keep-membership stops a follower that rejoins on restart
// (TestStatusAndTransferLeader); stop-node on the leader (3 -> 2 voters)
// and then on a follower (2 -> 1) while a client writes: each process exits
// 0, is listed as removed, and no acknowledged write is lost
// (TestStopNodeLeaderAndFollower). Autopilot: with --voters 3 and short
// liveness flags, a SIGKILLed follower voter is listed down, then removed,
// and the learner n4 is promoted while writes keep succeeding
// (TestAutopilotRemovesKilledNode). A fourth and fifth node join during
// writes on a cluster that compacts every 50 entries, install a snapshot,
// catch up (serializable reads see every acknowledged write) and become
// voters; raftctl status shows log size and rudp counters
// (TestJoinDuringWritesCatchUpBySnapshot). A cluster snapshotting every 20
// entries is SIGKILLed three times during writes: it restarts, loses no
// acknowledged write, and keeps one snapshot file per node
// (TestKillDuringSnapshots). With --secret-file, raftctl with
// a wrong or no secret exits 4 (as `raftctl help exit-codes` documents) and
// changes nothing, and a raftd with a wrong secret is never admitted
// (TestAuthentication). On failure the daemons' logs
// and the clients' debug log are kept in os.TempDir().
//
// # Usage
//
//	go test ./test/e2e/
//	go test ./test/e2e/ -run TestLinearizable -v
//	RAFTKV_E2E_BENCH=1 go test ./test/e2e/ -run TestMeasure -v
//
// RAFTKV_E2E_BENCH=1 enables the measurements: the time from a leader's
// SIGKILL to the first acknowledged write (median of seven runs) and put/get
// throughput at 1 and 64 concurrent clients.
package e2e
