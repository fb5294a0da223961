package rudp

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"
)

// Handler is called for every message delivered to the endpoint. For a
// message sent with Call the returned bytes are sent back as the reply (nil
// is an empty reply), unless the handler called Message.Defer to answer
// later; for other messages the return value is ignored. Handlers run on
// Config.HandlerWorkers goroutines, so they run concurrently and messages
// are not ordered. ctx is cancelled when the endpoint stops.
// Message.Payload belongs to the handler.
type Handler func(ctx context.Context, m Message) (reply []byte)

// Message is one delivered message.
type Message struct {
	From      netip.AddrPort // address the datagrams came from; Send and Call to it reach the sender
	NodeID    uint64         // the sender's Config.NodeID
	Payload   []byte
	Broadcast bool // it arrived as a Broadcast datagram: unreliable, may repeat across restarts

	call *callReply // non-nil when m came from Call
}

// IsCall reports whether m was sent with Call and so expects a reply.
func (m Message) IsCall() bool { return m.call != nil }

// Defer lets a handler answer a Call after it returns, so that waiting for
// the answer (a Raft commit, say) does not hold one of
// Config.HandlerWorkers. Call it in the handler, before returning: the
// handler's return value is then ignored and the caller waits for the
// returned function to be called, once, from any goroutine:
//
//	reply := m.Defer()
//	go func() { reply(answer(m.Payload)) }()
//	return nil
//
// reply sends its argument as the Call's response without waiting for an
// acknowledgement (as a handler's return value is sent). Only the first
// reply of a message is sent; later ones return ErrReplied. If reply is
// never called the caller's Call fails at its deadline; rudp keeps nothing
// for a deferred message, so the handler bounds how many it keeps waiting.
// After Close, reply returns ErrClosed and sends nothing. For a message
// that did not come from Call (IsCall false) Defer returns a reply
// function that sends nothing and returns nil.
func (m Message) Defer() (reply func(payload []byte) error) {
	c := m.call
	if c == nil {
		return func([]byte) error { return nil }
	}
	c.deferred.Store(true)
	return c.send
}

// callReply is the state of the reply to one delivered request.
type callReply struct {
	e        *Endpoint
	to       netip.AddrPort
	ref      uint64 // the request's message ID
	deferred atomic.Bool
	replied  atomic.Bool
}

// send sends the reply once.
func (c *callReply) send(payload []byte) error {
	if !c.replied.CompareAndSwap(false, true) {
		return ErrReplied
	}
	return c.e.reply(c.to, c.ref, payload)
}

