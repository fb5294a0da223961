package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/raftkv/raftkv/internal/codec"
	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// The runtime's own file, node.db, next to the Raft log (raft.db) and the
// state machine (kv.db). It holds:
//
//   - identity: the node ID and cluster ID the entrance gave at admission;
//   - members: ID -> {Name, Addr}, the replicated members table, as of the
//     applied index (rebuilt from ConfChange contexts and snapshots);
//   - clients: ClientID -> kvstore session id, also replicated state (see
//     sessions.go).
//
// The members and clients tables are replicated state kept outside
// kvstore; they travel inside snapshots in the envelope of snapshot.go.
var (
	bucketIdentity = []byte("identity")
	bucketMembers  = []byte("members")
	bucketClients  = []byte("clients")

	keyIdentity = []byte("identity")
)

// Identity is what a node keeps about itself across restarts.
type Identity struct {
	NodeID    uint64 `msgpack:"i"`
	ClusterID uint64 `msgpack:"c"`
	Name      string `msgpack:"n"`
	// Bootstrap says the entrance told this node to found the cluster; the
	// bootstrap state is written when the log is still empty.
	Bootstrap bool `msgpack:"b"`
}

// Member is one row of the members table: what a ConfChange's Context
// carries.
type Member struct {
	Name string `msgpack:"n"`
	Addr string `msgpack:"a"`
}

func encodeMember(m Member) []byte {
	b, err := msgpack.Marshal(&m)
	if err != nil {
		panic(fmt.Sprintf("node: encode member: %v", err))
	}
	return b
}

func decodeMember(b []byte) (Member, error) {
	var m Member
	if err := codec.Unmarshal(b, &m); err != nil {
		return Member{}, fmt.Errorf("node: decode member: %w", err)
	}
	return m, nil
}

// metaDB is node.db.
type metaDB struct {
	db *bolt.DB
}

func openMeta(path string, noSync bool) (*metaDB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("node: open %s: %w", path, err)
	}
	db.NoSync = noSync
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketIdentity, bucketMembers, bucketClients} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("node: open %s: %w", path, err)
	}
	return &metaDB{db: db}, nil
}

func (m *metaDB) Close() error { return m.db.Close() }

// identity returns the stored identity (ok false when never admitted).
func (m *metaDB) identity() (id Identity, ok bool, err error) {
	err = m.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketIdentity).Get(keyIdentity)
		if v == nil {
			return nil
		}
		ok = true
		return codec.Unmarshal(v, &id)
	})
	if err != nil {
		return Identity{}, false, fmt.Errorf("node: read identity: %w", err)
	}
	return id, ok, nil
}

func (m *metaDB) setIdentity(id Identity) error {
	b, err := msgpack.Marshal(&id)
	if err != nil {
		return fmt.Errorf("node: encode identity: %w", err)
	}
	if err := m.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIdentity).Put(keyIdentity, b)
	}); err != nil {
		return fmt.Errorf("node: write identity: %w", err)
	}
	return nil
}

// replState is the runtime's share of the replicated state.
type replState struct {
	Members map[uint64]Member `msgpack:"m"`
	// Clients maps a client's ClientID to its kvstore session.
	Clients map[uint64]uint64 `msgpack:"c"`
}

func newReplState() replState {
	return replState{Members: map[uint64]Member{}, Clients: map[uint64]uint64{}}
}

func (s replState) clone() replState {
	return replState{Members: maps.Clone(s.Members), Clients: maps.Clone(s.Clients)}
}

func u64key(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// load reads the members and clients tables.
func (m *metaDB) load() (replState, error) {
	s := newReplState()
	err := m.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("bad member key %x", k)
			}
			mb, err := decodeMember(v)
			if err != nil {
				return err
			}
			s.Members[binary.BigEndian.Uint64(k)] = mb
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketClients).ForEach(func(k, v []byte) error {
			if len(k) != 8 || len(v) != 8 {
				return fmt.Errorf("bad client row %x", k)
			}
			s.Clients[binary.BigEndian.Uint64(k)] = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		return replState{}, fmt.Errorf("node: load members and clients: %w", err)
	}
	return s, nil
}

// replace overwrites both tables with s (a snapshot install).
func (m *metaDB) replace(s replState) error {
	err := m.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMembers, bucketClients} {
			if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		for id, mb := range s.Members {
			if err := tx.Bucket(bucketMembers).Put(u64key(id), encodeMember(mb)); err != nil {
				return err
			}
		}
		for c, sess := range s.Clients {
			if err := tx.Bucket(bucketClients).Put(u64key(c), u64key(sess)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node: replace members and clients: %w", err)
	}
	return nil
}

// putMember records (or, with del, removes) one member.
func (m *metaDB) putMember(id uint64, mb Member, del bool) error {
	err := m.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMembers)
		if del {
			return b.Delete(u64key(id))
		}
		return b.Put(u64key(id), encodeMember(mb))
	})
	if err != nil {
		return fmt.Errorf("node: write member %016x: %w", id, err)
	}
	return nil
}

// putClients records and removes client sessions in one transaction.
func (m *metaDB) putClients(set map[uint64]uint64, del []uint64) error {
	if len(set) == 0 && len(del) == 0 {
		return nil
	}
	err := m.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketClients)
		for c, sess := range set {
			if err := b.Put(u64key(c), u64key(sess)); err != nil {
				return err
			}
		}
		for _, c := range del {
			if err := b.Delete(u64key(c)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node: write client sessions: %w", err)
	}
	return nil
}

// Snapshot envelope: the runtime wraps kvstore's snapshot bytes with its
// own replicated tables.
//
//	magic "RKVNODE1" | uint32 BE length of msgpack(replState) | msgpack(replState) | kvstore snapshot bytes
var envelopeMagic = []byte("RKVNODE1")

func wrapSnapshot(s replState, kv []byte) []byte {
	meta, err := msgpack.Marshal(&s)
	if err != nil {
		panic(fmt.Sprintf("node: encode snapshot tables: %v", err))
	}
	out := make([]byte, 0, len(envelopeMagic)+4+len(meta)+len(kv))
	out = append(out, envelopeMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(meta)))
	out = append(out, meta...)
	return append(out, kv...)
}

// ErrBadSnapshot means snapshot data is not a runtime snapshot envelope.
var ErrBadSnapshot = errors.New("node: bad snapshot envelope")

func unwrapSnapshot(data []byte) (replState, []byte, error) {
	if len(data) == 0 {
		return newReplState(), nil, nil
	}
	if !bytes.HasPrefix(data, envelopeMagic) || len(data) < len(envelopeMagic)+4 {
		return replState{}, nil, fmt.Errorf("%w: missing header", ErrBadSnapshot)
	}
	rest := data[len(envelopeMagic):]
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(n) > uint64(len(rest)) {
		return replState{}, nil, fmt.Errorf("%w: table length %d > %d", ErrBadSnapshot, n, len(rest))
	}
	s := newReplState()
	if err := codec.Unmarshal(rest[:n], &s); err != nil {
		return replState{}, nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	if s.Members == nil {
		s.Members = map[uint64]Member{}
	}
	if s.Clients == nil {
		s.Clients = map[uint64]uint64{}
	}
	return s, rest[n:], nil
}
