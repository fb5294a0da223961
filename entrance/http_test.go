package entrance

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/raftkv/raftkv/internal/proto"
)

func httpGet(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// pageRows maps each node row of the HTML page to its role and liveness.
func pageRows(t *testing.T, html string) map[string][2]string {
	t.Helper()
	re := regexp.MustCompile(`(?s)<tr data-name="([^"]+)" data-liveness="([^"]+)".*?<td class="role">([^<]*)</td>`)
	out := map[string][2]string{}
	for _, m := range re.FindAllStringSubmatch(html, -1) {
		out[m[1]] = [2]string{m[3], m[2]}
	}
	return out
}

// TestPage: GET / is an HTML page that refreshes itself and shows every
// node with its role and liveness, the leader, the term and each member's
// lag; a node going down shows.
func TestPage(t *testing.T) {
	clk := newClock()
	f := fakeCluster(2, 1)
	e := newTest(t, t.TempDir(), clk, f, nil)
	e.Report(f.report(), src)
	mustJoin(t, e, "n9", "127.0.0.1:7709", 0) // joining, not yet a member
	srv := httptest.NewServer(e.HTTPHandler())
	defer srv.Close()

	resp, html := httpGet(t, srv.URL+"/")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(html, `<meta http-equiv="refresh" content="2">`) {
		t.Fatalf("page does not refresh itself:\n%s", html)
	}
	want := map[string][2]string{"n1": {"leader", "alive"}, "n2": {"follower", "alive"}, "n3": {"learner", "alive"},
		"n9": {"learner", "alive"}}
	if got := pageRows(t, html); !equalRows(got, want) {
		t.Fatalf("page rows %v, want %v\n%s", got, want, html)
	}
	if !strings.Contains(html, `<strong id="leader">n1</strong>`) || !strings.Contains(html, `<span id="term">2</span>`) {
		t.Fatalf("page lacks the leader or the term:\n%s", html)
	}
	lagRe := regexp.MustCompile(`(?s)data-name="n3".*?<td class="num">(\d+)</td><td class="num">(\d+)</td><td class="num">([-\d]+)</td>`)
	if m := lagRe.FindStringSubmatch(html); m == nil || m[1] != "2" || m[2] != "2" || m[3] != "0" {
		t.Fatalf("n3's term, match, lag: %v\n%s", m, html)
	}

	// n3 dies; the leader commits one more entry.
	f.set(func() { f.dead[3] = true })
	clk.Advance(7 * time.Second)
	e.Report(f.report(), src)
	want["n3"], want["n9"] = [2]string{"learner", "down"}, [2]string{"learner", "down"}
	if _, html = httpGet(t, srv.URL+"/"); !equalRows(pageRows(t, html), want) {
		t.Fatalf("page rows %v, want %v", pageRows(t, html), want)
	}
	if m := lagRe.FindStringSubmatch(html); m == nil || m[2] != "2" || m[3] != "1" {
		t.Fatalf("n3's term, match, lag: %v\n%s", m, html)
	}

	// Names are escaped, not markup.
	mustJoin(t, e, "<b>x</b>", "127.0.0.1:7710", 0)
	if _, html = httpGet(t, srv.URL+"/"); strings.Contains(html, "<b>x</b>") || !strings.Contains(html, "&lt;b&gt;x&lt;/b&gt;") {
		t.Fatalf("node name not escaped:\n%s", html)
	}
}

func equalRows(a, b map[string][2]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestMetrics: /metrics serves the entrance's registry in the
// Prometheus text format; the node gauges change when a node goes down,
// joins are counted by result, leader changes and the term show.
func TestMetrics(t *testing.T) {
	clk := newClock()
	f := fakeCluster(3, 0)
	e := newTest(t, t.TempDir(), clk, f, nil)
	e.Report(f.report(), src)
	mustJoin(t, e, "n9", "127.0.0.1:7709", 0)
	if r := join(e, "n9", "127.0.0.1:7719", 0); r.Code != proto.CodeRefused {
		t.Fatalf("duplicate name: %+v", r)
	}
	srv := httptest.NewServer(e.HTTPHandler())
	defer srv.Close()

	const head = `
# HELP raftkv_entrance_has_leader 1 when a leader is known, alive and has not stepped down, else 0.
# TYPE raftkv_entrance_has_leader gauge
raftkv_entrance_has_leader 1
# HELP raftkv_entrance_joins_total Join requests answered, by result (ok, refused, invalid, internal, unavailable).
# TYPE raftkv_entrance_joins_total counter
raftkv_entrance_joins_total{result="invalid"} 0
raftkv_entrance_joins_total{result="ok"} 1
raftkv_entrance_joins_total{result="refused"} 1
# HELP raftkv_entrance_leader_changes_seen_total Leader changes the entrance saw (from leader reports and pongs).
# TYPE raftkv_entrance_leader_changes_seen_total counter
raftkv_entrance_leader_changes_seen_total 1
# HELP raftkv_entrance_term The highest Raft term the entrance has seen (leader reports and pongs).
# TYPE raftkv_entrance_term gauge
raftkv_entrance_term 2
# HELP raftkv_entrance_nodes Registered nodes by liveness state (joining: admitted, not yet in the configuration).
# TYPE raftkv_entrance_nodes gauge
`
	names := []string{"raftkv_entrance_has_leader", "raftkv_entrance_joins_total", "raftkv_entrance_leader_changes_seen_total",
		"raftkv_entrance_term", "raftkv_entrance_nodes", "raftkv_entrance_removals_total"}
	const tail = `
# HELP raftkv_entrance_removals_total Down nodes the autopilot removed from the membership (the leader applied the change).
# TYPE raftkv_entrance_removals_total counter
raftkv_entrance_removals_total 0
`
	before := head + `raftkv_entrance_nodes{state="alive"} 3
raftkv_entrance_nodes{state="down"} 0
raftkv_entrance_nodes{state="joining"} 1
raftkv_entrance_nodes{state="removed"} 0
raftkv_entrance_nodes{state="suspect"} 0
` + tail
	if err := testutil.ScrapeAndCompare(srv.URL+"/metrics", strings.NewReader(before), names...); err != nil {
		t.Fatal(err)
	}
	f.set(func() { f.dead[3] = true })
	clk.Advance(7 * time.Second)
	e.Report(f.report(), src)
	after := head + `raftkv_entrance_nodes{state="alive"} 2
raftkv_entrance_nodes{state="down"} 1
raftkv_entrance_nodes{state="joining"} 1
raftkv_entrance_nodes{state="removed"} 0
raftkv_entrance_nodes{state="suspect"} 0
` + tail
	if err := testutil.ScrapeAndCompare(srv.URL+"/metrics", strings.NewReader(after), names...); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(e.Metrics(), "raftkv_build_info", "go_goroutines"); err != nil || n != 2 {
		t.Fatalf("build info and Go metrics: %d series, %v", n, err)
	}
	// The leader goes silent: no leader.
	clk.Advance(7 * time.Second)
	if got := metricValue(t, e, "raftkv_entrance_has_leader", ""); got != 0 {
		t.Fatalf("has_leader %v with the leader down", got)
	}
	// Each Entrance has a registry of its own.
	e2 := newTest(t, t.TempDir(), clk, nil, nil)
	if got := metricValue(t, e2, "raftkv_entrance_joins_total", `result="ok"`); got != 0 {
		t.Fatalf("a second entrance counts %v joins", got)
	}
}
