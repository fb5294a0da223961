package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// proc is one daemon process started by a test. Every process is ended by
// pid in t.Cleanup.
type proc struct {
	t       *testing.T
	name    string
	args    []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

func (p *proc) start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(p.args, " "))
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the process and waits until it exited (SIGKILL after
// grace if it has not).
func (p *proc) signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return
	case <-time.After(grace):
		p.t.Errorf("%s (pid %d) did not exit %v after %v; killing it", p.name, cmd.Process.Pid, sig, grace)
		_ = cmd.Process.Kill()
		<-done
	}
}

func (p *proc) kill() { p.signal(syscall.SIGKILL, 10*time.Second) }
func (p *proc) stop() { p.signal(syscall.SIGTERM, 10*time.Second) }

// exitCode is the process's exit status after it ended (-1: killed by a
// signal or still running).
func (p *proc) exitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

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

// freeUDPAddr returns a loopback UDP address that was free a moment ago.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
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
	c := &cluster{t: t, dir: t.TempDir(), entrAddr: freeUDPAddr(t), httpAddr: freeTCPAddr(t), nodeArgs: opts.nodeArgs}
	c.secretFile = filepath.Join(c.dir, "secret")
	if err := os.WriteFile(c.secretFile, []byte("e2e-cluster-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.entrance = c.newProc("entrance", append([]string{filepath.Join(binDir, "entrance"), "--listen", c.entrAddr, "--http", c.httpAddr,
		"--data-dir", filepath.Join(c.dir, "entrance"), "--secret-file", c.secretFile,
		"--discovery-port", "0"}, opts.entranceArgs...)...)
	c.entrance.start()
	for i := range n {
		c.addNode(fmt.Sprintf("n%d", i+1))
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, p := range append([]*proc{c.entrance}, c.nodes...) {
			wg.Go(func() {
				if p.running() {
					p.stop()
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			for _, p := range append([]*proc{c.entrance}, c.nodes...) {
				keep := filepath.Join(os.TempDir(), fmt.Sprintf("raftkv-e2e-%s-%d-%s.log", t.Name(), os.Getpid(), p.name))
				if b, err := os.ReadFile(p.logPath); err == nil && os.WriteFile(keep, b, 0o644) == nil {
					t.Logf("--- %s log kept in %s; last 30 lines:\n%s", p.name, keep, p.logTail(30))
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
	addr := freeUDPAddr(c.t)
	args := []string{filepath.Join(binDir, "raftd"), "--name", name, "--listen", addr,
		"--data-dir", filepath.Join(c.dir, name), "--entrance", c.entrAddr, "--secret-file", c.secretFile}
	args = append(append(args, c.nodeArgs...), extra...)
	p := c.newProc(name, args...)
	c.addrs = append(c.addrs, addr)
	c.nodes = append(c.nodes, p)
	p.start()
	return p
}

func (c *cluster) newProc(name string, args ...string) *proc {
	return &proc{t: c.t, name: name, args: args, logPath: filepath.Join(c.dir, name+".log")}
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
			if !c.nodes[i].running() {
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
