package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/raftkv/raftkv/entrance"
	"github.com/raftkv/raftkv/test/internal/daemon"
)

// requireBrowser skips the test when no chromium is on PATH, or fails it
// when RAFTKV_REQUIRE_BROWSER=1.
func requireBrowser(t *testing.T) {
	t.Helper()
	if browserPath != "" {
		return
	}
	const how = "install Debian's chromium (apt-get install chromium) so that chromium or chromium-browser is on PATH, then: go test ./test/browser/"
	if os.Getenv("RAFTKV_REQUIRE_BROWSER") == "1" {
		t.Fatal("browser: RAFTKV_REQUIRE_BROWSER=1 but neither chromium nor chromium-browser is on PATH; " + how)
	}
	t.Skip("browser: no chromium or chromium-browser on PATH; to run this test, " + how)
}

// proc is a daemon started by the test, ended by pid.
type proc = daemon.Proc

// startProc starts the daemon args[0] with its output in dir/name.log.
func startProc(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	p := daemon.New(t, name, filepath.Join(dir, name+".log"), args...)
	p.Start()
	return p
}

// browserFlags are the headless flags known to work on a closed network
// (without the background-networking ones Chromium keeps trying to reach
// Google's hosts); --disable-dev-shm-usage keeps it working where /dev/shm
// is small (containers).
var browserFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage",
}

// dumpDOM loads url in a new headless browser with a new empty profile and
// returns the DOM it built, serialized. The browser runs in its own process
// group, which is killed when it outlives timeout and after it exits (its
// helpers).
func dumpDOM(ctx context.Context, dir, url string, timeout time.Duration) (string, error) {
	profile, err := os.MkdirTemp(dir, "profile-")
	if err != nil {
		return "", fmt.Errorf("browser: profile dir: %w", err)
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append(append([]string{}, browserFlags...), "--user-data-dir="+profile, "--dump-dom", url)
	cmd := exec.CommandContext(ctx, browserPath, args...)
	cmd.Env = append(os.Environ(), "HOME="+profile, "XDG_CONFIG_HOME="+profile, "XDG_CACHE_HOME="+profile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind, if any (ESRCH when none)
	}
	if err != nil {
		return "", fmt.Errorf("browser: %s --dump-dom %s: %w; stderr tail:\n%s", browserPath, url, err, daemon.Tail(errb.String(), 15))
	}
	if out.Len() == 0 {
		return "", fmt.Errorf("browser: %s --dump-dom %s printed nothing; stderr tail:\n%s", browserPath, url, daemon.Tail(errb.String(), 15))
	}
	return out.String(), nil
}

// pageRow is one node row of the page as the browser built it.
type pageRow struct {
	Name         string // data-name
	Liveness     string // data-liveness
	Role         string // text of td.role
	LivenessText string // text of td.liveness
	NameCell     string // text of the first cell
}

func (r pageRow) String() string {
	return fmt.Sprintf("%s(role=%s liveness=%s/%s)", r.Name, r.Role, r.Liveness, r.LivenessText)
}

// page is what the tests read from a dumped DOM.
type page struct {
	Leader  string // text of #leader
	Refresh string // content of the meta refresh, "" when absent
	Rows    []pageRow
}

var (
	reRow      = regexp.MustCompile(`(?s)<tr\b([^>]*)>(.*?)</tr>`)
	reAttr     = regexp.MustCompile(`\b([a-z-]+)="([^"]*)"`)
	reCell     = regexp.MustCompile(`(?s)<td\b([^>]*)>(.*?)</td>`)
	reTag      = regexp.MustCompile(`<[^>]*>`)
	reLeader   = regexp.MustCompile(`(?s)<strong\b[^>]*\bid="leader"[^>]*>(.*?)</strong>`)
	reMeta     = regexp.MustCompile(`<meta\b[^>]*>`)
	reNodesTbl = regexp.MustCompile(`(?s)<table\b[^>]*\bid="nodes"[^>]*>(.*?)</table>`)
)

func attrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range reAttr.FindAllStringSubmatch(s, -1) {
		m[a[1]] = html.UnescapeString(a[2])
	}
	return m
}

func text(s string) string {
	return strings.TrimSpace(html.UnescapeString(reTag.ReplaceAllString(s, "")))
}

