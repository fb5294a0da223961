package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lan is a LAN of network namespaces: a hub namespace with bridge br0 and
// one namespace per host, each with eth0 on the bridge through a veth whose
// bridge-side end is named vIDX in the hub.
type lan struct {
	t      *testing.T
	prefix string // unique per run, e.g. "rkvnt-1a2b3c-"
	subnet string // e.g. "10.213.57" (a /24)
	dir    string
	bin    string
	secret string

	created []string // namespaces this run created, deleted in Cleanup
	procs   []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once cmd.Wait returned
}

// skipOrFail skips the test with reason, or fails it when
// RAFTKV_NETNS_REQUIRED=1 says the environment must support it.
func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("RAFTKV_NETNS_REQUIRED") == "1" {
		t.Fatalf("netns: RAFTKV_NETNS_REQUIRED=1 but %s", reason)
	}
	t.Skipf("netns: %s (needs root and iproute2's `ip netns`; RAFTKV_NETNS_REQUIRED=1 makes this a failure)", reason)
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("netns: random bytes: %v", err)
	}
	return hex.EncodeToString(b)
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// newLAN checks the prerequisites (skipping when they are missing), builds
// the binaries and creates the hub namespace. Everything it creates is
// removed in t.Cleanup.
func newLAN(t *testing.T) *lan {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, fmt.Sprintf("not root (euid %d)", os.Geteuid()))
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "the ip command (iproute2) is not installed")
	}
	x, err := rand.Int(rand.Reader, big.NewInt(250))
	if err != nil {
		t.Fatalf("netns: random subnet: %v", err)
	}
	l := &lan{
		t:      t,
		prefix: "rkvnt-" + randHex(t, 3) + "-",
		subnet: fmt.Sprintf("10.213.%d", x.Int64()+2),
		dir:    t.TempDir(),
	}
	t.Cleanup(l.cleanup)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hub := l.prefix + "hub"
	if out, err := run(ctx, "ip", "netns", "add", hub); err != nil {
		skipOrFail(t, fmt.Sprintf("`ip netns add` does not work here: %v (%s)", err, strings.TrimSpace(out)))
	}
	l.created = append(l.created, hub)
	l.ip(ctx, "-n", hub, "link", "set", "lo", "up")
	l.ip(ctx, "-n", hub, "link", "add", "br0", "type", "bridge")
	l.ip(ctx, "-n", hub, "link", "set", "br0", "up")

	l.bin = filepath.Join(l.dir, "bin")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("netns: the go command is needed to build the daemons: %v", err)
	}
	bctx, bcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer bcancel()
	if _, err := run(bctx, goBin, "build", "-o", l.bin+string(filepath.Separator),
		"../../cmd/raftd", "../../cmd/entrance", "../../cmd/raftctl"); err != nil {
		t.Fatalf("netns: building the binaries: %v", err)
	}
	l.secret = filepath.Join(l.dir, "secret")
	if err := os.WriteFile(l.secret, []byte(randHex(t, 32)+"\n"), 0o600); err != nil {
		t.Fatalf("netns: writing the secret: %v", err)
	}
	return l
}

func (l *lan) ip(ctx context.Context, args ...string) {
	l.t.Helper()
	if _, err := run(ctx, "ip", args...); err != nil {
		l.t.Fatalf("netns: %v", err)
	}
}

func (l *lan) ns(host int) string   { return fmt.Sprintf("%sh%d", l.prefix, host) }
func (l *lan) addr(host int) string { return fmt.Sprintf("%s.%d", l.subnet, host) }
func (l *lan) veth(host int) string { return fmt.Sprintf("v%d", host) }

// addHost creates the namespace of host (its address is SUBNET.host) and
// plugs it into the bridge.
func (l *lan) addHost(host int) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns, hub := l.ns(host), l.prefix+"hub"
	l.ip(ctx, "netns", "add", ns)
	l.created = append(l.created, ns)
	l.ip(ctx, "-n", hub, "link", "add", l.veth(host), "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.ip(ctx, "-n", hub, "link", "set", l.veth(host), "master", "br0")
	l.ip(ctx, "-n", hub, "link", "set", l.veth(host), "up")
	l.ip(ctx, "-n", ns, "addr", "add", l.addr(host)+"/24", "brd", "+", "dev", "eth0")
	l.ip(ctx, "-n", ns, "link", "set", "eth0", "up")
	l.ip(ctx, "-n", ns, "link", "set", "lo", "up")
}

