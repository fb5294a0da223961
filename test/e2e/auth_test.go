package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAuthentication: entrance and nodes run with --secret-file. raftctl
// with the cluster's secret works; with a wrong secret or none, every
// command (data and admin) fails the way `raftctl help exit-codes`
// documents (exit 4, unauthorized: the nodes and the entrance answer
// datagrams they cannot authenticate with an "auth failed" notice) with
// one "Error:" line saying that the secrets differ, and changes nothing. A
// raftd with a wrong secret is never admitted (it keeps logging that the
// join was refused because the cluster secret differs, and list-peers never
// shows it) while the cluster keeps serving.
func TestAuthentication(t *testing.T) {
	c := startCluster(t, 3)
	entr := "--entrance=" + c.entrAddr
	if _, errOut, code := c.raftctl(entr, "put", "k", "v1"); code != 0 {
		t.Fatalf("put with the right secret: exit %d: %s", code, errOut)
	}
	if out, errOut, code := c.raftctl(entr, "get", "k"); code != 0 || out != "v1\n" {
		t.Fatalf("get with the right secret: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// The documented exit status for a wrong secret.
	help, _, code := c.raftctl("help", "exit-codes")
	if code != 0 || !strings.Contains(help, "4  unauthorized") || !strings.Contains(help, "secret differs from --secret-file's") {
		t.Fatalf("raftctl help exit-codes (exit %d) no longer documents a wrong secret as exit 4; update this test:\n%s", code, help)
	}
	wrong := filepath.Join(c.dir, "wrong-secret")
	if err := os.WriteFile(wrong, []byte("not-the-cluster-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lead := c.nodes[c.leader(10*time.Second)].Name
	other := "n1"
	if lead == "n1" {
		other = "n2"
	}
	type run struct {
		args        []string
		out, errOut string
		code        int
		err         error
	}
	var runs []*run
	for _, args := range [][]string{
		{entr, "put", "k", "intruder"},
		{entr, "get", "k"},
		{"--endpoints=" + c.addrs[0], "get", "k", "--serializable"},
		{entr, "list-peers"},
		{entr, "status"},
		{entr, "transfer-leader", other},
		{entr, "stop-node", other},
	} {
		for _, secret := range []string{"--secret-file=" + wrong, "--secret-file="} {
			runs = append(runs, &run{args: append([]string{"--secret-file=" + c.secretFile, secret, "--timeout", "1s"}, args...)})
		}
	}
	// In parallel: each waits out its timeout.
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() { r.out, r.errOut, r.code, r.err = runRaftctl(t.Context(), r.args...) })
	}
	wg.Wait()
	for _, r := range runs {
		lines := strings.Split(strings.TrimRight(r.errOut, "\n"), "\n")
		if r.err != nil || r.code != 4 || r.out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "Error: ") ||
			!strings.Contains(lines[0], "authentication") || !strings.Contains(lines[0], "secrets differ") {
			t.Fatalf("raftctl %v: exit %d (%v), stdout %q, stderr %q; want exit 4 and one Error: line saying the authentication failed because the secrets differ",
				r.args, r.code, r.err, r.out, r.errOut)
		}
	}
	t.Logf("with a wrong secret: %s", strings.TrimSpace(runs[2].errOut))
	// Nothing changed: the value, the leader, every member.
	if out, errOut, code := c.raftctl(entr, "get", "k"); code != 0 || out != "v1\n" {
		t.Fatalf("get after the refused writes: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := c.nodes[c.leader(10*time.Second)].Name; got != lead {
		t.Fatalf("leader %s after a refused transfer-leader, was %s", got, lead)
	}
	for _, p := range c.nodes {
		if !p.Running() {
			t.Fatalf("%s exited after a refused stop-node: %s", p.Name, p.LogTail(10))
		}
	}

	// A raftd with the wrong secret is refused by the entrance and says why.
	intruder := c.addNode("n4", "--secret-file", wrong)
	waitFor(t, 20*time.Second, func() bool {
		b, _ := os.ReadFile(intruder.LogPath)
		return strings.Count(string(b), `msg="join refused: the cluster secret differs`) >= 2
	}, func() string { return "n4 (wrong secret) did not log refused joins:\n" + intruder.LogTail(20) })
	if b, _ := os.ReadFile(intruder.LogPath); strings.Contains(string(b), `msg=admitted`) || !intruder.Running() {
		t.Fatalf("n4 with a wrong secret was admitted or exited:\n%s", intruder.LogTail(20))
	}
	peers, err := c.listPeers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := peerByName(peers, "n4"); ok || len(peers) != 3 || voters(peers) != 3 {
		t.Fatalf("list-peers with n4 (wrong secret) trying to join: %+v", peers)
	}
	for i := range 5 {
		v := fmt.Sprintf("v%d", i+2)
		if _, errOut, code := c.raftctl(entr, "put", "k", v); code != 0 {
			t.Fatalf("put while n4 tries to join: exit %d: %s", code, errOut)
		}
		if out, errOut, code := c.raftctl(entr, "get", "k"); code != 0 || out != v+"\n" {
			t.Fatalf("get while n4 tries to join: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	}
	intruder.Stop()
}

// runRaftctl runs the raftctl binary with args (and no address or secret
// from the environment); safe to call from any goroutine.
func runRaftctl(ctx context.Context, args ...string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "raftctl"), args...)
	cmd.Env = append(os.Environ(), "RAFTCTL_ENTRANCE=", "RAFTCTL_ENDPOINTS=", "RAFTCTL_SECRET_FILE=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return out.String(), errb.String(), ee.ExitCode(), nil
	}
	return out.String(), errb.String(), 0, err
}
