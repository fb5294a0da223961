package kvstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// History keys. A key's versions must sort by key, then by revision, in one
// bucket, for any key bytes. Each 0x00 of the key is written as 0x00 0xFF
// and the key ends with 0x00 0x01, then the 8-byte big-endian revision.
// The escaping keeps byte order and makes no escaped key a prefix of
// another, so a prefix of escaped keys is the escape of a key prefix.

func appendEscaped(dst, key []byte) []byte {
	for _, b := range key {
		if b == 0 {
			dst = append(dst, 0, 0xFF)
		} else {
			dst = append(dst, b)
		}
	}
	return dst
}

// histGroup returns the escaped key with its terminator: the common prefix
// of all of key's history records.
func histGroup(key []byte) []byte {
	return append(appendEscaped(make([]byte, 0, len(key)+10), key), 0, 1)
}

func histKey(key []byte, rev uint64) []byte {
	return binary.BigEndian.AppendUint64(histGroup(key), rev)
}

// splitHistKey returns the group (escaped key and terminator) and the
// revision of a history record's key.
func splitHistKey(k []byte) (group []byte, rev uint64, err error) {
	if len(k) < 10 || k[len(k)-10] != 0 || k[len(k)-9] != 1 {
		return nil, 0, fmt.Errorf("corrupt history key %x", k)
	}
	return k[:len(k)-8], binary.BigEndian.Uint64(k[len(k)-8:]), nil
}

// unescapeGroup returns the user key of a history group.
func unescapeGroup(g []byte) []byte {
	g = g[:len(g)-2]
	out := make([]byte, 0, len(g))
	for i := 0; i < len(g); i++ {
		out = append(out, g[i])
		if g[i] == 0 {
			i++ // skip the 0xFF
		}
	}
	return out
}

const (
	histPut       = 0
	histTombstone = 1
)

func encodeHist(tombstone bool, createRev, version uint64, value []byte) []byte {
	b := make([]byte, 0, 17+len(value))
	if tombstone {
		b = append(b, histTombstone)
	} else {
		b = append(b, histPut)
	}
	b = binary.BigEndian.AppendUint64(b, createRev)
	b = binary.BigEndian.AppendUint64(b, version)
	return append(b, value...)
}

func encodeCurrent(kv KeyValue) []byte {
	b := make([]byte, 0, 24+len(kv.Value))
	b = binary.BigEndian.AppendUint64(b, kv.CreateRev)
	b = binary.BigEndian.AppendUint64(b, kv.ModRev)
	b = binary.BigEndian.AppendUint64(b, kv.Version)
	return append(b, kv.Value...)
}

// decodeCurrent decodes a current record, copying out of the tx.
func decodeCurrent(k, v []byte, withValue bool) (KeyValue, error) {
	if len(v) < 24 {
		return KeyValue{}, fmt.Errorf("corrupt record for key %q", k)
	}
	kv := KeyValue{
		Key:       bytes.Clone(k),
		CreateRev: binary.BigEndian.Uint64(v),
		ModRev:    binary.BigEndian.Uint64(v[8:]),
		Version:   binary.BigEndian.Uint64(v[16:]),
	}
	if withValue {
		kv.Value = bytes.Clone(v[24:])
	}
	return kv, nil
}

func getCurrent(tx *bolt.Tx, key []byte, withValue bool) (KeyValue, bool, error) {
	v := tx.Bucket(bucketKV).Get(key)
	if v == nil {
		return KeyValue{}, false, nil
	}
	kv, err := decodeCurrent(key, v, withValue)
	return kv, err == nil, err
}

// put writes the next revision of key. It returns the new version without
// its value.
func (w *applier) put(key, value []byte) (*KeyValue, error) {
	cur, ok, err := getCurrent(w.tx, key, false)
	if err != nil {
		return nil, err
	}
	w.st.rev++
	kv := KeyValue{Key: bytes.Clone(key), CreateRev: w.st.rev, ModRev: w.st.rev, Version: 1}
	if ok {
		kv.CreateRev, kv.Version = cur.CreateRev, cur.Version+1
	}
	kv.Value = value
	if err := w.tx.Bucket(bucketKV).Put(key, encodeCurrent(kv)); err != nil {
		return nil, err
	}
	if err := w.tx.Bucket(bucketRevs).Put(histKey(key, kv.ModRev), encodeHist(false, kv.CreateRev, kv.Version, value)); err != nil {
		return nil, err
	}
	kv.Value = nil
	return &kv, nil
}