// setLink takes host's bridge-side veth down or up: down is a silent
// partition both ways (the host's eth0 loses carrier, sends still succeed).
func (l *lan) setLink(host int, state string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l.ip(ctx, "-n", l.prefix+"hub", "link", "set", l.veth(host), state)
}

// start runs the binary bin with args in host's namespace, its output in a
// log file.
func (l *lan) start(name string, host int, bin string, args ...string) {
	l.t.Helper()
	logPath := filepath.Join(l.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		l.t.Fatalf("netns: %v", err)
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns(host), filepath.Join(l.bin, bin)}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("netns: starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	l.procs = append(l.procs, p)
	go func() { // ends when the process does; cleanup waits for it
		_ = cmd.Wait()
		close(p.done)
	}()
}

// cleanup stops every process this run started (by pid: SIGTERM, then
// SIGKILL after 5 s), prints their logs' tails when the test failed, and
// deletes the namespaces this run created.
func (l *lan) cleanup() {
	for _, p := range l.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range l.procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			l.t.Logf("%s (pid %d) did not stop on SIGTERM in 5s; killing it", p.name, p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if l.t.Failed() {
		for _, p := range l.procs {
			b, _ := os.ReadFile(p.log)
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			l.t.Logf("---- %s log (last %d lines) ----\n%s", p.name, len(lines), strings.Join(lines, "\n"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := len(l.created) - 1; i >= 0; i-- {
		if _, err := run(ctx, "ip", "netns", "del", l.created[i]); err != nil {
			l.t.Errorf("netns: cleanup: %v", err)
		}
	}
}

// raftctl runs raftctl in the client namespace (host clientHost) against
// the entrance, or the endpoints when args starts with --endpoints.
func (l *lan) raftctl(args ...string) (stdout string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := []string{"netns", "exec", l.ns(clientHost), filepath.Join(l.bin, "raftctl"),
		"--secret-file", l.secret, "--timeout", "3s"}
	if len(args) == 0 || args[0] != "--endpoints" {
		base = append(base, "--entrance", l.addr(entranceHost)+":7700")
	}
	cmd := exec.CommandContext(ctx, "ip", append(base, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("raftctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(errOut.Bytes()))
	}
	return out.String(), nil
}

type peer struct {
	Name     string `json:"name"`
	Addr     string `json:"addr"`
	Role     string `json:"role"`
	Liveness string `json:"liveness"`
}

func (l *lan) peers() ([]peer, error) {
	out, err := l.raftctl("-o", "json", "list-peers")
	if err != nil {
		return nil, err
	}
	var ps []peer
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		return nil, fmt.Errorf("list-peers -o json: %w: %q", err, out)
	}
	return ps, nil
}

// waitFor polls cond every 100 ms until it returns nil or timeout passes,
// then fails the test with cond's last error.
func (l *lan) waitFor(what string, timeout time.Duration, cond func() error) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("netns: %s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (l *lan) mustGet(args ...string) string {
	l.t.Helper()
	out, err := l.raftctl(args...)
	if err != nil {
		l.t.Fatalf("netns: %v", err)
	}
	return strings.TrimSpace(out)
}

const (
	entranceHost = 1
	clientHost   = 100
)

var nodeHosts = []int{2, 3, 4}

func TestNamespaceLAN(t *testing.T) {
	l := newLAN(t)
	for _, h := range append([]int{entranceHost, clientHost}, nodeHosts...) {
		l.addHost(h)
	}
	t.Logf("LAN %s.0/24, namespaces %s*", l.subnet, l.prefix)
	began := time.Now()

	l.start("entrance", entranceHost, "entrance",
		"--listen", l.addr(entranceHost)+":7700", "--http", "",
		"--data-dir", filepath.Join(l.dir, "entrance"), "--secret-file", l.secret,
		"--suspect-after", "1s", "--down-after", "3s", "--down-grace", "0")
	hostOf := map[string]int{} // node address -> host
	for i, h := range nodeHosts {
		name := fmt.Sprintf("n%d", i+1)
		hostOf[l.addr(h)+":7701"] = h
		// No --entrance: the node finds it by broadcast on its subnet.
		l.start(name, h, "raftd", "--name", name, "--listen", l.addr(h)+":7701",
			"--data-dir", filepath.Join(l.dir, name), "--secret-file", l.secret)
	}

	// The cluster forms: one leader, two followers, all alive.
	var ps []peer
	l.waitFor("a leader and two alive followers", 30*time.Second, func() error {
		var err error
		if ps, err = l.peers(); err != nil {
			return err
		}
		leaders, followers := 0, 0
		for _, p := range ps {
			if p.Liveness != "alive" {
				continue
			}
			switch p.Role {
			case "leader":
				leaders++
			case "follower":
				followers++
			}
		}
		if leaders != 1 || followers != 2 {
			return fmt.Errorf("peers %+v", ps)
		}
		return nil
	})
	t.Logf("cluster formed in %v", time.Since(began).Round(time.Millisecond))

	// Each node found the entrance by broadcast, at its address.
	want := "found the entrance"
	for i := range nodeHosts {
		name := fmt.Sprintf("n%d", i+1)
		b, err := os.ReadFile(filepath.Join(l.dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		line := ""
		for _, s := range strings.Split(string(b), "\n") {
			if strings.Contains(s, want) {
				line = s
				break
			}
		}
		if !strings.Contains(line, "entrance="+l.addr(entranceHost)+":7700") {
			t.Fatalf("%s's log has no %q line naming entrance=%s:7700 (got %q)", name, want, l.addr(entranceHost), line)
		}
	}

	if out := l.mustGet("put", "k1", "v1"); out != "OK" {
		t.Fatalf("put k1: %q, want OK", out)
	}
	if got := l.mustGet("get", "k1"); got != "v1" {
		t.Fatalf("get k1 = %q, want v1", got)
	}

	// Cut a follower off: its bridge-side veth goes down.
	var victim peer
	for _, p := range ps {
		if p.Role == "follower" {
			victim = p
			break
		}
	}
	vh, ok := hostOf[victim.Addr]
	if !ok {
		t.Fatalf("follower %+v has an address this test did not give", victim)
	}
	cut := time.Now()
	l.setLink(vh, "down")
	t.Logf("cut %s (%s) off", victim.Name, victim.Addr)

	states := map[string]time.Duration{}
	l.waitFor(victim.Name+" reported down", 15*time.Second, func() error {
		ps, err := l.peers()
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Name != victim.Name {
				if p.Liveness != "alive" {
					return fmt.Errorf("%s is %s while only %s was cut off", p.Name, p.Liveness, victim.Name)
				}
				continue
			}
			if _, seen := states[p.Liveness]; !seen {
				states[p.Liveness] = time.Since(cut)
			}
			if p.Liveness == "removed" {
				t.Fatalf("%s was removed from the membership with --down-grace 0", p.Name)
			}
			if p.Liveness != "down" {
				return fmt.Errorf("%s is %s", p.Name, p.Liveness)
			}
		}
		return nil
	})
	if _, ok := states["suspect"]; !ok {
		t.Errorf("%s went from alive to down without being reported suspect (seen %v)", victim.Name, states)
	}
	t.Logf("%s after the cut: suspect at %v, down at %v", victim.Name,
		states["suspect"].Round(time.Millisecond), states["down"].Round(time.Millisecond))

	// The two others still make a quorum and serve writes and reads.
	if out := l.mustGet("put", "k2", "v2"); out != "OK" {
		t.Fatalf("put k2 with %s cut off: %q, want OK", victim.Name, out)
	}
	if got := l.mustGet("get", "k2"); got != "v2" {
		t.Fatalf("get k2 with %s cut off = %q, want v2", victim.Name, got)
	}

	// Heal: the follower is alive again and gets the write it missed.
	healed := time.Now()
	l.setLink(vh, "up")
	l.waitFor(victim.Name+" alive again", 15*time.Second, func() error {
		ps, err := l.peers()
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Name == victim.Name && p.Liveness != "alive" {
				return fmt.Errorf("%s is %s", p.Name, p.Liveness)
			}
		}
		return nil
	})
	t.Logf("%s alive %v after the link came up", victim.Name, time.Since(healed).Round(time.Millisecond))
	l.waitFor(victim.Name+" has k2", 15*time.Second, func() error {
		out, err := l.raftctl("--endpoints", victim.Addr, "get", "k2", "--serializable")
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(out); got != "v2" {
			return fmt.Errorf("serializable get k2 on %s = %q", victim.Name, got)
		}
		return nil
	})
	if errs := exitedEarly(l.procs); errs != nil {
		t.Fatal(errs)
	}
}

// exitedEarly reports processes that are no longer running.
func exitedEarly(ps []*proc) error {
	var errs []error
	for _, p := range ps {
		select {
		case <-p.done:
			errs = append(errs, fmt.Errorf("%s exited during the test: %v", p.name, p.cmd.ProcessState))
		default:
		}
	}
	return errors.Join(errs...)
}
