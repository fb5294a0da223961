// Package rudp delivers messages reliably over UDP: acknowledged one-way
// messages, request/response calls, fan-out, and LAN broadcast for
// discovery. It hides lost, duplicated, reordered, corrupted, forged and
// replayed datagrams from the layers above it (Raft, the store, clients).
//
// An Endpoint is built from a net.PacketConn it does not open itself: a UDP
// socket from ListenUDP in production, a faultnet connection in tests.
//
// # Usage
//
//	pc, err := rudp.ListenUDP(ctx, "udp4", "10.0.0.1:7701", rudp.SocketOptions{})
//	ep, err := rudp.New(pc, rudp.Config{
//		NodeID:    id,
//		ClusterID: cluster,
//		Secret:    secret, // from a 0600 file; empty = unauthenticated (logged)
//		Handler: func(ctx context.Context, m rudp.Message) []byte {
//			return handle(m.From, m.Payload) // the reply, if m came from Call
//		},
//	})
//	go ep.Run(ctx)    // blocks until ctx is done or ep.Close()
//	defer ep.Close()  // idempotent; sends the acks still pending first
//
//	err = ep.Send(ctx, peer, msg)           // returns once peer acknowledged all of msg
//	reply, err := ep.Call(ctx, peer, req)   // request/response, correlated by id
//	errs := ep.SendMany(ctx, peers, msg)    // fan-out, one error per peer
//	err = ep.Broadcast(bcastAddr, hello)    // one unreliable datagram
//	if errors.Is(err, rudp.ErrPeerUnreachable) { ... } // deadline or PeerTimeout
//	if errors.Is(err, rudp.ErrAuthFailed) { ... }      // and the peer refused our secret
//
//	// A handler that must wait (a Raft commit) answers later instead of
//	// holding a worker; the return value is then ignored:
//	Handler: func(ctx context.Context, m rudp.Message) []byte {
//		reply := m.Defer()                  // once; ErrReplied after
//		go func() { reply(await(m.Payload)) }() // ErrClosed after Close
//		return nil
//	}
//
// # Guarantees
//
//   - Every message is delivered at most once to each incarnation of the
//     receiving process, intact, or not at all. Send returning nil means the
//     receiver acknowledged every fragment; an error means it may or may not
//     have received it (the ack may have been lost).
//   - Messages are not ordered, neither between nor within peers; handlers
//     run concurrently on Config.HandlerWorkers goroutines.
//   - A handler that blocks holds a worker (Message.Defer answers a Call
//     without holding one). A handler may Send and Call: responses and
//     acks are read even while every worker is busy. When all workers are
//     busy and Config.InboxLen messages wait, reading stops and the kernel
//     buffer, then the peers' retransmissions, absorb the backlog. If that
//     lasts longer than the peers' PeerTimeout they report this endpoint
//     unreachable.
//
// # Design
//
// Frames are documented in frame.go. Each datagram carries the cluster ID,
// the sender's node ID and random 64-bit incarnation, and the incarnation
// of the receiver the sender believes in; datagrams for another incarnation
// of the receiver are refused and answered with a "hello" naming the current
// one, so a restarted receiver never accepts replays meant for its previous
// life, and a restarted sender's new stream (sequence numbers restart) is
// not mistaken for duplicates: the old incarnation is retired and its late
// datagrams are dropped.
//
// Messages are cut into fragments of at most MaxDatagramSize bytes of UDP
// payload (1200 by default, never relying on IP fragmentation; ListenUDP
// sets IP_PMTUDISC_DO so oversize datagrams fail loudly). Fragments carry a
// 64-bit sequence number per (sender incarnation, receiver) stream, kept
// across retransmissions; the receiver answers with a cumulative ack plus up
// to 64 selective ranges plus the highest packet number of a data datagram
// it received, piggybacked on its own data or sent after AckDelay, at once
// on every second datagram, an out-of-order fragment or a duplicate.
// Retransmission follows RFC 6298 per peer: smoothed RTT and variance,
// Karn's rule (no samples from resent fragments), exponential backoff with
// ±20% jitter, MinRTO 5ms and MaxRTO at most 1s. A timeout resends only the
// two oldest expired fragments; a fragment is presumed lost and resent at
// once when a transmission three after it, or one after it and 9/8 RTT
// later, is known to have arrived (RFC 9002 style): known from the ack of a
// fragment sent once, or from the acknowledged packet number, which stays
// unambiguous while only resent fragments are in flight. At most MaxInflightBytes are unacknowledged per peer and
// MaxQueuedBytes queued; senders past that wait, respecting their context.
//
// The socket is read by one goroutine at a time, the holder of a read
// token. A handler worker holding it reads and applies one datagram,
// writes the acks or data it produced, and runs the handler of the message
// it completed itself, so a request reaches its handler without a hand-off
// between goroutines. It runs that handler with the token lent instead of
// passing it on first (a pass wakes a goroutine, often a thread): a quick
// handler's reply is written at once and the worker reads on. A Send or
// Call submitted meanwhile (by the handler, say) ends the loan, since it
// waits for a datagram, and so does the timer after lendTimeout (1ms),
// since the handler may be waiting for another message; the token then
// goes to an idle worker or to the spare reader, which takes its turns too
// but never runs handlers (it queues them in the inbox), so reading goes
// on while every worker is in a handler. Only the token holder adds to the
// inbox, and a worker that holds the token while messages wait there runs
// them and passes the token on, so no message waits in the inbox behind a
// worker blocked reading.
//
// A Call reads its own response when it can: if its submit finds the token
// lent or parked, it takes it and reads the socket itself (queueing
// messages for handlers in the inbox, as the spare reader does, and
// completing other calls) until its response arrives. It then parks the
// token, unless something else waits for a datagram (another Call, an
// unfinished message, a partial or undelivered one, the inbox), in which
// case it passes it on. A worker that hands a response to a waiting Call
// parks the token in the same way. So a goroutine making Calls back to
// back reads each response itself and no goroutine is woken per call
// (in BenchmarkRoundTrip, per Call: 2.5 futex calls before, 0.08 after;
// 12 syscalls before, 8.8 after). A
// parked token is taken by the next Call or by a worker whose handler
// returns, or passed on by the next Send or by the timer after
// lendTimeout. A reading Call whose request fails, whose ctx is done or
// whose deadline passes is woken from its read by a read deadline in the
// past, which the next reader clears.
//
// Small fragments to one peer share a datagram when they are produced
// while another goroutine is writing to the socket (one writer at a time,
// nobody waits for it), so batching costs no latency when idle. When more
// than one message is unfinished, the writer first yields the processor
// once (runtime.Gosched), so that senders woken by the same ack add their
// frames to its batch: in BenchmarkOneWay256 about 2.5 messages share a
// data datagram and 5 an ack. With one message in flight (a lone Call) nothing
// yields. Likewise a worker yields after handing a response to its Call,
// so the caller runs at once.
//
// Reassembly reserves a whole message's bytes when its first fragment
// arrives, within MaxReassemblyBytesPerPeer and MaxReassemblyBytes; a
// fragment that does not fit is dropped without an ack (the sender retries),
// so reserved messages can always complete and a flood of fragment starts
// costs at most the bounds. Partial messages without a new fragment for
// ReassemblyTimeout are freed.
//
// Every datagram ends with a 16-byte AES-256-GCM tag over all its bytes
// (GCM as a MAC: the datagram is associated data, nothing is encrypted).
// The key is derived with HKDF-SHA256 from Config.Secret, the cluster ID and
// the sender's node ID and incarnation, and the nonce is the sender's packet
// number, so nonces never repeat under a key. Only those three header
// fields, at fixed offsets, are read before the tag is checked; failures
// are counted and dropped, and those naming this cluster are answered with
// a rate-limited, unauthenticated "auth failed" notice, so that a peer with
// a different secret learns why it gets no answer (ErrAuthFailed). The duplicate window doubles as replay
// protection. (HMAC-SHA256 cost about 2µs per datagram here, without
// SHA-NI; GCM with AES-NI costs a fraction of that.)
//
// # Wire format
//
// Version 1 (ProtocolVersion). Values of type, flags and kind are only
// ever appended to. The protocol flow is described in frame.go.
//
// All integers are big-endian. Every datagram ends with a 16-byte tag:
// AES-256-GCM over all preceding bytes as associated data (empty
// plaintext), under a key derived with HKDF-SHA256 from the cluster secret,
// the cluster ID and the sender's node ID and incarnation, with the packet
// number as nonce. An empty secret gives public keys:
// corruption is still detected, forgery is not.
//
//	off  size  field
//	  0     1  version        ProtocolVersion
//	  1     1  type           1 data, 2 ack (no ack block: a "hello"), 3 broadcast,
//	                          4 "auth failed" notice (header only, no tag; see below)
//	  2     1  flags          0x01: an ack block follows the header; other bits 0
//	  3     1  key ID         0 (reserved for key rotation)
//	  4     8  cluster ID
//	 12     8  sender node ID
//	 20     8  sender incarnation
//	 28     8  dst incarnation (0 = unknown; 0 in broadcasts)
//	 36     8  packet number  per sender incarnation, +1 per datagram (the AEAD nonce)
//	 44        [ack block]  if flags & 0x01:
//	        8    cum          every seq < cum was received (or given up by its sender)
//	        8    max PN       highest packet number of a data datagram received (0: none);
//	                          unambiguous even for resent fragments (RFC 9002 style)
//	        2    ack delay    microseconds between the newest arrival and this ack
//	        1    n            number of ranges, at most 64
//	      4*n    ranges       gap uint16, len uint16: [prev+gap, prev+gap+len), prev starts at cum;
//	                          gap >= 1, len >= 1
//	           [data frames] if type 1: one or more, up to the tag, each:
//	        8    seq          fragment sequence number, >= 1
//	        8    una          lowest seq the sender may still retransmit, <= seq
//	        8    msg ID       >= 1, unique per sender incarnation
//	        8    ref          the request's msg ID in a response, else 0
//	        1    kind         0 one-way, 1 request (Call), 2 response
//	        2    frag index   < frag count
//	        2    frag count   >= 1, <= max(total, 1)
//	        4    total        message length; fragment i holds bytes [i*total/count, (i+1)*total/count)
//	        2    length       payload bytes, exactly (i+1)*total/count - i*total/count
//	        -    payload
//	           [broadcast frame]  if type 3:
//	        8    seq          per sender incarnation, for replay protection
//	        -    payload      the rest, up to the tag
//	  end-16  16  tag
//
// An "auth failed" notice (type 4) is exactly the 44-byte header, flags and
// key ID 0, with no tag: it names the cluster and the notifier's node ID
// and incarnation, and echoes the rejected datagram's sender incarnation
// (as dst incarnation) and packet number. It is sent in answer to a
// datagram of this cluster whose tag fails, at most 4 per second per
// source address and 32 per second in all, and is always shorter
// than the datagram that caused it (at least 60 bytes), so it cannot
// amplify a reflection attack. It is unauthenticated: a hint that only
// changes the error of a Send or Call that fails anyway (ErrAuthFailed
// besides ErrPeerUnreachable), never its outcome.
//
// # Caveats
//
//   - Peers are keyed by address. MaxPeers bounds the state; forgetting an
//     idle peer forgets its duplicate window, so a replay of that peer's
//     datagrams captured before could be delivered again.
//   - Broadcasts are unreliable single datagrams; replays across the
//     sender's incarnations are not detected beyond 256 remembered senders.
//   - The first message to a peer costs one extra round trip (the hello).
//   - While the read token is lent to a handler or parked, nobody reads:
//     datagrams wait in the socket buffer, at most about 2ms (lendTimeout
//     and the timer's granularity). That happens when a handler blocks
//     without calling Send or Call (on a lock or a channel), or after a
//     Call when nothing else waited for a datagram. Handlers that return
//     within lendTimeout run one after another on the reading worker,
//     except the messages of one datagram.
//
// # Tests
//
// The tests run clusters on faultnet's in-memory network under
// testing/synctest (virtual time), plus loopback sockets for broadcast and
// socket options. Benchmarks (go test -bench . ./rudp) compare call latency
// and one-way message rate with raw UDP, and goodput with 10% loss against
// none. There are no long soak tests in this package.
package rudp
