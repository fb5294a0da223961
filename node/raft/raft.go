package raft

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
)

// campaignType says why a node starts an election.
type campaignType uint8

const (
	// campaignPreElection runs the PreVote phase first (thesis §9.6).
	campaignPreElection campaignType = iota
	// campaignElection starts a real election (term+1).
	campaignElection
	// campaignTransfer is a forced election after MsgTimeoutNow: it skips
	// PreVote, and voters ignore their CheckQuorum lease for it.
	campaignTransfer
)

// campaignTransferContext marks the MsgVote of a forced campaign.
var campaignTransferContext = []byte("CampaignTransfer")

type voteResult uint8

const (
	votePending voteResult = iota
	voteLost
	voteWon
)

type stepFunc func(r *raft, m Message) error

// raft is the protocol state machine. It is driven only through step and
// tick; its outputs accumulate in msgs and readStates and are handed out
// by Node.Ready.
type raft struct {
	id uint64

	// Term and Vote are the persistent HardState (with raftLog.committed).
	Term uint64
	Vote uint64

	raftLog *raftLog

	maxMsgSize    uint64
	maxInflight   int
	snapChunkSize uint64

	// cs is the current membership (Voters and Learners sorted, disjoint).
	cs ConfState
	// prs has one Progress per member (voters and learners, self included
	// when a member). ids lists its keys in ascending order so that
	// messages are emitted in a deterministic order.
	prs map[uint64]*Progress
	ids []uint64

	state StateType
	// votes records vote answers in the current (pre-)election.
	votes map[uint64]bool

	msgs []Message
	// msgsCap is the length of the last batch of msgs handed out: the
	// next batch starts with that capacity.
	msgsCap    int
	readStates []ReadState
	// pendingBcast says proposals were appended but not yet sent.
	pendingBcast bool

	// lead is the leader of the current term, or None.
	lead uint64
	// leadTransferee is the target of a leadership transfer in progress.
	leadTransferee uint64
	// pendingConfIndex is the index of the last conf change entry this
	// leader may have in flight; a new one is refused while
	// pendingConfIndex > applied. Set to lastIndex on becoming leader, so
	// no change is proposed before this term's no-op is applied.
	pendingConfIndex uint64

	readOnly *readOnly
	// pendingReadIndexMessages wait for the leader's first commit in its term.
	pendingReadIndexMessages []Message

	// snapRecv accumulates the chunks of an incoming snapshot.
	snapRecv *snapshotRecv

	// timeoutNowTerm is the term in which a MsgTimeoutNow arrived while
	// conf changes were committed but not applied; the forced campaign
	// runs once they are (Node.Advance), if still in that term.
	timeoutNowTerm uint64

	// electionElapsed counts ticks since the last election timeout reset
	// (follower/candidate), or since the last CheckQuorum round (leader).
	electionElapsed int
	// heartbeatElapsed counts ticks since the last heartbeat (leader).
	heartbeatElapsed int

	checkQuorum bool
	preVote     bool

	heartbeatTimeout int
	electionTimeout  int
	// randomizedElectionTimeout is in [electionTimeout, 2*electionTimeout).
	randomizedElectionTimeout int

	rand   *rand.Rand
	tick   func()
	step   stepFunc
	logger *slog.Logger

	matchBuf []uint64 // scratch for committedIndex
}

func newRaft(c *Config) (*raft, error) {
	rl, err := newLog(c.Storage, c.MaxCommittedSizePerReady)
	if err != nil {
		return nil, err
	}
	hs, cs, err := c.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raft: storage initial state: %w", err)
	}
	r := &raft{
		id:               c.ID,
		raftLog:          rl,
		maxMsgSize:       c.MaxSizePerMsg,
		maxInflight:      c.MaxInflightMsgs,
		snapChunkSize:    c.SnapshotChunkBytes,
		prs:              make(map[uint64]*Progress),
		checkQuorum:      !c.DisableCheckQuorum,
		preVote:          !c.DisablePreVote,
		heartbeatTimeout: c.HeartbeatTicks,
		electionTimeout:  c.ElectionTicks,
		rand:             c.Rand,
		logger:           c.Logger.With("node_id", fmt.Sprintf("%016x", c.ID)),
		readOnly:         newReadOnly(),
	}
	if err := validateConfState(cs); err != nil {
		return nil, fmt.Errorf("raft: storage conf state: %w", err)
	}
	r.applyConfState(cs)
	if !hs.IsEmpty() {
		if hs.Commit < r.raftLog.committed || hs.Commit > r.raftLog.lastIndex() {
			return nil, fmt.Errorf("raft: hard state commit %d out of range [%d, %d]", hs.Commit, r.raftLog.committed, r.raftLog.lastIndex())
		}
		r.raftLog.committed = hs.Commit
		r.Term = hs.Term
		r.Vote = hs.Vote
	}
	if c.Applied > 0 {
		if c.Applied > r.raftLog.committed || c.Applied < r.raftLog.applied {
			return nil, fmt.Errorf("raft: applied %d out of range [%d, %d]", c.Applied, r.raftLog.applied, r.raftLog.committed)
		}
		r.raftLog.applied = c.Applied
	}
	r.becomeFollower(r.Term, None)
	r.logger.Info("raft node started", "term", r.Term, "commit", r.raftLog.committed,
		"applied", r.raftLog.applied, "last_index", r.raftLog.lastIndex(), "voters", r.cs.Voters, "learners", r.cs.Learners)
	return r, nil
}

