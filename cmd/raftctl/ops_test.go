package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/proto"
)

// newOpsFake is a three-node cluster n1 (leader), n2, n3 at addresses
// a1..a3 with IDs 1..3; n3 does not answer status.
func newOpsFake() *fakeKV {
	k := newFake()
	k.status = map[string]*client.NodeStatus{}
	for i := 1; i <= 3; i++ {
		name, addr, id := fmt.Sprintf("n%d", i), fmt.Sprintf("a%d", i), fmt.Sprintf("%016x", i)
		k.peers = append(k.peers, client.Peer{Name: name, ID: id, Addr: addr, Role: "follower", Liveness: "alive"})
		if i < 3 {
			k.status[addr] = &client.NodeStatus{ID: id, Name: name, Addr: addr, Role: "follower", Term: 4,
				Leader: fmt.Sprintf("%016x", 1), Commit: 20, Applied: 19, LastIndex: 21, Snapshot: 10, Revision: 7, UptimeMS: 61_000,
				LogEntries: 11, LogBytes: 1536 * 1024, RudpSent: 300, RudpReceived: 290, RudpRetransmits: 4, RudpDropped: 1}
		}
	}
	k.status["a1"].Role = "leader"
	return k
}

func TestStatusTable(t *testing.T) {
	k := newOpsFake()
	r := execute(t, k, nil, "--timeout", "50ms", "status")
	want := `NAME  ID                ADDRESS  ROLE         TERM  LEADER  COMMIT  APPLIED  LAST  SNAPSHOT  REVISION  UPTIME  LOG  LOG_SIZE  SENT  RECV  RETX  DROP
n1    0000000000000001  a1       leader       4     n1      20      19       21    10        7         1m1s    11   1.5MiB    300   290   4     1
n2    0000000000000002  a2       follower     4     n1      20      19       21    10        7         1m1s    11   1.5MiB    300   290   4     1
n3    0000000000000003  a3       unreachable  -     -       -       -        -     -         -         -       -    -         -     -     -     -
`
	if r.code != exitOK || r.stderr != "" {
		t.Fatalf("status: exit %d, stderr %q", r.code, r.stderr)
	}
	if d := cmp.Diff(want, r.stdout); d != "" {
		t.Fatalf("status table (-want +got):\n%s", d)
	}
	k.peers[2].Liveness = "removed"
	if r := execute(t, k, nil, "--timeout", "50ms", "status"); !strings.Contains(r.stdout, "n3    0000000000000003  a3       removed") {
		t.Fatalf("status with n3 removed:\n%s", r.stdout)
	}
}

func TestStatusJSONAndName(t *testing.T) {
	k := newOpsFake()
	r := execute(t, k, nil, "--timeout", "50ms", "-o", "json", "status")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || r.code != exitOK || len(rows) != 3 {
		t.Fatalf("status -o json: exit %d, %v:\n%s", r.code, err, r.stdout)
	}
	if rows[0]["name"] != "n1" || rows[0]["role"] != "leader" || rows[0]["leader_name"] != "n1" || rows[0]["reachable"] != true ||
		rows[0]["applied_index"] != 19.0 || rows[0]["uptime_ms"] != 61000.0 ||
		rows[0]["log_entries"] != 11.0 || rows[0]["log_bytes"] != 1572864.0 || rows[0]["rudp_sent"] != 300.0 ||
		rows[0]["rudp_received"] != 290.0 || rows[0]["rudp_retransmits"] != 4.0 || rows[0]["rudp_dropped"] != 1.0 {
		t.Fatalf("row n1: %v", rows[0])
	}
	if rows[2]["reachable"] != false || rows[2]["error"] == nil || rows[2]["role"] != nil {
		t.Fatalf("row n3 (unreachable): %v", rows[2])
	}

	r = execute(t, k, nil, "status", "n2")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); r.code != exitOK || len(lines) != 2 || !strings.HasPrefix(lines[1], "n2 ") {
		t.Fatalf("status n2: exit %d:\n%s", r.code, r.stdout)
	}
	if r := execute(t, k, nil, "--timeout", "50ms", "status", "n3"); r.code != exitUnavailable || !strings.HasPrefix(r.stderr, "Error: status of n3") {
		t.Fatalf("status of an unreachable node: exit %d, stderr %q; want 3", r.code, r.stderr)
	}
	if r := execute(t, k, nil, "status", "n9"); r.code != exitError || !strings.Contains(r.stderr, `no such node: "n9"`) {
		t.Fatalf("status of an unknown node: exit %d, stderr %q; want 1", r.code, r.stderr)
	}
	if r := execute(t, k, nil, "status", "n1", "n2"); r.code != exitUsage {
		t.Fatalf("status with two names: exit %d, want 2", r.code)
	}
	k.status = map[string]*client.NodeStatus{}
	if r := execute(t, k, nil, "--timeout", "50ms", "status"); r.code != exitUnavailable || !strings.Contains(r.stdout, "unreachable") {
		t.Fatalf("status with no node answering: exit %d, stdout %q; want 3 and the table", r.code, r.stdout)
	}
}

