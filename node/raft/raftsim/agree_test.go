package raftsim

import (
	"bytes"
	"testing"
)

func TestBasicAgree(t *testing.T) {
	for _, n := range []int{3, 5} {
		h := newHarness(t, Config{Nodes: n})
		h.checkOneLeader()
		var prev uint64
		for i := range 3 {
			c := cmd("agree-%d", i)
			if k, _ := h.nCommitted(h.Committed() + 1); k > 0 {
				h.fatalf("an entry committed before it was proposed")
			}
			idx := h.one(c, n, false)
			if prev != 0 && idx != prev+1 {
				h.fatalf("command %d at index %d, want %d", i, idx, prev+1)
			}
			prev = idx
		}
	}
}

func TestFollowerFailure(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	h.one(cmd("101"), 3, false)
	lead := h.checkOneLeader()
	h.Isolate(others(h.IDs(), lead)[0])
	// The leader and the remaining follower keep agreeing.
	h.one(cmd("102"), 2, false)
	h.ticks(2 * h.Config().ElectionTicks)
	h.one(cmd("103"), 2, false)

	// Lose the last follower: nothing commits any more.
	lead = h.checkOneLeader()
	for _, id := range others(h.IDs(), lead) {
		h.Isolate(id)
	}
	before := h.Committed()
	o, err := h.proposeOn(lead, cmd("104"))
	if err != nil {
		h.fatalf("leader %d refused a proposal right after losing its followers: %v", lead, err)
	}
	h.ticks(4 * h.Config().ElectionTicks)
	if h.Committed() != before || o.done {
		h.fatalf("committed %d -> %d (done=%v) without a quorum", before, h.Committed(), o.done)
	}
}

func TestLeaderFailure(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	h.one(cmd("101"), 3, false)
	l1 := h.checkOneLeader()
	h.Isolate(l1)
	// The remaining followers elect a new leader and agree.
	h.one(cmd("102"), 2, false)
	h.ticks(2 * h.Config().ElectionTicks)
	h.one(cmd("103"), 2, false)
	// Lose the new leader too: nothing commits.
	l2 := h.checkOneLeader()
	h.Isolate(l2)
	before := h.Committed()
	for _, id := range h.IDs() {
		_ = h.Propose(id, cmd("104"), nil)
	}
	h.ticks(4 * h.Config().ElectionTicks)
	if h.Committed() != before {
		h.fatalf("committed %d -> %d with one node of three connected", before, h.Committed())
	}
}

func TestFailAgree(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	h.one(cmd("101"), 3, false)
	lead := h.checkOneLeader()
	f := others(h.IDs(), lead)[0]
	h.Isolate(f)
	for i := range 4 {
		h.one(cmd("x%d", i), 2, false)
	}
	h.ticks(2 * h.Config().ElectionTicks)
	h.Reconnect(f)
	// The disconnected follower catches up.
	idx := h.one(cmd("106"), 3, true)
	h.ticks(2 * h.Config().ElectionTicks)
	h.one(cmd("107"), 3, true)
	h.waitApplied(idx, h.ElectionTimeout(), f)
}

func TestFailNoAgree(t *testing.T) {
	h := newHarness(t, Config{Nodes: 5})
	h.one(cmd("10"), 5, false)
	lead := h.checkOneLeader()
	for _, id := range others(h.IDs(), lead)[:3] {
		h.Isolate(id)
	}
	before := h.Committed()
	o, err := h.proposeOn(lead, cmd("20"))
	if err != nil {
		h.fatalf("leader refused a proposal: %v", err)
	}
	h.ticks(4 * h.Config().ElectionTicks)
	if h.Committed() != before || o.done {
		h.fatalf("committed without a quorum: %d -> %d", before, h.Committed())
	}
	h.Heal()
	// The new leader may discard the uncommitted entry; agreement resumes.
	h.one(cmd("30"), 5, true)
	h.one(cmd("1000"), 5, true)
}

func TestConcurrentProposals(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	for try := 0; ; try++ {
		if try == 5 {
			h.fatalf("no term in which 5 concurrent proposals all committed")
		}
		lead := h.checkOneLeader()
		term := h.Term(lead)
		var outs []*outcome
		for i := range 5 {
			o, err := h.proposeOn(lead, cmd("c%d", i))
			if err != nil {
				break
			}
			outs = append(outs, o)
		}
		h.RunUntil(func() bool {
			for _, o := range outs {
				if !o.done {
					return false
				}
			}
			return true
		}, 4*h.ElectionTimeout())
		h.ok()
		if len(outs) < 5 || h.Term(lead) != term {
			continue // leadership moved: 6.824 retries too
		}
		seen := map[uint64]bool{}
		for i, o := range outs {
			if !o.done || o.r.Err != nil {
				h.fatalf("proposal %d: done=%v err=%v", i, o.done, o.r.Err)
			}
			if seen[o.r.Index] {
				h.fatalf("two proposals at index %d", o.r.Index)
			}
			seen[o.r.Index] = true
			if d, _, _ := h.CommittedData(o.r.Index); !bytes.Equal(d, cmd("c%d", i)) {
				h.fatalf("index %d holds %q, want %q", o.r.Index, d, cmd("c%d", i))
			}
		}
		return
	}
}