func (r *raft) hardState() HardState {
	return HardState{Term: r.Term, Vote: r.Vote, Commit: r.raftLog.committed}
}

func (r *raft) softState() SoftState { return SoftState{Lead: r.lead, RaftState: r.state} }

// send queues m, filling From and (for non-vote messages) Term.
func (r *raft) send(m Message) {
	if m.From == None {
		m.From = r.id
	}
	if r.msgs == nil && r.msgsCap > 0 {
		r.msgs = make([]Message, 0, r.msgsCap)
	}
	switch m.Type {
	case MsgVote, MsgVoteResp, MsgPreVote, MsgPreVoteResp:
		if m.Term == 0 {
			panic(fmt.Sprintf("raft: term should be set when sending %s", m.Type))
		}
	case MsgProp, MsgReadIndex:
		// Forwarded to the leader as if local: no term.
		m.Term = 0
	default:
		if m.Term != 0 {
			panic(fmt.Sprintf("raft: term should not be set when sending %s (was %d)", m.Type, m.Term))
		}
		m.Term = r.Term
	}
	r.msgs = append(r.msgs, m)
}

// ---- membership ----

func validateConfState(cs ConfState) error {
	seen := make(map[uint64]bool, len(cs.Voters)+len(cs.Learners))
	for _, ids := range [][]uint64{cs.Voters, cs.Learners} {
		for _, id := range ids {
			if id == None {
				return errors.New("raft: conf state contains node ID 0")
			}
			if seen[id] {
				return fmt.Errorf("raft: conf state lists node %d twice", id)
			}
			seen[id] = true
		}
	}
	return nil
}

// applyConfState makes cs the membership, keeping the progress of members
// that stay.
func (r *raft) applyConfState(cs ConfState) {
	cs = cloneConfState(cs)
	slices.Sort(cs.Voters)
	slices.Sort(cs.Learners)
	r.cs = cs
	next := r.raftLog.lastIndex() + 1
	old := r.prs
	r.prs = make(map[uint64]*Progress, len(cs.Voters)+len(cs.Learners))
	r.ids = r.ids[:0]
	add := func(id uint64, learner bool) {
		pr, ok := old[id]
		if !ok {
			pr = &Progress{Next: next, inflights: newInflights(r.maxInflight), RecentActive: true}
			if id == r.id {
				pr.Match = next - 1
			}
		}
		pr.IsLearner = learner
		r.prs[id] = pr
		r.ids = append(r.ids, id)
	}
	for _, id := range cs.Voters {
		add(id, false)
	}
	for _, id := range cs.Learners {
		add(id, true)
	}
	slices.Sort(r.ids)
}

func (r *raft) isVoter(id uint64) bool {
	pr, ok := r.prs[id]
	return ok && !pr.IsLearner
}

// promotable reports whether this node may campaign: it is a voter and has
// no snapshot waiting to be persisted.
func (r *raft) promotable() bool {
	return r.isVoter(r.id) && !r.raftLog.hasUnstableSnapshot()
}

func (r *raft) quorum() int { return len(r.cs.Voters)/2 + 1 }

// committedIndex returns the largest index replicated on a quorum of voters.
func (r *raft) committedIndex() uint64 {
	n := len(r.cs.Voters)
	if n == 0 {
		return 0
	}
	r.matchBuf = r.matchBuf[:0]
	for _, id := range r.cs.Voters {
		r.matchBuf = append(r.matchBuf, r.prs[id].Match)
	}
	slices.Sort(r.matchBuf)
	// The quorum-th largest.
	return r.matchBuf[n-r.quorum()]
}

func (r *raft) applyConfChange(cc ConfChange) ConfState {
	cs := cloneConfState(r.cs)
	id := cc.NodeID
	if id != None {
		switch cc.Type {
		case ConfChangeAddLearner:
			// Demotion is not supported: adding an existing voter as a
			// learner changes nothing (so re-applying an old change after
			// a restart cannot demote a promoted node).
			if !slices.Contains(cs.Voters, id) && !slices.Contains(cs.Learners, id) {
				cs.Learners = append(cs.Learners, id)
			}
		case ConfChangeAddVoter:
			cs.Learners = slices.DeleteFunc(cs.Learners, func(x uint64) bool { return x == id })
			if !slices.Contains(cs.Voters, id) {
				cs.Voters = append(cs.Voters, id)
			}
		case ConfChangeRemoveNode:
			cs.Learners = slices.DeleteFunc(cs.Learners, func(x uint64) bool { return x == id })
			cs.Voters = slices.DeleteFunc(cs.Voters, func(x uint64) bool { return x == id })
		}
	}
	if len(cs.Voters) == 0 && len(r.cs.Voters) > 0 {
		// Never leave a cluster without voters; the proposal check makes
		// this unreachable for changes proposed through this core.
		r.logger.Error("conf change would remove the last voter: ignored", "type", cc.Type, "peer", id)
		return cloneConfState(r.cs)
	}
	r.applyConfState(cs)
	r.logger.Info("conf change applied", "term", r.Term, "type", cc.Type, "peer", id, "voters", r.cs.Voters, "learners", r.cs.Learners)

	if r.leadTransferee != None && !r.isVoter(r.leadTransferee) {
		r.abortLeaderTransfer()
	}
	if r.state == StateLeader {
		if !r.isVoter(r.id) {
			// The leader was removed: step down now that the change is
			// applied (thesis §4.2.2). Tell the others the commit index
			// first, and hand over to the most up-to-date voter.
			r.bcastAppend()
			r.handOverAfterRemoval()
			r.becomeFollower(r.Term, None)
		} else {
			// The quorum may have shrunk: pending entries may commit.
			if r.maybeCommit() {
				r.afterCommit()
			}
			r.bcastAppend()
		}
	}
	return cloneConfState(r.cs)
}

