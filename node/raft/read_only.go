package raft

// readIndexStatus is one ReadIndex request waiting for a quorum of
// heartbeat acknowledgements.
type readIndexStatus struct {
	req   Message // the MsgReadIndex (From == None or self for a local request)
	index uint64  // the commit index recorded when the request arrived
	acks  map[uint64]bool
}

// readOnly tracks ReadIndex requests in arrival order (Raft thesis §6.4).
// A heartbeat acknowledgement carrying a request's context confirms that
// request and every one queued before it.
type readOnly struct {
	pending map[string]*readIndexStatus
	queue   []string
}

func newReadOnly() *readOnly {
	return &readOnly{pending: make(map[string]*readIndexStatus)}
}

// add records a request at commit index idx. A duplicate context is
// ignored (the first request with that context will be answered).
func (ro *readOnly) add(idx uint64, m Message) {
	ctx := string(m.Entries[0].Data)
	if _, ok := ro.pending[ctx]; ok {
		return
	}
	ro.pending[ctx] = &readIndexStatus{index: idx, req: m, acks: make(map[uint64]bool)}
	ro.queue = append(ro.queue, ctx)
}

// recvAck records that id acknowledged the heartbeat carrying context and
// returns the acks for that request (nil if unknown).
func (ro *readOnly) recvAck(id uint64, context []byte) map[uint64]bool {
	rs, ok := ro.pending[string(context)]
	if !ok {
		return nil
	}
	rs.acks[id] = true
	return rs.acks
}

// advance dequeues and returns every request up to and including the one
// with context m.Context.
func (ro *readOnly) advance(context []byte) []*readIndexStatus {
	ctx := string(context)
	i := 0
	found := false
	for _, okctx := range ro.queue {
		i++
		if okctx == ctx {
			found = true
			break
		}
	}
	if !found {
		return nil
	}
	rss := make([]*readIndexStatus, 0, i)
	for _, okctx := range ro.queue[:i] {
		rss = append(rss, ro.pending[okctx])
		delete(ro.pending, okctx)
	}
	ro.queue = ro.queue[i:]
	if len(ro.queue) == 0 {
		ro.queue = nil
	}
	return rss
}

// lastPendingContext returns the context of the newest request, if any.
func (ro *readOnly) lastPendingContext() []byte {
	if len(ro.queue) == 0 {
		return nil
	}
	return []byte(ro.queue[len(ro.queue)-1])
}
