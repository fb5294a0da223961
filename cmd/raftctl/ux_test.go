package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// executeIO is execute with a standard input (nil: none) that is or is not
// a terminal, and a context the caller controls.
func executeIO(ctx context.Context, t *testing.T, k kv, stdin []byte, terminal bool, args ...string) result {
	t.Helper()
	f := newFactory(func(string) (string, bool) { return "", false })
	f.newKV = func(context.Context, client.Config) (kv, error) { return k, nil }
	if stdin != nil {
		f.stdin = bytes.NewReader(stdin)
	}
	f.stdinIsTerminal = func() bool { return terminal }
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb, f)
	return result{code: code, stdout: out.String(), stderr: errb.String(), cfg: f.cfg}
}

// A value too large for the command line (or binary) comes from standard
// input when VALUE is left out, as with etcdctl.
func TestPutValueFromStdin(t *testing.T) {
	k := newFake()
	value := append(bytes.Repeat([]byte("x"), 300<<10), 0, '\n') // over the 128 KiB argument limit of Linux
	r := executeIO(t.Context(), t, k, value, false, "put", "big")
	if r.code != exitOK || r.stdout != "OK\n" {
		t.Fatalf("put big < file: exit %d, stderr %q", r.code, r.stderr)
	}
	if k.data["big"] != string(value) {
		t.Fatalf("stored %d bytes, want the %d bytes of stdin unchanged", len(k.data["big"]), len(value))
	}
	// An empty stdin is an empty value.
	if r := executeIO(t.Context(), t, k, []byte{}, false, "put", "empty"); r.code != exitOK || k.data["empty"] != "" {
		t.Fatalf("put empty < /dev/null: exit %d, stderr %q", r.code, r.stderr)
	}
	// VALUE given: stdin is not read.
	if r := executeIO(t.Context(), t, k, []byte("ignored"), false, "put", "k", "v"); r.code != exitOK || k.data["k"] != "v" {
		t.Fatalf("put k v: exit %d, value %q", r.code, k.data["k"])
	}
	// A terminal (the user forgot VALUE) or no stdin: a usage error, not a wait.
	for _, terminal := range []bool{true, false} {
		var stdin []byte
		if terminal {
			stdin = []byte("typed")
		}
		r := executeIO(t.Context(), t, k, stdin, terminal, "put", "k2")
		if r.code != exitUsage || !strings.Contains(r.stderr, "put needs a VALUE argument, or the value on standard input") {
			t.Fatalf("put KEY at a terminal=%v: exit %d, stderr %q", terminal, r.code, r.stderr)
		}
		if _, ok := k.data["k2"]; ok {
			t.Fatal("put KEY at a terminal wrote something")
		}
	}
}

// Arity errors say what the command takes and point at its own help.
func TestArgCountErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"put"}, "Error: put takes KEY [VALUE], got 0 arguments\nRun 'raftctl put --help' for usage.\n"},
		{[]string{"put", "a", "b", "c"}, "Error: put takes KEY [VALUE], got 3 arguments\nRun 'raftctl put --help' for usage.\n"},
		{[]string{"get"}, "Error: get takes KEY, got 0 arguments\nRun 'raftctl get --help' for usage.\n"},
		{[]string{"stop-node"}, "Error: stop-node takes NAME, got 0 arguments\nRun 'raftctl stop-node --help' for usage.\n"},
		{[]string{"list-peers", "x"}, "Error: list-peers takes no arguments, got 1 (\"x\")\nRun 'raftctl list-peers --help' for usage.\n"},
	}
	for _, tt := range tests {
		r := execute(t, newFake(), nil, tt.args...)
		if r.code != exitUsage || r.stderr != tt.want {
			t.Errorf("raftctl %s: exit %d, stderr %q; want 2, %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.want)
		}
	}
}