func TestRejoin(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	h.one(cmd("101"), 3, true)
	l1 := h.checkOneLeader()
	h.Isolate(l1)
	// The old leader appends entries nobody else sees.
	var lost []*outcome
	for i := range 3 {
		o, err := h.proposeOn(l1, cmd("lost%d", i))
		if err != nil {
			h.fatalf("isolated leader refused a proposal at once: %v", err)
		}
		lost = append(lost, o)
	}
	h.one(cmd("103"), 2, true)
	l2 := h.checkOneLeader()
	h.Isolate(l2)
	h.Reconnect(l1)
	h.one(cmd("104"), 2, true)
	h.Heal()
	h.one(cmd("105"), 3, true)
	for i, o := range lost {
		if o.done && o.r.Err == nil {
			h.fatalf("the partitioned leader's entry lost%d was applied at %d", i, o.r.Index)
		}
	}
	// Its log was overwritten: the committed record never holds them.
	for i := uint64(1); i <= h.Committed(); i++ {
		if d, _, _ := h.CommittedData(i); bytes.HasPrefix(d, []byte("lost")) {
			h.fatalf("uncommitted entry %q of the old leader committed at %d", d, i)
		}
	}
}

func TestBackup(t *testing.T) {
	h := newHarness(t, Config{Nodes: 5})
	h.one(cmd("start"), 5, true)
	l1 := h.checkOneLeader()
	ids := others(h.IDs(), l1)
	// Leader and one follower in a minority: 50 entries that never commit.
	h.Partition([]uint64{l1, ids[0]}, ids[1:])
	for i := range 50 {
		_ = h.Propose(l1, cmd("minority-%d", i), nil)
	}
	h.ticks(h.Config().ElectionTicks / 2)
	// The majority commits 50 entries of its own.
	for i := range 50 {
		h.one(cmd("majority-%d", i), 3, true)
	}
	// The new leader and one follower lose their third: 50 more
	// uncommitted entries.
	l2 := h.checkOneLeader()
	rest := others(ids[1:], l2)
	h.Partition([]uint64{l2, rest[0]}, []uint64{l1, ids[0], rest[1]})
	for i := range 50 {
		_ = h.Propose(l2, cmd("minority2-%d", i), nil)
	}
	h.ticks(h.Config().ElectionTicks / 2)
	// The original leader's side (plus rest[1]) elects and commits.
	for i := range 50 {
		h.one(cmd("second-%d", i), 3, true)
	}
	// Everyone back: the divergent logs must be repaired quickly.
	h.ResetStats()
	h.Heal()
	idx := h.one(cmd("end"), 5, true)
	h.waitApplied(idx, h.ElectionTimeout(), h.IDs()...)
	if r := h.Stats().AppRejects; r > 20 {
		h.fatalf("%d rejected appends to repair logs that diverged by ~50 entries: backtracking is not fast", r)
	}
}

func TestCount(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	lead := h.checkOneLeader()
	// Electing a leader takes few messages (6.824 allows 30 RPCs).
	if s := h.Stats(); s.ByType[5].Msgs+s.ByType[6].Msgs+s.ByType[7].Msgs+s.ByType[8].Msgs > 30 {
		h.fatalf("election took %d vote messages", s.ByType[5].Msgs+s.ByType[6].Msgs+s.ByType[7].Msgs+s.ByType[8].Msgs)
	}
	for try := 0; ; try++ {
		if try == 5 {
			h.fatalf("no stable term for the count")
		}
		lead = h.checkOneLeader()
		term := h.Term(lead)
		h.ResetStats()
		var outs []*outcome
		const iters = 10
		for i := range iters {
			o, err := h.proposeOn(lead, cmd("count-%d", i))
			if err != nil {
				break
			}
			outs = append(outs, o)
		}
		h.RunUntil(func() bool { return len(outs) == iters && outs[iters-1].done }, 4*h.ElectionTimeout())
		h.waitApplied(h.Committed(), h.ElectionTimeout(), h.IDs()...)
		if h.Term(lead) != term || len(outs) != iters {
			continue
		}
		s := h.Stats()
		// Each entry goes to each of the 2 followers about once.
		if s.AppEntries > (iters+1)*2 {
			h.fatalf("%d entries sent in MsgApp for %d proposals to 2 followers", s.AppEntries, iters)
		}
		// Append requests, commit updates included (6.824 allows
		// (iters+1+3)*3 RPCs).
		if appMsgs := s.ByType[3].Msgs; appMsgs > (iters+1+3)*3 {
			h.fatalf("%d MsgApp for %d proposals", appMsgs, iters)
		}
		break
	}
	// Idle: only heartbeats, one round per HeartbeatTicks.
	h.ResetStats()
	const idleTicks = 100
	h.ticks(idleTicks)
	s := h.Stats()
	if s.AppEntries != 0 {
		h.fatalf("%d entries sent while idle", s.AppEntries)
	}
	rounds := uint64(idleTicks/h.Config().HeartbeatTicks) + 2
	if s.Msgs > rounds*2*2+4 {
		h.fatalf("%d messages in %d idle ticks (want <= 2 per follower per heartbeat)", s.Msgs, idleTicks)
	}
	if s.Msgs > 0 && s.Bytes/s.Msgs > 128 {
		h.fatalf("idle messages average %d bytes", s.Bytes/s.Msgs)
	}
}

func TestBytes(t *testing.T) {
	h := newHarness(t, Config{Nodes: 3})
	h.one(cmd("99"), 3, false)
	h.ResetStats()
	var sent uint64
	for i := range 10 {
		c := bytes.Repeat([]byte{byte('a' + i)}, 5000)
		h.one(c, 3, false)
		sent += uint64(len(c))
	}
	s := h.Stats()
	// Each 5 KB entry crosses to each of the 2 followers once.
	if s.Bytes > 2*sent+50_000 {
		h.fatalf("sent %d bytes for %d bytes of commands (want <= %d)", s.Bytes, sent, 2*sent+50_000)
	}
	if s.AppEntryBytes > 2*sent+5_000*2 {
		h.fatalf("MsgApp carried %d entry bytes for %d bytes proposed", s.AppEntryBytes, sent)
	}
}