// parsePage reads the node rows (tr with data-name in table#nodes), the
// leader in the summary and the meta refresh from a serialized DOM.
func parsePage(dom string) (page, error) {
	var p page
	tbl := reNodesTbl.FindStringSubmatch(dom)
	if tbl == nil {
		return p, errors.New("no table#nodes in the DOM")
	}
	for _, m := range reRow.FindAllStringSubmatch(tbl[1], -1) {
		a := attrs(m[1])
		name, ok := a["data-name"]
		if !ok {
			continue // the header row, or "no nodes yet"
		}
		r := pageRow{Name: name, Liveness: a["data-liveness"]}
		for i, c := range reCell.FindAllStringSubmatch(m[2], -1) {
			ca := attrs(c[1])
			classes := strings.Fields(ca["class"])
			switch {
			case i == 0:
				r.NameCell = text(c[2])
			case len(classes) > 0 && classes[0] == "role":
				r.Role = text(c[2])
			case len(classes) > 0 && classes[0] == "liveness":
				r.LivenessText = text(c[2])
			}
		}
		p.Rows = append(p.Rows, r)
	}
	if m := reLeader.FindStringSubmatch(dom); m != nil {
		p.Leader = text(m[1])
	}
	for _, m := range reMeta.FindAllString(dom, -1) {
		if a := attrs(m); strings.EqualFold(a["http-equiv"], "refresh") {
			p.Refresh = a["content"]
		}
	}
	return p, nil
}

// consistent reports a row whose attributes and visible cells disagree.
func (p page) consistent() error {
	for _, r := range p.Rows {
		if r.NameCell != r.Name || r.LivenessText != r.Liveness {
			return fmt.Errorf("row %+v: data attributes and cells disagree", r)
		}
	}
	return nil
}

func (p page) row(name string) (pageRow, bool) {
	for _, r := range p.Rows {
		if r.Name == name {
			return r, true
		}
	}
	return pageRow{}, false
}

// waitFor polls cond every 100ms until it holds or timeout passes, then
// fails the test with what().
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what())
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

// TestStatusPageShowsNodeDown loads the entrance's page in headless
// chromium: it lists three alive nodes with one leader, and after a
// follower is SIGKILLed it shows that node down and the others alive.
func TestStatusPageShowsNodeDown(t *testing.T) {
	requireBrowser(t)
	dir := t.TempDir()
	entrAddr, httpAddr := daemon.FreeUDPAddr(t), daemon.FreeTCPAddr(t)
	pageURL := "http://" + httpAddr + "/"

	procs := []*proc{startProc(t, dir, "entrance", filepath.Join(binDir, "entrance"),
		"--listen", entrAddr, "--http", httpAddr, "--data-dir", filepath.Join(dir, "entrance"),
		"--discovery-port", "0", "--ping-interval", "200ms",
		"--suspect-after", "1s", "--down-after", "2s", "--down-grace", "0")}
	nodes := map[string]*proc{}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		p := startProc(t, dir, name, filepath.Join(binDir, "raftd"), "--name", name,
			"--listen", daemon.FreeUDPAddr(t), "--data-dir", filepath.Join(dir, name), "--entrance", entrAddr)
		nodes[name] = p
		procs = append(procs, p)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Go(p.Stop)
		}
		wg.Wait()
		if t.Failed() {
			for _, p := range procs {
				t.Logf("--- %s log, last 20 lines:\n%s", p.Name, p.LogTail(20))
			}
		}
	})

	// The cluster forms: /v1/cluster lists three alive voters, one leading.
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	var lastJSON string
	waitFor(t, 30*time.Second, func() bool {
		resp, err := hc.Get("http://" + httpAddr + "/v1/cluster")
		if err != nil {
			lastJSON = err.Error()
			return false
		}
		defer resp.Body.Close()
		var c entrance.Cluster
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			lastJSON = err.Error()
			return false
		}
		lastJSON = fmt.Sprintf("%+v", c)
		leaders, followers := 0, 0
		for _, p := range c.Peers {
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
		return c.HasLeader && len(c.Peers) == 3 && leaders == 1 && followers == 2
	}, func() string { return "the cluster did not form; last /v1/cluster: " + lastJSON })

	// load fetches the page in the browser and parses it; a browser that
	// fails or a page without the nodes table fails the test.
	var loads int
	var browserTime time.Duration
	load := func() page {
		t.Helper()
		start := time.Now()
		dom, err := dumpDOM(t.Context(), dir, pageURL, 30*time.Second)
		browserTime += time.Since(start)
		loads++
		if err != nil {
			t.Fatal(err)
		}
		p, err := parsePage(dom)
		if err != nil {
			t.Fatalf("%v; DOM:\n%s", err, dom)
		}
		if err := p.consistent(); err != nil {
			t.Fatalf("%v; DOM:\n%s", err, dom)
		}
		return p
	}

	// The browser shows the three nodes, alive, one leader and two
	// followers, and the summary names the same leader.
	var pg page
	waitFor(t, 15*time.Second, func() bool {
		pg = load()
		if len(pg.Rows) != 3 {
			return false
		}
		roles := map[string]int{}
		for _, r := range pg.Rows {
			if r.Liveness != "alive" {
				return false
			}
			roles[r.Role]++
		}
		if roles["leader"] != 1 || roles["follower"] != 2 {
			return false
		}
		lr, _ := pg.row(pg.Leader)
		return lr.Role == "leader"
	}, func() string {
		return fmt.Sprintf("the browser did not show 3 alive nodes, 1 leader: leader %q rows %v", pg.Leader, pg.Rows)
	})
	for name := range nodes {
		if _, ok := pg.row(name); !ok {
			t.Fatalf("the page does not list %s: rows %v", name, pg.Rows)
		}
	}
	if pg.Refresh != "2" {
		t.Errorf("meta refresh content = %q, want \"2\" (the page refreshes itself every 2 s)", pg.Refresh)
	}
	leader := pg.Leader
	var victim string
	for _, r := range pg.Rows {
		if r.Role == "follower" {
			victim = r.Name
			break
		}
	}
	t.Logf("browser shows %v, leader %s; killing follower %s", pg.Rows, leader, victim)

	// SIGKILL the follower; the browser shows it down (through suspect),
	// while the other two are alive and one of them leads.
	killed := time.Now()
	nodes[victim].Kill()
	var seen []string // the victim's liveness in each load, changes only
	waitFor(t, 20*time.Second, func() bool {
		pg = load()
		vr, ok := pg.row(victim)
		if !ok {
			t.Fatalf("the page no longer lists %s: rows %v", victim, pg.Rows)
		}
		if len(seen) == 0 || seen[len(seen)-1] != vr.Liveness {
			seen = append(seen, vr.Liveness)
		}
		if len(pg.Rows) != 3 || vr.Liveness != "down" {
			return false
		}
		leaders := 0
		for _, r := range pg.Rows {
			if r.Name == victim {
				continue
			}
			if r.Liveness != "alive" {
				return false
			}
			if r.Role == "leader" {
				leaders++
			}
		}
		return leaders == 1 && pg.Leader != victim
	}, func() string {
		return fmt.Sprintf("the browser did not show %s down and the others alive with one leader: leader %q rows %v (victim seen: %v)",
			victim, pg.Leader, pg.Rows, seen)
	})
	t.Logf("browser shows %s down %v after SIGKILL (liveness seen: %s); rows %v, leader %s; %d loads, %v per load",
		victim, time.Since(killed).Round(100*time.Millisecond), strings.Join(seen, " -> "), pg.Rows, pg.Leader,
		loads, (browserTime / time.Duration(loads)).Round(time.Millisecond))
}

