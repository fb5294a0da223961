package node

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/raftkv/raftkv/kvstore"
	bolt "go.etcd.io/bbolt"
)

// FuzzUnwrapSnapshot feeds snapshot data (it arrives in MsgSnap chunks from
// the network) to the envelope decoder: it must never panic, and a valid
// envelope must round-trip.
func FuzzUnwrapSnapshot(f *testing.F) {
	s := newReplState()
	s.Members[1] = Member{Name: "n1", Addr: "127.0.0.1:7701"}
	f.Add(wrapSnapshot(s, []byte("RKVSNAP\x01data")))
	f.Add(wrapSnapshot(newReplState(), nil))
	f.Add([]byte{})
	f.Add([]byte("RKVNODE1\xff\xff\xff\xff"))
	f.Add([]byte("RKVNODE1\x00\x00\x00\x02\x81\xa1"))
	f.Add([]byte("RKVNODE2\xff\xff\xff\xff"))
	f.Add([]byte("RKVNODE2\x00\x00\x00\x02\x81\xa1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, kv, err := unwrapSnapshot(data)
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("error %v does not wrap ErrBadSnapshot", err)
			}
			return
		}
		again := wrapSnapshot(rs, kv)
		rs2, kv2, err := unwrapSnapshot(again)
		if err != nil {
			t.Fatalf("re-wrapped envelope fails: %v", err)
		}
		if !bytes.Equal(kv, kv2) || !cmp.Equal(rs, rs2) {
			t.Fatalf("round trip changed the envelope")
		}
	})
}

// FuzzDecodeMember covers ConfChange contexts (they come from the log,
// which followers receive from the network).
func FuzzDecodeMember(f *testing.F) {
	f.Add(encodeMember(Member{Name: "n1", Addr: "127.0.0.1:7701"}))
	f.Add([]byte{0x80})
	f.Add([]byte{0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMember(data)
		if err != nil {
			return
		}
		if m2, err := decodeMember(encodeMember(m)); err != nil || m2 != m {
			t.Fatalf("round trip: %+v vs %+v (%v)", m, m2, err)
		}
	})
}

func TestSnapshotEnvelopeRoundTrip(t *testing.T) {
	s := newReplState()
	s.Members[3] = Member{Name: "n3", Addr: "127.0.0.3:7703"}
	rs, kv, err := unwrapSnapshot(wrapSnapshot(s, []byte("kv-bytes")))
	if err != nil {
		t.Fatal(err)
	}
	if string(kv) != "kv-bytes" || !cmp.Equal(rs, s) {
		t.Fatalf("got %+v %q", rs, kv)
	}
	if _, _, err := unwrapSnapshot([]byte("RKVSNAP\x01not an envelope")); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("kvstore bytes without envelope: %v", err)
	}
	// An envelope of format 1 (it also carried the ClientID -> session
	// map) comes from an older raftkv: refused, saying so.
	v1 := append([]byte("RKVNODE1"), wrapSnapshot(s, []byte("kv-bytes"))[len(envelopeMagic):]...)
	if _, _, err := unwrapSnapshot(v1); !errors.Is(err, ErrBadSnapshot) || !errors.Is(err, ErrDataFormat) {
		t.Fatalf("format-1 envelope: %v, want ErrBadSnapshot and ErrDataFormat", err)
	}
}

// TestMetaFormat: node.db records its format; a node.db of format 1 (an
// identity or a clients table, no format key) or of an unknown format is
// refused with ErrDataFormat and left as it was.
func TestMetaFormat(t *testing.T) {
	write := func(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
		t.Helper()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		setup   func(tx *bolt.Tx) error
		wantErr bool
	}{
		{name: "new file", setup: func(tx *bolt.Tx) error { return nil }},
		{name: "format 1 with identity", wantErr: true, setup: func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketIdentity)
			if err != nil {
				return err
			}
			return b.Put(keyIdentity, []byte{0x80})
		}},
		{name: "format 1 with clients", wantErr: true, setup: func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket(bucketClients)
			return err
		}},
		{name: "unknown format", wantErr: true, setup: func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketIdentity)
			if err != nil {
				return err
			}
			return b.Put(keyFormat, []byte{metaFormat + 1})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "node.db")
			write(t, path, tt.setup)
			m, err := openMeta(path, true)
			if tt.wantErr {
				if !errors.Is(err, ErrDataFormat) {
					t.Fatalf("open: %v, want ErrDataFormat", err)
				}
				t.Logf("refusal reads: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := m.setIdentity(Identity{NodeID: 1, ClusterID: 2, Name: "n1"}); err != nil {
				t.Fatal(err)
			}
			m.Close()
			// Reopening the file it wrote works.
			if m, err = openMeta(path, true); err != nil {
				t.Fatalf("reopen: %v", err)
			}
			m.Close()
		})
	}
}

// TestCheckSnapshot: a node checks a received snapshot (envelope and
// kvstore image) before saving it over its log.
func TestCheckSnapshot(t *testing.T) {
	kv, err := kvstore.Open(filepath.Join(t.TempDir(), "kv.db"), kvstore.Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	image, _, err := kv.SnapshotBytes()
	if err != nil {
		t.Fatal(err)
	}
	s := newReplState()
	s.Members[1] = Member{Name: "n1", Addr: "127.0.0.1:7701"}
	good := wrapSnapshot(s, image)
	if err := checkSnapshot(good); err != nil {
		t.Fatalf("a good snapshot: %v", err)
	}
	if err := checkSnapshot(wrapSnapshot(s, nil)); err != nil {
		t.Fatalf("the bootstrap snapshot (no image): %v", err)
	}
	damaged := bytes.Clone(good)
	damaged[len(damaged)-20] ^= 1
	v1 := append([]byte("RKVNODE1"), good[len(envelopeMagic):]...)
	for name, bad := range map[string][]byte{"damaged image": damaged, "format-1 envelope": v1, "image without envelope": image} {
		if err := checkSnapshot(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