// handOverAfterRemoval sends MsgTimeoutNow to a remaining voter that has
// the whole log, so a new leader is elected without waiting for a timeout.
func (r *raft) handOverAfterRemoval() {
	last := r.raftLog.lastIndex()
	for _, id := range r.cs.Voters {
		if id != r.id && r.prs[id].Match == last {
			r.send(Message{To: id, Type: MsgTimeoutNow})
			return
		}
	}
}

// ---- role changes ----

func (r *raft) reset(term uint64) {
	if r.Term != term {
		r.Term = term
		r.Vote = None
	}
	r.lead = None
	r.electionElapsed = 0
	r.heartbeatElapsed = 0
	r.resetRandomizedElectionTimeout()
	r.abortLeaderTransfer()
	r.votes = make(map[uint64]bool)
	last := r.raftLog.lastIndex()
	for _, id := range r.ids {
		pr := r.prs[id]
		*pr = Progress{Next: last + 1, IsLearner: pr.IsLearner, inflights: pr.inflights}
		pr.inflights.reset()
		if id == r.id {
			pr.Match = last
		}
	}
	r.pendingConfIndex = 0
	r.readOnly = newReadOnly()
	r.pendingReadIndexMessages = nil
}

func (r *raft) resetRandomizedElectionTimeout() {
	r.randomizedElectionTimeout = r.electionTimeout + r.rand.IntN(r.electionTimeout)
}

func (r *raft) logRole(prev StateType) {
	if prev != r.state {
		r.logger.Info("became "+r.state.String(), "term", r.Term, "leader", r.lead)
	} else {
		r.logger.Debug("stays "+r.state.String(), "term", r.Term, "leader", r.lead)
	}
}

func (r *raft) becomeFollower(term, lead uint64) {
	prev := r.state
	r.step = stepFollower
	r.reset(term)
	r.tick = r.tickElection
	r.lead = lead
	r.state = StateFollower
	r.logRole(prev)
}

func (r *raft) becomePreCandidate() {
	if r.state == StateLeader {
		panic("raft: invalid transition leader -> pre-candidate")
	}
	prev := r.state
	// PreVote changes neither Term nor Vote.
	r.step = stepCandidate
	r.votes = make(map[uint64]bool)
	r.tick = r.tickElection
	r.lead = None
	r.state = StatePreCandidate
	r.logRole(prev)
}

func (r *raft) becomeCandidate() {
	if r.state == StateLeader {
		panic("raft: invalid transition leader -> candidate")
	}
	prev := r.state
	r.step = stepCandidate
	r.reset(r.Term + 1)
	r.tick = r.tickElection
	r.Vote = r.id
	r.state = StateCandidate
	r.logRole(prev)
}

func (r *raft) becomeLeader() {
	if r.state == StateFollower {
		panic("raft: invalid transition follower -> leader")
	}
	prev := r.state
	r.step = stepLeader
	r.reset(r.Term)
	r.tick = r.tickHeartbeat
	r.lead = r.id
	r.state = StateLeader
	if pr := r.prs[r.id]; pr != nil {
		pr.becomeReplicate()
		pr.RecentActive = true
	}
	// No conf change may be proposed before this term's no-op is
	// applied: the leader must first commit an entry of its own term
	// (Ongaro, raft-dev 2015, single-server change bug).
	r.appendEntry(Entry{Type: EntryNormal})
	r.pendingConfIndex = r.raftLog.lastIndex()
	r.logRole(prev)
}

// ---- ticks ----

func (r *raft) tickElection() {
	r.electionElapsed++
	if r.promotable() && r.electionElapsed >= r.randomizedElectionTimeout {
		r.electionElapsed = 0
		r.hup(r.defaultCampaign())
	}
}

func (r *raft) defaultCampaign() campaignType {
	if r.preVote {
		return campaignPreElection
	}
	return campaignElection
}

func (r *raft) tickHeartbeat() {
	r.heartbeatElapsed++
	r.electionElapsed++
	if r.electionElapsed >= r.electionTimeout {
		r.electionElapsed = 0
		if r.checkQuorum {
			r.checkQuorumActive()
		}
		if r.state == StateLeader && r.leadTransferee != None {
			r.logger.Info("leadership transfer timed out", "term", r.Term, "peer", r.leadTransferee)
			r.abortLeaderTransfer()
		}
	}
	if r.state != StateLeader {
		return
	}
	if r.heartbeatElapsed >= r.heartbeatTimeout {
		r.heartbeatElapsed = 0
		r.bcastHeartbeat()
	}
}

// checkQuorumActive steps down if a quorum of voters was not heard from
// since the last round (thesis §6.2).
func (r *raft) checkQuorumActive() {
	active := 0
	for _, id := range r.cs.Voters {
		pr := r.prs[id]
		if id == r.id || pr.RecentActive {
			active++
		}
	}
	for _, id := range r.ids {
		if id != r.id {
			r.prs[id].RecentActive = false
		}
	}
	if active < r.quorum() {
		r.logger.Warn("leader cannot hear a quorum: stepping down", "term", r.Term, "active", active, "voters", len(r.cs.Voters))
		r.becomeFollower(r.Term, None)
	}
}

