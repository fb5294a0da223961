package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/test/internal/daemon"
)

// proc is one daemon process started by a test. Every process is ended by
// pid in t.Cleanup.
type proc = daemon.Proc

// cluster is an entrance and n raftd on loopback.
type cluster struct {
	t          *testing.T
	dir        string
	secretFile string
	entrance   *proc
	entrAddr   string
	httpAddr   string
	nodes      []*proc
	addrs      []string // node UDP addresses, by index
	nodeArgs   []string // extra flags of every raftd
}

// startCluster starts an entrance and n nodes and waits until list-peers
// shows n voters and one leader.
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	return startClusterWith(t, n, clusterOpts{})
}

// clusterOpts are extra command-line flags for a test cluster's processes.
type clusterOpts struct {
	entranceArgs []string // appended to the entrance's flags
	nodeArgs     []string // appended to every raftd's flags (addNode too)
}

// startClusterWith is startCluster with extra flags.
func startClusterWith(t *testing.T, n int, opts clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), entrAddr: daemon.FreeUDPAddr(t), httpAddr: daemon.FreeTCPAddr(t), nodeArgs: opts.nodeArgs}
	c.secretFile = filepath.Join(c.dir, "secret")
	if err := os.WriteFile(c.secretFile, []byte("e2e-cluster-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.entrance = c.newProc("entrance", append([]string{filepath.Join(binDir, "entrance"), "--listen", c.entrAddr, "--http", c.httpAddr,
		"--data-dir", filepath.Join(c.dir, "entrance"), "--secret-file", c.secretFile,
		"--discovery-port", "0"}, opts.entranceArgs...)...)
	c.entrance.Start()
	for i := range n {
		c.addNode(fmt.Sprintf("n%d", i+1))
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, p := range append([]*proc{c.entrance}, c.nodes...) {
			wg.Go(func() {
				if p.Running() {
					p.Stop()
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			for _, p := range append([]*proc{c.entrance}, c.nodes...) {
				keep := filepath.Join(os.TempDir(), fmt.Sprintf("raftkv-e2e-%s-%d-%s.log", t.Name(), os.Getpid(), p.Name))
				if b, err := os.ReadFile(p.LogPath); err == nil && os.WriteFile(keep, b, 0o644) == nil {
					t.Logf("--- %s log kept in %s; last 30 lines:\n%s", p.Name, keep, p.LogTail(30))
				}
			}
		}
	})
	c.waitFormed(n)
	return c
}

// addNode starts one more raftd named name (with the cluster's node flags
// and then extra) on a free address and returns it; it is c.nodes[len-1].
func (c *cluster) addNode(name string, extra ...string) *proc {
	c.t.Helper()
	addr := daemon.FreeUDPAddr(c.t)
	args := []string{filepath.Join(binDir, "raftd"), "--name", name, "--listen", addr,
		"--data-dir", filepath.Join(c.dir, name), "--entrance", c.entrAddr, "--secret-file", c.secretFile}
	args = append(append(args, c.nodeArgs...), extra...)
	p := c.newProc(name, args...)
	c.addrs = append(c.addrs, addr)
	c.nodes = append(c.nodes, p)
	p.Start()
	return p
}

func (c *cluster) newProc(name string, args ...string) *proc {
	return daemon.New(c.t, name, filepath.Join(c.dir, name+".log"), args...)
}

// waitFormed waits until the entrance lists n alive voters, one of them the
// leader.
func (c *cluster) waitFormed(n int) {
	c.t.Helper()
	var last string
	waitFor(c.t, 30*time.Second, func() bool {
		peers, err := c.listPeers(c.t.Context())
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("%+v", peers)
		leaders, followers := 0, 0
		for _, p := range peers {
			if p.Liveness != "alive" {
				return false
			}
			switch p.Role {
			case "leader":
				leaders++
			case "follower":
				followers++
			}
		}
		return len(peers) == n && leaders == 1 && followers == n-1
	}, func() string { return "cluster of " + fmt.Sprint(n) + " did not form; last list-peers: " + last })
}

func (c *cluster) listPeers(ctx context.Context) ([]client.Peer, error) {
	cl := c.client(client.Config{Entrance: c.entrAddr, Timeout: 2 * time.Second})
	defer cl.Close()
	return cl.ListPeers(ctx)
}

func (c *cluster) secret() []byte {
	b, err := os.ReadFile(c.secretFile)
	if err != nil {
		c.t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

// client returns a client with the cluster's secret; cfg without addresses
// gets the entrance and every node.
func (c *cluster) client(cfg client.Config) *client.Client {
	c.t.Helper()
	if cfg.Entrance == "" && len(cfg.Endpoints) == 0 {
		cfg.Entrance, cfg.Endpoints = c.entrAddr, c.addrs
	}
	cfg.Secret = c.secret()
	cl, err := client.New(c.t.Context(), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// leader returns the index of the node that says it leads (with the
// highest term), waiting up to timeout for one.
func (c *cluster) leader(timeout time.Duration) int {
	c.t.Helper()
	cl := c.client(client.Config{Endpoints: c.addrs, AttemptTimeout: 300 * time.Millisecond, Timeout: 600 * time.Millisecond})
	defer cl.Close()
	idx := -1
	waitFor(c.t, timeout, func() bool {
		var best uint64
		idx = -1
		for i, a := range c.addrs {
			if !c.nodes[i].Running() {
				continue
			}
			st, err := cl.Status(c.t.Context(), a)
			if err == nil && st.Role == "leader" && st.Term >= best {
				best, idx = st.Term, i
			}
		}
		return idx >= 0
	}, func() string { return "no node says it leads" })
	return idx
}

// raftctl runs the raftctl binary and returns stdout, stderr and the exit
// status.
func (c *cluster) raftctl(args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "raftctl"), append([]string{"--secret-file", c.secretFile}, args...)...)
	cmd.Env = append(os.Environ(), "RAFTCTL_ENTRANCE=", "RAFTCTL_ENDPOINTS=", "RAFTCTL_SECRET_FILE=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("raftctl %q: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// waitFor polls cond until it holds or timeout passes (then fails the test
// with what()).
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what())
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}
