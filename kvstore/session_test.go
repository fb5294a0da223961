package kvstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"pgregory.net/rapid"

	"github.com/raftkv/raftkv/node/raft"
)

// register returns a ClientID never used in k. Nothing is applied: the
// client's first command (Seq 1) opens its session.
func register(t *testing.T, k *testKV, _ time.Duration) uint64 {
	t.Helper()
	k.clients++
	return 0xc11e000000000000 | k.clients
}

func withSession(cmd Command, id, seq uint64, at time.Duration) Command {
	cmd.ClientID, cmd.Seq, cmd.Time = id, seq, int64(at)
	return cmd
}

func withStart(cmd Command, start time.Duration) Command {
	cmd.SessionStart = int64(start)
	return cmd
}

func TestSessionExactlyOnce(t *testing.T) {
	k := newTestKV(t, Config{})
	id := register(t, k, time.Second)
	r1 := k.mustApply(withSession(put("a", "1"), id, 1, time.Second))
	if st, _ := k.s.Status(); st.Sessions != 1 {
		t.Fatalf("%d sessions after the client's first command, want 1 (opened in the same entry)", st.Sessions)
	}
	k.mustApply(put("a", "other")) // someone else writes in between
	dup := k.apply(withSession(put("a", "1"), id, 1, time.Second))
	if !dup.Duplicate || dup.Rev != r1.Rev || dup.KV.ModRev != r1.KV.ModRev {
		t.Fatalf("retry: %+v, want the first answer %+v marked Duplicate", dup, r1)
	}
	if kv, _ := k.s.Get([]byte("a"), 0); string(kv.Value) != "other" || kv.Version != 2 {
		t.Fatalf("retry was applied again: a=%q version %d", kv.Value, kv.Version)
	}
	// A failed CAS is answered the same way on retry, even though the
	// compare would hold now.
	c := withSession(cas("a", Compare{Target: CompareValue, Value: []byte("x")}, OpPut, "y"), id, 2, time.Second)
	if r := k.apply(c); !errors.Is(r.Err, ErrCompareFailed) {
		t.Fatalf("cas: %v", r.Err)
	}
	k.mustApply(put("a", "x"))
	// Every retry, not just the first, gets the stored failure: answering
	// a duplicate rewrites the session row and must keep its code.
	for i := range 3 {
		if r := k.apply(c); !errors.Is(r.Err, ErrCompareFailed) || !r.Duplicate {
			t.Fatalf("cas retry %d: %+v, want the stored ErrCompareFailed", i+1, r)
		}
	}
	if r := k.apply(withSession(put("a", "old"), id, 1, time.Second)); !errors.Is(r.Err, ErrStaleSequence) {
		t.Fatalf("stale seq: %v, want ErrStaleSequence", r.Err)
	}
	// An unknown client whose command is not its first: its session
	// existed once and is gone, so this may be a retry of something applied.
	if r := k.apply(withSession(put("a", "z"), 999, 2, time.Second)); !errors.Is(r.Err, ErrSessionExpired) {
		t.Fatalf("unknown client, seq 2: %v, want ErrSessionExpired", r.Err)
	}
	k.mustApply(withSession(Command{Op: OpCloseSession}, id, 3, time.Second))
	if r := k.apply(withSession(put("a", "z"), id, 4, time.Second)); !errors.Is(r.Err, ErrSessionExpired) {
		t.Fatalf("closed session: %v, want ErrSessionExpired", r.Err)
	}
	if kv, _ := k.s.Get([]byte("a"), 0); string(kv.Value) != "x" {
		t.Fatalf("a=%q after refused commands, want x", kv.Value)
	}
	if st, _ := k.s.Status(); st.Sessions != 0 {
		t.Fatalf("%d sessions after close and refusals, want 0", st.Sessions)
	}
}

