package raft

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// fuzzReader turns fuzz bytes into bounded values.
type fuzzReader struct{ b []byte }

func (f *fuzzReader) byte() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *fuzzReader) n(max int) uint64 { return uint64(int(f.byte()) % max) }

// message builds a well-formed network message (valid type, sender,
// contiguous entries) with arbitrary, possibly contradictory, contents.
func (f *fuzzReader) message() Message {
	types := []MessageType{MsgProp, MsgApp, MsgAppResp, MsgVote, MsgVoteResp, MsgPreVote, MsgPreVoteResp,
		MsgHeartbeat, MsgHeartbeatResp, MsgSnap, MsgSnapResp, MsgTransferLeader, MsgTimeoutNow,
		MsgReadIndex, MsgReadIndexResp}
	m := Message{
		Type:    types[f.n(len(types))],
		From:    2 + f.n(3), // 2, 3 or 4 (4 is not a member)
		To:      1,
		Term:    f.n(6),
		LogTerm: f.n(6),
		Index:   f.n(12),
		Commit:  f.n(12),
		Reject:  f.byte()&1 == 1,
	}
	m.RejectHint = f.n(12)
	switch m.Type {
	case MsgVote, MsgPreVote, MsgVoteResp, MsgPreVoteResp:
		m.Term = 1 + m.Term
	case MsgProp, MsgReadIndex:
		m.Term = 0
	}
	if k := f.n(4); k > 0 || m.Type == MsgProp || m.Type == MsgReadIndex || m.Type == MsgReadIndexResp {
		k = max(k, 1)
		term := m.LogTerm
		for i := range k {
			if t := f.n(6); t > term && t <= m.Term {
				term = t
			}
			e := Entry{Index: m.Index + 1 + i, Term: term, Data: []byte{f.byte()}}
			if f.byte()%8 == 0 {
				e.Type = EntryConfChange
				e.Data = ConfChange{Type: ConfChangeType(f.n(3)), NodeID: 1 + f.n(5)}.Marshal()
			}
			m.Entries = append(m.Entries, e)
		}
		if m.Type == MsgReadIndex || m.Type == MsgReadIndexResp {
			m.Entries = m.Entries[:1]
		}
	}
	if m.Type == MsgSnap || m.Type == MsgSnapResp {
		data := make([]byte, f.n(40))
		if len(data) >= 2 {
			binary.BigEndian.PutUint16(data, uint16(f.byte()))
		}
		total := uint64(len(data)) + f.n(3)*8
		cs := ConfState{Voters: []uint64{1, 2, 3}}
		if f.byte()&1 == 1 {
			cs = ConfState{Voters: []uint64{2, 3}, Learners: []uint64{1}}
		}
		m.Snapshot = &SnapshotChunk{
			Meta:     SnapshotMeta{Index: f.n(16), Term: f.n(6), ConfState: cs},
			Offset:   f.n(3) * 8,
			Total:    total,
			Checksum: crc32.Checksum(data, castagnoli),
			Data:     data,
		}
	}
	return m
}

// FuzzStep feeds random well-formed messages, ticks and local requests to
// a node, processes every Ready like an application, and checks the
// invariants after each step: the term never decreases, at most one vote
// per term, applied <= committed <= last index, committed never
// decreases, and nothing panics.
func FuzzStep(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1, 3, 0, 2, 1, 1, 0, 0, 0})
	f.Add([]byte{1, 4, 1, 3, 3, 1, 2, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{0, 1, 2, 2, 1, 1, 1, 5, 0, 2, 1, 0, 7, 7, 7, 7, 7})
	f.Add([]byte{1, 9, 0, 4, 2, 9, 9, 9, 1, 0, 0, 30, 3, 9, 1, 1, 1, 2, 2, 2, 2})
	f.Add([]byte("\x01\x0c\x02\x05\x05\x05\x05\x05\x05\x05\x05\x05\x00\x07\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := &fuzzReader{b: data}
		ms := bootstrapStorage(1, 2, 3)
		cfg := testConfig(t, 1, ms)
		n, err := NewNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if fr.byte()&1 == 1 {
			// Start as leader of term 2.
			_ = n.Campaign()
			_ = n.Step(Message{Type: MsgPreVoteResp, From: 2, To: 1, Term: 2})
			_ = n.Step(Message{Type: MsgVoteResp, From: 2, To: 1, Term: 2})
		}
		var lastTerm, lastVote, lastCommit uint64
		handle := func() {
			for n.HasReady() {
				rd := n.Ready()
				if !rd.Snapshot.IsEmpty() {
					if err := ms.ApplySnapshot(rd.Snapshot); err != nil {
						t.Fatalf("apply snapshot: %v", err)
					}
				}
				if err := ms.Append(rd.Entries); err != nil {
					t.Fatalf("append: %v", err)
				}
				if !rd.HardState.IsEmpty() {
					_ = ms.SetHardState(rd.HardState)
				}
				for _, e := range rd.CommittedEntries {
					if e.Type == EntryConfChange {
						var cc ConfChange
						if err := cc.Unmarshal(e.Data); err == nil {
							_ = ms.SetConfState(n.ApplyConfChange(cc))
						}
					}
				}
				n.Advance(rd)
			}
			st := n.Status()
			if st.Term < lastTerm {
				t.Fatalf("term went back from %d to %d", lastTerm, st.Term)
			}
			if st.Term == lastTerm && lastVote != None && st.Vote != lastVote {
				t.Fatalf("voted for %d and then %d in term %d", lastVote, st.Vote, st.Term)
			}
			if st.Applied > st.Committed || st.Committed > st.LastIndex {
				t.Fatalf("applied %d committed %d last %d", st.Applied, st.Committed, st.LastIndex)
			}
			if st.Committed < lastCommit {
				t.Fatalf("commit went back from %d to %d", lastCommit, st.Committed)
			}
			lastTerm, lastVote, lastCommit = st.Term, st.Vote, st.Committed
		}
		handle()
		for len(fr.b) > 0 {
			switch op := fr.byte() % 8; op {
			case 0:
				n.Tick()
			case 1:
				_ = n.Propose([]byte{fr.byte()})
			case 2:
				n.ReadIndex([]byte{fr.byte(), fr.byte()})
			case 3:
				n.TransferLeader(1 + fr.n(4))
			case 4:
				n.ReportUnreachable(1 + fr.n(4))
			default:
				_ = n.Step(fr.message())
			}
			handle()
		}
	})
}
