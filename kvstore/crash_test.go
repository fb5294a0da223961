package kvstore

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node/raft"
	bolt "go.etcd.io/bbolt"
)

// The crash tests run this test binary as a child (crashChildEnv selects
// the mode), which writes to a data directory and prints "ack N" after
// each write returned; the parent SIGKILLs it at a random moment, reopens
// the directory, and checks that every acknowledged write is there and
// nothing is half-written.
const (
	crashChildEnv = "KVSTORE_CRASH_CHILD" // "log", "kv" or "kvearly"
	crashDirEnv   = "KVSTORE_CRASH_DIR"
	crashSeedEnv  = "KVSTORE_CRASH_SEED"
	crashFromEnv  = "KVSTORE_CRASH_FROM" // log: steps already on disk
)

const (
	crashIterations = 25
	crashBudget     = 12 * time.Second // per test, a safety net for slow machines
	crashMaxSteps   = 100000
	kvCrashEntries  = 3000
	kvCrashTTL      = 300 * time.Millisecond
)

func crashChildMain(mode string) int {
	dir := os.Getenv(crashDirEnv)
	seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	from, _ := strconv.Atoi(os.Getenv(crashFromEnv))
	var err error
	switch mode {
	case "log":
		err = logCrashChild(dir, seed, from)
	case "kv":
		err = kvCrashChild(dir, seed)
	case "kvearly":
		err = kvEarlyCrashChild(dir, seed)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	return 0
}

// crashSeed picks the workload's seed (KVSTORE_CRASH_SEED replays one; the
// kill moments are random either way).
func crashSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", crashSeedEnv, err)
		}
	}
	t.Logf("seed %d (replay the workload: %s=%d go test ./kvstore/ -run %s)", seed, crashSeedEnv, seed, t.Name())
	return seed
}

func ack(n uint64) { os.Stdout.WriteString("ack " + strconv.FormatUint(n, 10) + "\n") }

// logSteps regenerates the deterministic step sequence of a seed.
type logSteps struct {
	rng   *rand.Rand
	model *raft.MemoryStorage
	n     int
}

func newLogSteps(seed uint64) *logSteps {
	return &logSteps{rng: rand.New(rand.NewPCG(seed, 7)), model: raft.NewMemoryStorage()}
}

// next returns the next step and its outcome on the model (errors are part
// of the script: the disk must give the same).
func (g *logSteps) next() (logStep, error) {
	st := randomLogStep(g.rng, g.model)
	err := st.apply(g.model)
	g.n++
	return st, err
}

func logCrashChild(dir string, seed uint64, from int) error {
	l, err := OpenLog(filepath.Join(dir, "raft.db"), LogOptions{})
	if err != nil {
		return err
	}
	g := newLogSteps(seed)
	for g.n < from {
		g.next()
	}
	for g.n < crashMaxSteps {
		st, want := g.next()
		if got := st.apply(l); errClass(got) != errClass(want) {
			return fmt.Errorf("step %d %v: disk %v, model %v", g.n, st, got, want)
		}
		ack(uint64(g.n))
	}
	return l.Close()
}

// runCrashChild starts the child, lets it acknowledge a random number of
// writes, kills it at a random moment and returns the last acknowledged
// number (-1 if none). lines, when not nil, is given every line the child
// printed, in order, before runCrashChild returns.
func runCrashChild(t *testing.T, rng *rand.Rand, mode, dir string, seed uint64, from int, lines func(string)) int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+mode, crashDirEnv+"="+dir,
		crashSeedEnv+"="+strconv.FormatUint(seed, 10), crashFromEnv+"="+strconv.Itoa(from))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acks := make(chan int64)
	go func() {
		defer close(acks)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if lines != nil {
				lines(sc.Text())
			}
			if n, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
				v, _ := strconv.ParseInt(n, 10, 64)
				acks <- v
			}
		}
	}()
	last := int64(-1)
	killAfter := rng.IntN(3)
	for seen := 0; seen <= killAfter; seen++ {
		v, ok := <-acks
		if !ok {
			break
		}
		last = v
	}
	// A random moment, not a synchronization: the child is somewhere in
	// its next writes.
	time.Sleep(time.Duration(rng.IntN(4000)) * time.Microsecond)
	cmd.Process.Signal(syscall.SIGKILL)
	for v := range acks {
		last = v
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		if stderr.Len() > 0 || err != nil {
			t.Fatalf("child did not die by SIGKILL: %v\n%s", err, stderr.String())
		}
	}
	return last
}

