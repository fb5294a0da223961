package raft

import "fmt"

// ProgressState is how the leader currently replicates to one follower.
type ProgressState uint8

const (
	// ProgressProbe: the follower's log is unknown; send one MsgApp at a
	// time and wait for the answer (or the next heartbeat response).
	ProgressProbe ProgressState = iota
	// ProgressReplicate: the follower is in sync; stream MsgApps
	// optimistically up to the inflight limit.
	ProgressReplicate
	// ProgressSnapshot: the follower needs entries we compacted; a snapshot
	// is being sent in chunks.
	ProgressSnapshot
)

func (s ProgressState) String() string {
	switch s {
	case ProgressProbe:
		return "probe"
	case ProgressReplicate:
		return "replicate"
	case ProgressSnapshot:
		return "snapshot"
	}
	return "unknown"
}

// Progress is the leader's view of one member's log.
type Progress struct {
	// Match is the highest index known to be replicated on the member.
	// Invariant: Match < Next.
	Match uint64
	// Next is the index of the next entry to send.
	Next  uint64
	State ProgressState
	// Paused, in ProgressProbe, says a probe is in flight: send nothing
	// more until it is answered or a heartbeat response arrives.
	Paused bool
	// PendingSnapshot is the index of the snapshot being sent
	// (ProgressSnapshot only).
	PendingSnapshot uint64
	// RecentActive says the member was heard from since the last
	// CheckQuorum round.
	RecentActive bool
	// IsLearner says the member does not vote.
	IsLearner bool

	inflights *inflights
	// matchAtBeat is Match when the previous heartbeat response arrived;
	// no progress over a whole heartbeat round means MsgApps were lost.
	matchAtBeat uint64
	// lastAtBeat is the leader's last index at that heartbeat response.
	lastAtBeat uint64
	// snap is the snapshot transfer in progress (ProgressSnapshot only).
	snap *snapshotSend
}

func (pr *Progress) String() string {
	return fmt.Sprintf("%s match=%d next=%d learner=%t paused=%t pendingSnap=%d inflight=%d",
		pr.State, pr.Match, pr.Next, pr.IsLearner, pr.Paused, pr.PendingSnapshot, pr.inflights.count)
}

func (pr *Progress) resetState(state ProgressState) {
	pr.Paused = false
	pr.PendingSnapshot = 0
	pr.snap = nil
	pr.State = state
	pr.inflights.reset()
}

func (pr *Progress) becomeProbe() {
	if pr.State == ProgressSnapshot {
		pending := pr.PendingSnapshot
		pr.resetState(ProgressProbe)
		pr.Next = max(pr.Match+1, pending+1)
	} else {
		pr.resetState(ProgressProbe)
		pr.Next = pr.Match + 1
	}
}

func (pr *Progress) becomeReplicate() {
	pr.resetState(ProgressReplicate)
	pr.Next = pr.Match + 1
}

func (pr *Progress) becomeSnapshot(snapi uint64) {
	pr.resetState(ProgressSnapshot)
	pr.PendingSnapshot = snapi
}

// maybeUpdate records that the member has everything up to n. It returns
// false for a stale acknowledgement (n <= Match).
func (pr *Progress) maybeUpdate(n uint64) bool {
	updated := false
	if pr.Match < n {
		pr.Match = n
		updated = true
		pr.Paused = false
	}
	pr.Next = max(pr.Next, n+1)
	return updated
}

// optimisticUpdate advances Next after sending entries up to n.
func (pr *Progress) optimisticUpdate(n uint64) { pr.Next = n + 1 }

// maybeDecrTo handles a rejection of the MsgApp whose previous index was
// rejected; matchHint is where the follower (or our own log) suggests to
// continue. It returns false if the rejection is stale.
func (pr *Progress) maybeDecrTo(rejected, matchHint uint64) bool {
	if pr.State == ProgressReplicate {
		// Anything at or below Match was acknowledged already: stale.
		if rejected <= pr.Match {
			return false
		}
		pr.Next = pr.Match + 1
		return true
	}
	// In probe only the last probe (Next-1) matters.
	if pr.Next-1 != rejected {
		return false
	}
	pr.Next = max(min(rejected, matchHint+1), pr.Match+1)
	pr.Paused = false
	return true
}

// isPaused reports whether nothing more should be sent right now.
func (pr *Progress) isPaused() bool {
	switch pr.State {
	case ProgressProbe:
		return pr.Paused
	case ProgressReplicate:
		return pr.inflights.full()
	default:
		return true
	}
}

// inflights is a ring of the last indices of unacknowledged MsgApps.
type inflights struct {
	start  int
	count  int
	buffer []uint64
	size   int
}

func newInflights(size int) *inflights { return &inflights{size: size} }

func (in *inflights) add(last uint64) {
	if in.full() {
		panic(fmt.Sprintf("raft: add to full inflights (size %d)", in.size))
	}
	next := in.start + in.count
	if next >= in.size {
		next -= in.size
	}
	if next >= len(in.buffer) {
		in.grow()
	}
	in.buffer[next] = last
	in.count++
}

func (in *inflights) grow() {
	n := max(1, len(in.buffer)*2)
	n = min(n, in.size)
	b := make([]uint64, n)
	copy(b, in.buffer)
	in.buffer = b
}

// freeLE frees every inflight with last index <= to.
func (in *inflights) freeLE(to uint64) {
	if in.count == 0 || to < in.buffer[in.start] {
		return
	}
	idx := in.start
	i := 0
	for ; i < in.count; i++ {
		if to < in.buffer[idx] {
			break
		}
		idx++
		if idx >= in.size {
			idx -= in.size
		}
	}
	in.count -= i
	in.start = idx
	if in.count == 0 {
		in.start = 0
	}
}

func (in *inflights) freeFirstOne() {
	if in.count > 0 {
		in.freeLE(in.buffer[in.start])
	}
}

func (in *inflights) full() bool { return in.count == in.size }

func (in *inflights) reset() {
	in.count = 0
	in.start = 0
}
