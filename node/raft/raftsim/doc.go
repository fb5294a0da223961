// Package raftsim is a deterministic simulator for the Raft core in
// node/raft: clusters of cores, each with a simulated disk and state
// machine, over a simulated network, driven by one goroutine and one
// seeded random source, with Raft's safety invariants checked after every
// step. The same seed replays the same run, event for event.
//
// # Model
//
// Time is virtual (milliseconds). An event queue ordered by (time,
// sequence number) holds node ticks, message deliveries and scheduled
// actions (faults, client requests). Each node ticks every TickInterval
// (10 ms by default, skewed per node by TickSkew or SetTickInterval).
//
// Each node is a raft.Node, a disk (a raft.MemoryStorage holding only what
// processed Readies wrote, that is what was fsynced) and a StateMachine.
// After every input the node's Ready is handled exactly in the order of
// the application loop of node.Node: send the early messages
// (raft.Ready.SplitMessages: a leader's MsgApp, MsgHeartbeat and MsgSnap
// leave while its own write is in progress, thesis §10.2.1); persist
// snapshot, entries and hard state; send the other messages; install the
// snapshot into the state machine and apply committed entries
// (configuration changes through ApplyConfChange, whose ConfState is
// persisted); answer read states; Advance. With Config.SnapshotEvery the node snapshots its state machine
// every K applied entries (CreateSnapshot, then Compact).
//
// A crash drops the core, the state machine and everything else in memory
// and keeps the disk. CrashAt crashes a node inside its next Ready: before
// the write (the Ready is lost, as when power fails before fsync; a random
// prefix of its early messages, or all of them with CrashAfterEarlySend,
// has left, so followers may hold entries their leader lost), after the
// write but before sending the other messages, or after sending but
// before applying.
// Restart builds a fresh state machine, restores the disk's snapshot into
// it and starts a core with Applied = the snapshot's index: the committed
// log tail is applied again (the simulated application does not persist
// its applied index apart from snapshots).
//
// Messages are encoded with msgpack when sent and decoded on delivery, so
// nodes share no memory and the wire tags are exercised. Each directed
// link drops, duplicates and delays messages (LinkConfig); links can be
// cut one way (Block) or both (Partition, Isolate) and healed. A message
// is lost when its link is cut at send or at delivery time; the sender is
// then told ReportUnreachable after UnreachableAfter, as the transport
// would after its retries.
//
// # Invariants
//
// Checked after every step (see checker.go): at most one leader per term;
// log matching over the persisted logs; leader completeness; state
// machine safety (entries applied in order, without gaps, only once
// durably committed, equal on all nodes; snapshots at the same index
// equal); a committed entry never changes, also across crashes; terms,
// votes and commit indexes on disk never regress and a vote never changes
// within a term; vote grants and append acks leave only once durable,
// and a leader never announces a commit index beyond its durable log; a
// ReadIndex answer is never below what was known committed when the read
// was issued. The first violation stops the run; Report prints it with
// the seed, the replay command and the last Config.History events.
// CheckLiveness checks progress after faults heal.
//
// # Usage
//
//	c, err := raftsim.New(raftsim.Config{Seed: 42, Nodes: 3, Name: "TestX"})
//	if err != nil { ... }
//	lead := c.WaitLeader(10 * c.ElectionTimeout())
//	c.Propose(lead, []byte("x"), func(r raftsim.ProposeResult) { ... r.Index, r.Result ... })
//	c.Isolate(lead)
//	c.RunTicks(50)
//	c.Heal()
//	if err := c.CheckLiveness(5000); err != nil { t.Fatal(err, c.Report()) }
//
// A state machine plugs in through Config.NewStateMachine (one instance per
// node and incarnation); the simulator prefixes each proposed command with
// an 8-byte proposal ID and strips it before Apply. Duplicated network
// messages can make a forwarded proposal commit twice: exactly-once
// semantics are the state machine's job (client sessions). Clients are code scheduled with After: Propose
// answers with the index, term and Apply result on the proposing node;
// ReadIndex answers once the node has applied up to the confirmed read
// index, handing over the node's state machine; both answer
// ErrNodeCrashed if the node dies first, and never if the core dropped
// the request (clients keep their own timeouts). StartNemesis injects
// random faults (partitions, crashes, lossy links, tick rates, membership
// changes, leadership transfers) until Stop.
//
// # Running the tests
//
//	go test ./node/raft/raftsim                          # scenarios + fixed seeds
//	RAFT_SIM_SEEDS=200 go test ./node/raft/raftsim -run TestSimulation    # 200 extra random seeds
//	RAFT_SIM_SEED=0x1f3a go test ./node/raft/raftsim -run TestSimulation -v # replay one seed
//	go test ./node/raft/raftsim -run TestSimulation -seed=0x1f3a          # same, as a flag
//
// RAFT_SIM_SEED (or -seed) also replays a scenario test under another seed;
// RAFT_SIM_TIME=40000 lengthens each randomized run to 40 s of virtual time
// (soak). Without them TestSimulation runs 24 fixed seeds.
//
// The scenario tests follow the MIT 6.824 and TinyKV suites: elections
// (TestInitialElection, TestReElection, TestManyElections,
// TestNoQuorumNoLeader, TestPreVoteRejoinDoesNotDisrupt,
// TestCheckQuorumIsolatedLeaderStepsDown), agreement (TestBasicAgree,
// TestFollowerFailure, TestLeaderFailure, TestFailAgree, TestFailNoAgree,
// TestConcurrentProposals, TestRejoin, TestBackup, TestCount, TestBytes),
// persistence (TestPersist1/2/3, TestFigure8, TestFigure8Unreliable,
// TestUnreliableAgree, TestReliableChurn, TestUnreliableChurn), snapshots
// (TestSnapshotBasic, TestSnapshotInstall, TestSnapshotInstallUnreliable,
// TestSnapshotInstallCrash, TestSnapshotInstallUnreliableCrash,
// TestSnapshotAllCrash, TestSnapshotInit,
// TestSnapshotStaleChunkAckAfterFollowerRestart), early send
// (TestLeaderCrashAfterEarlySend, TestFollowerAckWaitsForItsWrite,
// TestSingleVoterCommitWaitsForItsWrite), membership and
// leadership (TestLeaderTransfer, TestLeaderTransferToLaggingFollower,
// TestLeaderTransferToDeadNode, TestLearnerAddCatchUpPromoteRemove,
// TestRemoveLeader, TestConfChangeRacingPartition) and reads
// (TestReadIndexPartitionedOldLeaderNeverStale). TestChecker* plant bugs
// to prove the checker fails; TestDeterministicReplay runs one seed twice
// and compares the runs event for event.
package raftsim