func TestCrashLog(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes; skipped in -short")
	}
	dir := t.TempDir()
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	from, iters, inFlight := 0, 0, 0
	deadline := time.Now().Add(crashBudget)
	for iter := 0; iter < crashIterations && time.Now().Before(deadline); iter++ {
		last := runCrashChild(t, rng, "log", dir, seed, from, nil)
		acked := max(int(last), from)
		l := openTestLog(t, filepath.Join(dir, "raft.db"), LogOptions{})
		g := newLogSteps(seed)
		for g.n < acked {
			g.next()
		}
		matched := -1
		diffAcked := diffStorages(g.model, l, nil)
		if diffAcked == "" {
			matched = acked
		} else {
			g.next() // the write in flight may have committed
			if diffStorages(g.model, l, nil) == "" {
				matched = acked + 1
			}
		}
		if matched < 0 {
			t.Fatalf("iteration %d: disk is neither the state after acknowledged step %d nor the next one; vs acknowledged: %s",
				iter, acked, diffAcked)
		}
		// A kill while a snapshot file was written or replaced leaves
		// nothing behind once reopened: only the recorded file.
		if files := snapFiles(t, l.SnapshotDir()); len(files) > 1 || (l.SnapshotMeta().Index > 0) != (len(files) == 1) {
			t.Fatalf("iteration %d: snapshot dir holds %v with the log's snapshot at %d", iter, files, l.SnapshotMeta().Index)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if matched > acked {
			inFlight++
		}
		from = matched
		iters++
	}
	t.Logf("%d kills, %d steps on disk, %d times the write in flight had committed", iters, from, inFlight)
	if from == 0 {
		t.Fatal("no step was ever acknowledged")
	}
}

// kvStream is the deterministic command log of the KV crash test: puts,
// deletes, prefix deletes, CAS, compactions, sessions with retries, no-ops
// and configuration entries, with the log clock advancing 1ms per entry.
func kvStream(seed uint64, n int) []raft.Entry {
	rng := rand.New(rand.NewPCG(seed, 3))
	var (
		out      []raft.Entry
		sessions []uint64
		seqs     = map[uint64]uint64{}
		lastCmd  = map[uint64]Command{}
	)
	key := func() []byte { return fmt.Appendf(nil, "k%02d", rng.IntN(20)) }
	for i := 1; i <= n; i++ {
		idx := uint64(i)
		e := raft.Entry{Index: idx, Term: 1 + idx/500}
		cmd := Command{Time: int64(idx) * int64(time.Millisecond)}
		switch p := rng.IntN(100); {
		case i <= 3 || p < 4:
			cmd.Op = OpNoop // a new client, whose first command opens its session
			sessions = append(sessions, rng.Uint64()|1)
		case p < 40:
			cmd.Op, cmd.Key, cmd.Value = OpPut, key(), bytes.Repeat([]byte{byte(i)}, rng.IntN(100))
		case p < 50:
			cmd.Op, cmd.Key = OpDelete, key()
		case p < 53:
			cmd.Op, cmd.Key = OpDeletePrefix, fmt.Appendf(nil, "k%d", rng.IntN(2))
		case p < 68:
			cmd.Op, cmd.Key, cmd.Then = OpCAS, key(), OpPut
			cmd.Value = []byte("cas")
			cmd.Compare = &Compare{Target: CompareTarget(rng.IntN(5)), Rev: rng.Uint64N(idx + 1)}
			if rng.IntN(3) == 0 {
				cmd.Then = OpDelete
			}
		case p < 71:
			cmd.Op, cmd.Rev = OpCompact, rng.Uint64N(idx)
		case p < 73:
			cmd.Op, cmd.Key, cmd.Prefix = OpRange, []byte("k1"), true
		case p < 78:
			e.Data = nil // leader no-op
		case p < 80:
			e.Type, e.Data = raft.EntryConfChange, []byte{1, 2, 3}
		}
		if e.Type == raft.EntryNormal && (i <= 3 || rng.IntN(100) >= 1) {
			if len(sessions) > 0 && rng.IntN(3) > 0 {
				s := sessions[len(sessions)-1-rng.IntN(min(len(sessions), 4))]
				if prev, ok := lastCmd[s]; ok && rng.IntN(6) == 0 {
					cmd = prev // a retry: same seq
					cmd.Time = int64(idx) * int64(time.Millisecond)
				} else {
					seqs[s]++
					cmd.ClientID, cmd.Seq = s, seqs[s]
					lastCmd[s] = cmd
				}
			}
			if cmd.Op != OpNoop || rng.IntN(2) == 0 {
				e.Data, _ = EncodeCommand(cmd)
			}
		}
		out = append(out, e)
	}
	return out
}

