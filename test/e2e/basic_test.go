package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// TestClusterFormsAndServes: three nodes form a cluster; raftctl writes and
// reads; list-peers shows three voters, one of them leader.
func TestClusterFormsAndServes(t *testing.T) {
	c := startCluster(t, 3)
	entr := "--entrance=" + c.entrAddr

	if out, errOut, code := c.raftctl(entr, "put", "greeting", "hello"); code != 0 || out != "OK\n" {
		t.Fatalf("put: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out, errOut, code := c.raftctl(entr, "get", "greeting"); code != 0 || out != "hello\n" {
		t.Fatalf("get: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code := c.raftctl(entr, "get", "missing")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "Error: ") || !strings.Contains(errOut, "not found") {
		t.Fatalf("get missing: exit %d, stdout %q, stderr %q; want 1, nothing, Error: ...not found", code, out, errOut)
	}
	if out, errOut, code := c.raftctl(entr, "get", "greeting", "--serializable", "--timeout", "10s"); code != 0 || out != "hello\n" {
		t.Fatalf("get --serializable: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// History: get --rev reads an older value.
	out, _, code = c.raftctl(entr, "-o", "json", "put", "greeting", "hi again")
	var put struct{ Revision int64 }
	if err := json.Unmarshal([]byte(out), &put); err != nil || code != 0 || put.Revision < 2 {
		t.Fatalf("put -o json: exit %d, %v: %q", code, err, out)
	}
	if out, errOut, code := c.raftctl(entr, "get", "greeting", "--rev", fmt.Sprint(put.Revision-1)); code != 0 || out != "hello\n" {
		t.Fatalf("get --rev %d: exit %d, stdout %q, stderr %q", put.Revision-1, code, out, errOut)
	}
	if out, _, code := c.raftctl(entr, "get", "greet", "--prefix"); code != 0 || out != "greeting\nhi again\n" {
		t.Fatalf("get --prefix: exit %d, stdout %q", code, out)
	}
	checkBigPrefix(t, c)
	if out, _, code := c.raftctl(entr, "del", "greeting"); code != 0 || out != "1\n" {
		t.Fatalf("del: exit %d, stdout %q", code, out)
	}
	if _, _, code := c.raftctl(entr, "get", "greeting"); code != 1 {
		t.Fatalf("get after del: exit %d, want 1", code)
	}

	out, errOut, code = c.raftctl(entr, "list-peers")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("list-peers: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	roles := map[string]int{}
	for i, l := range lines[1:] {
		f := strings.Fields(l)
		if f[0] != fmt.Sprintf("n%d", i+1) || f[4] != "alive" {
			t.Fatalf("list-peers row %q: want name n%d and alive", l, i+1)
		}
		roles[f[3]]++
	}
	if roles["leader"] != 1 || roles["follower"] != 2 {
		t.Fatalf("list-peers roles %v, want one leader and two followers:\n%s", roles, out)
	}
	out, _, code = c.raftctl(entr, "-o", "json", "list-peers")
	var peers []client.Peer
	if err := json.Unmarshal([]byte(out), &peers); err != nil || code != 0 || len(peers) != 3 {
		t.Fatalf("list-peers -o json: exit %d, %v:\n%s", code, err, out)
	}
}

// TestEntranceDownEndpointsServe: with the entrance stopped, raftctl
// --endpoints still writes and reads.
func TestEntranceDownEndpointsServe(t *testing.T) {
	c := startCluster(t, 3)
	c.entrance.Kill()
	eps := "--endpoints=" + strings.Join(c.addrs, ",")
	if out, errOut, code := c.raftctl(eps, "put", "k", "v1"); code != 0 || out != "OK\n" {
		t.Fatalf("put via endpoints: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out, errOut, code := c.raftctl(eps, "get", "k"); code != 0 || out != "v1\n" {
		t.Fatalf("get via endpoints: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// list-peers without the entrance asks every endpoint.
	out, errOut, code := c.raftctl(eps, "list-peers")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 4 ||
		strings.Count(out, " alive ") != 3 || strings.Count(out, " leader ") != 1 {
		t.Fatalf("list-peers via endpoints: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	// One follower alone answers a serializable read.
	l := c.leader(10 * time.Second)
	f := (l + 1) % 3
	waitFor(t, 10*time.Second, func() bool {
		out, _, code := c.raftctl("--endpoints="+c.addrs[f], "get", "k", "--serializable", "--timeout", "2s")
		return code == 0 && out == "v1\n"
	}, func() string { return "follower never served the serializable read" })
	if out, errOut, code := c.raftctl("--entrance="+c.entrAddr, "--timeout", "1s", "get", "k"); code != 3 {
		t.Fatalf("get via the stopped entrance: exit %d (stdout %q, stderr %q), want 3", code, out, errOut)
	}
}

// writer writes unique keys with one client until stop, recording each
// acknowledged write.
type writer struct {
	mu    sync.Mutex
	acked map[string]string
	n     atomic.Int64
}

func (w *writer) run(t *testing.T, cl *client.Client, id int, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		k, v := fmt.Sprintf("w%d/%06d", id, i), fmt.Sprintf("v%d", i)
		if _, err := cl.Put(t.Context(), k, []byte(v)); err == nil {
			w.mu.Lock()
			w.acked[k] = v
			w.mu.Unlock()
			w.n.Add(1)
		}
	}
}

// verifyAcked reads every acknowledged key (linearizable reads) and
// fails on a missing or different value.
func verifyAcked(t *testing.T, cl *client.Client, acked map[string]string) {
	t.Helper()
	lost := 0
	for k, v := range acked {
		res, err := cl.Get(t.Context(), k, client.GetOptions{})
		if err != nil || string(res.KVs[0].Value) != v {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged write %s=%s: read %v %v", k, v, res, err)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, len(acked))
	}
}

// TestLeaderKillFailover: SIGKILL the leader; a new one is elected and
// writes continue; the old node restarts and catches up with nothing lost.
func TestLeaderKillFailover(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.client(client.Config{Timeout: 20 * time.Second})
	defer cl.Close()
	acked := map[string]string{}
	put := func(k, v string) {
		t.Helper()
		if _, err := cl.Put(t.Context(), k, []byte(v)); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		acked[k] = v
	}
	for i := range 30 {
		put(fmt.Sprintf("before/%03d", i), fmt.Sprint(i))
	}
	old := c.leader(10 * time.Second)
	c.nodes[old].Kill()
	start := time.Now()
	put("after/first", "x")
	t.Logf("first write %v after SIGKILL of leader %s", time.Since(start), c.nodes[old].Name)
	for i := range 30 {
		put(fmt.Sprintf("after/%03d", i), fmt.Sprint(i))
	}
	if l := c.leader(10 * time.Second); l == old {
		t.Fatalf("killed node %d still leads", old)
	}
	c.nodes[old].Start()
	// The restarted node catches up: it serves every write alone, from its
	// own state (serializable reads sent only to it).
	only := c.client(client.Config{Endpoints: []string{c.addrs[old]}, Timeout: 2 * time.Second})
	defer only.Close()
	waitFor(t, 20*time.Second, func() bool {
		res, err := only.Get(t.Context(), "after/029", client.GetOptions{Serializable: true})
		return err == nil && string(res.KVs[0].Value) == "29"
	}, func() string { return "restarted node did not catch up" })
	for k, v := range acked {
		res, err := only.Get(t.Context(), k, client.GetOptions{Serializable: true})
		if err != nil || string(res.KVs[0].Value) != v {
			t.Fatalf("restarted node: %s = %v, %v; want %s", k, res, err, v)
		}
	}
	verifyAcked(t, cl, acked)
}

// TestKillAllDuringWrites: SIGKILL every node at once while clients write;
// after a restart every acknowledged write is there.
func TestKillAllDuringWrites(t *testing.T) {
	c := startCluster(t, 3)
	w := &writer{acked: map[string]string{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for id := range 4 {
		cl := c.client(client.Config{Timeout: 3 * time.Second})
		defer cl.Close()
		wg.Go(func() { w.run(t, cl, id, stop) })
	}
	waitFor(t, 20*time.Second, func() bool { return w.n.Load() >= 200 }, func() string {
		return fmt.Sprintf("only %d writes acknowledged", w.n.Load())
	})
	var kw sync.WaitGroup
	for _, p := range c.nodes {
		kw.Go(p.Kill)
	}
	kw.Wait()
	close(stop)
	wg.Wait()
	t.Logf("%d writes acknowledged before the crash", w.n.Load())
	for _, p := range c.nodes {
		p.Start()
	}
	cl := c.client(client.Config{Timeout: 20 * time.Second})
	defer cl.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	verifyAcked(t, cl, w.acked)
}

// checkBigPrefix: raftctl get --prefix prints a prefix holding more than
// one message (proto.MaxMessageBytes, 2 MiB) of key-values whole, in text
// and in json, in the usual format.
func checkBigPrefix(t *testing.T, c *cluster) {
	t.Helper()
	cl := c.client(client.Config{AttemptTimeout: 2 * time.Second, Timeout: 20 * time.Second})
	defer cl.Close()
	var wantText strings.Builder
	var keys []string
	for i := range 3 {
		k, v := fmt.Sprintf("big/%d", i), strings.Repeat(string(rune('a'+i)), 900<<10)
		if _, err := cl.Put(t.Context(), k, []byte(v)); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		fmt.Fprintf(&wantText, "%s\n%s\n", k, v)
		keys = append(keys, k)
	}
	entr := "--entrance=" + c.entrAddr
	out, errOut, code := c.raftctl(entr, "get", "big/", "--prefix")
	if code != 0 || out != wantText.String() {
		t.Fatalf("get big/ --prefix over 2.7 MiB: exit %d, %d bytes of stdout (want %d), stderr %q", code, len(out), wantText.Len(), errOut)
	}
	out, errOut, code = c.raftctl(entr, "-o", "json", "get", "big/", "--prefix")
	var js struct {
		Revision int64 `json:"revision"`
		KVs      []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"kvs"`
		More bool `json:"more"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || code != 0 || len(js.KVs) != 3 || js.More || js.Revision < 3 {
		t.Fatalf("-o json get big/ --prefix: exit %d, %v, %d keys, more %v, stderr %q", code, err, len(js.KVs), js.More, errOut)
	}
	for i, kv := range js.KVs {
		if kv.Key != keys[i] || len(kv.Value) != 900<<10 || kv.Value[0] != byte('a'+i) {
			t.Fatalf("-o json key %d: %q with %d bytes, want %q", i, kv.Key, len(kv.Value), keys[i])
		}
	}
}
