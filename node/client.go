package node

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/kvstore"
	"github.com/raftkv/raftkv/node/raft"
	"github.com/raftkv/raftkv/rudp"
)

// handle is the rudp handler: Raft messages go to the loop; requests that
// wait for the loop (writes, linearizable reads, admin) are answered from
// a goroutine of their own through rudp's deferred reply, so they never
// hold a handler worker that Raft messages need.
func (n *Node) handle(ctx context.Context, m rudp.Message) []byte {
	kind, body, err := proto.Split(m.Payload)
	if err != nil {
		return nil
	}
	switch kind {
	case proto.KindRaft:
		var rm raft.Message
		if err := proto.Decode(body, &rm); err != nil {
			n.logger().Debug("bad raft message", "from", m.From.String(), "err", err)
			return nil
		}
		if rm.From == 0 || rm.Type.IsLocal() {
			return nil
		}
		n.setAddr(rm.From, m.From)
		n.clock.observe(rm.From, rm.WallTime)
		select {
		case n.recvc <- rm:
		default:
			n.logger().Debug("inbox full; dropped raft message", "type", rm.Type.String())
		}
		return nil
	case proto.KindClient:
		var req proto.ClientRequest
		if err := proto.Decode(body, &req); err != nil {
			return proto.MustEncode(proto.KindClient, proto.ClientResponse{Code: proto.CodeInvalid, Message: err.Error()})
		}
		if req.Serializable && (req.Op == proto.OpGet || req.Op == proto.OpRange) {
			return proto.MustEncode(proto.KindClient, n.Do(ctx, req))
		}
		// Writes and linearizable reads wait for the loop: answer later,
		// without holding an rudp handler worker.
		reply := m.Defer()
		n.reqWG.Add(1)
		go func() {
			defer n.reqWG.Done()
			_ = reply(proto.MustEncode(proto.KindClient, n.Do(ctx, req)))
		}()
		return nil
	case proto.KindAdmin:
		var req proto.AdminRequest
		if err := proto.Decode(body, &req); err != nil {
			return proto.MustEncode(proto.KindAdmin, proto.AdminResponse{Code: proto.CodeInvalid, Message: err.Error()})
		}
		reply := m.Defer()
		n.reqWG.Add(1)
		go func() {
			defer n.reqWG.Done()
			_ = reply(proto.MustEncode(proto.KindAdmin, n.Admin(ctx, req)))
		}()
		return nil
	case proto.KindPing:
		var p proto.Ping
		if err := proto.Decode(body, &p); err != nil {
			return nil
		}
		// A peer that restarted on another address announces itself with
		// a ping from its endpoint, whose node ID is its Raft ID.
		if _, known := n.addrOf(m.NodeID); known && m.NodeID != n.id.Load() {
			n.setAddr(m.NodeID, m.From)
		}
		return proto.MustEncode(proto.KindPing, proto.Pong{
			Nonce: p.Nonce, ID: n.id.Load(), Role: n.roleWord(), Term: n.term.Load(), Leader: n.lead.Load(),
		})
	}
	return nil
}

func (n *Node) roleWord() string {
	st := raft.StateType(n.role.Load())
	if st == raft.StateFollower && n.isLearner.Load() {
		return "learner"
	}
	if st == raft.StatePreCandidate {
		return "candidate"
	}
	return st.String()
}

