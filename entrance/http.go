package entrance

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/raftkv/raftkv/internal/proto"
)

// Cluster is the JSON document GET /v1/cluster serves.
type Cluster struct {
	ClusterID  string       `json:"cluster_id"` // %016x; all zeros before the first node bootstrapped
	LeaderID   string       `json:"leader_id"`  // %016x; all zeros when no leader has reported
	LeaderName string       `json:"leader_name"`
	LeaderAddr string       `json:"leader_addr"`
	Term       uint64       `json:"term"`
	Voters     int          `json:"voter_limit"`
	Peers      []proto.Peer `json:"peers"` // the list-peers rows
}

// ClusterView returns what GET /v1/cluster serves.
func (e *Entrance) ClusterView() Cluster {
	peers := e.Peers()
	e.mu.Lock()
	defer e.mu.Unlock()
	c := Cluster{
		ClusterID:  fmt.Sprintf("%016x", e.meta.ClusterID),
		LeaderID:   fmt.Sprintf("%016x", e.meta.LeaderID),
		LeaderAddr: e.meta.LeaderAddr,
		Term:       e.meta.Term,
		Voters:     e.cfg.Voters,
		Peers:      peers,
	}
	if r := e.nodes[e.meta.LeaderID]; r != nil {
		c.LeaderName = r.Name
	}
	return c
}

// HTTPHandler serves GET /healthz ("ok": the registry is open) and GET
// /v1/cluster (Cluster as JSON).
func (e *Entrance) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
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