// deleteKeys deletes the keys that exist, all at one new revision (none is
// taken when no key exists), and returns how many it deleted.
func (w *applier) deleteKeys(keys [][]byte) (uint64, error) {
	kvb, revs := w.tx.Bucket(bucketKV), w.tx.Bucket(bucketRevs)
	var n uint64
	for _, k := range keys {
		if kvb.Get(k) == nil {
			continue
		}
		if n == 0 {
			w.st.rev++
		}
		n++
		if err := kvb.Delete(k); err != nil {
			return n, err
		}
		if err := revs.Put(histKey(k, w.st.rev), encodeHist(true, 0, 0, nil)); err != nil {
			return n, err
		}
	}
	return n, nil
}

// scanKeys returns the live keys that start with prefix.
func scanKeys(tx *bolt.Tx, prefix []byte) ([][]byte, error) {
	var keys [][]byte
	c := tx.Bucket(bucketKV).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return keys, nil
}

// compact drops history below rev: for each key, every version superseded
// at rev, and the version visible at rev if it is a tombstone.
func (w *applier) compact(rev uint64) error {
	if rev > w.st.rev {
		return fmt.Errorf("%w: compact %d > current %d", ErrFutureRevision, rev, w.st.rev)
	}
	if rev <= w.st.compacted {
		return fmt.Errorf("%w: compact %d <= compacted %d", ErrCompacted, rev, w.st.compacted)
	}
	b := w.tx.Bucket(bucketRevs)
	var (
		drop      [][]byte
		group     []byte
		candidate []byte // the newest version <= rev seen so far in group
		candTomb  bool
	)
	flush := func() {
		if candidate != nil && candTomb {
			drop = append(drop, candidate)
		}
		candidate = nil
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		g, r, err := splitHistKey(k)
		if err != nil {
			return err
		}
		if !bytes.Equal(g, group) {
			flush()
			group = bytes.Clone(g)
		}
		if r > rev {
			continue
		}
		if candidate != nil {
			drop = append(drop, candidate)
		}
		candidate = bytes.Clone(k)
		candTomb = len(v) > 0 && v[0] == histTombstone
	}
	flush()
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	w.st.compacted = rev
	return nil
}

// RangeRequest selects keys to read.
type RangeRequest struct {
	// Key alone reads one key. With Prefix, every key starting with Key
	// (every key when Key is empty). With End, the keys in [Key, End).
	Key    []byte
	End    []byte
	Prefix bool
	// Limit bounds the number of keys returned; 0 means no limit.
	Limit uint64
	// MaxBytes bounds the key-values returned by their EncodedSizeBound
	// summed; 0 means no bound. The first matching key is returned even
	// when it alone is larger, so that a range always makes progress.
	MaxBytes uint64
	// After, when not nil, skips the keys up to and including After: a
	// range continues after the last key of its previous page.
	After []byte
	// Rev reads the store as of that revision; 0 means the current one.
	Rev uint64
	// KeysOnly leaves values out.
	KeysOnly bool
}

// RangeResult answers a RangeRequest.
type RangeResult struct {
	KVs []KeyValue
	// More says more keys matched than were returned: the range stopped
	// at Limit or at MaxBytes. Continue it with After set to the last key
	// returned.
	More bool
	// Rev is the store's current revision when the read was served.
	Rev uint64
}

// KeyValueOverheadBytes bounds what the msgpack encoding of a KeyValue
// (here, or the same fields in a client reply) adds to its key and value:
// the map header, five one-letter field names, two bin headers of up to 5
// bytes and three integers of up to 9, with room for the header of the
// array that holds it.
const KeyValueOverheadBytes = 64