// leadBy makes the node at addr lead (term+1) and the others follow.
func leadBy(k *fakeKV, addr string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for a, st := range k.status {
		st.Term++
		st.Role = "follower"
		if a == addr {
			st.Role = "leader"
		}
	}
}

func TestTransferLeader(t *testing.T) {
	k := newOpsFake()
	k.onTransfer = func(leaderAddr string, id uint64) error {
		if id != 2 {
			return fmt.Errorf("client: transfer: %w", client.ErrInvalid)
		}
		leadBy(k, "a2")
		return nil
	}
	r := execute(t, k, nil, "--timeout", "50ms", "transfer-leader", "n2")
	if r.code != exitOK || r.stdout != "n2 leads (term 5)\n" {
		t.Fatalf("transfer-leader n2: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := k.calls[len(k.calls)-1]; got != "transfer a1 0000000000000002" {
		t.Fatalf("last call %q, want the transfer sent to the leader a1 with n2's ID", got)
	}
	r = execute(t, k, nil, "--timeout", "50ms", "-o", "json", "transfer-leader", "n2")
	var j jsonTransfer
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil || r.code != exitOK || j != (jsonTransfer{Leader: "n2", Term: 5, Unchanged: true}) {
		t.Fatalf("transfer-leader to the leader: exit %d, %v, %q", r.code, err, r.stdout)
	}
	if r := execute(t, k, nil, "transfer-leader", "n7"); r.code != exitError || !strings.Contains(r.stderr, "no such node") {
		t.Fatalf("transfer-leader n7: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := execute(t, k, nil, "--timeout", "50ms", "transfer-leader", "n1"); r.code != exitError || !strings.Contains(r.stderr, "invalid") {
		t.Fatalf("transfer refused by the leader: exit %d, stderr %q; want 1", r.code, r.stderr)
	}
	if r := execute(t, k, nil, "transfer-leader"); r.code != exitUsage {
		t.Fatalf("transfer-leader without a name: exit %d", r.code)
	}
	if r := execute(t, k, nil, "transfer-leader", "n1", "--wait", "0s"); r.code != exitUsage {
		t.Fatalf("transfer-leader --wait 0: exit %d", r.code)
	}
}

func TestTransferLeaderTimesOut(t *testing.T) {
	k := newOpsFake()
	k.onTransfer = func(string, uint64) error { return nil } // the old leader says yes, n2 never leads
	r := execute(t, k, nil, "--timeout", "50ms", "transfer-leader", "n2", "--wait", "300ms")
	if r.code != exitUnavailable || !strings.Contains(r.stderr, "transfer leadership to n2: timed out after 300ms: n2 does not say it leads") {
		t.Fatalf("transfer that never takes: exit %d, stderr %q; want 3 and a clear message", r.code, r.stderr)
	}
	k.status["a1"].Role = "follower" // nobody leads
	r = execute(t, k, nil, "--timeout", "50ms", "transfer-leader", "n2", "--wait", "200ms")
	if r.code != exitUnavailable || !strings.Contains(r.stderr, "no node says it leads") {
		t.Fatalf("transfer without a leader: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestStopNode(t *testing.T) {
	k := newOpsFake()
	k.onStop = func(addr string, _ uint64, keep bool) error {
		k.mu.Lock()
		defer k.mu.Unlock()
		delete(k.status, addr)
		if !keep {
			for i := range k.peers {
				if k.peers[i].Addr == addr {
					k.peers[i].Liveness = "removed"
				}
			}
		}
		return nil
	}
	r := execute(t, k, nil, "--timeout", "50ms", "stop-node", "n2")
	if r.code != exitOK || r.stdout != "n2 left the cluster and stopped\n" {
		t.Fatalf("stop-node n2: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := k.calls[len(k.calls)-1]; got != "stop a2 0000000000000002 keep=false" {
		t.Fatalf("last call %q", got)
	}
	if r := execute(t, k, nil, "stop-node", "n2"); r.code != exitError || !strings.Contains(r.stderr, "already removed") {
		t.Fatalf("stop-node of a removed node: exit %d, stderr %q", r.code, r.stderr)
	}
	// Two voters left: stopping one loses the quorum, hence --force.
	r = execute(t, k, nil, "--timeout", "50ms", "-o", "json", "stop-node", "n1", "--keep-membership", "--force")
	var j jsonStop
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil || r.code != exitOK ||
		j != (jsonStop{Name: "n1", ID: "0000000000000001", Stopped: true, Removed: false}) {
		t.Fatalf("stop-node --keep-membership: exit %d, %v, %q, stderr %q", r.code, err, r.stdout, r.stderr)
	}
	if k.peers[0].Liveness != "alive" || k.calls[len(k.calls)-1] != "stop a1 0000000000000001 keep=true" {
		t.Fatalf("keep-membership: peers %+v, calls %q", k.peers, k.calls)
	}
}

func TestStopNodeFailures(t *testing.T) {
	k := newOpsFake()
	k.onStop = func(string, uint64, bool) error {
		return fmt.Errorf("client: stop: %w", &client.ServerError{Code: proto.CodeInvalid, Message: "the last voter cannot leave"})
	}
	if r := execute(t, k, nil, "--timeout", "50ms", "stop-node", "n1"); r.code != exitError || !strings.Contains(r.stderr, "last voter") {
		t.Fatalf("refused stop: exit %d, stderr %q", r.code, r.stderr)
	}
	// The node accepts but keeps answering.
	k.onStop = func(string, uint64, bool) error { return nil }
	// n3 does not answer: stopping n1 would lose the quorum, hence --force.
	r := execute(t, k, nil, "--timeout", "50ms", "stop-node", "n1", "--keep-membership", "--force", "--wait", "300ms")
	if r.code != exitUnavailable || !strings.Contains(r.stderr, "n1 still answers") {
		t.Fatalf("stop of a node that keeps running: exit %d, stderr %q", r.code, r.stderr)
	}
	// No answer, node gone, no entrance to confirm the removal.
	k.onStop = func(addr string, _ uint64, _ bool) error {
		k.mu.Lock()
		delete(k.status, addr)
		k.mu.Unlock()
		return fmt.Errorf("client: stop: %w", client.ErrUnavailable)
	}
	r = execute(t, k, nil, "--timeout", "50ms", "--endpoints", "a1:1,a2:1,a3:1", "stop-node", "n2")
	if r.code != exitUnavailable || !strings.Contains(r.stderr, "whether it left the membership is unknown") {
		t.Fatalf("stop without an answer: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := execute(t, k, nil, "stop-node", "n1", "--wait", "-1s"); r.code != exitUsage {
		t.Fatalf("--wait -1s: exit %d", r.code)
	}
}

func TestBench(t *testing.T) {
	k := newFake()
	r := execute(t, k, nil, "-o", "json", "bench", "put", "--clients", "4", "--requests", "50", "--keys", "5", "--value-size", "8")
	var res benchResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != exitOK {
		t.Fatalf("bench put: exit %d, %v, stdout %q, stderr %q", r.code, err, r.stdout, r.stderr)
	}
	if res.Op != "put" || res.Clients != 4 || res.Requests != 50 || res.OK != 50 || res.Errors != 0 || res.OpsPerSec <= 0 ||
		res.LatencyMS.Max < res.LatencyMS.P99 || res.LatencyMS.P99 < res.LatencyMS.P50 {
		t.Fatalf("bench put result %+v", res)
	}
	if len(k.calls) != 50 || len(k.data) < 1 || len(k.data) > 5 {
		t.Fatalf("bench put: %d calls, keys %d", len(k.calls), len(k.data))
	}
	for key, v := range k.data {
		if key < benchKey(0) || key > benchKey(4) || len(v) != 8 {
			t.Fatalf("bench put wrote %q = %d bytes", key, len(v))
		}
	}

	k = newFake()
	r = execute(t, k, nil, "bench", "get", "--clients", "2", "--requests", "20", "--keys", "3")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "get: 2 clients, 20 requests, 3 keys, 256-byte values\nok 20, errors 0 in ") ||
		!strings.Contains(r.stdout, "latency p50 ") {
		t.Fatalf("bench get: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if puts := strings.Count(strings.Join(k.calls, "\n"), "put bench/"); puts != 3 || len(k.calls) != 23 {
		t.Fatalf("bench get: %d prefill puts and %d calls, want 3 and 23", puts, len(k.calls))
	}

	k = newFake()
	k.err = fmt.Errorf("client: put: %w", client.ErrTimeout)
	r = execute(t, k, nil, "bench", "put", "--clients", "2", "--requests", "4")
	if r.code != exitUnavailable || !strings.Contains(r.stdout, "ok 0, errors 4") || !strings.Contains(r.stderr, "4 of 4 operations failed") {
		t.Fatalf("bench with failures: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"bench"}, {"bench", "del"}, {"bench", "put", "--clients", "0"}, {"bench", "put", "--requests", "0"},
		{"bench", "put", "--keys", "0"}, {"bench", "put", "--value-size", "-1"}, {"bench", "put", "--serializable"}} {
		if r := execute(t, newFake(), nil, args...); r.code != exitUsage {
			t.Fatalf("%q: exit %d, want 2 (stderr %q)", args, r.code, r.stderr)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var lats []time.Duration
	for i := 100; i >= 1; i-- {
		lats = append(lats, time.Duration(i)*time.Millisecond)
	}
	if got, want := percentiles(lats), (latencyStats{P50: 50, P90: 90, P99: 99, Max: 100}); got != want {
		t.Fatalf("percentiles of 1..100 ms = %+v, want %+v", got, want)
	}
	if got := percentiles([]time.Duration{3 * time.Millisecond}); got != (latencyStats{P50: 3, P90: 3, P99: 3, Max: 3}) {
		t.Fatalf("percentiles of one sample = %+v", got)
	}
	if got := percentiles(nil); got != (latencyStats{}) {
		t.Fatalf("percentiles of none = %+v", got)
	}
}