// ---- elections ----

func (r *raft) hup(t campaignType) {
	if r.state == StateLeader {
		r.logger.Debug("ignoring campaign: already leader", "term", r.Term)
		return
	}
	if !r.promotable() {
		r.logger.Debug("ignoring campaign: not a voter", "term", r.Term)
		return
	}
	if r.hasUnappliedConfChanges() {
		r.logger.Debug("ignoring campaign: unapplied conf change", "term", r.Term)
		return
	}
	r.campaign(t)
}

func (r *raft) hasUnappliedConfChanges() bool {
	if r.raftLog.applied >= r.raftLog.committed {
		return false
	}
	lo := max(r.raftLog.applied+1, r.raftLog.firstIndex())
	ents, err := r.raftLog.slice(lo, r.raftLog.committed+1, ^uint64(0))
	if err != nil {
		panic(fmt.Sprintf("raft: reading unapplied entries [%d,%d]: %v", lo, r.raftLog.committed, err))
	}
	for _, e := range ents {
		if e.Type == EntryConfChange {
			return true
		}
	}
	return false
}

func (r *raft) campaign(t campaignType) {
	var term uint64
	var voteMsg MessageType
	if t == campaignPreElection {
		r.becomePreCandidate()
		voteMsg = MsgPreVote
		term = r.Term + 1 // the term we would campaign in; not adopted
	} else {
		r.becomeCandidate()
		voteMsg = MsgVote
		term = r.Term
	}
	if res := r.poll(r.id, true); res == voteWon {
		// Single voter: won on our own vote.
		if t == campaignPreElection {
			r.campaign(campaignElection)
		} else {
			r.becomeLeader()
		}
		return
	}
	var ctx []byte
	if t == campaignTransfer {
		ctx = campaignTransferContext
	}
	li, lt := r.raftLog.lastIndex(), r.raftLog.lastTerm()
	for _, id := range r.cs.Voters {
		if id == r.id {
			continue
		}
		r.logger.Debug("sent vote request", "type", voteMsg, "term", term, "peer", id, "last_index", li, "last_term", lt)
		r.send(Message{Term: term, To: id, Type: voteMsg, Index: li, LogTerm: lt, Context: ctx})
	}
}

// poll records a vote and returns the election's outcome. Only voters in
// our configuration count.
func (r *raft) poll(id uint64, granted bool) voteResult {
	if !r.isVoter(id) {
		return votePending
	}
	if _, ok := r.votes[id]; !ok {
		r.votes[id] = granted
	}
	yes, no := 0, 0
	for _, v := range r.votes {
		if v {
			yes++
		} else {
			no++
		}
	}
	q := r.quorum()
	switch {
	case yes >= q:
		return voteWon
	case no > len(r.cs.Voters)-q:
		return voteLost
	}
	return votePending
}

func voteRespType(t MessageType) MessageType {
	if t == MsgVote {
		return MsgVoteResp
	}
	return MsgPreVoteResp
}

// ---- Step ----

// Step is the single entry point for every message, local or remote.
func (r *raft) Step(m Message) error {
	switch {
	case m.Term == 0:
		// Local message (or a forwarded MsgProp/MsgReadIndex).
	case m.Term > r.Term:
		if m.Type == MsgVote || m.Type == MsgPreVote {
			force := bytes.Equal(m.Context, campaignTransferContext)
			inLease := r.checkQuorum && r.lead != None && r.electionElapsed < r.electionTimeout
			if !force && inLease {
				// We heard from a leader within the minimum election
				// timeout: ignore the disruptive request (thesis §4.2.3).
				r.logger.Debug("ignored vote request within leader lease", "type", m.Type, "term", r.Term,
					"peer", m.From, "msg_term", m.Term, "leader", r.lead, "remaining_ticks", r.electionTimeout-r.electionElapsed)
				return nil
			}
		}
		switch {
		case m.Type == MsgPreVote:
			// Never change our term for a PreVote.
		case m.Type == MsgPreVoteResp && !m.Reject:
			// A granted PreVote carries the future term; we adopt it only
			// when the real election starts.
		default:
			r.logger.Debug("received message with higher term", "type", m.Type, "term", r.Term, "peer", m.From, "msg_term", m.Term)
			if m.Type == MsgApp || m.Type == MsgHeartbeat || m.Type == MsgSnap {
				r.becomeFollower(m.Term, m.From)
			} else {
				r.becomeFollower(m.Term, None)
			}
		}
	case m.Term < r.Term:
		if (r.checkQuorum || r.preVote) && (m.Type == MsgHeartbeat || m.Type == MsgApp) {
			// A leader with a stale term: answer so it learns our term and
			// steps down. Without this, a node whose term was raised (e.g.
			// by a partition) could be ignored forever since PreVote and
			// CheckQuorum keep it from disrupting (etcd issue #8501).
			r.send(Message{To: m.From, Type: MsgAppResp})
		} else if m.Type == MsgPreVote {
			r.send(Message{To: m.From, Term: r.Term, Type: MsgPreVoteResp, Reject: true})
		} else {
			r.logger.Debug("ignored message with lower term", "type", m.Type, "term", r.Term, "peer", m.From, "msg_term", m.Term)
		}
		return nil
	}

	switch m.Type {
	case MsgHup:
		r.hup(r.defaultCampaign())
		return nil
	case MsgVote, MsgPreVote:
		canVote := r.Vote == m.From ||
			(r.Vote == None && r.lead == None) ||
			(m.Type == MsgPreVote && m.Term > r.Term)
		if canVote && r.raftLog.isUpToDate(m.Index, m.LogTerm) {
			r.logger.Debug("granted vote", "type", m.Type, "term", r.Term, "peer", m.From, "msg_term", m.Term)
			r.send(Message{To: m.From, Term: m.Term, Type: voteRespType(m.Type)})
			if m.Type == MsgVote {
				r.electionElapsed = 0
				r.Vote = m.From
			}
		} else {
			r.logger.Debug("rejected vote", "type", m.Type, "term", r.Term, "peer", m.From, "msg_term", m.Term)
			r.send(Message{To: m.From, Term: r.Term, Type: voteRespType(m.Type), Reject: true})
		}
		return nil
	}
	return r.step(r, m)
}

