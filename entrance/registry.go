package entrance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/internal/codec"
	"github.com/raftkv/raftkv/internal/fsutil"
)

// Role is a node's place in the Raft configuration as the entrance knows it.
//
// ONLY APPEND: values are persisted.
type Role uint8

const (
	// RoleLearner receives the log but does not vote. A node that is
	// admitted but not yet in the configuration has this role as its target.
	RoleLearner Role = 1
	// RoleVoter votes and counts for the quorum.
	RoleVoter Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleLearner:
		return "learner"
	case RoleVoter:
		return "voter"
	}
	return fmt.Sprintf("role(%d)", r)
}

// State is a node's lifecycle state in the registry.
//
// Joining: admitted (it has an ID) but no leader has listed it in the
// configuration yet. Alive, Suspect, Down: a member, by the age of its last
// sign of life (see the package doc); the registry stores Alive for every
// member and the liveness word is computed when read, so pings only move
// LastSeen. Removed: it was in the configuration and a
// leader's report no longer lists it; its ID is never handed out again.
//
// ONLY APPEND: values are persisted.
type State uint8

const (
	StateJoining State = 1
	StateAlive   State = 2
	StateSuspect State = 3
	StateDown    State = 4
	StateRemoved State = 5
)

var stateNames = [...]string{"", "joining", "alive", "suspect", "down", "removed"}

func (s State) String() string {
	if int(s) > 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// Record is one node in the registry.
type Record struct {
	ID   uint64 `msgpack:"i"`
	Name string `msgpack:"n"`
	Addr string `msgpack:"a"`
	// Role is the role in the configuration; for a joining node, the role
	// it is being added with (learner, or voter for the bootstrap node).
	Role  Role  `msgpack:"r"`
	State State `msgpack:"s"`
	// Bootstrap marks the node that was told to start the cluster.
	Bootstrap bool `msgpack:"b"`
	// Match is the highest log index the leader knows is replicated there.
	Match uint64 `msgpack:"m"`
	// Term and Leader are the term and leader ID of the latest report that
	// listed the node.
	Term   uint64 `msgpack:"t"`
	Leader uint64 `msgpack:"l"`
	// LastSeenMS is the unix time in milliseconds of the node's latest sign
	// of life (package doc, "Liveness").
	LastSeenMS int64 `msgpack:"ls"`
	// JoinedMS is when the entrance admitted it (unix ms); admission order.
	JoinedMS int64 `msgpack:"j"`
}

// InConfig reports whether a leader has listed the node as a member and
// no later report dropped it.
func (r *Record) InConfig() bool { return r.State != StateJoining && r.State != StateRemoved }

// LastSeen returns LastSeenMS as a time.
func (r *Record) LastSeen() time.Time { return time.UnixMilli(r.LastSeenMS) }

// Meta is the registry's cluster-wide state.
type Meta struct {
	// ClusterID is created once, when the first node bootstraps; 0 until then.
	ClusterID uint64 `msgpack:"c"`
	// LeaderID, LeaderAddr and Term are the latest accepted leader report.
	LeaderID   uint64 `msgpack:"l"`
	LeaderAddr string `msgpack:"a"`
	Term       uint64 `msgpack:"t"`
}

var (
	bucketNodes = []byte("nodes")
	bucketMeta  = []byte("meta")
	keyMeta     = []byte("meta")
)

// store persists the registry in one bbolt file. It is not safe for
// concurrent use; the Entrance serializes access under its mutex.
type store struct {
	db *bolt.DB
}

// registryFile is the bbolt file under the data dir.
const registryFile = "entrance.db"

func openStore(dir string) (*store, error) {
	if err := fsutil.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("entrance: create data dir: %w", err)
	}
	path := filepath.Join(dir, registryFile)
	db, err := fsutil.OpenBolt(path, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("entrance: registry: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketNodes, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("entrance: init registry: %w", err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// load returns the persisted meta and every record.
func (s *store) load() (Meta, map[uint64]*Record, error) {
	var meta Meta
	recs := make(map[uint64]*Record)
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyMeta); v != nil {
			if err := codec.Unmarshal(v, &meta); err != nil {
				return fmt.Errorf("meta: %w", err)
			}
		}
		return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			var r Record
			if err := codec.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("node %x: %w", k, err)
			}
			if len(k) != 8 || binary.BigEndian.Uint64(k) != r.ID || r.ID == 0 {
				return fmt.Errorf("node key %x does not match id %016x", k, r.ID)
			}
			recs[r.ID] = &r
			return nil
		})
	})
	if err != nil {
		return Meta{}, nil, fmt.Errorf("entrance: load registry: %w", err)
	}
	return meta, recs, nil
}

// save writes meta (when non-nil) and the given records in one transaction.
func (s *store) save(meta *Meta, recs ...*Record) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if meta != nil {
			b, err := codec.Marshal(meta)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketMeta).Put(keyMeta, b); err != nil {
				return err
			}
		}
		nodes := tx.Bucket(bucketNodes)
		for _, r := range recs {
			if r.ID == 0 {
				return errors.New("record with id 0")
			}
			b, err := codec.Marshal(r)
			if err != nil {
				return err
			}
			if err := nodes.Put(idKey(r.ID), b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("entrance: save registry: %w", err)
	}
	return nil
}

func idKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}
