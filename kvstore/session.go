package kvstore

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// applyWithSession applies a command that carries a ClientID: exactly once
// per (ClientID, Seq), with the session table keyed by the ClientID.
//
//   - A known client: Seq above the last one is applied and its answer
//     stored; Seq equal to the last one is a retry, answered from the table
//     (Duplicate set) and not applied again; a lower Seq is refused with
//     ErrStaleSequence.
//   - An unknown client (never seen, closed, or expired): a command with
//     Seq 1 whose session is recent opens the session and is applied, in
//     the same transaction as its data, so there is no separate
//     registration round trip. Anything else is refused with
//     ErrSessionExpired and not applied.
//
// Why Seq > 1 is refused: a client sends Seq n+1 only after Seq n was
// answered or given up, so an unknown client with Seq > 1 means its
// session existed and was dropped, and the table no longer knows whether
// this very (ClientID, Seq) was applied before the drop (a client can be
// retrying a command whose first copy was applied just before expiry).
// Applying it would risk a double apply; refusing is always safe, and the
// client then reports the outcome as unknown or, when this was the only
// copy it ever sent, retries under a new ClientID.
//
// Seq 1 cannot be told apart that way: a retry of a client's first
// command after its session expired looks like a new client. So opening
// also needs a recent session: the command's SessionStart (the client's
// clock when it chose the ClientID, the same in every copy; the proposer's
// Time when the client did not send one) at most SessionTTL/2 behind the
// log clock. For a double apply, one copy of (ClientID, 1) must be applied
// (the log clock then reaches at least its proposer's Time, which is after
// SessionStart), the session must expire (the log clock passes that by
// more than SessionTTL), and a second copy must still be admitted
// (SessionStart at most SessionTTL/2 behind the clock): impossible while
// the client's clock is less than SessionTTL/2 (30 minutes by default)
// ahead of the proposers', however long the client keeps retrying. A
// proposer whose clock jumps far ahead, expiring every session early, only
// makes more first commands too old to open, until real time catches up
// with it (the log clock never goes back); node therefore stamps writes
// with the lower median of its own and its peers' clocks, not its own
// (node.clusterClock). The price: a client whose
// clock is more than SessionTTL/2 behind the log clock cannot open
// sessions (its writes get ErrSessionExpired). Without SessionStart
// (older clients) the bound is on the retries instead: copies of the first
// command proposed more than SessionTTL/2 apart. Commands after the first
// need no bound. (The registered sessions of store format 1 let the
// runtime re-register an expired client and retry its command once, which
// could apply it twice; that rule is gone.)
func (w *applier) applyWithSession(r Result, cmd *Command) (Result, error) {
	if cmd.Seq == 0 {
		return w.fail(r, fmt.Errorf("%w: client %016x without a sequence number", ErrBadCommand, cmd.ClientID)), nil
	}
	sess, ok, err := w.getSession(cmd.ClientID)
	if err != nil {
		return r, err
	}
	prev := int64(-1) // the session's LastActive before this command; -1: new
	if ok {
		prev = sess.LastActive
	} else {
		switch {
		case cmd.Seq != 1:
			return w.fail(r, fmt.Errorf("%w: client %016x has no session (expired, closed or never opened) and seq %d is not its first command; not applied",
				ErrSessionExpired, cmd.ClientID, cmd.Seq)), nil
		case sessionStart(cmd) < w.st.clock-int64(w.cfg.SessionTTL/2):
			return w.fail(r, fmt.Errorf("%w: client %016x: session started %v before the log clock, too old to open (limit %v; is the client's clock behind?); not applied",
				ErrSessionExpired, cmd.ClientID, time.Duration(w.st.clock-sessionStart(cmd)), w.cfg.SessionTTL/2)), nil
		}
		if cmd.Op == OpCloseSession {
			// Closing a session that does not exist: nothing to do, and
			// nothing to remember.
			r.Rev = w.st.rev
			return r, nil
		}
	}
	if ok && cmd.Seq <= sess.LastSeq {
		if cmd.Seq < sess.LastSeq {
			return w.fail(r, fmt.Errorf("%w: seq %d < last %d of client %016x", ErrStaleSequence, cmd.Seq, sess.LastSeq, cmd.ClientID)), nil
		}
		dup := sess.Resp
		dup.Err = dup.Code.Err()
		dup.Duplicate, dup.Index = true, r.Index
		sess.LastActive = w.st.clock
		return dup, w.putSession(cmd.ClientID, sess, prev)
	}
	if cmd.Op == OpCloseSession {
		if err := w.deleteSession(cmd.ClientID, sess.LastActive); err != nil {
			return r, err
		}
		r.Rev = w.st.rev
		return r, nil
	}
	r, err = w.exec(r, cmd)
	if err != nil {
		return r, err
	}
	sess.LastSeq, sess.LastActive, sess.Resp = cmd.Seq, w.st.clock, r
	return r, w.putSession(cmd.ClientID, sess, prev)
}

