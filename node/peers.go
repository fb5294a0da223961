package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/node/raft"
	"github.com/raftkv/raftkv/rudp"
)

// sendWorkers is the number of concurrent rudp Sends per peer. rudp's Send
// returns when the peer acknowledged, so one worker would allow one
// message per round trip; several keep MsgApps pipelined (Raft tolerates
// the reordering this allows, and rudp's handlers reorder anyway).
const sendWorkers = 8

// peer is the outbound side of one other node: a bounded queue drained by
// sendWorkers goroutines. The loop never blocks on it.
type peer struct {
	q    chan []byte
	stop chan struct{}
	once sync.Once
}

func (p *peer) close() { p.once.Do(func() { close(p.stop) }) }

// run drains the queue until ctx is done or the peer is removed.
func (p *peer) run(ctx context.Context, n *Node, id uint64) {
	var wg sync.WaitGroup
	for range sendWorkers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-p.stop:
					return
				case b := <-p.q:
					addr, ok := n.addrOf(id)
					if !ok {
						continue
					}
					sctx, cancel := context.WithTimeout(ctx, n.sendTimeout(len(b)))
					err := n.ep.Send(sctx, addr, b)
					cancel()
					if errors.Is(err, rudp.ErrTooLarge) {
						// A bug, not a network fault: the store's limits
						// must keep every Raft message under
						// proto.MaxMessageBytes (checked at start).
						n.logger().Error("a Raft message is too large to send; replication to this peer is stuck", "peer", fmt.Sprintf("%016x", id), "bytes", len(b), "err", err)
					} else if err != nil && ctx.Err() == nil {
						n.logger().Debug("send failed", "peer", fmt.Sprintf("%016x", id), "addr", addr.String(), "err", err)
						select {
						case n.unreachc <- id:
						default:
						}
					}
				}
			}
		})
	}
	wg.Wait()
}

// sendTimeout bounds the delivery of one Raft message of size bytes: about
// an election timeout, after which the core has moved on anyway, plus the
// time to move it at 1 MB/s. A large MsgApp (one entry can be a 1 MiB
// value) given up halfway is sent again from the start, so its deadline
// must not depend on the link being idle.
func (n *Node) sendTimeout(size int) time.Duration {
	return n.cfg.TickInterval*time.Duration(n.cfg.ElectionTicks) + time.Duration(size)*time.Microsecond
}

// ensurePeer returns the peer for id, starting its senders if needed.
func (n *Node) ensurePeer(id uint64) *peer {
	if p, ok := n.peers[id]; ok {
		return p
	}
	p := &peer{q: make(chan []byte, n.cfg.SendQueueLen), stop: make(chan struct{})}
	n.peers[id] = p
	n.wg.Go(func() { p.run(n.runCtx, n, id) })
	return p
}

// dropPeer stops sending to id (it left the configuration).
func (n *Node) dropPeer(id uint64) {
	if p, ok := n.peers[id]; ok {
		p.close()
		delete(n.peers, id)
	}
}

// send queues the Ready's messages; a full queue drops (Raft retransmits).
func (n *Node) send(msgs []raft.Message) {
	for _, m := range msgs {
		if m.To == n.id.Load() {
			continue
		}
		m.WallTime = n.clock.wall()
		b, err := proto.Encode(proto.KindRaft, m)
		if err != nil {
			n.logger().Error("encode raft message", "type", m.Type.String(), "err", err)
			continue
		}
		p := n.ensurePeer(m.To)
		select {
		case p.q <- b:
		default:
			n.logger().Debug("send queue full; dropped", "peer", fmt.Sprintf("%016x", m.To), "type", m.Type.String())
		}
	}
}

// learnMember records a member's address from the members table.
func (n *Node) learnMember(id uint64, m Member) {
	if id == n.id.Load() {
		return
	}
	ap, err := netip.ParseAddrPort(m.Addr)
	if err != nil {
		n.logger().Warn("member with a bad address", "peer", fmt.Sprintf("%016x", id), "addr", m.Addr)
		return
	}
	n.setAddr(id, ap)
}

func (n *Node) setAddr(id uint64, ap netip.AddrPort) {
	n.addrMu.Lock()
	old, ok := n.addrs[id]
	n.addrs[id] = ap
	n.addrMu.Unlock()
	if !ok || old != ap {
		n.logger().Debug("peer address", "peer", fmt.Sprintf("%016x", id), "addr", ap.String())
	}
}

func (n *Node) addrOf(id uint64) (netip.AddrPort, bool) {
	n.addrMu.Lock()
	defer n.addrMu.Unlock()
	ap, ok := n.addrs[id]
	return ap, ok
}

// leaderAddr returns the known leader and its address ("" if unknown).
func (n *Node) leaderAddr() (uint64, string) {
	lead := n.lead.Load()
	if lead == 0 {
		return 0, ""
	}
	if lead == n.id.Load() {
		return lead, n.cfg.AdvertiseAddr.String()
	}
	if ap, ok := n.addrOf(lead); ok {
		return lead, ap.String()
	}
	return lead, ""
}

// notLeader builds the redirect error.
func (n *Node) notLeader() error {
	id, addr := n.leaderAddr()
	return &NotLeaderError{LeaderID: id, Addr: addr}
}

// announce pings every known peer once at start, so that peers learn this
// node's address if it changed since the members table recorded it (the
// leader then reaches a restarted learner, which never campaigns).
func (n *Node) announce(ctx context.Context) {
	n.addrMu.Lock()
	addrs := make([]netip.AddrPort, 0, len(n.addrs))
	for _, ap := range n.addrs {
		addrs = append(addrs, ap)
	}
	n.addrMu.Unlock()
	ping := proto.MustEncode(proto.KindPing, proto.Ping{Nonce: randUint64()})
	var wg sync.WaitGroup
	for _, ap := range addrs {
		if ap == n.cfg.AdvertiseAddr {
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if _, err := n.ep.Call(cctx, ap, ping); err != nil && ctx.Err() == nil {
				n.logger().Debug("announce", "addr", ap.String(), "err", err)
			}
		})
	}
	wg.Wait()
}
