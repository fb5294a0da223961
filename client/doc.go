// Package client is the Go client of a raftkv cluster: put, get, delete,
// range, compare-and-swap and compact with contexts, over rudp.
//
// A Client finds the leader by asking the entrance (Config.Entrance) who
// leads, or by probing the nodes it knows (Config.Endpoints, plus every
// address the entrance or a redirect named). A follower answers with a
// redirect to the leader, which the client follows. Attempts that get no
// answer (Config.AttemptTimeout) or find no leader are retried against the
// next node with a randomized exponential backoff, until the operation's
// context or Config.Timeout ends. The entrance is not on the data path: once
// a client knows the nodes it keeps working while the entrance is down.
//
// # Exactly-once writes
//
// Every write travels with a session (ClientID, Seq). A Client keeps a pool
// of sessions; a session carries at most one write at a time and its Seq
// grows by one per write. A retry re-sends the same (ClientID, Seq), so the
// cluster's session table answers a duplicate without applying it again.
// There is no registration: the ClientID is random, and the cluster opens
// its session with the first write, in the same log entry, so a one-shot
// write costs one commit round. A write that got no answer before its
// deadline fails with ErrOutcomeUnknown (and ErrTimeout): it may have been
// applied, exactly once, or not at all. It is never reported as "not
// applied".
//
// The cluster drops a session that stayed idle for its session TTL (an
// hour by default, on the log's clock); the pool drops sessions idle for
// ten minutes first. If the cluster answers that a write's session expired
// (proto.CodeSessionExpired: the write was not applied), the write starts
// over under a new ClientID when that attempt was its only one; otherwise
// an earlier copy may have been applied before the session expired, and
// the write fails with ErrOutcomeUnknown.
//
// # Errors
//
// Errors wrap sentinels, tested with errors.Is: ErrNotFound,
// ErrCompareFailed, ErrTimeout, ErrUnavailable, ErrNoLeader,
// ErrUnauthorized, ErrOutcomeUnknown, ErrCompacted, ErrInvalid, ErrClosed.
// A definitive answer other than OK is a *ServerError carrying the wire code
// and the node's message. A Config.Secret that differs from the cluster's
// shows as ErrUnauthorized (wrapping rudp.ErrAuthFailed): the nodes answer
// datagrams they cannot verify with an unauthenticated "auth failed"
// notice, which rudp reports when an attempt fails (it never ends an
// attempt early). An operation ends at once, without waiting for its
// deadline, when every address the client knows (its entrance, or each
// endpoint) refused it so. A write that reached a node is then still
// reported with ErrOutcomeUnknown: a notice proves nothing (anyone on the
// path can forge one, and a node restarted with another secret refuses
// what it may have applied before). One refusing node among others is
// retried around, and then only explains a timeout.
//
// # Usage
//
//	c, err := client.New(ctx, client.Config{Entrance: "127.0.0.1:7700"})
//	if err != nil { ... }
//	defer c.Close()
//	if _, err := c.Put(ctx, "greeting", []byte("hello")); err != nil { ... }
//	res, err := c.Get(ctx, "greeting", client.GetOptions{})
//	switch {
//	case errors.Is(err, client.ErrNotFound): ...
//	case err != nil: ...
//	}
//	fmt.Printf("%s\n", res.KVs[0].Value)
//
// Reads are linearizable unless GetOptions.Serializable is set, which lets
// any node answer from its local, possibly stale, state.
//
// # Large ranges
//
// A node answers a range with at most about 1 MiB of key-values
// (GetOptions.PageBytes asks for less). Range, Get with Prefix and Scan
// read on after the last key, page by page, every page at the revision of
// the first, so the result is one consistent snapshot while writes go on;
// GetOptions.Limit counts over all pages. If the cluster compacts that
// revision before the last page, the read fails with a
// *RangeCompactedError (errors.Is ErrCompacted): run it again. Scan yields
// the keys as the pages come, without holding the whole range:
//
//	for kv, err := range c.Scan(ctx, "config/", client.GetOptions{}) {
//		if err != nil { ... }
//		fmt.Printf("%s=%s\n", kv.Key, kv.Value)
//	}
package client