// Do serves one client request, as it would arrive over the network:
// writes and linearizable reads on the leader (elsewhere CodeNotLeader
// with the leader's address), serializable reads on any node.
func (n *Node) Do(ctx context.Context, req proto.ClientRequest) proto.ClientResponse {
	select {
	case <-n.ready:
	default:
		return proto.ClientResponse{Code: proto.CodeUnavailable, Message: "node is starting"}
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	switch req.Op {
	case proto.OpGet, proto.OpRange:
		return n.read(ctx, req)
	case proto.OpPut, proto.OpDelete, proto.OpDeletePrefix, proto.OpCAS, proto.OpCompact:
		return n.write(ctx, req)
	}
	return proto.ClientResponse{Code: proto.CodeInvalid, Message: fmt.Sprintf("unknown op %d", req.Op)}
}

func (n *Node) errResponse(err error) proto.ClientResponse {
	var nl *NotLeaderError
	switch {
	case errors.As(err, &nl):
		return proto.ClientResponse{Code: proto.CodeNotLeader, Message: err.Error(), LeaderID: nl.LeaderID, LeaderAddr: nl.Addr}
	case errors.Is(err, ErrNotLeader):
		id, addr := n.leaderAddr()
		return proto.ClientResponse{Code: proto.CodeNotLeader, Message: err.Error(), LeaderID: id, LeaderAddr: addr}
	case errors.Is(err, kvstore.ErrKeyNotFound):
		return proto.ClientResponse{Code: proto.CodeNotFound, Message: err.Error()}
	case errors.Is(err, kvstore.ErrCompareFailed):
		return proto.ClientResponse{Code: proto.CodeCompareFailed, Message: err.Error()}
	case errors.Is(err, kvstore.ErrCompacted):
		return proto.ClientResponse{Code: proto.CodeCompacted, Message: err.Error()}
	case errors.Is(err, kvstore.ErrSessionExpired):
		return proto.ClientResponse{Code: proto.CodeSessionExpired, Message: err.Error()}
	case errors.Is(err, kvstore.ErrEmptyKey), errors.Is(err, kvstore.ErrKeyTooLarge),
		errors.Is(err, kvstore.ErrValueTooLarge), errors.Is(err, kvstore.ErrRequestTooLarge),
		errors.Is(err, kvstore.ErrBadCommand), errors.Is(err, kvstore.ErrFutureRevision),
		errors.Is(err, kvstore.ErrStaleSequence), errors.Is(err, errInvalid):
		return proto.ClientResponse{Code: proto.CodeInvalid, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, ErrClosed), errors.Is(err, kvstore.ErrClosed), errors.Is(err, raft.ErrProposalDropped),
		errors.Is(err, errBusy):
		return proto.ClientResponse{Code: proto.CodeUnavailable, Message: err.Error()}
	}
	return proto.ClientResponse{Code: proto.CodeInternal, Message: err.Error()}
}

var errBusy = errors.New("node: too many requests waiting")

// acquireWaiting takes one of Config.MaxWaiting slots for a request that
// will wait for the loop (each holds an rudp handler worker; Raft messages
// need some left). Release with n.waiting.Add(-1).
func (n *Node) acquireWaiting() bool {
	if n.waiting.Add(1) > int64(n.cfg.MaxWaiting) {
		n.waiting.Add(-1)
		return false
	}
	return true
}

// toCommand maps a client write to a state-machine command.
func toCommand(req proto.ClientRequest) (kvstore.Command, error) {
	cmd := kvstore.Command{Key: req.Key, Value: req.Value, SessionStart: req.SessionStart}
	switch req.Op {
	case proto.OpPut:
		cmd.Op = kvstore.OpPut
	case proto.OpDelete:
		cmd.Op = kvstore.OpDelete
		if req.Prefix {
			cmd.Op = kvstore.OpDeletePrefix
		}
	case proto.OpDeletePrefix:
		cmd.Op = kvstore.OpDeletePrefix
	case proto.OpCompact:
		if req.Revision <= 0 {
			return cmd, fmt.Errorf("%w: compact needs a positive revision", kvstore.ErrBadCommand)
		}
		cmd = kvstore.Command{Op: kvstore.OpCompact, Rev: uint64(req.Revision), SessionStart: req.SessionStart}
	case proto.OpCAS:
		cmd.Op, cmd.Then = kvstore.OpCAS, kvstore.OpPut
		if req.DeleteOnSuccess {
			cmd.Then, cmd.Value = kvstore.OpDelete, nil
		}
		switch req.Compare {
		case proto.CompareValue:
			cmd.Compare = &kvstore.Compare{Target: kvstore.CompareValue, Value: req.CompareValue}
		case proto.CompareModRevision, proto.CompareVersion:
			if req.Revision < 0 {
				return cmd, fmt.Errorf("%w: negative compare revision", kvstore.ErrBadCommand)
			}
			t := kvstore.CompareModRev
			if req.Compare == proto.CompareVersion {
				t = kvstore.CompareVersion
			}
			cmd.Compare = &kvstore.Compare{Target: t, Rev: uint64(req.Revision)}
		default:
			return cmd, fmt.Errorf("%w: unknown compare target %d", kvstore.ErrBadCommand, req.Compare)
		}
	}
	return cmd, nil
}

// write proposes a client write on the leader and waits until it is
// applied. (ClientID, Seq) is the client's session, kept by kvstore alone:
// the first write of a ClientID opens it, a retry with the same pair is
// answered from the session table and not applied again, and a write whose
// ClientID lost its session is refused (CodeSessionExpired) and not
// applied. The node never retries that under another session: an earlier
// copy may have been applied, and only the client knows whether it sent
// one.
func (n *Node) write(ctx context.Context, req proto.ClientRequest) proto.ClientResponse {
	if !n.IsLeader() {
		return n.errResponse(n.notLeader())
	}
	cmd, err := toCommand(req)
	var data []byte
	if err == nil {
		cmd.ClientID, cmd.Seq = req.ClientID, req.Seq
		if cmd.ClientID == 0 {
			// No session: no deduplication; Seq only tags the waiter.
			cmd.Seq = randUint64()
		}
		cmd.Time = n.clock.Now().UnixNano()
		data, err = n.kv.EncodeChecked(cmd)
	}
	if err != nil {
		return n.errResponse(err)
	}
	if !n.acquireWaiting() {
		return n.errResponse(errBusy)
	}
	defer n.waiting.Add(-1)
	n.proposing.Add(1)
	res, err := n.propose(ctx, waitKey{cmd.ClientID, cmd.Seq}, data)
	n.proposing.Add(-1)
	if err != nil {
		n.met.failed.Inc()
		return n.errResponse(err)
	}
	resp := proto.ClientResponse{Revision: int64(res.Rev), Deleted: int64(res.Deleted)}
	switch {
	case res.Err == nil:
		resp.Succeeded = true
	case errors.Is(res.Err, kvstore.ErrCompareFailed):
		resp.Code, resp.Message = proto.CodeCompareFailed, res.Err.Error()
		if res.KV != nil {
			resp.KVs = []proto.KeyValue{toProtoKV(*res.KV)}
		}
		return resp
	default:
		r := n.errResponse(res.Err)
		r.Revision = resp.Revision
		return r
	}
	return resp
}

// propose proposes data, the encoded command of the client's (ClientID,
// Seq) = key, and waits for its result. One trip to the loop: the session
// is kvstore's business.
//
// A retry of a write this leader already proposed and still waits for
// waits for that entry instead of proposing another copy: when commits are
// slow, every client retry would otherwise add an entry that the session
// table then answers as a duplicate, adding load exactly when the cluster
// is slowest. This is safe because waiters only exist on a leader for
// entries of its current term (failWaiters clears them when leadership is
// lost) and a leader never overwrites entries of its own term, so the
// entry waited for is in the log and will be applied.
func (n *Node) propose(ctx context.Context, key waitKey, data []byte) (kvstore.Result, error) {
	ch := make(chan applyResult, 1)
	var perr error
	if err := n.do(ctx, func() {
		if raft.StateType(n.role.Load()) != raft.StateLeader {
			perr = n.notLeader()
			return
		}
		n.stMu.Lock()
		defer n.stMu.Unlock()
		if len(n.waiters[key]) > 0 {
			n.met.retriesJoined.Inc()
		} else if perr = n.rn.Propose(data); perr != nil {
			return
		}
		n.waiters[key] = append(n.waiters[key], ch)
	}); err != nil {
		return kvstore.Result{}, err
	}
	if perr != nil {
		if errors.Is(perr, raft.ErrProposalDropped) {
			return kvstore.Result{}, n.notLeader()
		}
		return kvstore.Result{}, perr
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return kvstore.Result{}, r.err
		}
		return r.res, nil
	case <-ctx.Done():
		n.dropWaiter(key, ch)
		return kvstore.Result{}, fmt.Errorf("node: wait for commit: %w", ctx.Err())
	case <-n.loopDone:
		return kvstore.Result{}, ErrClosed
	}
}

