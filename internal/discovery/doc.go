// Package discovery lets a raftd started without an entrance address find
// the entrance on its LAN by UDP broadcast.
//
// The node's Finder broadcasts a proto.KindDiscover datagram to the
// discovery port (DefaultPort, 7799) of every subnet broadcast address it
// has (or the ones it is given), and again with exponential backoff
// (MinInterval doubling to MaxInterval, ±20% jitter) until an answer
// arrives or its context ends. The entrance's Responder, reading that port
// on 0.0.0.0 with SO_REUSEADDR (a socket bound to a unicast address gets
// no broadcasts; the option lets several processes on one host share the
// port), answers the asker unicast with a proto.KindEntranceBeacon naming
// the entrance's address. An unspecified IP in the beacon (an entrance
// listening on 0.0.0.0) is replaced by the IP the beacon came from.
//
// Both sides use rudp's broadcast datagrams (rudp.Endpoint.Broadcast): one
// unreliable datagram each way, authenticated with rudp's AES-GCM tag
// under a key derived with HKDF from the cluster secret when one is
// configured. Datagrams with another secret, malformed ones, other kinds,
// and a sender's own broadcasts looped back are dropped (and counted in
// ResponderStats). 255.255.255.255 is never used: it leaves only through
// the default route's interface.
//
// Replay: each Find call picks a random 64-bit nonce (crypto/rand, never
// 0) that all its Discover broadcasts carry, and the beacon echoes it. The
// finder takes only a beacon echoing its own nonce, so an authenticated
// beacon captured on the LAN and replayed to a later finder (to steer it
// to an old or wrong address) is ignored and counted in FinderStats.Stale;
// so are beacons of an entrance older than the nonce (it echoes 0): upgrade
// the entrance before the nodes. The responder still answers a Discover
// without a nonce (an older node) with a beacon echoing 0, which such a
// node accepts. Without a secret nothing is authenticated and the nonce
// stops only blind replays: anyone on the LAN can answer a Discover.
//
// # Usage
//
// Entrance side:
//
//	pc, err := discovery.Listen(ctx, discovery.DefaultPort) // 0.0.0.0:7799, SO_REUSEADDR
//	r, err := discovery.NewResponder(discovery.ResponderConfig{
//		Addr: entranceAddr, PacketConn: pc, Secret: secret, Logger: log,
//	})
//	go r.Run(ctx) // until ctx is done or r.Close()
//
// Node side:
//
//	f := &discovery.Finder{Secret: secret, Name: "n1", Logger: log}
//	entrance, err := f.Find(ctx) // blocks until an entrance answers
//
// # Testing
//
// The tests run on loopback only: finders broadcast to 127.255.255.255,
// responders bind 0.0.0.0 on an ephemeral port, two of them sharing it.
package discovery
