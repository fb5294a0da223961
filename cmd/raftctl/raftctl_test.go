package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/proto"
	"github.com/raftkv/raftkv/rudp"
)

// fakeKV answers from a map; err, when set, is returned by every call.
type fakeKV struct {
	data  map[string]string
	peers []client.Peer
	err   error
	calls []string

	mu sync.Mutex // guards status and calls from the admin methods
	// status is each node's status by address; a missing address does not
	// answer.
	status map[string]*client.NodeStatus
	// onTransfer and onStop, when set, answer TransferLeader and StopNode.
	onTransfer func(leaderAddr string, id uint64) error
	onStop     func(addr string, id uint64, keep bool) error
}

func (k *fakeKV) Put(_ context.Context, key string, value []byte) (*client.WriteResult, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, "put "+key)
	if k.err != nil {
		return nil, k.err
	}
	k.data[key] = string(value)
	return &client.WriteResult{Revision: 7}, nil
}

func (k *fakeKV) Get(_ context.Context, key string, o client.GetOptions) (*client.GetResult, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, fmt.Sprintf("get %s rev=%d prefix=%v serializable=%v", key, o.Revision, o.Prefix, o.Serializable))
	if k.err != nil {
		return nil, k.err
	}
	res := &client.GetResult{Revision: 9}
	keys := make([]string, 0, len(k.data))
	for kk := range k.data {
		keys = append(keys, kk)
	}
	slices.Sort(keys)
	for _, kk := range keys {
		if kk == key || (o.Prefix && strings.HasPrefix(kk, key)) {
			res.KVs = append(res.KVs, client.KeyValue{Key: kk, Value: []byte(k.data[kk]), ModRevision: 3, CreateRevision: 2, Version: 1})
		}
	}
	if !o.Prefix && len(res.KVs) == 0 {
		return nil, &client.KeyNotFoundError{Key: key}
	}
	return res, nil
}

func (k *fakeKV) Delete(_ context.Context, key string) (*client.WriteResult, error) {
	k.calls = append(k.calls, "del "+key)
	if k.err != nil {
		return nil, k.err
	}
	n := int64(0)
	if _, ok := k.data[key]; ok {
		n = 1
		delete(k.data, key)
	}
	return &client.WriteResult{Revision: 8, Deleted: n}, nil
}

func (k *fakeKV) DeletePrefix(_ context.Context, prefix string) (*client.WriteResult, error) {
	k.calls = append(k.calls, "delprefix "+prefix)
	n := int64(0)
	for kk := range k.data {
		if strings.HasPrefix(kk, prefix) {
			delete(k.data, kk)
			n++
		}
	}
	return &client.WriteResult{Revision: 8, Deleted: n}, nil
}

func (k *fakeKV) ListPeers(context.Context) ([]client.Peer, error) {
	if k.err != nil {
		return nil, k.err
	}
	return k.peers, nil
}

func (k *fakeKV) Close() error { return nil }

func (k *fakeKV) Status(ctx context.Context, addr string) (*client.NodeStatus, error) {
	k.mu.Lock()
	st, ok := k.status[addr]
	k.mu.Unlock()
	if !ok {
		<-ctx.Done()
		return nil, fmt.Errorf("client: status of %s: %w: %w", addr, client.ErrUnavailable, client.ErrTimeout)
	}
	cp := *st
	return &cp, nil
}

func (k *fakeKV) TransferLeader(_ context.Context, leaderAddr string, id uint64) error {
	k.mu.Lock()
	k.calls = append(k.calls, fmt.Sprintf("transfer %s %016x", leaderAddr, id))
	k.mu.Unlock()
	return k.onTransfer(leaderAddr, id)
}

func (k *fakeKV) StopNode(_ context.Context, addr string, id uint64, keep bool) error {
	k.mu.Lock()
	k.calls = append(k.calls, fmt.Sprintf("stop %s %016x keep=%v", addr, id, keep))
	k.mu.Unlock()
	return k.onStop(addr, id, keep)
}

type result struct {
	code           int
	stdout, stderr string
	cfg            client.Config
}

// execute runs raftctl with args and env against k, without a network.
func execute(t *testing.T, k *fakeKV, env map[string]string, args ...string) result {
	t.Helper()
	f := newFactory(func(key string) (string, bool) { v, ok := env[key]; return v, ok })
	f.newKV = func(context.Context, client.Config) (kv, error) { return k, nil }
	var out, errb bytes.Buffer
	code := run(t.Context(), args, &out, &errb, f)
	return result{code: code, stdout: out.String(), stderr: errb.String(), cfg: f.cfg}
}

func newFake() *fakeKV { return &fakeKV{data: map[string]string{}} }