func stepLeader(r *raft, m Message) error {
	switch m.Type {
	case MsgBeat:
		r.bcastHeartbeat()
		return nil
	case MsgProp:
		return r.handlePropose(m)
	case MsgReadIndex:
		if len(m.Entries) != 1 {
			return fmt.Errorf("raft: MsgReadIndex with %d entries, want 1", len(m.Entries))
		}
		if !r.committedEntryInCurrentTerm() {
			// The leader does not know the latest commit index until it has
			// committed an entry of its term: hold the request until then.
			r.pendingReadIndexMessages = append(r.pendingReadIndexMessages, m)
			return nil
		}
		r.sendReadIndexResponse(m)
		return nil
	}

	pr := r.prs[m.From]
	if pr == nil {
		r.logger.Debug("message from unknown peer ignored", "type", m.Type, "peer", m.From, "term", r.Term)
		return nil
	}
	switch m.Type {
	case MsgAppResp:
		r.handleAppendResponse(m, pr)
	case MsgHeartbeatResp:
		r.handleHeartbeatResponse(m, pr)
	case MsgSnapResp:
		r.handleSnapshotResponse(m, pr)
	case MsgUnreachable:
		switch pr.State {
		case ProgressReplicate:
			pr.becomeProbe()
		case ProgressSnapshot:
			pr.snap.rewind()
		}
		r.logger.Debug("peer unreachable", "peer", m.From, "progress", pr.String())
	case MsgTransferLeader:
		r.handleTransferLeader(m.From, pr)
	}
	return nil
}

func (r *raft) handlePropose(m Message) error {
	if len(m.Entries) == 0 {
		return errors.New("raft: empty proposal")
	}
	if r.prs[r.id] == nil {
		// Removed from the configuration but not yet stepped down.
		return ErrProposalDropped
	}
	if r.leadTransferee != None {
		r.logger.Debug("proposal dropped during leadership transfer", "term", r.Term, "peer", r.leadTransferee)
		return ErrProposalDropped
	}
	for _, e := range m.Entries {
		if e.Type != EntryNormal && e.Type != EntryConfChange {
			return fmt.Errorf("raft: proposal with unknown entry type %d", e.Type)
		}
	}
	ents := m.Entries
	if m.From != r.id {
		// From the network: appendEntry assigns Term and Index in place,
		// and a duplicated message may share this array.
		ents = slices.Clone(ents)
	}
	for i := range ents {
		if ents[i].Type != EntryConfChange {
			continue
		}
		var cc ConfChange
		var reason string
		if err := cc.Unmarshal(ents[i].Data); err != nil {
			reason = err.Error()
		} else if r.pendingConfIndex > r.raftLog.applied {
			if r.raftLog.zeroTermOnOutOfRange(r.raftLog.applied) < r.Term {
				reason = fmt.Sprintf("leader has not applied an entry of term %d yet (applied %d)", r.Term, r.raftLog.applied)
			} else {
				reason = fmt.Sprintf("conf change pending at %d (applied %d)", r.pendingConfIndex, r.raftLog.applied)
			}
		} else if err := r.checkConfChange(cc); err != nil {
			reason = err.Error()
		}
		if reason != "" {
			r.logger.Info("conf change refused", "term", r.Term, "reason", reason)
			if len(ents) == 1 {
				return fmt.Errorf("%w: %s", ErrProposalDropped, reason)
			}
			ents[i] = Entry{Type: EntryNormal}
			continue
		}
		r.pendingConfIndex = r.raftLog.lastIndex() + uint64(i) + 1
	}
	r.appendEntry(ents...)
	// Batching: proposals between two Ready calls go out in one MsgApp per
	// follower (flushAppends, called by Node.HasReady and Node.Ready).
	r.pendingBcast = true
	return nil
}

// flushAppends sends the MsgApps owed for proposals since the last flush.
func (r *raft) flushAppends() {
	if r.pendingBcast {
		r.pendingBcast = false
		if r.state == StateLeader {
			r.bcastAppend()
		}
	}
}