// TestSessionOpenRules: what the first command of an unknown ClientID does.
func TestSessionOpenRules(t *testing.T) {
	const ttl = 10 * time.Second
	tests := []struct {
		name         string
		cmd          Command
		wantErr      error
		wantSessions int
		wantA        string // value of a afterwards ("" absent)
	}{
		{name: "seq 1 opens", cmd: withSession(put("a", "1"), 7, 1, 100*time.Second), wantSessions: 2, wantA: "1"},
		{name: "seq 1 noop opens", cmd: withSession(Command{Op: OpNoop}, 7, 1, 100*time.Second), wantSessions: 2},
		{name: "failed first command opens", cmd: withSession(put("", "1"), 7, 1, 100*time.Second), wantErr: ErrEmptyKey, wantSessions: 2},
		{name: "seq 2 refused", cmd: withSession(put("a", "1"), 7, 2, 100*time.Second), wantErr: ErrSessionExpired, wantSessions: 1},
		{name: "seq 0 refused", cmd: withSession(put("a", "1"), 7, 0, 100*time.Second), wantErr: ErrBadCommand, wantSessions: 1},
		{name: "stamped ttl/2 behind opens", cmd: withSession(put("a", "1"), 7, 1, 95*time.Second), wantSessions: 2, wantA: "1"},
		{name: "stamped over ttl/2 behind refused", cmd: withSession(put("a", "1"), 7, 1, 95*time.Second-1), wantErr: ErrSessionExpired, wantSessions: 1},
		{name: "session start ttl/2 behind opens", cmd: withStart(withSession(put("a", "1"), 7, 1, 100*time.Second), 95*time.Second), wantSessions: 2, wantA: "1"},
		{name: "session start over ttl/2 behind refused", cmd: withStart(withSession(put("a", "1"), 7, 1, 100*time.Second), 95*time.Second-1), wantErr: ErrSessionExpired, wantSessions: 1},
		{name: "session start beats a recent stamp", cmd: withStart(withSession(put("a", "1"), 7, 1, 200*time.Second), 10*time.Second), wantErr: ErrSessionExpired, wantSessions: 0},
		{name: "close of unknown is a no-op", cmd: withSession(Command{Op: OpCloseSession}, 7, 1, 100*time.Second), wantSessions: 1},
		{name: "range ignores the session", cmd: withSession(Command{Op: OpRange, Key: []byte("a")}, 7, 9, 100*time.Second), wantSessions: 1},
		{name: "retired register", cmd: Command{Op: OpRegisterSession, Time: int64(100 * time.Second)}, wantErr: ErrBadCommand, wantSessions: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newTestKV(t, Config{SessionTTL: ttl})
			k.mustApply(withSession(Command{Op: OpNoop}, 1, 1, 100*time.Second)) // the log clock is at 100s
			r := k.apply(tt.cmd)
			if !errors.Is(r.Err, tt.wantErr) || (tt.wantErr == nil) != (r.Err == nil) {
				t.Fatalf("err %v, want %v", r.Err, tt.wantErr)
			}
			st, err := k.s.Status()
			if err != nil {
				t.Fatal(err)
			}
			if st.Sessions != tt.wantSessions {
				t.Errorf("%d sessions, want %d", st.Sessions, tt.wantSessions)
			}
			kv, err := k.s.Get([]byte("a"), 0)
			if got := string(kv.Value); (err == nil) != (tt.wantA != "") || got != tt.wantA {
				t.Errorf("a=%q (%v), want %q", got, err, tt.wantA)
			}
		})
	}
}

func TestSessionAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	k := &testKV{t: t, s: s}
	id := register(t, k, time.Second)
	first := k.mustApply(withSession(put("a", "1"), id, 1, time.Second))
	second := k.mustApply(withSession(put("b", "2"), id, 2, time.Second))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k.s = s
	if s.Applied() != 2 {
		t.Fatalf("applied %d after restart, want 2", s.Applied())
	}
	r := k.apply(withSession(put("b", "2"), id, 2, 2*time.Second))
	if !r.Duplicate || r.Rev != second.Rev {
		t.Fatalf("retry after restart: %+v, want the answer %+v", r, second)
	}
	if r := k.apply(withSession(put("a", "1"), id, 1, 2*time.Second)); !errors.Is(r.Err, ErrStaleSequence) {
		t.Fatalf("older seq after restart: %v, want ErrStaleSequence (first answer was %+v)", r.Err, first)
	}
	// Replaying the log after a restart is harmless: the entries are at
	// or below the applied index.
	if rs, err := s.Apply([]raft.Entry{k.entryAt(2, withSession(put("b", "2"), id, 2, time.Second))}); err != nil || len(rs) != 0 {
		t.Fatalf("replay of an applied entry: %v %v", rs, err)
	}
	if st, _ := s.Status(); st.Rev != 2 {
		t.Fatalf("rev %d after retried puts, want 2", st.Rev)
	}
}