func (n *Node) dropWaiter(key waitKey, ch chan applyResult) {
	_ = n.do(context.Background(), func() {
		n.stMu.Lock()
		defer n.stMu.Unlock()
		ws := n.waiters[key]
		for i, w := range ws {
			if w == ch {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(n.waiters, key)
		} else {
			n.waiters[key] = ws
		}
	})
}

// read serves a get or range: serializable reads at once from the local
// store; linearizable ones on the leader after a ReadIndex round.
func (n *Node) read(ctx context.Context, req proto.ClientRequest) proto.ClientResponse {
	if req.Revision < 0 || req.Limit < 0 || req.MaxBytes < 0 {
		return proto.ClientResponse{Code: proto.CodeInvalid, Message: "negative revision, limit or max bytes"}
	}
	if !req.Serializable {
		if !n.IsLeader() {
			return n.errResponse(n.notLeader())
		}
		if !n.acquireWaiting() {
			return n.errResponse(errBusy)
		}
		err := n.readIndex(ctx)
		n.waiting.Add(-1)
		if err != nil {
			return n.errResponse(err)
		}
	}
	rr := kvstore.RangeRequest{Key: req.Key, Rev: uint64(req.Revision), After: req.After, MaxBytes: rangeReplyBytes}
	if req.MaxBytes > 0 && req.MaxBytes < rangeReplyBytes {
		rr.MaxBytes = uint64(req.MaxBytes)
	}
	if req.Op == proto.OpRange {
		rr.End, rr.Prefix, rr.Limit = req.End, req.Prefix, uint64(req.Limit)
	} else if req.Prefix {
		rr.Prefix, rr.Limit = true, uint64(req.Limit)
	}
	res, err := n.kv.Range(rr)
	if err != nil {
		return n.errResponse(err)
	}
	resp := proto.ClientResponse{Revision: int64(res.Rev), More: res.More}
	for _, kv := range res.KVs {
		resp.KVs = append(resp.KVs, toProtoKV(kv))
	}
	if req.Op == proto.OpGet && !rr.Prefix && len(resp.KVs) == 0 {
		resp.Code, resp.Message = proto.CodeNotFound, fmt.Sprintf("key not found: %s", req.Key)
	}
	return resp
}

// rangeReplyBytes is the byte budget of the key-values of one read reply
// (kvstore.RangeRequest.MaxBytes, by EncodedSizeBound). A range with more
// stops with More, and the client reads on after its last key. It is the
// default largest value: pages are then no larger than the reply to a Get
// of the largest key-value, which goes alone (the store's limits keep it
// within proto.MaxMessageBytes; checked at start). Larger pages bring
// nothing: a 2.4 MiB range took as long in pages of 1 MiB as in pages of
// 1.94 MiB (7 runs each, one run).
const rangeReplyBytes = 1 << 20

// replyEnvelopeBytes is room for a ClientResponse's fields around its
// key-values (code, revision, flags, the kind byte: under 100 bytes for a
// read; a not-found answer carries a message with the key but no
// key-values), with a wide margin.
const replyEnvelopeBytes = 64 << 10

// A full page must fit in one message.
var _ = [proto.MaxMessageBytes - rangeReplyBytes - replyEnvelopeBytes]struct{}{}

// readBatch is the reads that share one ReadIndex round: every one of
// them arrived before the round was issued, so its answer is valid for all.
type readBatch struct {
	chans []chan uint64
	at    time.Time
}

// issueReadIndex starts one ReadIndex round for the reads that arrived
// since the last one (the loop calls it after taking the waiting events).
func (n *Node) issueReadIndex() {
	if len(n.pendingReads) == 0 {
		return
	}
	var rctx [8]byte
	binary.BigEndian.PutUint64(rctx[:], randUint64())
	n.readWaiters[string(rctx[:])] = &readBatch{chans: n.pendingReads, at: time.Now()}
	n.pendingReads = nil
	n.rn.ReadIndex(rctx[:])
}

// expireReads forgets rounds the core never answered (it drops ReadIndex
// requests while there is no leader); their readers timed out already.
func (n *Node) expireReads() {
	for k, b := range n.readWaiters {
		if time.Since(b.at) > 2*n.cfg.RequestTimeout {
			for _, ch := range b.chans {
				close(ch)
			}
			delete(n.readWaiters, k)
		}
	}
}

// readIndex confirms leadership with a ReadIndex round (shared with the
// reads that arrive at the same time) and waits until the state machine
// has applied the read index.
func (n *Node) readIndex(ctx context.Context) error {
	ch := make(chan uint64, 1)
	if err := n.do(ctx, func() { n.pendingReads = append(n.pendingReads, ch) }); err != nil {
		return err
	}
	select {
	case idx, ok := <-ch:
		if !ok {
			return n.notLeader()
		}
		return n.kv.WaitApplied(ctx, idx)
	case <-ctx.Done():
		return fmt.Errorf("node: read index: %w", ctx.Err())
	case <-n.loopDone:
		return ErrClosed
	}
}

func toProtoKV(kv kvstore.KeyValue) proto.KeyValue {
	return proto.KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: int64(kv.CreateRev),
		ModRevision: int64(kv.ModRev), Version: int64(kv.Version)}
}

func randUint64() uint64 {
	var b [8]byte
	cryptorand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}
