package rudp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
)

// keyInfo is the HKDF info prefix; changing it changes every key.
const keyInfo = "raftkv rudp v1 aes-256-gcm"

// maxCachedKeys bounds the per-sender keys kept after a verified datagram.
const maxCachedKeys = 4096

// sealer authenticates datagrams with AES-256-GCM used as a MAC: the whole
// datagram is associated data, the plaintext is empty, and the 16-byte tag
// is appended. Each sender incarnation has its own key,
//
//	HKDF-SHA256(secret, salt = "raftkv-rudp-cluster" || clusterID,
//	            info = keyInfo || nodeID || incarnation),
//
// and the nonce is the sender's packet number (4 zero bytes || pn), unique
// per datagram of an incarnation, so no nonce ever repeats under a key.
type sealer struct {
	secret []byte
	salt   []byte
	own    cipher.AEAD // key of this endpoint's incarnation

	// Nonce buffers, kept here so that sealing and opening do not
	// allocate: sealNonce is used under Endpoint.mu (appendTag),
	// openNonce by the one goroutine that reads the socket (verify).
	sealNonce, openNonce [12]byte

	mu   sync.Mutex
	keys map[[2]uint64]cipher.AEAD // verified senders (node, incarnation)
}

func newSealer(secret []byte, cluster, node, inc uint64) (*sealer, error) {
	s := &sealer{
		secret: secret,
		salt:   binary.BigEndian.AppendUint64([]byte("raftkv-rudp-cluster"), cluster),
		keys:   make(map[[2]uint64]cipher.AEAD),
	}
	own, err := s.derive(node, inc)
	if err != nil {
		return nil, err
	}
	s.own = own
	return s, nil
}

// derive returns the AEAD of sender (node, inc).
func (s *sealer) derive(node, inc uint64) (cipher.AEAD, error) {
	info := binary.BigEndian.AppendUint64([]byte(keyInfo), node)
	info = binary.BigEndian.AppendUint64(info, inc)
	key, err := hkdf.Key(sha256.New, s.secret, s.salt, string(info), 32)
	if err != nil {
		return nil, fmt.Errorf("rudp: derive key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("rudp: derive key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("rudp: derive key: %w", err)
	}
	return aead, nil
}

// appendTag appends the tag of datagram b (whose header holds the packet
// number) under this endpoint's key, in place when b has the capacity.
// The caller holds Endpoint.mu.
func (s *sealer) appendTag(b []byte) []byte {
	return sealInto(s.own, &s.sealNonce, b)
}

func sealWith(aead cipher.AEAD, b []byte) []byte {
	var n [12]byte
	return sealInto(aead, &n, b)
}

// sealInto appends b's tag to b using n as the nonce buffer.
func sealInto(aead cipher.AEAD, n *[12]byte, b []byte) []byte {
	binary.BigEndian.PutUint64(n[4:], binary.BigEndian.Uint64(b[pnOffset:]))
	// The tag is the whole ciphertext of an empty plaintext; b is only
	// associated data, so the tag may go right behind it.
	return aead.Seal(b, n[:], nil, b)
}

// verify reports whether datagram b ends with a valid tag of its sender.
// It reads only the sender's node ID, incarnation and packet number, at
// fixed offsets, before the tag is checked. Only the socket's reader calls
// it.
func (s *sealer) verify(b []byte) bool {
	if len(b) < headerLen+tagLen {
		return false
	}
	body, tag := b[:len(b)-tagLen], b[len(b)-tagLen:]
	id := [2]uint64{binary.BigEndian.Uint64(b[nodeOffset:]), binary.BigEndian.Uint64(b[incOffset:])}
	s.mu.Lock()
	aead := s.keys[id]
	s.mu.Unlock()
	cached := aead != nil
	if !cached {
		var err error
		if aead, err = s.derive(id[0], id[1]); err != nil {
			return false
		}
	}
	binary.BigEndian.PutUint64(s.openNonce[4:], binary.BigEndian.Uint64(b[pnOffset:]))
	if _, err := aead.Open(nil, s.openNonce[:], tag, body); err != nil {
		return false
	}
	if !cached {
		s.mu.Lock()
		if len(s.keys) >= maxCachedKeys {
			for k := range s.keys {
				delete(s.keys, k)
				break
			}
		}
		s.keys[id] = aead
		s.mu.Unlock()
	}
	return true
}