func TestSessionExpiry(t *testing.T) {
	k := newTestKV(t, Config{SessionTTL: 10 * time.Second})
	idle := register(t, k, 1*time.Second)
	busy := register(t, k, 1*time.Second)
	k.mustApply(withSession(put("i", "1"), idle, 1, 1*time.Second))
	seq := uint64(0)
	for at := 2 * time.Second; at <= 20*time.Second; at += 2 * time.Second {
		seq++
		k.mustApply(withSession(Command{Op: OpNoop}, busy, seq, at)) // keep-alive
	}
	// The idle client retries its first command after its session
	// expired: that copy was applied, so it must not open a new session.
	if r := k.apply(withSession(put("i", "1"), idle, 1, 1*time.Second)); !errors.Is(r.Err, ErrSessionExpired) {
		t.Fatalf("retry of an expired client's first command stamped 19s ago: %v, want ErrSessionExpired", r.Err)
	}
	if r := k.apply(withSession(put("i", "2"), idle, 2, 20*time.Second)); !errors.Is(r.Err, ErrSessionExpired) {
		t.Fatalf("idle client after 19s of log time: %v, want ErrSessionExpired", r.Err)
	}
	if kv, _ := k.s.Get([]byte("i"), 0); kv.Version != 1 || string(kv.Value) != "1" {
		t.Fatalf("i=%q version %d: a refused command was applied", kv.Value, kv.Version)
	}
	if r := k.apply(withSession(put("a", "1"), busy, seq+1, 20*time.Second)); r.Err != nil {
		t.Fatalf("busy session: %v", r.Err)
	}
	// The log clock never goes back: an entry with an old Time does not
	// revive anything or expire anything differently.
	if r := k.apply(withSession(put("a", "2"), busy, seq+2, time.Second)); r.Err != nil {
		t.Fatalf("entry with an old time: %v", r.Err)
	}
	st, _ := k.s.Status()
	if st.Clock != int64(20*time.Second) || st.Sessions != 1 {
		t.Fatalf("status %+v, want clock 20s and 1 session", st)
	}
	// A session expires at the same log index on every replica, however
	// the entries are batched.
	entries := func(k *testKV) []raft.Entry {
		var es []raft.Entry
		for i := 1; i < 30; i++ {
			es = append(es, k.entry(withSession(put("k", "v"), 1, uint64(i), time.Duration(i)*time.Second)))
			if i == 5 {
				es = append(es, k.entry(withSession(put("j", "v"), 2, 1, 5*time.Second)))
			}
			if i == 25 {
				// Client 2 expired at 16s: a retry of its first command
				// is too old to open a session; its next command is refused.
				es = append(es, k.entry(withSession(put("j", "w"), 2, 1, 5*time.Second)))
				es = append(es, k.entry(withSession(put("j", "w"), 2, 2, 25*time.Second)))
			}
		}
		return es
	}
	a, b := newTestKV(t, Config{SessionTTL: 10 * time.Second}), newTestKV(t, Config{SessionTTL: 10 * time.Second})
	es := entries(a)
	entries(b)
	ra, err := a.s.Apply(es)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		rb, err := b.s.Apply([]raft.Entry{e})
		if err != nil {
			t.Fatal(err)
		}
		if CodeOf(rb[0].Err) != CodeOf(ra[i].Err) || rb[0].Duplicate != ra[i].Duplicate {
			t.Fatalf("entry %d: batched %v, alone %v", e.Index, ra[i].Err, rb[0].Err)
		}
	}
	if dumpStore(t, a.s) != dumpStore(t, b.s) {
		t.Fatal("one batch and entry-by-entry apply differ")
	}
	if kv, _ := a.s.Get([]byte("j"), 0); string(kv.Value) != "v" || kv.Version != 1 {
		t.Fatalf("j=%q version %d, want the one write of client 2", kv.Value, kv.Version)
	}
}

