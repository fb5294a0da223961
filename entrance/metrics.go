package entrance

import (
	"runtime"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/raftkv/raftkv/internal/proto"
)

// metrics is an Entrance's Prometheus registry (one per Entrance, no
// global state) and the counters it updates as things happen; the gauges
// are computed from the registry at each scrape.
type metrics struct {
	reg           *prometheus.Registry
	removals      prometheus.Counter
	joins         *prometheus.CounterVec
	leaderChanges prometheus.Counter
}

// nodeStates are the label values of raftkv_entrance_nodes, every one
// exported (0 when no node is in it).
var nodeStates = []State{StateJoining, StateAlive, StateSuspect, StateDown, StateRemoved}

func newMetrics(e *Entrance) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		removals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_entrance_removals_total",
			Help: "Down nodes the autopilot removed from the membership (the leader applied the change).",
		}),
		joins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_entrance_joins_total",
			Help: "Join requests answered, by result (ok, refused, invalid, internal, unavailable).",
		}, []string{"result"}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_entrance_leader_changes_seen_total",
			Help: "Leader changes the entrance saw (from leader reports and pongs).",
		}),
	}
	for _, c := range []proto.Code{proto.CodeOK, proto.CodeRefused, proto.CodeInvalid} {
		m.joins.WithLabelValues(codeWord(c))
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "raftkv_build_info",
		Help:        "Always 1; the labels name the build.",
		ConstLabels: prometheus.Labels{"version": e.cfg.Version, "goversion": runtime.Version(), "component": "entrance"},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(m.removals, m.joins, m.leaderChanges, buildInfo, &stateCollector{e: e},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// codeWord is a Code as a label value ("not leader" -> "not_leader").
func codeWord(c proto.Code) string { return strings.ReplaceAll(c.String(), " ", "_") }

// stateCollector exports the gauges read from the registry at scrape
// time.
type stateCollector struct{ e *Entrance }

var (
	descNodes = prometheus.NewDesc("raftkv_entrance_nodes",
		"Registered nodes by liveness state (joining: admitted, not yet in the configuration).", []string{"state"}, nil)
	descHasLeader = prometheus.NewDesc("raftkv_entrance_has_leader",
		"1 when a leader is known, alive and has not stepped down, else 0.", nil, nil)
	descTerm = prometheus.NewDesc("raftkv_entrance_term",
		"The highest Raft term the entrance has seen (leader reports and pongs).", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descNodes
	ch <- descHasLeader
	ch <- descTerm
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	now := e.cfg.Now()
	e.mu.Lock()
	counts := make(map[State]int, len(nodeStates))
	for _, r := range e.nodes {
		s := StateJoining
		if r.State != StateJoining {
			s = e.livenessLocked(r, now)
		}
		counts[s]++
	}
	hasLeader := 0.0
	if e.hasLeaderLocked(now) {
		hasLeader = 1
	}
	term := max(e.meta.Term, e.seenTerm)
	e.mu.Unlock()
	for _, s := range nodeStates {
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(counts[s]), s.String())
	}
	ch <- prometheus.MustNewConstMetric(descHasLeader, prometheus.GaugeValue, hasLeader)
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(term))
}

// Metrics returns the Entrance's Prometheus registry (served on
// /metrics).
func (e *Entrance) Metrics() *prometheus.Registry { return e.metrics.reg }