// Config configures an Endpoint. The zero value is usable: every zero field
// takes its default.
type Config struct {
	// NodeID identifies this endpoint in every datagram it sends; 0 picks a
	// random one.
	NodeID uint64
	// ClusterID is carried in every datagram and mixed into the MAC key;
	// datagrams of other clusters are dropped.
	ClusterID uint64
	// Secret is the cluster secret the MAC key is derived from (HKDF-SHA256).
	// Empty means unauthenticated: corruption is still detected, forgery is
	// not, and New logs a warning once.
	Secret []byte
	// Handler receives incoming messages; nil drops them (replies still work).
	Handler Handler
	// Logger receives lifecycle events; nil means slog.Default().
	Logger *slog.Logger
	// Rand is the source of the incarnation, the default NodeID and RTO
	// jitter, for reproducible tests; nil means a random seed. Used under
	// the endpoint's lock only.
	Rand *rand.Rand

	// MaxDatagramSize is the largest UDP payload sent, in bytes. Default
	// 1200; at least 512; at most 1372 (1400 MTU minus IP and UDP headers).
	MaxDatagramSize int
	// MaxMessageSize is the largest message, in bytes. Default 1 MiB; at
	// most 64 MiB.
	MaxMessageSize int
	// MaxInflightBytes bounds the unacknowledged payload bytes in flight to
	// one peer. Default 256 KiB.
	MaxInflightBytes int
	// MaxQueuedBytes bounds the payload bytes of unfinished messages to one
	// peer; Send and Call wait (respecting ctx) while it is exceeded. Default
	// 4 MiB. A single larger message is still accepted when nothing is queued.
	MaxQueuedBytes int

	// InitialRTO is the retransmission timeout before the first RTT sample.
	// Default 50ms.
	InitialRTO time.Duration
	// MinRTO and MaxRTO bound the retransmission timeout. Defaults 5ms and 1s;
	// MaxRTO may not exceed 1s.
	MinRTO, MaxRTO time.Duration
	// AckDelay is how long an acknowledgement may wait for a second datagram
	// or outgoing data to ride on. Default 1ms.
	AckDelay time.Duration
	// PeerTimeout is how long data may stay unacknowledged with no progress
	// before every message to the peer fails with ErrPeerUnreachable.
	// Default 5s. Keep it below the receivers' ReassemblyTimeout.
	PeerTimeout time.Duration
	// CallTimeout bounds a Call whose ctx has no deadline. Default 30s.
	CallTimeout time.Duration

	// ReassemblyTimeout frees a partially received message after this long
	// without a new fragment. Default 10s.
	ReassemblyTimeout time.Duration
	// MaxReassemblyBytesPerPeer and MaxReassemblyBytes bound the memory for
	// partially received messages and for delivered messages waiting for a
	// handler, per peer and in total, in bytes. Defaults 4 MiB and 32 MiB.
	// Fragments that do not fit are dropped unacknowledged (the sender
	// retries). The per-peer bound must hold at least one MaxMessageSize.
	MaxReassemblyBytesPerPeer int
	MaxReassemblyBytes        int
	// MaxPeers bounds the number of addresses with state; idle peers are
	// forgotten first. Default 1024.
	MaxPeers int
	// HandlerWorkers is the number of goroutines running Handler (they
	// also take turns reading the socket with one spare reader). Default 8.
	HandlerWorkers int
	// InboxLen is how many delivered messages may wait for an idle worker.
	// When it is full and every worker is busy, reading stops. Default 256.
	InboxLen int
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxDatagramSize, 1200)
	def(&c.MaxMessageSize, 1<<20)
	def(&c.MaxInflightBytes, 256<<10)
	def(&c.MaxQueuedBytes, 4<<20)
	defDur(&c.InitialRTO, 50*time.Millisecond)
	defDur(&c.MinRTO, 5*time.Millisecond)
	defDur(&c.MaxRTO, time.Second)
	defDur(&c.AckDelay, time.Millisecond)
	defDur(&c.PeerTimeout, 5*time.Second)
	defDur(&c.CallTimeout, 30*time.Second)
	defDur(&c.ReassemblyTimeout, 10*time.Second)
	def(&c.MaxReassemblyBytesPerPeer, max(4<<20, c.MaxMessageSize+c.MaxMessageSize/8))
	def(&c.MaxReassemblyBytes, max(32<<20, c.MaxReassemblyBytesPerPeer))
	def(&c.MaxPeers, 1024)
	def(&c.HandlerWorkers, 8)
	def(&c.InboxLen, 256)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	switch {
	case c.MaxDatagramSize < 512 || c.MaxDatagramSize > 1372:
		return fmt.Errorf("rudp: MaxDatagramSize %d outside [512, 1372]", c.MaxDatagramSize)
	case c.MaxMessageSize < 1 || c.MaxMessageSize > 64<<20:
		return fmt.Errorf("rudp: MaxMessageSize %d outside [1, 64 MiB]", c.MaxMessageSize)
	case (c.MaxMessageSize+c.chunkSize()-1)/c.chunkSize() > 65535:
		return fmt.Errorf("rudp: MaxMessageSize %d needs more than 65535 fragments", c.MaxMessageSize)
	case c.MaxInflightBytes < c.MaxDatagramSize:
		return fmt.Errorf("rudp: MaxInflightBytes %d below one datagram", c.MaxInflightBytes)
	case c.MaxQueuedBytes < 1:
		return fmt.Errorf("rudp: MaxQueuedBytes %d", c.MaxQueuedBytes)
	case c.MinRTO <= 0 || c.MinRTO > c.MaxRTO || c.MaxRTO > time.Second:
		return fmt.Errorf("rudp: RTO bounds [%v, %v] invalid (max at most 1s)", c.MinRTO, c.MaxRTO)
	case c.InitialRTO < c.MinRTO || c.InitialRTO > c.MaxRTO:
		return fmt.Errorf("rudp: InitialRTO %v outside [%v, %v]", c.InitialRTO, c.MinRTO, c.MaxRTO)
	case c.AckDelay < 0 || c.AckDelay >= c.MinRTO:
		return fmt.Errorf("rudp: AckDelay %v must be below MinRTO %v", c.AckDelay, c.MinRTO)
	case c.PeerTimeout <= 0 || c.CallTimeout <= 0 || c.ReassemblyTimeout <= 0:
		return fmt.Errorf("rudp: timeouts must be positive")
	case c.MaxReassemblyBytesPerPeer < c.MaxMessageSize:
		return fmt.Errorf("rudp: MaxReassemblyBytesPerPeer %d below MaxMessageSize %d", c.MaxReassemblyBytesPerPeer, c.MaxMessageSize)
	case c.MaxReassemblyBytes < c.MaxReassemblyBytesPerPeer:
		return fmt.Errorf("rudp: MaxReassemblyBytes %d below the per-peer bound %d", c.MaxReassemblyBytes, c.MaxReassemblyBytesPerPeer)
	case c.MaxPeers < 1 || c.HandlerWorkers < 1 || c.InboxLen < 1:
		return fmt.Errorf("rudp: MaxPeers, HandlerWorkers and InboxLen must be positive")
	}
	return nil
}

// chunkSize is the most payload one data datagram carries.
func (c *Config) chunkSize() int { return c.MaxDatagramSize - dataOverhead }