// checkConfChange validates cc against the current membership.
func (r *raft) checkConfChange(cc ConfChange) error {
	if cc.NodeID == None {
		return errors.New("conf change for node ID 0")
	}
	switch cc.Type {
	case ConfChangeAddLearner, ConfChangeAddVoter:
	case ConfChangeRemoveNode:
		if r.isVoter(cc.NodeID) && len(r.cs.Voters) == 1 {
			return errors.New("cannot remove the last voter")
		}
	default:
		return fmt.Errorf("unknown conf change type %d", cc.Type)
	}
	return nil
}

func (r *raft) committedEntryInCurrentTerm() bool {
	return r.raftLog.zeroTermOnOutOfRange(r.raftLog.committed) == r.Term
}

// appendEntry appends es (Term and Index are assigned) to the leader's log.
func (r *raft) appendEntry(es ...Entry) {
	li := r.raftLog.lastIndex()
	for i := range es {
		es[i].Term = r.Term
		es[i].Index = li + 1 + uint64(i)
	}
	li = r.raftLog.append(es...)
	if pr := r.prs[r.id]; pr != nil {
		pr.maybeUpdate(li)
	}
	if r.maybeCommit() {
		r.afterCommit()
	}
}

// maybeCommit advances the commit index to what a quorum has, if that
// entry is of the current term (figure 8).
func (r *raft) maybeCommit() bool {
	return r.raftLog.maybeCommit(r.committedIndex(), r.Term)
}

// afterCommit runs when the leader's commit index advanced.
func (r *raft) afterCommit() {
	if r.committedEntryInCurrentTerm() && len(r.pendingReadIndexMessages) > 0 {
		msgs := r.pendingReadIndexMessages
		r.pendingReadIndexMessages = nil
		for _, m := range msgs {
			r.sendReadIndexResponse(m)
		}
	}
}

func (r *raft) handleAppendResponse(m Message, pr *Progress) {
	pr.RecentActive = true
	if m.Reject {
		next := m.RejectHint
		if m.LogTerm > 0 {
			// Skip every entry of ours whose term is above the follower's
			// term at the hint: they cannot match.
			next, _ = r.raftLog.findConflictByTerm(m.RejectHint, m.LogTerm)
		}
		if pr.maybeDecrTo(m.Index, next) {
			r.logger.Debug("append rejected: backing off", "peer", m.From, "rejected", m.Index, "hint", m.RejectHint, "hint_term", m.LogTerm, "progress", pr.String())
			if pr.State == ProgressReplicate {
				pr.becomeProbe()
			}
			r.sendAppend(m.From)
		}
		return
	}
	if m.Index > r.raftLog.lastIndex() {
		// No follower can hold more of this term's log than its leader.
		r.logger.Error("append response beyond the last index ignored", "peer", m.From, "index", m.Index, "last_index", r.raftLog.lastIndex())
		return
	}
	wasPaused := pr.isPaused()
	if !pr.maybeUpdate(m.Index) {
		return // stale or duplicate acknowledgement
	}
	switch {
	case pr.State == ProgressProbe:
		pr.becomeReplicate()
	case pr.State == ProgressSnapshot && pr.Match >= pr.PendingSnapshot:
		r.logger.Debug("snapshot delivered: resuming replication", "peer", m.From, "progress", pr.String())
		pr.becomeProbe()
		pr.becomeReplicate()
	case pr.State == ProgressReplicate:
		pr.inflights.freeLE(m.Index)
	}
	if r.maybeCommit() {
		r.afterCommit()
		r.bcastAppend()
	} else if wasPaused {
		r.sendAppend(m.From)
	}
	// Fill the pipeline.
	for r.maybeSendAppend(m.From, false) {
	}
	if m.From == r.leadTransferee && pr.Match == r.raftLog.lastIndex() {
		r.logger.Info("transferee caught up: sending timeout-now", "term", r.Term, "peer", m.From)
		r.send(Message{To: m.From, Type: MsgTimeoutNow})
	}
}

func (r *raft) handleHeartbeatResponse(m Message, pr *Progress) {
	pr.RecentActive = true
	pr.Paused = false
	last := r.raftLog.lastIndex()
	switch pr.State {
	case ProgressReplicate:
		if pr.inflights.full() {
			pr.inflights.freeFirstOne()
		}
		// No progress over a whole heartbeat round although entries were
		// already outstanding at the previous one: MsgApps were lost.
		// Probe from Match+1 so they are resent without new proposals.
		if pr.Match < last && pr.Match == pr.matchAtBeat && pr.Match < pr.lastAtBeat {
			r.logger.Debug("no progress over a heartbeat round: resending", "peer", m.From, "progress", pr.String())
			pr.becomeProbe()
			r.sendAppend(m.From)
		}
	case ProgressProbe:
		if pr.Match < last {
			r.sendAppend(m.From)
		}
	case ProgressSnapshot:
		r.maybeResumeSnapshot(m.From, pr)
	}
	pr.matchAtBeat = pr.Match
	pr.lastAtBeat = last

	if len(m.Context) == 0 {
		return
	}
	acks := r.readOnly.recvAck(m.From, m.Context)
	if acks == nil {
		return
	}
	n := 0
	for _, id := range r.cs.Voters {
		if id == r.id || acks[id] {
			n++
		}
	}
	if n < r.quorum() {
		return
	}
	for _, rs := range r.readOnly.advance(m.Context) {
		r.respondReadIndex(rs.req, rs.index)
	}
}

