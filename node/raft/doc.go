// Package raft is raftkv's Raft consensus core: a pure, deterministic state
// machine in the shape of etcd-io/raft's RawNode (our own code). It has no
// goroutines, clocks, I/O or global randomness: time is Tick, input is Step
// and the local request methods, output is a Ready batch acknowledged with
// Advance, and randomness comes from Config.Rand. That is what makes seeded
// deterministic simulation (package raftsim) possible.
//
// Features: randomized election timeouts, PreVote and CheckQuorum (on by
// default), a no-op entry at the start of each term and the current-term
// commit rule (Raft paper figure 8), pipelined and batched MsgApp with a
// per-follower inflight limit, probing and fast backtracking by conflict
// term, chunked and resumable snapshot transfer with a CRC-32C checksum,
// single-server membership changes with learners (applied when the
// application applies the entry; one at a time; none before the leader
// applied an entry of its term), leadership transfer (MsgTimeoutNow), and
// linearizable reads by ReadIndex.
//
// # Usage
//
// A founding member's Storage is bootstrapped with a snapshot at index 1
// carrying the founders, then the node is created and driven by one
// goroutine:
//
//	ms := raft.NewMemoryStorage()
//	ms.ApplySnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: 1, Term: 1,
//		ConfState: raft.ConfState{Voters: []uint64{1, 2, 3}}}})
//	ms.SetHardState(raft.HardState{Term: 1, Commit: 1})
//	n, err := raft.NewNode(raft.Config{ID: 1, Storage: ms, Rand: rand.New(rand.NewPCG(1, 2))})
//
//	for {
//		// on a timer: n.Tick(); on a message: n.Step(m); on a request: n.Propose(data)
//		for n.HasReady() {
//			rd := n.Ready()
//			early, late := rd.SplitMessages()
//			send(early)                           // may overlap the write (a leader's replication)
//			ms.ApplySnapshot(rd.Snapshot)         // if !rd.Snapshot.IsEmpty()
//			ms.Append(rd.Entries)
//			ms.SetHardState(rd.HardState)         // if !rd.HardState.IsEmpty(); fsync if rd.MustSync
//			send(late)                            // only after the writes are durable
//			apply(rd.CommittedEntries)            // EntryConfChange: cs := n.ApplyConfChange(cc); persist cs
//			answer(rd.ReadStates)                 // once applied >= ReadState.Index
//			n.Advance(rd)
//		}
//	}
//
// Ready and Advance strictly alternate. Proposals made between two Ready
// calls are sent to each follower in one MsgApp (batching). Entries with Type EntryNormal and
// empty Data are leader no-ops: the application skips them. A node that
// joins later starts with an empty Storage; it is not a voter, so it never
// campaigns, and the leader catches it up (usually by snapshot) once it was
// added as a learner.
//
// On restart, Config.Applied is the application's applied index and
// Storage.InitialState must return the ConfState as of that index (the
// application persists the ConfState from ApplyConfChange together with its
// applied index). ConfChangeAddLearner of an existing voter is a no-op, so
// re-applying old changes after a restart converges to the same membership,
// and a node does not campaign while committed conf changes are unapplied.
// Compact the log only up to an index covered by a snapshot (CreateSnapshot
// first): a follower that needs compacted entries gets Storage.Snapshot().
//
// # Safety notes
//
// Appends never truncate an entry that matches (same index and term), so
// duplicated and reordered MsgApps are harmless; stale acknowledgements and
// rejections are recognised and ignored. A follower's commit index is
// min(leader commit, last index of the new entries), and heartbeats carry
// min(match, commit). Candidates count votes only from voters of their own
// configuration; a node that considers itself a learner still answers vote
// requests, since it may already be a voter in the candidate's (newer)
// configuration.
//
// # Tests
//
// Named tests cover the paper's claims and the safety checklist
// (TestFig8CurrentTermCommitRule, TestVoterLexicographicUpToDate,
// TestDuplicateAndReorderedAppendNeverTruncatesMatched, ...), using white-box
// steps or a small synchronous in-package network (network_test.go). TestChaos
// runs a randomized cluster (reordering, duplication, loss, partitions,
// crashes, compaction, membership churn) for a fixed set of seeds;
// RAFT_CHAOS_SEEDS=N runs N random seeds instead, RAFT_CHAOS_SEED=S replays
// one, and RAFT_CHAOS_STEPS sets the number of faulty steps (default 4000). FuzzStep feeds random well-formed messages to a node. The full
// deterministic simulator lives in package raftsim.
// BenchmarkProposeCommit3Nodes measures committed proposals per second and
// allocations per proposal. Set RAFT_TEST_LOG=1 to see Debug logs.
package raft
