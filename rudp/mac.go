package rudp

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"
)

// macInfo is the HKDF info string; changing it changes every key.
const macInfo = "raftkv rudp v1 hmac-sha256"

// macer computes and checks datagram tags.
type macer struct {
	pool sync.Pool // of hash.Hash (HMAC-SHA256 with the derived key)
}

func newMacer(secret []byte, cluster uint64) (*macer, error) {
	salt := binary.BigEndian.AppendUint64([]byte("raftkv-rudp-cluster"), cluster)
	key, err := hkdf.Key(sha256.New, secret, salt, macInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("rudp: derive MAC key: %w", err)
	}
	m := &macer{}
	m.pool.New = func() any { return hmac.New(sha256.New, key) }
	return m, nil
}

// appendTag appends the tag of b to b.
func (m *macer) appendTag(b []byte) []byte {
	h := m.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(b)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	m.pool.Put(h)
	return append(b, sum[:tagLen]...)
}

// verify reports whether b ends with the valid tag of the bytes before it.
func (m *macer) verify(b []byte) bool {
	if len(b) < tagLen {
		return false
	}
	body, tag := b[:len(b)-tagLen], b[len(b)-tagLen:]
	h := m.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(body)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	m.pool.Put(h)
	return hmac.Equal(sum[:tagLen], tag)
}