func (r *raft) handleTransferLeader(transferee uint64, pr *Progress) {
	if pr.IsLearner {
		r.logger.Info("leadership transfer to a learner refused", "term", r.Term, "peer", transferee)
		return
	}
	if last := r.leadTransferee; last != None {
		if last == transferee {
			return // already in progress
		}
		r.abortLeaderTransfer()
	}
	if transferee == r.id {
		r.logger.Debug("leadership transfer to self ignored", "term", r.Term)
		return
	}
	r.logger.Info("leadership transfer started", "term", r.Term, "peer", transferee)
	// The transfer must finish within one election timeout.
	r.electionElapsed = 0
	r.leadTransferee = transferee
	if pr.Match == r.raftLog.lastIndex() {
		r.send(Message{To: transferee, Type: MsgTimeoutNow})
	} else {
		r.sendAppend(transferee)
	}
}

func (r *raft) abortLeaderTransfer() { r.leadTransferee = None }

func stepCandidate(r *raft, m Message) error {
	myResp := MsgVoteResp
	if r.state == StatePreCandidate {
		myResp = MsgPreVoteResp
	}
	switch m.Type {
	case MsgProp:
		return ErrProposalDropped
	case MsgApp:
		r.becomeFollower(m.Term, m.From)
		return r.handleAppendEntries(m)
	case MsgHeartbeat:
		r.becomeFollower(m.Term, m.From)
		r.handleHeartbeat(m)
	case MsgSnap:
		r.becomeFollower(m.Term, m.From)
		return r.handleSnapshot(m)
	case myResp:
		switch r.poll(m.From, !m.Reject) {
		case voteWon:
			if r.state == StatePreCandidate {
				r.campaign(campaignElection)
			} else {
				r.becomeLeader()
				r.bcastAppend()
			}
		case voteLost:
			r.becomeFollower(r.Term, None)
		}
	case MsgReadIndex, MsgTransferLeader:
		r.logger.Debug("no leader: message dropped", "type", m.Type, "term", r.Term)
	}
	return nil
}

func stepFollower(r *raft, m Message) error {
	switch m.Type {
	case MsgProp:
		if r.lead == None {
			return ErrProposalDropped
		}
		m.To = r.lead
		r.send(m)
	case MsgApp:
		r.electionElapsed = 0
		r.lead = m.From
		return r.handleAppendEntries(m)
	case MsgHeartbeat:
		r.electionElapsed = 0
		r.lead = m.From
		r.handleHeartbeat(m)
	case MsgSnap:
		r.electionElapsed = 0
		r.lead = m.From
		return r.handleSnapshot(m)
	case MsgTransferLeader:
		if r.lead == None {
			r.logger.Debug("no leader: transfer dropped", "term", r.Term)
			return nil
		}
		m.To = r.lead
		m.Term = 0 // send stamps our term
		r.send(m)
	case MsgTimeoutNow:
		if !r.promotable() {
			r.logger.Info("timeout-now ignored: not a voter", "term", r.Term, "peer", m.From)
			return nil
		}
		if r.hasUnappliedConfChanges() {
			// Campaign once they are applied (see maybeDeferredCampaign):
			// a removed leader hands over right after its removal commits.
			r.logger.Info("timeout-now received: campaigning after applying conf changes", "term", r.Term, "peer", m.From)
			r.timeoutNowTerm = r.Term
			return nil
		}
		r.logger.Info("timeout-now received: campaigning", "term", r.Term, "peer", m.From)
		// Leadership transfer: skip PreVote and the lease.
		r.hup(campaignTransfer)
	case MsgReadIndex:
		if r.lead == None {
			r.logger.Debug("no leader: read index dropped", "term", r.Term)
			return nil
		}
		m.To = r.lead
		r.send(m)
	case MsgReadIndexResp:
		if len(m.Entries) != 1 {
			return fmt.Errorf("raft: MsgReadIndexResp with %d entries, want 1", len(m.Entries))
		}
		r.readStates = append(r.readStates, ReadState{Index: m.Index, RequestCtx: m.Entries[0].Data})
	}
	return nil
}

// ---- follower handlers ----

func (r *raft) handleAppendEntries(m Message) error {
	if m.Index < r.raftLog.committed {
		r.send(Message{To: m.From, Type: MsgAppResp, Index: r.raftLog.committed})
		return nil
	}
	for i, e := range m.Entries {
		if e.Index != m.Index+1+uint64(i) || e.Term > m.Term || (i > 0 && e.Term < m.Entries[i-1].Term) {
			return fmt.Errorf("raft: malformed MsgApp from %d: entry %d is (index %d, term %d) after index %d", m.From, i, e.Index, e.Term, m.Index)
		}
	}
	lastNew, ok, err := r.raftLog.maybeAppend(m.Index, m.LogTerm, m.Commit, m.Entries)
	if err != nil {
		r.logger.Error("append refused", "peer", m.From, "term", r.Term, "err", err)
		return err
	}
	if ok {
		r.send(Message{To: m.From, Type: MsgAppResp, Index: lastNew})
		return nil
	}
	// Reject with a hint: the largest index <= m.Index whose term is at
	// most m.LogTerm, so the leader can skip whole terms (fast backtracking).
	hintIndex := min(m.Index, r.raftLog.lastIndex())
	hintIndex, hintTerm := r.raftLog.findConflictByTerm(hintIndex, m.LogTerm)
	r.logger.Debug("append rejected", "peer", m.From, "term", r.Term, "index", m.Index, "log_term", m.LogTerm, "hint", hintIndex, "hint_term", hintTerm)
	r.send(Message{To: m.From, Type: MsgAppResp, Index: m.Index, Reject: true, RejectHint: hintIndex, LogTerm: hintTerm})
	return nil
}