// TestSessionNoDoubleApply pits the session table against the property it
// exists for: whatever the interleaving of clients, retries (for as long
// as they like), lost answers, refusals, expiries and clock jumps, no
// (ClientID, Seq) is ever applied twice (see applyWithSession). Clients
// that send no SessionStart are safe only while the copies of their first
// command are proposed less than SessionTTL/2 apart. Clients behave like client.Client: one
// command in flight, retried with the same (ClientID, Seq) or given up
// (outcome unknown), and a new ClientID after a refusal.
func TestSessionNoDoubleApply(t *testing.T) {
	const ttl = 100 * time.Second
	rapid.Check(t, func(rt *rapid.T) {
		k := newTestKV(t, Config{SessionTTL: ttl, NoSync: true})
		type client struct {
			id, seq  uint64
			start    time.Duration // when it chose id (0: it does not say)
			inFlight bool
			stamp    time.Duration // Time of the first copy of the command in flight
		}
		var (
			now     time.Duration
			clients [4]client
			applied = map[[2]uint64]bool{}
			ids     uint64
		)
		newClient := func(rt *rapid.T) client {
			ids++
			c := client{id: ids}
			if rapid.Bool().Draw(rt, "says when it started") {
				c.start = max(now, 1)
			}
			return c
		}
		for i := range clients {
			clients[i] = newClient(rt)
		}
		rt.Repeat(map[string]func(*rapid.T){
			"tick": func(rt *rapid.T) {
				now += time.Duration(rapid.Int64Range(0, int64(ttl)).Draw(rt, "dt"))
			},
			"jump": func(rt *rapid.T) {
				// A proposer whose clock runs ahead moves the log clock on.
				k.mustApply(Command{Op: OpNoop, Time: int64(now + time.Duration(rapid.Int64Range(0, int64(3*ttl)).Draw(rt, "ahead")))})
			},
			"send": func(rt *rapid.T) {
				c := &clients[rapid.IntRange(0, len(clients)-1).Draw(rt, "client")]
				// A copy may arrive any time later (a client retrying for
				// long, a request delayed on its way: it is stamped when
				// proposed), except the first command of a client that sends
				// no SessionStart: its copies come within SessionTTL/2.
				if c.inFlight && ((c.seq == 1 && c.start == 0 && now-c.stamp >= ttl/2) || rapid.Bool().Draw(rt, "give up")) {
					c.inFlight = false // outcome unknown; the next command takes the next Seq
				}
				if !c.inFlight {
					c.seq++
					c.inFlight, c.stamp = true, now
				}
				r := k.apply(withStart(withSession(put("k", fmt.Sprint(c.id, c.seq)), c.id, c.seq, now), c.start))
				key := [2]uint64{c.id, c.seq}
				lost := rapid.Bool().Draw(rt, "reply lost")
				switch {
				case r.Err == nil && !r.Duplicate:
					if applied[key] {
						rt.Fatalf("client %d seq %d applied twice", c.id, c.seq)
					}
					applied[key] = true
					c.inFlight = lost // the client retries what it got no answer to
				case r.Err == nil:
					if !applied[key] {
						rt.Fatalf("client %d seq %d answered as a duplicate but never applied", c.id, c.seq)
					}
					c.inFlight = lost
				case errors.Is(r.Err, ErrSessionExpired):
					// Not applied now; an earlier copy may have been. The
					// client starts over under a new ClientID, or keeps
					// retrying (and keeps being refused).
					if !lost && rapid.Bool().Draw(rt, "new id") {
						*c = newClient(rt)
					}
				case errors.Is(r.Err, ErrStaleSequence):
					rt.Fatalf("client %d seq %d: stale, but it sends one command at a time", c.id, c.seq)
				default:
					rt.Fatalf("client %d seq %d: %v", c.id, c.seq, r.Err)
				}
			},
		})
	})
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// appendTrailer appends WriteSnapshot's trailer of img to b.
func appendTrailer(b, img []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(img)))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(img, castagnoli))
}

func TestStoreFormatRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := Open(path, Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	k := &testKV{t: t, s: s}
	k.mustApply(put("a", "1"))
	data, info, err := s.SnapshotBytes()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Make it a file of store format 1, as an older raftkv wrote.
	setFormat := func(path string, v byte) {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte{v}) }); err != nil {
			t.Fatal(err)
		}
	}
	setFormat(path, 1)
	if _, err := Open(path, Config{NoSync: true}); !errors.Is(err, ErrFormat) {
		t.Fatalf("open of a format-1 file: %v, want ErrFormat", err)
	} else {
		t.Logf("refusal reads: %v", err)
	}
	setFormat(path, storeFormat)
	s, err = Open(path, Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A snapshot of a format-1 store is refused too, and the store kept.
	old := filepath.Join(t.TempDir(), "old.db")
	o, err := Open(old, Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ok := &testKV{t: t, s: o}
	ok.mustApply(put("a", "old"))
	o.Close()
	setFormat(old, 1)
	img := readFile(t, old)
	var old1 []byte
	old1 = append(old1, snapshotMagic...)
	old1 = append(old1, img...)
	old1 = appendTrailer(old1, img)
	dst := newTestKV(t, Config{})
	err = dst.s.InstallSnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: 1, Term: 1}, Data: old1})
	if !errors.Is(err, ErrFormat) || !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("install of a format-1 snapshot: %v, want ErrBadSnapshot and ErrFormat", err)
	}
	if dst.s.Applied() != 0 {
		t.Fatalf("applied %d after a refused install", dst.s.Applied())
	}
	// The current format installs.
	if err := dst.s.InstallSnapshot(raft.Snapshot{Meta: raft.SnapshotMeta{Index: info.Applied, Term: 1}, Data: data}); err != nil {
		t.Fatal(err)
	}
}

// TestResultCarriesSessionIdentity: a result names its command's ClientID
// and Seq (the runtime finds the waiting writer by them), for a fresh
// command, a duplicate answered from the session table and a command
// without a session; entries that were not decoded carry zeros.
func TestResultCarriesSessionIdentity(t *testing.T) {
	k := newTestKV(t, Config{MaxRequestBytes: 256})
	now := time.Now().UnixNano()
	cmd := Command{Op: OpPut, Key: []byte("k"), Value: []byte("v"), ClientID: 77, Seq: 1, Time: now}
	for _, what := range []string{"first", "duplicate"} {
		r := k.apply(cmd)
		if r.ClientID != 77 || r.Seq != 1 || (what == "duplicate") != r.Duplicate {
			t.Fatalf("%s: result identity %d/%d duplicate %v, want 77/1 %v", what, r.ClientID, r.Seq, r.Duplicate, what == "duplicate")
		}
	}
	if r := k.apply(Command{Op: OpPut, Key: []byte("k"), Value: []byte("w"), Seq: 9, Time: now}); r.ClientID != 0 || r.Seq != 9 {
		t.Fatalf("sessionless command: identity %d/%d, want 0/9", r.ClientID, r.Seq)
	}
	big := k.entry(Command{Op: OpPut, Key: []byte("k"), Value: make([]byte, 300), ClientID: 78, Seq: 1, Time: now})
	if r := k.applyEntry(big); r.Err == nil || r.ClientID != 0 || r.Seq != 0 {
		t.Fatalf("entry over the request limit: %v, identity %d/%d, want an error and 0/0", r.Err, r.ClientID, r.Seq)
	}
	k.idx++
	if r := k.applyEntry(raft.Entry{Index: k.idx, Term: 1}); r.ClientID != 0 || r.Seq != 0 {
		t.Fatalf("no-op: identity %d/%d", r.ClientID, r.Seq)
	}
}