// TestParsePage checks the DOM reader on a page serialized the way
// chromium's --dump-dom prints it, so that it does not silently read
// nothing (it runs without a browser).
func TestParsePage(t *testing.T) {
	const dom = `<!DOCTYPE html>
<html lang="en"><head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="2">
</head><body>
<p id="summary">cluster <code>00ab</code> · leader <strong id="leader">n2</strong> (127.0.0.1:2) · term <span id="term">3</span></p>
<table id="nodes">
<thead><tr><th>name</th><th>role</th><th>liveness</th></tr></thead>
<tbody>
<tr data-name="n1" data-liveness="down" class="follower">
<td>n1</td><td><code>01</code></td><td>127.0.0.1:1</td><td class="role">follower</td>
<td class="liveness down">down</td><td>3.1s ago</td></tr>
<tr data-name="n2" data-liveness="alive" class="leader">
<td>n2</td><td><code>02</code></td><td>127.0.0.1:2</td><td class="role">leader</td>
<td class="liveness alive">alive</td><td>100ms ago</td></tr>
</tbody></table></body></html>`
	p, err := parsePage(dom)
	if err != nil {
		t.Fatal(err)
	}
	want := page{Leader: "n2", Refresh: "2", Rows: []pageRow{
		{Name: "n1", Liveness: "down", Role: "follower", LivenessText: "down", NameCell: "n1"},
		{Name: "n2", Liveness: "alive", Role: "leader", LivenessText: "alive", NameCell: "n2"},
	}}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Fatalf("parsePage (-want +got):\n%s", diff)
	}
	if err := p.consistent(); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(dom, `<td class="liveness down">down</td>`, `<td class="liveness alive">alive</td>`, 1)
	if p, err := parsePage(bad); err != nil || p.consistent() == nil {
		t.Fatalf("a row whose data-liveness and cell disagree was accepted: %+v, %v", p, err)
	}
	if _, err := parsePage("<html><body>no table</body></html>"); err == nil {
		t.Fatal("a DOM without table#nodes was accepted")
	}
}
