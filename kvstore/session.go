package kvstore

import (
	"encoding/binary"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

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
