package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// statusRows runs `raftctl status` and returns its rows by name (fields of
// each line), failing unless it exits 0 with a header.
func statusRows(t *testing.T, c *cluster, args ...string) map[string][]string {
	t.Helper()
	out, errOut, code := c.raftctl(append([]string{"--entrance=" + c.entrAddr, "status"}, args...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) < 2 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("status %v: exit %d, stderr %q, stdout:\n%s", args, code, errOut, out)
	}
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		rows[f[0]] = f
	}
	return rows
}

// TestStatusAndTransferLeader: status shows the three nodes, one leader
// that all of them name; transfer-leader moves leadership to a follower,
// which status then shows.
func TestStatusAndTransferLeader(t *testing.T) {
	c := startCluster(t, 3)
	entr := "--entrance=" + c.entrAddr
	if _, errOut, code := c.raftctl(entr, "put", "k", "v"); code != 0 {
		t.Fatalf("put: exit %d: %s", code, errOut)
	}
	// Columns: NAME ID ADDRESS ROLE TERM LEADER COMMIT APPLIED LAST SNAPSHOT REVISION UPTIME.
	var rows map[string][]string
	waitFor(t, 10*time.Second, func() bool {
		rows = statusRows(t, c)
		leaders := 0
		for _, r := range rows {
			if r[3] == "leader" {
				leaders++
			}
		}
		// Every node names the same leader once heartbeats went round.
		return len(rows) == 3 && leaders == 1 && rows["n1"][5] == rows["n2"][5] && rows["n2"][5] == rows["n3"][5]
	}, func() string { return fmt.Sprintf("status rows %v: want 3 nodes, one leader named by all", rows) })
	leader := rows["n1"][5]
	if rows[leader] == nil || rows[leader][3] != "leader" {
		t.Fatalf("status: nodes name %q as leader, but its row is %v", leader, rows[leader])
	}

	out, errOut, code := c.raftctl(entr, "-o", "json", "status")
	var js []struct {
		Name       string `json:"name"`
		Reachable  bool   `json:"reachable"`
		Role       string `json:"role"`
		LeaderName string `json:"leader_name"`
		Applied    uint64 `json:"applied_index"`
		Revision   int64  `json:"revision"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || code != 0 || len(js) != 3 {
		t.Fatalf("status -o json: exit %d, %v, stderr %q:\n%s", code, err, errOut, out)
	}
	for _, r := range js {
		if !r.Reachable || r.Applied == 0 || r.Revision < 1 {
			t.Fatalf("status -o json row %+v: want reachable, applied > 0, revision >= 1", r)
		}
	}

	target := "n1"
	if leader == "n1" {
		target = "n2"
	}
	out, errOut, code = c.raftctl(entr, "transfer-leader", target)
	if code != 0 || !strings.HasPrefix(out, target+" leads (term ") {
		t.Fatalf("transfer-leader %s: exit %d, stdout %q, stderr %q", target, code, out, errOut)
	}
	if got := c.nodes[c.leader(5*time.Second)].Name; got != target {
		t.Fatalf("after transfer-leader %s, %s leads", target, got)
	}
	if r := statusRows(t, c, target)[target]; r[3] != "leader" {
		t.Fatalf("status %s after the transfer: %v", target, r)
	}
	// Transferring to the leader changes nothing.
	if out, errOut, code := c.raftctl(entr, "transfer-leader", target); code != 0 || !strings.Contains(out, "already leads") {
		t.Fatalf("transfer-leader to the leader: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out, errOut, code := c.raftctl(entr, "transfer-leader", "nosuch"); code != 1 || out != "" || !strings.Contains(errOut, "no such node") {
		t.Fatalf("transfer-leader nosuch: exit %d, stdout %q, stderr %q; want 1 and no such node", code, out, errOut)
	}
	if out, errOut, code := c.raftctl(entr, "get", "k"); code != 0 || out != "v\n" {
		t.Fatalf("get after the transfer: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// bench put and get through the binary.
	for _, op := range []string{"put", "get"} {
		out, errOut, code := c.raftctl(entr, "-o", "json", "bench", op, "--clients", "4", "--requests", "200", "--keys", "20", "--value-size", "64")
		var res struct {
			OK        int                             `json:"ok"`
			Errors    int                             `json:"errors"`
			OpsPerSec float64                         `json:"ops_per_sec"`
			Latency   struct{ P50, P99, Max float64 } `json:"latency_ms"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || res.OK != 200 || res.Errors != 0 ||
			res.OpsPerSec <= 0 || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
			t.Fatalf("bench %s: exit %d, %v, stderr %q:\n%s", op, code, err, errOut, out)
		}
		t.Logf("bench %s (4 clients, -race test, plain binaries): %.0f ops/s, p50 %.2f ms, p99 %.2f ms", op, res.OpsPerSec, res.Latency.P50, res.Latency.P99)
	}

	// stop-node --keep-membership stops a follower without removing it; it
	// comes back when restarted.
	lead := c.leader(5 * time.Second)
	f := (lead + 1) % 3
	name := c.nodes[f].Name
	out, errOut, code = c.raftctl(entr, "stop-node", name, "--keep-membership")
	if code != 0 || out != name+" stopped (still a member)\n" {
		t.Fatalf("stop-node %s --keep-membership: exit %d, stdout %q, stderr %q", name, code, out, errOut)
	}
	waitFor(t, 10*time.Second, func() bool { return !c.nodes[f].Running() }, func() string { return name + " still runs" })
	if ec := c.nodes[f].ExitCode(); ec != 0 {
		t.Fatalf("%s exited %d, want 0", name, ec)
	}
	rows = statusRows(t, c)
	if rows[name][3] != "unreachable" {
		t.Fatalf("status after stop-node --keep-membership: %s row %v, want unreachable", name, rows[name])
	}
	if out, errOut, code := c.raftctl(entr, "put", "k", "v2"); code != 0 {
		t.Fatalf("put with %s stopped: exit %d, stdout %q, stderr %q", name, code, out, errOut)
	}
	c.nodes[f].Start()
	waitFor(t, 15*time.Second, func() bool {
		r := statusRows(t, c)[name] // the whole table: exit 0 while name is still down
		return r[3] == "follower" && r[5] != "-"
	}, func() string { return name + " did not come back as a follower" })
}