func TestGlobalFlagsAndEnv(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		env           map[string]string
		args          []string
		wantEntrance  string
		wantEndpoints []string
		wantSecret    string
	}{
		{"default entrance", nil, nil, defaultEntrance, nil, ""},
		{"env entrance", map[string]string{envEntrance: "10.0.0.1:1"}, nil, "10.0.0.1:1", nil, ""},
		{"flag wins over env", map[string]string{envEntrance: "10.0.0.1:1"}, []string{"--entrance", "10.0.0.2:2"}, "10.0.0.2:2", nil, ""},
		{"env endpoints", map[string]string{envEndpoints: "a:1, b:2,,c:3"}, nil, "", []string{"a:1", "b:2", "c:3"}, ""},
		{"flag endpoints ignore env entrance", map[string]string{envEntrance: "10.0.0.1:1"}, []string{"--endpoints", "a:1,b:2"}, "", []string{"a:1", "b:2"}, ""},
		{"env secret file", map[string]string{envSecretFile: secret}, nil, defaultEntrance, nil, "s3cret"},
		{"flag secret file", map[string]string{envSecretFile: "/nonexistent"}, []string{"--secret-file", secret}, defaultEntrance, nil, "s3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFake()
			k.data["k"] = "v"
			r := execute(t, k, tt.env, append(tt.args, "get", "k")...)
			if r.code != exitOK {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			if r.cfg.Entrance != tt.wantEntrance || !slices.Equal(r.cfg.Endpoints, tt.wantEndpoints) || string(r.cfg.Secret) != tt.wantSecret {
				t.Fatalf("config entrance %q endpoints %q secret %q, want %q %q %q", r.cfg.Entrance, r.cfg.Endpoints,
					r.cfg.Secret, tt.wantEntrance, tt.wantEndpoints, tt.wantSecret)
			}
		})
	}
}

func TestPutGetDel(t *testing.T) {
	k := newFake()
	if r := execute(t, k, nil, "put", "greeting", "hello"); r.code != 0 || r.stdout != "OK\n" {
		t.Fatalf("put: %+v", r)
	}
	if r := execute(t, k, nil, "get", "greeting"); r.code != 0 || r.stdout != "hello\n" || r.stderr != "" {
		t.Fatalf("get: %+v", r)
	}
	if r := execute(t, k, nil, "get", "greeting", "--rev", "4", "--serializable"); r.code != 0 ||
		k.calls[len(k.calls)-1] != "get greeting rev=4 prefix=false serializable=true" {
		t.Fatalf("get --rev --serializable: %+v calls %q", r, k.calls)
	}
	if r := execute(t, k, nil, "put", "greg", "x"); r.code != 0 {
		t.Fatalf("put: %+v", r)
	}
	if r := execute(t, k, nil, "get", "gre", "--prefix"); r.code != 0 || r.stdout != "greeting\nhello\ngreg\nx\n" {
		t.Fatalf("get --prefix: %q", r.stdout)
	}
	r := execute(t, k, nil, "-o", "json", "get", "greeting")
	var j jsonGet
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil || r.code != 0 {
		t.Fatalf("get -o json: %v %+v", err, r)
	}
	want := jsonGet{Revision: 9, KVs: []jsonKV{{Key: "greeting", Value: "hello", CreateRevision: 2, ModRevision: 3, Version: 1}}}
	if d := cmp.Diff(want, j); d != "" {
		t.Fatalf("get -o json (-want +got):\n%s", d)
	}
	if r := execute(t, k, nil, "del", "greeting"); r.code != 0 || r.stdout != "1\n" {
		t.Fatalf("del: %+v", r)
	}
	if r := execute(t, k, nil, "del", "gr", "--prefix"); r.code != 0 || r.stdout != "1\n" {
		t.Fatalf("del --prefix: %+v", r)
	}
	if r := execute(t, k, nil, "-o", "json", "put", "a", "b"); r.code != 0 || r.stdout != "{\n  \"revision\": 7\n}\n" {
		t.Fatalf("put -o json: %q", r.stdout)
	}
}