// EncodedSizeBound is an upper bound of the bytes kv takes in a msgpack
// encoded reply: its key and value plus KeyValueOverheadBytes. Range's
// MaxBytes counts it.
func (kv *KeyValue) EncodedSizeBound() uint64 {
	return encodedSizeBound(len(kv.Key), len(kv.Value))
}

func encodedSizeBound(keyLen, valueLen int) uint64 {
	return uint64(keyLen) + uint64(valueLen) + KeyValueOverheadBytes
}

// span returns the [start, end) of a request; end nil means unbounded, and
// single says only start itself matches. With After, start is the smallest
// key above After when that is larger.
func (r *RangeRequest) span() (start, end []byte, single bool) {
	switch {
	case r.Prefix:
		start, end = r.Key, prefixEnd(r.Key)
	case len(r.End) > 0:
		start, end = r.Key, r.End
	default:
		return r.Key, nil, true
	}
	if r.After != nil {
		if next := append(bytes.Clone(r.After), 0); bytes.Compare(next, start) > 0 {
			start = next
		}
	}
	return start, end, false
}

// skipSingle says a single-key read matches nothing because of After.
func (r *RangeRequest) skipSingle() bool {
	return r.After != nil && bytes.Compare(r.Key, r.After) <= 0
}

// prefixEnd returns the smallest key greater than every key with prefix p
// (nil when there is none: p empty or all 0xFF).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// readRange serves a range inside a transaction whose meta state is st.
func readRange(tx *bolt.Tx, st metaState, req RangeRequest) (RangeResult, error) {
	out := RangeResult{Rev: st.rev}
	switch {
	case req.Rev > st.rev:
		return out, fmt.Errorf("%w: read at %d > current %d", ErrFutureRevision, req.Rev, st.rev)
	case req.Rev != 0 && req.Rev < st.compacted:
		return out, fmt.Errorf("%w: read at %d < compacted %d", ErrCompacted, req.Rev, st.compacted)
	}
	start, end, single := req.span()
	if single && req.skipSingle() {
		return out, nil
	}
	var size uint64 // EncodedSizeBound of out.KVs
	// full says the next key, whose EncodedSizeBound is next, may not be
	// added: Limit keys are there, or it would take the page over MaxBytes
	// (the first key is always added).
	full := func(next uint64) bool {
		return req.Limit > 0 && uint64(len(out.KVs)) >= req.Limit ||
			req.MaxBytes > 0 && len(out.KVs) > 0 && size+next > req.MaxBytes
	}
	add := func(kv KeyValue) {
		out.KVs = append(out.KVs, kv)
		size += kv.EncodedSizeBound()
	}
	if req.Rev == 0 || req.Rev == st.rev {
		if single {
			kv, ok, err := getCurrent(tx, start, !req.KeysOnly)
			if ok {
				out.KVs = append(out.KVs, kv)
			}
			return out, err
		}
		c := tx.Bucket(bucketKV).Cursor()
		for k, v := c.Seek(start); k != nil && (end == nil || bytes.Compare(k, end) < 0); k, v = c.Next() {
			valueLen := 0
			if !req.KeysOnly {
				valueLen = max(len(v)-24, 0)
			}
			if full(encodedSizeBound(len(k), valueLen)) {
				out.More = true
				break
			}
			kv, err := decodeCurrent(k, v, !req.KeysOnly)
			if err != nil {
				return out, err
			}
			add(kv)
		}
		return out, nil
	}
	if single {
		kv, ok, err := getAt(tx, start, req.Rev, !req.KeysOnly)
		if ok {
			out.KVs = append(out.KVs, kv)
		}
		return out, err
	}
	var endGroup []byte
	if end != nil {
		endGroup = histGroup(end)
	}
	c := tx.Bucket(bucketRevs).Cursor()
	var (
		group []byte
		best  []byte // key of the newest version <= req.Rev in group
		bestV []byte
	)
	// emit appends the group's visible version; it reports false when the
	// limit was already reached (and sets More).
	emit := func() (bool, error) {
		if best == nil || bestV[0] == histTombstone {
			return true, nil
		}
		kv, err := decodeHist(best, bestV, !req.KeysOnly)
		if err != nil {
			return false, err
		}
		if full(kv.EncodedSizeBound()) {
			out.More = true
			return false, nil
		}
		add(kv)
		return true, nil
	}
	for k, v := c.Seek(appendEscaped(nil, start)); k != nil; k, v = c.Next() {
		g, r, err := splitHistKey(k)
		if err != nil {
			return out, err
		}
		if endGroup != nil && bytes.Compare(g, endGroup) >= 0 {
			break
		}
		if !bytes.Equal(g, group) {
			if more, err := emit(); err != nil || !more {
				return out, err
			}
			group, best, bestV = g, nil, nil
		}
		if r <= req.Rev && len(v) > 0 {
			best, bestV = k, v
		}
	}
	_, err := emit()
	return out, err
}

