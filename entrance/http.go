package entrance

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkv/raftkv/internal/proto"
)

//go:embed web/cluster.html
var pageHTML string

var pageTmpl = template.Must(template.New("cluster").Parse(pageHTML))

// Cluster is the JSON document GET /v1/cluster serves.
type Cluster struct {
	ClusterID  string `json:"cluster_id"` // %016x; all zeros before the first node bootstrapped
	LeaderID   string `json:"leader_id"`  // %016x; all zeros when no leader has reported
	LeaderName string `json:"leader_name"`
	LeaderAddr string `json:"leader_addr"`
	Term       uint64 `json:"term"`
	Voters     int    `json:"voter_limit"`
	// LeaderCommit is the commit index of the leader's latest report (0
	// when none since the entrance started or the leader changed).
	LeaderCommit uint64 `json:"leader_commit"`
	// HasLeader: a leader is known, alive and has not stepped down.
	HasLeader bool         `json:"has_leader"`
	Peers     []proto.Peer `json:"peers"` // the list-peers rows
}

// ClusterView returns what GET /v1/cluster serves.
func (e *Entrance) ClusterView() Cluster {
	now := e.cfg.Now()
	peers := e.Peers()
	e.mu.Lock()
	defer e.mu.Unlock()
	c := Cluster{
		ClusterID:    fmt.Sprintf("%016x", e.meta.ClusterID),
		LeaderID:     fmt.Sprintf("%016x", e.meta.LeaderID),
		LeaderAddr:   e.meta.LeaderAddr,
		Term:         e.meta.Term,
		Voters:       e.cfg.Voters,
		LeaderCommit: e.commit,
		HasLeader:    e.hasLeaderLocked(now),
		Peers:        peers,
	}
	if r := e.nodes[e.meta.LeaderID]; r != nil {
		c.LeaderName = r.Name
	}
	return c
}

// pageRow is one node on the HTML page.
type pageRow struct {
	proto.Peer
	Ago string // last seen, as an age
	Lag string // leader commit - match, for members when known
}

// pageData is what the HTML page shows.
type pageData struct {
	Cluster
	Now  string
	Rows []pageRow
}

func (e *Entrance) pageData() pageData {
	now := e.cfg.Now()
	c := e.ClusterView()
	d := pageData{Cluster: c, Now: now.UTC().Format(time.RFC3339)}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range c.Peers {
		row := pageRow{Peer: p, Ago: "never", Lag: "-"}
		if p.LastSeen != 0 {
			row.Ago = now.Sub(time.UnixMilli(p.LastSeen)).Round(100*time.Millisecond).String() + " ago"
		}
		id, err := strconv.ParseUint(p.ID, 16, 64)
		if r := e.nodes[id]; err == nil && r != nil && r.InConfig() && c.LeaderCommit > 0 && p.Match <= c.LeaderCommit {
			row.Lag = strconv.FormatUint(c.LeaderCommit-p.Match, 10)
		}
		d.Rows = append(d.Rows, row)
	}
	return d
}

// HTTPHandler serves GET / (an HTML page of the cluster that refreshes
// itself every 2 s), GET /healthz ("ok": the registry is open), GET
// /v1/cluster (Cluster as JSON) and GET /metrics (Prometheus).
func (e *Entrance) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		if err := pageTmpl.Execute(&b, e.pageData()); err != nil {
			e.log.Error("page template failed", "err", err)
			http.Error(w, "page template failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if _, err := w.Write(b.Bytes()); err != nil {
			e.log.Debug("http write failed", "err", err)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(e.metrics.reg, promhttp.HandlerOpts{Registry: e.metrics.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		closed := e.closed
		e.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if closed {
			http.Error(w, "closed", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(e.ClusterView()); err != nil {
			e.log.Debug("http write failed", "err", err)
		}
	})
	return mux
}