func (r *raft) handleHeartbeat(m Message) {
	// The leader sends min(match, committed), so this never exceeds what
	// we hold from it; guard against anything else.
	if m.Commit <= r.raftLog.lastIndex() {
		r.raftLog.commitTo(m.Commit)
	}
	r.send(Message{To: m.From, Type: MsgHeartbeatResp, Context: m.Context})
}

// restore installs s (received whole) if it is newer than our commit
// index. If our log already has s's last entry with the same term, only
// the commit index moves and the log suffix is kept.
func (r *raft) restore(s Snapshot) bool {
	if s.Meta.Index <= r.raftLog.committed {
		return false
	}
	if r.state != StateFollower {
		r.logger.Warn("snapshot ignored: not a follower", "term", r.Term, "state", r.state.String())
		return false
	}
	if r.raftLog.matchTerm(s.Meta.Index, s.Meta.Term) {
		r.logger.Info("snapshot matches log: fast-forwarding commit", "term", r.Term, "index", s.Meta.Index)
		r.raftLog.commitTo(s.Meta.Index)
		return false
	}
	if err := validateConfState(s.Meta.ConfState); err != nil {
		r.logger.Error("snapshot ignored: bad conf state", "err", err)
		return false
	}
	r.raftLog.restore(s)
	r.applyConfState(s.Meta.ConfState)
	r.logger.Info("snapshot restored", "term", r.Term, "index", s.Meta.Index, "snap_term", s.Meta.Term,
		"voters", r.cs.Voters, "learners", r.cs.Learners)
	return true
}

// ---- leader senders ----

func (r *raft) sendAppend(to uint64) { r.maybeSendAppend(to, true) }

// maybeSendAppend sends entries from Next to the peer, or a snapshot if
// they are compacted. It returns whether a message was sent.
func (r *raft) maybeSendAppend(to uint64, sendIfEmpty bool) bool {
	pr := r.prs[to]
	if pr.isPaused() {
		return false
	}
	prevIndex := pr.Next - 1
	prevTerm, errt := r.raftLog.term(prevIndex)
	var ents []Entry
	var erre error
	if errt == nil {
		ents, erre = r.raftLog.entries(pr.Next, r.maxMsgSize)
	}
	if errt == nil && erre == nil && len(ents) == 0 && !sendIfEmpty {
		return false
	}
	if errt != nil || erre != nil {
		return r.startSnapshot(to, pr)
	}
	if n := len(ents); n != 0 {
		switch pr.State {
		case ProgressReplicate:
			last := ents[n-1].Index
			pr.optimisticUpdate(last)
			pr.inflights.add(last)
		case ProgressProbe:
			pr.Paused = true
		}
	}
	r.send(Message{To: to, Type: MsgApp, Index: prevIndex, LogTerm: prevTerm, Entries: ents, Commit: r.raftLog.committed})
	return true
}

func (r *raft) bcastAppend() {
	for _, id := range r.ids {
		if id != r.id {
			r.sendAppend(id)
		}
	}
}

func (r *raft) bcastHeartbeat() {
	ctx := r.readOnly.lastPendingContext()
	for _, id := range r.ids {
		if id != r.id {
			r.sendHeartbeat(id, ctx)
		}
	}
}

func (r *raft) sendHeartbeat(to uint64, ctx []byte) {
	// Never tell a follower to commit beyond what it is known to have:
	// its log may still hold entries of an older leader there.
	commit := min(r.prs[to].Match, r.raftLog.committed)
	r.send(Message{To: to, Type: MsgHeartbeat, Commit: commit, Context: ctx})
}

// ---- ReadIndex ----

func (r *raft) isSingleVoter() bool {
	return len(r.cs.Voters) == 1 && r.cs.Voters[0] == r.id
}

func (r *raft) sendReadIndexResponse(m Message) {
	if r.isSingleVoter() {
		r.respondReadIndex(m, r.raftLog.committed)
		return
	}
	ctx := m.Entries[0].Data
	r.readOnly.add(r.raftLog.committed, m)
	r.readOnly.recvAck(r.id, ctx)
	r.bcastHeartbeatWithCtx(ctx)
}

func (r *raft) bcastHeartbeatWithCtx(ctx []byte) {
	for _, id := range r.ids {
		if id != r.id {
			r.sendHeartbeat(id, ctx)
		}
	}
}

func (r *raft) respondReadIndex(req Message, index uint64) {
	if req.From == None || req.From == r.id {
		r.readStates = append(r.readStates, ReadState{Index: index, RequestCtx: req.Entries[0].Data})
		return
	}
	r.send(Message{To: req.From, Type: MsgReadIndexResp, Index: index, Entries: req.Entries})
}

// maybeDeferredCampaign runs a forced campaign postponed by MsgTimeoutNow.
func (r *raft) maybeDeferredCampaign() {
	if r.timeoutNowTerm == 0 {
		return
	}
	if r.timeoutNowTerm != r.Term || r.state != StateFollower || !r.promotable() {
		r.timeoutNowTerm = 0
		return
	}
	if r.hasUnappliedConfChanges() {
		return
	}
	r.timeoutNowTerm = 0
	r.logger.Info("campaigning after deferred timeout-now", "term", r.Term)
	r.hup(campaignTransfer)
}