// sessionStart is when cmd's client chose its ClientID: SessionStart, or
// the proposer's Time for a client that did not say.
func sessionStart(cmd *Command) int64 {
	if cmd.SessionStart != 0 {
		return cmd.SessionStart
	}
	return cmd.Time
}

// sessionRecord is one client session's row in the session table.
type sessionRecord struct {
	// LastSeq is the sequence number of the last command applied for the
	// session, and Resp its answer.
	LastSeq uint64 `msgpack:"q"`
	Resp    Result `msgpack:"r"`
	// LastActive is the log clock when the session was last used.
	LastActive int64 `msgpack:"a"`
}

func sessionKey(id uint64) []byte { return encodeIndex(id) }

func expiryKey(clock int64, id uint64) []byte {
	k := make([]byte, 0, 16)
	k = binary.BigEndian.AppendUint64(k, uint64(max(clock, 0)))
	return binary.BigEndian.AppendUint64(k, id)
}

func (w *applier) getSession(id uint64) (sessionRecord, bool, error) {
	v := w.tx.Bucket(bucketSessions).Get(sessionKey(id))
	if v == nil {
		return sessionRecord{}, false, nil
	}
	var rec sessionRecord
	if err := unmarshal(v, &rec); err != nil {
		return sessionRecord{}, false, fmt.Errorf("decode session %d: %w", id, err)
	}
	return rec, true, nil
}

// putSession writes rec; prevActive is the LastActive it had before (-1
// for a new session), whose expiry-index row it replaces.
func (w *applier) putSession(id uint64, rec sessionRecord, prevActive int64) error {
	// Derive the code only from a fresh answer: a record read back from
	// disk has Err == nil (it is not encoded) and its stored Code is the
	// truth. Recomputing it there turned a stored failure into "ok" on the
	// second retry of the same (session, seq).
	if rec.Resp.Err != nil {
		rec.Resp.Code = CodeOf(rec.Resp.Err)
	}
	v, err := msgpack.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("encode session %d: %w", id, err)
	}
	if err := w.tx.Bucket(bucketSessions).Put(sessionKey(id), v); err != nil {
		return err
	}
	exp := w.tx.Bucket(bucketSessionExpiry)
	if prevActive >= 0 && prevActive != rec.LastActive {
		if err := exp.Delete(expiryKey(prevActive, id)); err != nil {
			return err
		}
	}
	return exp.Put(expiryKey(rec.LastActive, id), nil)
}

func (w *applier) deleteSession(id uint64, lastActive int64) error {
	if err := w.tx.Bucket(bucketSessions).Delete(sessionKey(id)); err != nil {
		return err
	}
	return w.tx.Bucket(bucketSessionExpiry).Delete(expiryKey(lastActive, id))
}

// expireSessions removes the sessions idle for more than SessionTTL on the
// log clock. It runs before each command whose Time advanced the clock, so
// every replica expires the same sessions at the same log index.
func (w *applier) expireSessions() error {
	cutoff := w.st.clock - int64(w.cfg.SessionTTL)
	if cutoff <= 0 {
		return nil
	}
	c := w.tx.Bucket(bucketSessionExpiry).Cursor()
	var drop [][]byte
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) != 16 {
			return fmt.Errorf("corrupt session expiry key %x", k)
		}
		if int64(binary.BigEndian.Uint64(k)) >= cutoff {
			break
		}
		drop = append(drop, append([]byte(nil), k...))
	}
	for _, k := range drop {
		if err := w.tx.Bucket(bucketSessionExpiry).Delete(k); err != nil {
			return err
		}
		if err := w.tx.Bucket(bucketSessions).Delete(k[8:]); err != nil {
			return err
		}
	}
	return nil
}
