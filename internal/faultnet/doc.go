// Package faultnet is a deterministic, seeded faulty datagram network for
// tests: it loses, duplicates, delays, reorders and corrupts datagrams and
// partitions chosen addresses from each other.
//
// A Network has two front ends that share one set of rules:
//
//   - Listen returns an in-memory net.PacketConn. Delivery uses channels and
//     timers only, so whole clusters run inside testing/synctest with virtual
//     time (real sockets cannot be used there).
//   - Wrap puts the same faults in front of a real net.PacketConn (for
//     example a UDP socket on 127.0.0.x): faults are applied when the
//     wrapped connection writes; reads pass through.
//
// Rules are per directed link (from, to), keyed by netip.AddrPort. A link
// without its own Link uses the default set by SetDefault. Every link has
// its own random source derived from the network seed and the two
// addresses, so the fate of the n-th datagram on a link depends only on the
// seed and n, not on traffic elsewhere.
//
// Faults, in the order they are decided for each datagram written:
//
//  1. partitions (Block, Partition, Isolate; undone by Heal) drop silently;
//  2. Drop loses the datagram;
//  3. Dup delivers it twice (each copy then decides its own corruption and
//     delay);
//  4. Corrupt flips one random bit of the copy;
//  5. Delay + a random part of Jitter, plus ReorderDelay with probability
//     Reorder, delay the copy; datagrams that overtake each other are
//     reordered. A fixed Delay alone keeps each link in order.
//
// In-memory addresses whose IPv4 form ends in .255 (for example
// 127.255.255.255:P) are broadcast addresses: a datagram sent there reaches
// every in-memory listener on port P, the sender included, as the kernel
// does for a socket bound to 0.0.0.0:P.
//
// Each in-memory connection queues at most QueueLen datagrams; more are
// dropped and counted as Overflow, like a full socket receive buffer.
//
// # Usage
//
//	n := faultnet.New(seed)
//	defer n.Close()
//	n.SetDefault(faultnet.Link{Drop: 0.3, Dup: 0.1, Corrupt: 0.01, Reorder: 0.2})
//	a, _ := n.Listen(netip.MustParseAddrPort("127.0.0.1:7001"))
//	b, _ := n.Listen(netip.MustParseAddrPort("127.0.0.2:7001"))
//	n.Block(aAddr, bAddr)              // one-way: a's datagrams to b are lost
//	n.Partition([]netip.AddrPort{aAddr}, []netip.AddrPort{bAddr, cAddr})
//	n.Heal()                           // all partitions gone, link faults stay
//
//	// Over real sockets:
//	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
//	faulty := n.Wrap(pc)
package faultnet