// decodeHist decodes a history record, copying out of the tx.
func decodeHist(k, v []byte, withValue bool) (KeyValue, error) {
	g, rev, err := splitHistKey(k)
	if err != nil {
		return KeyValue{}, err
	}
	if len(v) < 17 {
		return KeyValue{}, fmt.Errorf("corrupt history record %x", k)
	}
	kv := KeyValue{
		Key:       unescapeGroup(g),
		ModRev:    rev,
		CreateRev: binary.BigEndian.Uint64(v[1:]),
		Version:   binary.BigEndian.Uint64(v[9:]),
	}
	if withValue {
		kv.Value = bytes.Clone(v[17:])
	}
	return kv, nil
}

// getAt returns key's version visible at rev from the history.
func getAt(tx *bolt.Tx, key []byte, rev uint64, withValue bool) (KeyValue, bool, error) {
	group := histGroup(key)
	c := tx.Bucket(bucketRevs).Cursor()
	k, v := c.Seek(histKey(key, rev+1))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, group) || len(k) != len(group)+8 {
		return KeyValue{}, false, nil
	}
	if len(v) == 0 || v[0] == histTombstone {
		return KeyValue{}, false, nil
	}
	kv, err := decodeHist(k, v, withValue)
	return kv, err == nil, err
}

// Get returns key's value at revision rev (0: the current one), or
// ErrKeyNotFound. It is a local (serializable) read; see Applied for
// linearizable reads.
func (s *Store) Get(key []byte, rev uint64) (KeyValue, error) {
	if len(key) == 0 {
		return KeyValue{}, ErrEmptyKey
	}
	res, err := s.Range(RangeRequest{Key: key, Rev: rev})
	if err != nil {
		return KeyValue{}, err
	}
	if len(res.KVs) == 0 {
		return KeyValue{}, fmt.Errorf("%w: %q", ErrKeyNotFound, key)
	}
	return res.KVs[0], nil
}

// Range reads keys as selected by req from the local store (a
// serializable read; see Applied for linearizable reads). Errors:
// ErrEmptyKey, ErrKeyTooLarge, ErrCompacted, ErrFutureRevision.
func (s *Store) Range(req RangeRequest) (RangeResult, error) {
	if !req.Prefix && len(req.End) == 0 && len(req.Key) == 0 {
		return RangeResult{}, ErrEmptyKey
	}
	if len(req.Key) > s.cfg.MaxKeyBytes || len(req.End) > s.cfg.MaxKeyBytes || len(req.After) > s.cfg.MaxKeyBytes {
		return RangeResult{}, ErrKeyTooLarge
	}
	var out RangeResult
	err := s.view(func(tx *bolt.Tx) error {
		st, err := readMeta(tx)
		if err != nil {
			return err
		}
		out, err = readRange(tx, st, req)
		return err
	})
	if err != nil {
		if CodeOf(err) != CodeBadCommand {
			return RangeResult{}, err
		}
		if errors.Is(err, ErrClosed) {
			return RangeResult{}, err
		}
		return RangeResult{}, fmt.Errorf("kvstore: range %q: %w", req.Key, err)
	}
	return out, nil
}
