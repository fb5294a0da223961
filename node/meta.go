package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/raftkv/raftkv/internal/codec"
	"github.com/raftkv/raftkv/internal/fsutil"
	"github.com/raftkv/raftkv/kvstore"
	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// The runtime's own file, node.db, next to the Raft log (raft.db) and the
// state machine (kv.db). It holds:
//
//   - identity: the node ID and cluster ID the entrance gave at admission;
//   - members: ID -> {Name, Addr}, the replicated members table, as of the
//     applied index (rebuilt from ConfChange contexts and snapshots);
//   - format: the layout version of the data dir (metaFormat).
//
// The members table is replicated state kept outside kvstore; it travels
// inside snapshots in the envelope below. Client sessions are kvstore's
// (keyed by ClientID, in the state machine's own transaction). The members
// table stays here because moving it into kv.db would buy no atomicity: a
// configuration change is applied by the loop to the core and to the log's
// ConfState (raft.db) as well, outside any kv.db transaction, and replayed
// idempotently after a crash; and the bootstrap snapshot must name the
// founding member before any kvstore image exists (an empty Data installs
// an empty store), which would need a new kvstore snapshot form.
var (
	bucketIdentity = []byte("identity")
	bucketMembers  = []byte("members")
	// bucketClients held ClientID -> kvstore session in format 1; its
	// presence marks a data dir written by an older raftkv.
	bucketClients = []byte("clients")

	keyIdentity = []byte("identity")
	keyFormat   = []byte("format") // in bucketIdentity: 1 byte, metaFormat
)

// metaFormat is the layout version of a data dir (node.db, and with it
// the formats of kv.db and of snapshot envelopes).
//
//	1 (no format key): node.db also mapped ClientIDs to kvstore sessions
//	2: sessions are kvstore's alone, keyed by ClientID
//
// raft.db has its own format number (kvstore's logFormat: since 2, the
// snapshot data is a file in <data-dir>/snap), checked by kvstore.OpenLog.
const metaFormat = 2

// ErrDataFormat means the data dir was written by a raftkv whose layout
// this build does not read. Nothing was changed.
var ErrDataFormat = errors.New("node: unsupported data dir format")

// Identity is what a node keeps about itself across restarts.
type Identity struct {
	NodeID    uint64 `msgpack:"i"`
	ClusterID uint64 `msgpack:"c"`
	Name      string `msgpack:"n"`
	// Bootstrap says the entrance told this node to found the cluster; the
	// bootstrap state is written when the log is still empty.
	Bootstrap bool `msgpack:"b"`
	// Removed says this node left the configuration (it applied its
	// removal, the leader or the entrance said so): the data dir must not
	// serve again, and Run returns at once.
	Removed bool `msgpack:"r,omitempty"`
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
	db, err := fsutil.OpenBolt(path, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	db.NoSync = noSync
	err = db.Update(func(tx *bolt.Tx) error {
		if err := checkMetaFormat(tx); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketIdentity, bucketMembers} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketIdentity).Put(keyFormat, []byte{metaFormat})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("node: open %s: %w", path, err)
	}
	return &metaDB{db: db}, nil
}

// checkMetaFormat refuses a node.db of another format. A file with an
// identity (or a clients table) but no format key is format 1.
func checkMetaFormat(tx *bolt.Tx) error {
	ib := tx.Bucket(bucketIdentity)
	var v []byte
	if ib != nil {
		v = ib.Get(keyFormat)
	}
	switch {
	case len(v) == 1 && v[0] == metaFormat:
		return nil
	case v != nil:
		return fmt.Errorf("%w: format %x (this build reads format %d; was it written by a newer raftkv?)", ErrDataFormat, v, metaFormat)
	case tx.Bucket(bucketClients) != nil || (ib != nil && ib.Get(keyIdentity) != nil):
		return fmt.Errorf("%w: written by an older raftkv (format 1: client sessions registered through the log); "+
			"this build reads format %d only: keep the older raftkv for this data dir, or start this node with an empty data dir",
			ErrDataFormat, metaFormat)
	}
	return nil // a new file
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
}

func newReplState() replState {
	return replState{Members: map[uint64]Member{}}
}

func (s replState) clone() replState {
	return replState{Members: maps.Clone(s.Members)}
}

func u64key(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// load reads the members table.
func (m *metaDB) load() (replState, error) {
	s := newReplState()
	err := m.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("bad member key %x", k)
			}
			mb, err := decodeMember(v)
			if err != nil {
				return err
			}
			s.Members[binary.BigEndian.Uint64(k)] = mb
			return nil
		})
	})
	if err != nil {
		return replState{}, fmt.Errorf("node: load members: %w", err)
	}
	return s, nil
}

// replace overwrites the members table with s (a snapshot install).
func (m *metaDB) replace(s replState) error {
	err := m.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketMembers); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return err
		}
		b, err := tx.CreateBucket(bucketMembers)
		if err != nil {
			return err
		}
		for id, mb := range s.Members {
			if err := b.Put(u64key(id), encodeMember(mb)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node: replace members: %w", err)
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

// Snapshot envelope: the runtime wraps kvstore's snapshot bytes with its
// own replicated table.
//
//	magic "RKVNODE2" | uint32 BE length of msgpack(replState) | msgpack(replState) | kvstore snapshot bytes
//
// "RKVNODE1" (format 1) also carried the ClientID -> session map; such a
// snapshot comes from an older raftkv and is refused.
var (
	envelopeMagic   = []byte("RKVNODE2")
	envelopeMagicV1 = []byte("RKVNODE1")
)

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

// checkSnapshot checks a snapshot's envelope and its kvstore image
// without installing anything.
func checkSnapshot(data []byte) error {
	_, kvData, err := unwrapSnapshot(data)
	if err != nil || len(kvData) == 0 {
		return err
	}
	return kvstore.CheckSnapshot(kvData)
}

func unwrapSnapshot(data []byte) (replState, []byte, error) {
	if len(data) == 0 {
		return newReplState(), nil, nil
	}
	if bytes.HasPrefix(data, envelopeMagicV1) {
		return replState{}, nil, fmt.Errorf("%w: %w: envelope %q was written by an older raftkv (format 1); a cluster must run one format", ErrBadSnapshot, ErrDataFormat, envelopeMagicV1)
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
	return s, rest[n:], nil
}