// kvBatches splits [1, n] into the deterministic apply batches of a seed;
// it returns each batch's last index.
func kvBatches(seed uint64, n int) []uint64 {
	rng := rand.New(rand.NewPCG(seed, 5))
	var ends []uint64
	for end := 0; end < n; {
		end = min(n, end+1+rng.IntN(16))
		ends = append(ends, uint64(end))
	}
	return ends
}

func kvCrashChild(dir string, seed uint64) error {
	s, err := Open(filepath.Join(dir, "kv.db"), Config{SessionTTL: kvCrashTTL})
	if err != nil {
		return err
	}
	stream := kvStream(seed, kvCrashEntries)
	applied := s.Applied()
	// Restart a few batches early: re-applying must skip what is applied.
	start := uint64(0)
	for _, end := range kvBatches(seed, kvCrashEntries) {
		if end+40 < applied {
			start = end
			continue
		}
		if _, err := s.Apply(stream[start:end]); err != nil {
			return err
		}
		if s.Applied() != max(end, applied) {
			return fmt.Errorf("applied %d after batch ending %d", s.Applied(), end)
		}
		ack(end)
		start = end
	}
	return s.Close()
}

func TestCrashKV(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes; skipped in -short")
	}
	dir := t.TempDir()
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	stream := kvStream(seed, kvCrashEntries)
	batches := kvBatches(seed, kvCrashEntries)
	ref, err := Open(filepath.Join(t.TempDir(), "ref.db"), Config{SessionTTL: kvCrashTTL, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	acked, iters, inFlight := uint64(0), 0, 0
	deadline := time.Now().Add(crashBudget)
	for iter := 0; iter < crashIterations && time.Now().Before(deadline); iter++ {
		// A restarted child re-acknowledges batches it skips, so an ack
		// below the applied index is no news.
		if last := runCrashChild(t, rng, "kv", dir, seed, 0, nil); last > 0 {
			acked = max(acked, uint64(last))
		}
		s, err := Open(filepath.Join(dir, "kv.db"), Config{SessionTTL: kvCrashTTL})
		if err != nil {
			t.Fatalf("iteration %d: reopen: %v", iter, err)
		}
		got := s.Applied()
		next := acked
		for _, end := range batches {
			if end > acked {
				next = end
				break
			}
		}
		if got != acked && got != next {
			s.Close()
			t.Fatalf("iteration %d: applied index %d, want the acknowledged %d or the batch in flight %d", iter, got, acked, next)
		}
		if _, err := ref.Apply(stream[ref.Applied():got]); err != nil {
			t.Fatal(err)
		}
		want, gotDump := dumpStore(t, ref), dumpStore(t, s)
		s.Close()
		if want != gotDump {
			t.Fatalf("iteration %d: store at applied %d differs from a clean replay:\nwant:\n%s\ngot:\n%s", iter, got, want, gotDump)
		}
		if got > acked {
			inFlight++
		}
		acked = got
		iters++
	}
	t.Logf("%d kills, applied %d of %d entries, %d times the batch in flight had committed", iters, acked, kvCrashEntries, inFlight)
	if acked == 0 {
		t.Fatal("no batch was ever acknowledged")
	}
}

// resultLine is how the early-answer crash test prints one result.
func resultLine(r Result) string {
	line := fmt.Sprintf("res %d op=%d rev=%d code=%d dup=%v deleted=%d kvs=%d", r.Index, r.Op, r.Rev, r.Code, r.Duplicate, r.Deleted, len(r.KVs))
	if r.KV != nil {
		line += fmt.Sprintf(" kv=%s@%d/%d/%d", r.KV.Key, r.KV.CreateRev, r.KV.ModRev, r.KV.Version)
	}
	return line
}

// kvEarlyCrashChild applies the stream as package node does: it answers
// (prints every result, then "ack END") from ApplyThen's callback, before
// the batch commits.
func kvEarlyCrashChild(dir string, seed uint64) error {
	s, err := Open(filepath.Join(dir, "kv.db"), Config{SessionTTL: kvCrashTTL})
	if err != nil {
		return err
	}
	stream := kvStream(seed, kvCrashEntries)
	start := s.Applied()
	for _, end := range kvBatches(seed, kvCrashEntries) {
		if end <= start {
			continue
		}
		if _, err := s.ApplyThen(stream[start:end], func(rs []Result) error {
			for _, r := range rs {
				os.Stdout.WriteString(resultLine(r) + "\n")
			}
			ack(end)
			return nil
		}); err != nil {
			return err
		}
		start = end
	}
	return s.Close()
}

// TestCrashKVEarlyAnswer: the child answers each batch before its commit
// and is SIGKILLed at random moments. After each kill the store holds the
// last answered batch or the one before it (never more than one answered
// batch is uncommitted, never an unanswered one committed), equals a clean
// replay byte for byte, and every answer the child ever gave, before a
// crash or while re-applying after one, is the clean replay's answer for
// that entry: the answers given early are the ones a restarted node gives,
// and the session table answers retries with them.
func TestCrashKVEarlyAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes; skipped in -short")
	}
	dir := t.TempDir()
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	stream := kvStream(seed, kvCrashEntries)
	want := map[string]string{} // "res <index>" -> the clean replay's line
	ref, err := Open(filepath.Join(t.TempDir(), "ref.db"), Config{SessionTTL: kvCrashTTL, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	{
		all, err := Open(filepath.Join(t.TempDir(), "all.db"), Config{SessionTTL: kvCrashTTL, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		rs, err := all.Apply(stream)
		all.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			want[fmt.Sprintf("res %d", r.Index)] = resultLine(r)
		}
	}
	applied, iters, uncommitted, answers := uint64(0), 0, 0, 0
	deadline := time.Now().Add(crashBudget)
	for iter := 0; iter < crashIterations && time.Now().Before(deadline); iter++ {
		var lines []string
		runCrashChild(t, rng, "kvearly", dir, seed, 0, func(l string) { lines = append(lines, l) })
		lo, hi := applied, applied // the committed index must be in [lo, hi]
		for _, l := range lines {
			if n, ok := strings.CutPrefix(l, "ack "); ok {
				end, _ := strconv.ParseUint(n, 10, 64)
				lo, hi = hi, end // hi's callback ran after the batch ending at lo committed
				continue
			}
			f := strings.Fields(l)
			if len(f) < 2 || f[0] != "res" {
				t.Fatalf("iteration %d: unexpected child output %q", iter, l)
			}
			if w := want[f[0]+" "+f[1]]; l != w {
				t.Fatalf("iteration %d: the child answered\n  %s\nwhere a clean replay answers\n  %s", iter, l, w)
			}
			answers++
		}
		s, err := Open(filepath.Join(dir, "kv.db"), Config{SessionTTL: kvCrashTTL})
		if err != nil {
			t.Fatalf("iteration %d: reopen: %v", iter, err)
		}
		got := s.Applied()
		if got < lo || got > hi {
			s.Close()
			t.Fatalf("iteration %d: applied index %d, want the last answered batch's end %d or the previous %d", iter, got, hi, lo)
		}
		if _, err := ref.Apply(stream[ref.Applied():got]); err != nil {
			t.Fatal(err)
		}
		wantDump, gotDump := dumpStore(t, ref), dumpStore(t, s)
		s.Close()
		if wantDump != gotDump {
			t.Fatalf("iteration %d: store at applied %d differs from a clean replay:\nwant:\n%s\ngot:\n%s", iter, got, wantDump, gotDump)
		}
		if got < hi {
			uncommitted++
		}
		applied = got
		iters++
	}
	t.Logf("%d kills, applied %d of %d entries, %d answers checked, %d times the last answered batch had not committed", iters, applied, kvCrashEntries, answers, uncommitted)
	if applied == 0 {
		t.Fatal("no batch was ever committed")
	}
}

// dumpStore renders every bucket of the store, byte for byte.
func dumpStore(t testing.TB, s *Store) string {
	t.Helper()
	var b strings.Builder
	err := s.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			fmt.Fprintf(&b, "[%s]\n", name)
			return bk.ForEach(func(k, v []byte) error {
				fmt.Fprintf(&b, "%x=%x\n", k, v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