// TestStopNodeLeaderAndFollower: stop-node on the leader (3 -> 2 voters),
// then on a follower (2 -> 1) while a client writes: each process exits 0,
// list-peers shows it removed, status shows it removed, and writes go on.
func TestStopNodeLeaderAndFollower(t *testing.T) {
	c := startCluster(t, 3)
	entr := "--entrance=" + c.entrAddr
	cl := c.client(client.Config{Timeout: 20 * time.Second})
	defer cl.Close()
	w := &writer{acked: map[string]string{}}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); w.run(t, cl, 0, stop) }()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()
	progress := func(what string) {
		t.Helper()
		from := w.n.Load()
		waitFor(t, 15*time.Second, func() bool { return w.n.Load() >= from+20 },
			func() string { return "writes did not continue " + what })
	}
	progress("at the start")

	stopped := map[int]bool{}
	for _, which := range []string{"leader", "follower"} {
		lead := c.leader(10 * time.Second)
		victim := lead
		if which == "follower" {
			for i := range c.nodes {
				if i != lead && !stopped[i] {
					victim = i
					break
				}
			}
		}
		name := c.nodes[victim].Name
		out, errOut, code := c.raftctl(entr, "stop-node", name)
		if code != 0 || out != name+" left the cluster and stopped\n" {
			t.Fatalf("stop-node %s (%s): exit %d, stdout %q, stderr %q", name, which, code, out, errOut)
		}
		stopped[victim] = true
		waitFor(t, 10*time.Second, func() bool { return !c.nodes[victim].Running() },
			func() string { return name + " still runs after stop-node" })
		if ec := c.nodes[victim].ExitCode(); ec != 0 {
			t.Fatalf("%s exited %d after stop-node, want 0:\n%s", name, ec, c.nodes[victim].LogTail(20))
		}
		peers, err := c.listPeers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range peers {
			if p.Name == name && p.Liveness != "removed" {
				t.Fatalf("list-peers after stop-node %s: %+v, want removed", name, p)
			}
		}
		if r := statusRows(t, c)[name]; r == nil || r[3] != "removed" {
			t.Fatalf("status after stop-node %s: row %v, want removed", name, r)
		}
		progress("after stop-node " + which)
	}
	if _, errOut, code := c.raftctl(entr, "stop-node", c.nodes[c.leader(5*time.Second)].Name); code != 1 || !strings.Contains(errOut, "last voter") {
		t.Fatalf("stop-node of the last voter: exit %d, stderr %q; want 1, last voter", code, errOut)
	}
	close(stop)
	<-done
	w.mu.Lock()
	defer w.mu.Unlock()
	verifyAcked(t, cl, w.acked)
}