// A command's flag written before the command is reported as such, not as
// 'unknown command "k"' (cobra takes the next word as the flag's value).
func TestUnknownFlagBeforeCommand(t *testing.T) {
	k := newFake()
	k.data["k"] = "v"
	for _, args := range [][]string{{"--serializable", "get", "k"}, {"--timeout", "1s", "--prefix", "get", "k"}, {"-x", "get", "k"}} {
		r := execute(t, k, nil, args...)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, "Error: unknown flag: "+args[len(args)-3]) {
			t.Errorf("raftctl %s: exit %d, stderr %q; want 2 and unknown flag %s", strings.Join(args, " "), r.code, r.stderr, args[len(args)-3])
		}
	}
	// Known global flags before the command, in every spelling, still work.
	for _, args := range [][]string{
		{"--timeout", "1s", "get", "k"}, {"--timeout=1s", "get", "k"}, {"-o", "json", "get", "k"}, {"-ojson", "get", "k"},
		{"--debug", "get", "k"}, {"--entrance", "127.0.0.1:7700", "--debug", "-o", "text", "get", "k"},
	} {
		if r := execute(t, k, nil, args...); r.code != exitOK {
			t.Errorf("raftctl %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// An address without a port is a usage error at once, naming where it came
// from, instead of a retry until --timeout.
func TestBadAddressIsUsageError(t *testing.T) {
	tests := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--entrance", "127.0.0.1"}, `--entrance "127.0.0.1": want host:port`},
		{nil, []string{"--entrance", "127.0.0.1:99999"}, `--entrance "127.0.0.1:99999": want host:port`},
		{nil, []string{"--endpoints", "127.0.0.1:7701,127.0.0.2"}, `--endpoints "127.0.0.2": want host:port`},
		{map[string]string{envEntrance: ":7700"}, nil, envEntrance + ` ":7700": want host:port`},
		{map[string]string{envEndpoints: "a:1,b"}, nil, envEndpoints + ` "b": want host:port`},
	}
	for _, tt := range tests {
		k := newFake()
		r := execute(t, k, tt.env, append(tt.args, "get", "k")...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 and %q", tt.env, tt.args, r.code, r.stderr, tt.want)
		}
		if len(k.calls) != 0 {
			t.Errorf("%v %v: the cluster was called: %q", tt.env, tt.args, k.calls)
		}
	}
	k := newFake()
	k.data["k"] = "v"
	if r := execute(t, k, nil, "--endpoints", "node-1.lan:7701,[::1]:7702", "get", "k"); r.code != exitOK {
		t.Fatalf("host names and IPv6: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A secret file that cannot be read is a usage error (exit 2, like raftd's
// and the entrance's) that names the flag or variable it came from.
func TestSecretFileErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--secret-file", missing}, "--secret-file: cannot read the cluster secret: open " + missing + ": no such file or directory"},
		{map[string]string{envSecretFile: missing}, nil, envSecretFile + ": cannot read the cluster secret: open " + missing},
		{nil, []string{"--secret-file", dir}, "--secret-file: cannot read the cluster secret: read " + dir + ": is a directory"},
		{nil, []string{"--secret-file", empty}, "--secret-file: the secret file " + empty + " is empty"},
	}
	for _, tt := range tests {
		r := execute(t, newFake(), tt.env, append(tt.args, "get", "k")...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 and %q", tt.env, tt.args, r.code, r.stderr, tt.want)
		}
	}
}

// status NAME names the leader as status does, from every peer, not only
// NAME.
func TestStatusNameShowsLeaderName(t *testing.T) {
	k := newOpsFake()
	r := execute(t, k, nil, "status", "n2")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != exitOK || len(lines) != 2 {
		t.Fatalf("status n2: exit %d:\n%s", r.code, r.stdout)
	}
	if f := strings.Fields(lines[1]); len(f) < 6 || f[5] != "n1" {
		t.Fatalf("status n2: LEADER column %q, want n1:\n%s", f, r.stdout)
	}
	r = execute(t, k, nil, "-o", "json", "status", "n2")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 1 || rows[0]["leader_name"] != "n1" {
		t.Fatalf("status n2 -o json: %v %v", err, rows)
	}
}

// blockingKV answers writes only when ctx ends, as a cluster without
// quorum does.
type blockingKV struct{ *fakeKV }

func (b blockingKV) Put(ctx context.Context, key string, _ []byte) (*client.WriteResult, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("client: put %q: %w: %w", key, client.ErrOutcomeUnknown, ctx.Err())
}

// Ctrl-C ends a command with exit 130 and says so; an interrupted write
// still says its outcome is unknown, and a waiting command does not claim
// that its --wait ran out.
func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	r := executeIO(ctx, t, blockingKV{newFake()}, nil, false, "put", "k", "v")
	if r.code != exitInterrupted || !strings.HasPrefix(r.stderr, "Error: interrupted: ") || !strings.Contains(r.stderr, "outcome unknown") {
		t.Fatalf("interrupted put: exit %d, stderr %q; want 130, interrupted, outcome unknown", r.code, r.stderr)
	}

	k := newOpsFake()
	k.status["a1"].Role = "follower" // nobody leads: transfer-leader waits
	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	r = executeIO(ctx, t, k, nil, false, "--timeout", "50ms", "transfer-leader", "n2", "--wait", "1h")
	if r.code != exitInterrupted || !strings.HasPrefix(r.stderr, "Error: interrupted: ") || strings.Contains(r.stderr, "after 1h") {
		t.Fatalf("interrupted transfer-leader: exit %d, stderr %q; want 130 and no timeout claim", r.code, r.stderr)
	}
}

// stop-node of a node that cannot leave (no quorum) says what the stop
// request ran into, not only that the node still answers.
func TestStopNodeWithoutQuorumSaysWhy(t *testing.T) {
	k := newOpsFake()
	k.onStop = func(string, uint64, bool) error {
		return fmt.Errorf("client: stop: %w (last error: a2: %w)", client.ErrUnavailable, client.ErrNoLeader)
	}
	r := execute(t, k, nil, "--timeout", "50ms", "stop-node", "n2", "--wait", "300ms")
	if r.code != exitUnavailable || !strings.Contains(r.stderr, "n2 still answers; the stop request got no answer: stop: cluster unavailable (last error: a2: no leader)") {
		t.Fatalf("stop without quorum: exit %d, stderr %q", r.code, r.stderr)
	}
}

// An empty KEY is a usage error before anything is sent (it was the
// cluster's "invalid: kvstore: empty key", exit 1); with --prefix it means
// every key, as in etcdctl.
func TestEmptyKey(t *testing.T) {
	for _, args := range [][]string{{"put", "", "v"}, {"get", ""}, {"del", ""}} {
		k := newFake()
		r := execute(t, k, nil, args...)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, "Error: KEY must not be empty") || len(k.calls) != 0 {
			t.Errorf("raftctl %q: exit %d, stderr %q, calls %q; want 2 and nothing sent", args, r.code, r.stderr, k.calls)
		}
	}
	k := newFake()
	k.data["a"], k.data["b"] = "1", "2"
	if r := execute(t, k, nil, "get", "", "--prefix"); r.code != exitOK || r.stdout != "a\n1\nb\n2\n" {
		t.Fatalf("get \"\" --prefix: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := execute(t, k, nil, "del", "", "--prefix"); r.code != exitOK || r.stdout != "2\n" {
		t.Fatalf("del \"\" --prefix: exit %d, stdout %q", r.code, r.stdout)
	}
}

// An unknown shell for completion is a usage error, not the help and 0.
func TestCompletionUnknownShell(t *testing.T) {
	r := execute(t, newFake(), nil, "completion", "ksh")
	if r.code != exitUsage || !strings.HasPrefix(r.stderr, `Error: completion: unknown shell "ksh" (want bash, zsh, fish or powershell)`) {
		t.Fatalf("completion ksh: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		if r := execute(t, newFake(), nil, "completion", sh); r.code != exitOK || !strings.Contains(r.stdout, "raftctl") {
			t.Errorf("completion %s: exit %d, stderr %q", sh, r.code, r.stderr)
		}
	}
	if r := execute(t, newFake(), nil, "completion"); r.code != exitOK || !strings.Contains(r.stdout, "Available Commands") {
		t.Fatalf("completion alone: exit %d, stdout %q; want its help", r.code, r.stdout)
	}
}

// When the entrance does not answer, the error says what to check and
// how to reach the nodes without it.
func TestEntranceDownHint(t *testing.T) {
	k := newFake()
	k.err = fmt.Errorf("client: get %q: %w (last error: %w: ask entrance 127.0.0.1:7700 who leads: rudp: send to 127.0.0.1:7700: rudp: peer unreachable: context deadline exceeded)",
		"k", client.ErrTimeout, client.ErrUnavailable)
	r := execute(t, k, nil, "get", "k")
	if r.code != exitUnavailable || !strings.HasSuffix(r.stderr, "; is the entrance at 127.0.0.1:7700 running? raftctl --endpoints NODE,... talks to the nodes without it\n") ||
		strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("entrance down: exit %d, stderr %q", r.code, r.stderr)
	}
	// A node that does not answer (with --endpoints) gets no such hint.
	k.err = fmt.Errorf("client: get %q: %w (last error: 127.0.0.1:7701: rudp: peer unreachable)", "k", client.ErrTimeout)
	if r := execute(t, k, nil, "--endpoints", "127.0.0.1:7701", "get", "k"); strings.Contains(r.stderr, "entrance") {
		t.Fatalf("endpoint down: stderr %q mentions the entrance", r.stderr)
	}
}

// A node that left (stop-node) and came back under its name with a new
// data dir is listed twice, the old entry removed: NAME means the member.
// transfer-leader and stop-node picked the removed entry ("is not a
// voter", "already removed").
func TestNameOfARejoinedNode(t *testing.T) {
	k := newOpsFake()
	// n2 was removed and rejoined as ID 4 at the same address.
	old := k.peers[1]
	old.Liveness, old.ID = "removed", fmt.Sprintf("%016x", 2)
	k.peers[1].ID = fmt.Sprintf("%016x", 4)
	k.status["a2"].ID = k.peers[1].ID
	k.peers = append([]client.Peer{old}, k.peers...)
	k.status["a3"] = &client.NodeStatus{ID: k.peers[3].ID, Role: "follower", Term: 4} // a quorum stays up
	k.onTransfer = func(leaderAddr string, id uint64) error { leadBy(k, "a2"); return nil }
	if r := execute(t, k, nil, "--timeout", "50ms", "transfer-leader", "n2"); r.code != exitOK {
		t.Fatalf("transfer-leader n2: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := k.calls[len(k.calls)-1]; got != "transfer a1 0000000000000004" {
		t.Fatalf("last call %q, want the transfer to n2's current ID 4", got)
	}
	k.onStop = func(addr string, _ uint64, _ bool) error {
		k.mu.Lock()
		delete(k.status, addr)
		k.mu.Unlock()
		return nil
	}
	if r := execute(t, k, nil, "--timeout", "50ms", "stop-node", "n2", "--keep-membership"); r.code != exitOK {
		t.Fatalf("stop-node n2: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := k.calls[len(k.calls)-1]; got != "stop a2 0000000000000004 keep=true" {
		t.Fatalf("last call %q, want the stop sent with n2's current ID 4", got)
	}
}

// status shows the removed entry of a rejoined node as removed, not as a
// second copy of the node now at its address.
func TestStatusOfARejoinedNode(t *testing.T) {
	k := newOpsFake()
	old := k.peers[1]
	old.Liveness, old.ID = "removed", fmt.Sprintf("%016x", 9)
	k.peers = append(k.peers, old)
	r := execute(t, k, nil, "--timeout", "50ms", "status")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != exitOK || len(lines) != 5 {
		t.Fatalf("status: exit %d:\n%s", r.code, r.stdout)
	}
	if f := strings.Fields(lines[4]); f[0] != "n2" || f[1] != old.ID || f[3] != "removed" {
		t.Fatalf("removed n2 row %q, want n2 %s ... removed:\n%s", f, old.ID, r.stdout)
	}
	if f := strings.Fields(lines[2]); f[0] != "n2" || f[3] != "follower" {
		t.Fatalf("current n2 row %q, want it to answer:\n%s", f, r.stdout)
	}
}

// stop-node --keep-membership refuses to stop a voter when the live voters
// left would be fewer than a quorum, unless --force.
func TestStopNodeKeepsQuorum(t *testing.T) {
	k := newOpsFake()
	// n3 does not answer (newOpsFake), though the entrance still says
	// alive (its liveness lags): stopping n2 leaves 1 of 3.
	var stopped []string
	k.onStop = func(addr string, _ uint64, _ bool) error {
		k.mu.Lock()
		delete(k.status, addr)
		k.mu.Unlock()
		stopped = append(stopped, addr)
		return nil
	}
	r := execute(t, k, nil, "--timeout", "50ms", "stop-node", "n2", "--keep-membership")
	want := "Error: stop n2: it would leave 1 of 3 voters running, fewer than the 2 a quorum needs: the cluster would stop accepting writes; stop it anyway with --force\n"
	if r.code != exitError || r.stderr != want || len(stopped) != 0 {
		t.Fatalf("stop that loses the quorum: exit %d, stderr %q, stopped %q; want 1, %q, nothing", r.code, r.stderr, stopped, want)
	}
	if r := execute(t, k, nil, "--timeout", "50ms", "stop-node", "n2", "--keep-membership", "--force"); r.code != exitOK || len(stopped) != 1 {
		t.Fatalf("--force: exit %d, stderr %q", r.code, r.stderr)
	}
	// With every voter answering, one may stop.
	k = newOpsFake()
	k.status["a3"] = &client.NodeStatus{ID: k.peers[2].ID, Role: "follower", Term: 4}
	k.onStop = func(addr string, _ uint64, _ bool) error {
		k.mu.Lock()
		delete(k.status, addr)
		k.mu.Unlock()
		return nil
	}
	if r := execute(t, k, nil, "--timeout", "50ms", "stop-node", "n2", "--keep-membership"); r.code != exitOK {
		t.Fatalf("stop with a quorum left: exit %d, stderr %q", r.code, r.stderr)
	}
}

// An error about a long key (over the cluster's limit) does not repeat
// the whole key.
func TestLongKeyInError(t *testing.T) {
	key := strings.Repeat("k", 5000)
	k := newFake()
	k.err = fmt.Errorf("client: put %q: %w: kvstore: key too large: 5000 bytes > 4096", key, client.ErrInvalid)
	r := execute(t, k, nil, "put", key, "v")
	want := fmt.Sprintf("Error: put %q... (5000 bytes): invalid request: kvstore: key too large: 5000 bytes > 4096\n", key[:64])
	if r.code != exitError || r.stderr != want {
		t.Fatalf("exit %d, stderr %q; want 1, %q", r.code, r.stderr, want)
	}
}