func TestGetMissingKey(t *testing.T) {
	r := execute(t, newFake(), nil, "get", "nope")
	if r.code != exitError || r.stdout != "" {
		t.Fatalf("exit %d stdout %q, want 1 and nothing", r.code, r.stdout)
	}
	if want := "Error: key not found: nope\n"; r.stderr != want {
		t.Fatalf("stderr %q, want %q", r.stderr, want)
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		args []string
		want int
	}{
		{"unknown command", nil, []string{"frobnicate"}, exitUsage},
		{"unknown flag", nil, []string{"get", "k", "--frob"}, exitUsage},
		{"missing argument", nil, []string{"put", "k"}, exitUsage},
		{"bad output", nil, []string{"-o", "yaml", "get", "k"}, exitUsage},
		{"both address flags", nil, []string{"--entrance", "a:1", "--endpoints", "b:2", "get", "k"}, exitUsage},
		{"negative rev", nil, []string{"get", "k", "--rev", "-1"}, exitUsage},
		{"timeout", fmt.Errorf("client: get: %w", client.ErrTimeout), []string{"get", "k"}, exitUnavailable},
		{"outcome unknown", fmt.Errorf("client: put: %w: %w", client.ErrOutcomeUnknown, client.ErrTimeout), []string{"put", "k", "v"}, exitUnavailable},
		{"no leader", client.ErrNoLeader, []string{"get", "k"}, exitUnavailable},
		{"unavailable", client.ErrUnavailable, []string{"list-peers"}, exitUnavailable},
		{"unauthorized", client.ErrUnauthorized, []string{"put", "k", "v"}, exitUnauthorized},
		{"secret differs", fmt.Errorf("client: put: %w: %w (last error: n1: %w (check the cluster secret): %w)",
			client.ErrOutcomeUnknown, client.ErrTimeout, client.ErrUnauthorized, rudp.ErrAuthFailed), []string{"put", "k", "v"}, exitUnauthorized},
		{"secret differs (entrance)", fmt.Errorf("client: list peers: entrance e: %w: %w (last error: %w (check the cluster secret): %w)",
			client.ErrUnavailable, client.ErrTimeout, client.ErrUnauthorized, rudp.ErrAuthFailed), []string{"list-peers"}, exitUnauthorized},
		{"compare failed", client.ErrCompareFailed, []string{"put", "k", "v"}, exitCompareFailed},
		{"other", errors.New("boom"), []string{"del", "k"}, exitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFake()
			k.err = tt.err
			r := execute(t, k, nil, tt.args...)
			if r.code != tt.want {
				t.Fatalf("exit %d, want %d (stderr %q)", r.code, tt.want, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "Error: ") || strings.Count(strings.TrimSuffix(r.stderr, "\n"), "\n") > 1 {
				t.Fatalf("stderr %q, want one Error: line (plus a usage hint)", r.stderr)
			}
			if errors.Is(tt.err, rudp.ErrAuthFailed) && (!strings.Contains(r.stderr, "secrets differ") ||
				!strings.HasSuffix(r.stderr, "; the cluster has a secret: give its file with --secret-file\n")) {
				t.Fatalf("stderr %q does not say that the secrets differ and what to do", r.stderr)
			}
		})
	}
}

func TestListPeersOutput(t *testing.T) {
	k := newFake()
	k.peers = []client.Peer{
		{Name: "n1", ID: "00000000000000a1", Addr: "127.0.0.1:7701", Role: "leader", Liveness: "alive", Term: 3, Match: 12},
		{Name: "n2", ID: "00000000000000a2", Addr: "127.0.0.1:7702", Role: "follower", Liveness: "suspect", Term: 3, Match: 11},
	}
	r := execute(t, k, nil, "list-peers")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != 0 || len(lines) != 3 {
		t.Fatalf("exit %d, %d lines:\n%s", r.code, len(lines), r.stdout)
	}
	if f := strings.Fields(lines[0]); f[0] != "NAME" || !slices.Contains(f, "ROLE") || !slices.Contains(f, "LIVENESS") {
		t.Fatalf("header %q", lines[0])
	}
	for i, p := range k.peers {
		f := strings.Fields(lines[i+1])
		if f[0] != p.Name || f[3] != p.Role || f[4] != p.Liveness {
			t.Fatalf("row %q, want name %s role %s liveness %s", lines[i+1], p.Name, p.Role, p.Liveness)
		}
	}
	r = execute(t, k, nil, "-o", "json", "list-peers")
	var got []client.Peer
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("list-peers -o json: %v\n%s", err, r.stdout)
	}
	if d := cmp.Diff(k.peers, got); d != "" {
		t.Fatalf("json rows (-want +got):\n%s", d)
	}
	k.peers = nil
	if r := execute(t, k, nil, "-o", "json", "list-peers"); r.stdout != "[]\n" {
		t.Fatalf("no peers as json: %q, want []", r.stdout)
	}
}

func TestHelpAndVersion(t *testing.T) {
	r := execute(t, newFake(), nil, "help", "exit-codes")
	for _, want := range []string{"0  success", "2  usage", "3  unavailable", "4  unauthorized", "secret differs from --secret-file's", "5  compare failed"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("help exit-codes lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := execute(t, newFake(), nil, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "raftctl ") {
		t.Fatalf("version: %+v", r)
	}
	if r := execute(t, newFake(), nil, "completion", "bash"); r.code != 0 || !strings.Contains(r.stdout, "raftctl") {
		t.Fatalf("completion bash: exit %d", r.code)
	}
}

func TestEveryCommandHasExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() != "help" && c.Name() != "completion" && c.Parent() != nil && c.Parent().Name() != "completion" && c.Example == "" {
			t.Errorf("command %q has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand(newFactory(func(string) (string, bool) { return "", false })))
}

// TestGetPrefixCompactedMidway: a paged get --prefix whose revision was
// compacted between pages fails with exit 1 and a line that says to run
// it again, and prints nothing of the partial read.
func TestGetPrefixCompactedMidway(t *testing.T) {
	k := newFake()
	k.err = fmt.Errorf("client: get %q: %w", "big/", &client.RangeCompactedError{Revision: 41, Read: 1200,
		Err: fmt.Errorf("client: %w", &client.ServerError{Code: proto.CodeCompacted, Message: "read at 41 < compacted 50"})})
	r := execute(t, k, nil, "get", "big/", "--prefix")
	if r.code != exitError || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 ||
		!strings.HasPrefix(r.stderr, "Error: ") || !strings.Contains(r.stderr, "retry") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1, nothing, one Error: line saying to retry", r.code, r.stdout, r.stderr)
	}
}
