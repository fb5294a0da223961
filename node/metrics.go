package node

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/raftkv/raftkv/rudp"
)

// metrics is a Node's Prometheus instruments, registered in the node's own
// registry (no global state: several nodes fit in one process). Names
// follow etcd's (etcd_server_*, etcd_disk_*) under the raftkv_ prefix.
type metrics struct {
	reg *prometheus.Registry

	leaderChanges            prometheus.Counter
	failed                   prometheus.Counter
	retriesJoined            prometheus.Counter
	fsyncDuration, commitDur prometheus.Histogram
	snapshots                prometheus.Counter
}

func newMetrics(n *Node) *metrics {
	reg := n.cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	version := n.cfg.Version
	if version == "" {
		version = "unknown"
	}
	gauge := func(name, help string, f func() float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	m := &metrics{
		reg: reg,
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "raftkv_server_leader_changes_seen_total",
			Help: "The number of leader changes seen (a new leader, not losing one)."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "raftkv_server_proposals_failed_total",
			Help: "The total number of client write proposals that failed (not leader, dropped, timed out, shutting down)."}),
		retriesJoined: prometheus.NewCounter(prometheus.CounterOpts{Name: "raftkv_server_proposals_retry_joined_total",
			Help: "Client write retries that waited for the copy this leader had already proposed instead of proposing another."}),
		fsyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "raftkv_disk_log_fsync_duration_seconds",
			Help:    "The latency of Raft log saves that fsync (entries, hard state and snapshot in one bbolt transaction).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		commitDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "raftkv_disk_backend_commit_duration_seconds",
			Help:    "The latency of state machine commits (one kvstore transaction applying a batch of entries).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{Name: "raftkv_server_snapshots_total",
			Help: "Snapshots this node created (with log compaction)."}),
	}
	gauges := []prometheus.Collector{
		gauge("raftkv_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
			func() float64 { return b2f(n.lead.Load() != 0) }),
		gauge("raftkv_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
			func() float64 { return b2f(n.IsLeader()) }),
		gauge("raftkv_server_term", "The current Raft term of this node.",
			func() float64 { return float64(n.term.Load()) }),
		gauge("raftkv_server_proposals_committed_total", "The total number of consensus proposals committed (the commit index).",
			func() float64 { return float64(n.commit.Load()) }),
		gauge("raftkv_server_proposals_applied_total", "The total number of consensus proposals applied (the applied index).",
			func() float64 {
				if kv := n.kvp.Load(); kv != nil {
					return float64(kv.Applied())
				}
				return 0
			}),
		gauge("raftkv_server_proposals_pending", "The current number of client write proposals waiting to be committed and applied.",
			func() float64 { return float64(n.proposing.Load()) }),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "raftkv_build_info",
		Help:        "Always 1; the labels name the build.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version(), "component": "raftd"},
	})
	buildInfo.Set(1)
	reg.MustRegister(gauges...)
	reg.MustRegister(m.leaderChanges, m.failed, m.retriesJoined, m.fsyncDuration, m.commitDur, m.snapshots, buildInfo, &rudpCollector{n: n})
	if n.cfg.Registry == nil {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// rudpCollector exports the rudp endpoint's counters, read at scrape time
// (zero before Run created the endpoint).
type rudpCollector struct{ n *Node }

var (
	descRudpSent = prometheus.NewDesc("raftkv_rudp_datagrams_sent_total",
		"UDP datagrams written (first transmissions and retransmissions).", nil, nil)
	descRudpReceived = prometheus.NewDesc("raftkv_rudp_datagrams_received_total",
		"UDP datagrams read, good or bad.", nil, nil)
	descRudpMsgSent = prometheus.NewDesc("raftkv_rudp_messages_sent_total",
		"Messages fully acknowledged by their receiver (replies included).", nil, nil)
	descRudpMsgReceived = prometheus.NewDesc("raftkv_rudp_messages_received_total",
		"Messages delivered (broadcasts and replies included).", nil, nil)
	descRudpRetransmits = prometheus.NewDesc("raftkv_rudp_retransmits_total",
		"Fragments sent again.", nil, nil)
	descRudpDuplicates = prometheus.NewDesc("raftkv_rudp_duplicates_total",
		"Fragments and broadcasts received again (not delivered).", nil, nil)
	descRudpDropped = prometheus.NewDesc("raftkv_rudp_dropped_total",
		"Datagrams or fragments dropped, by reason (bad_mac, malformed, stale, no_buffer, partial_expired, write_error).",
		[]string{"reason"}, nil)
	descRudpUnreachable = prometheus.NewDesc("raftkv_rudp_unreachable_total",
		"Messages given up on (deadline or peer timeout).", nil, nil)
	descRudpPeerRestarts = prometheus.NewDesc("raftkv_rudp_peer_restarts_total",
		"New incarnations seen from known addresses.", nil, nil)
	descRudpPeers = prometheus.NewDesc("raftkv_rudp_peers",
		"Addresses the endpoint keeps state for.", nil, nil)
	descRudpReassembly = prometheus.NewDesc("raftkv_rudp_reassembly_bytes",
		"Bytes reserved for reassembly and deliveries waiting for a handler.", nil, nil)
)

func (c *rudpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRudpSent, descRudpReceived, descRudpMsgSent, descRudpMsgReceived,
		descRudpRetransmits, descRudpDuplicates, descRudpDropped, descRudpUnreachable, descRudpPeerRestarts,
		descRudpPeers, descRudpReassembly} {
		ch <- d
	}
}

func (c *rudpCollector) Collect(ch chan<- prometheus.Metric) {
	var st rudp.Stats
	if ep := c.n.epp.Load(); ep != nil {
		st = ep.Stats()
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descRudpSent, st.DatagramsSent)
	counter(descRudpReceived, st.DatagramsReceived)
	counter(descRudpMsgSent, st.MessagesSent)
	counter(descRudpMsgReceived, st.MessagesReceived)
	counter(descRudpRetransmits, st.Retransmits)
	counter(descRudpDuplicates, st.Duplicates)
	counter(descRudpDropped, st.DroppedBadMAC, "bad_mac")
	counter(descRudpDropped, st.DroppedMalformed, "malformed")
	counter(descRudpDropped, st.DroppedStale, "stale")
	counter(descRudpDropped, st.DroppedNoBuffer, "no_buffer")
	counter(descRudpDropped, st.PartialsExpired, "partial_expired")
	counter(descRudpDropped, st.WriteErrors, "write_error")
	counter(descRudpUnreachable, st.Unreachable)
	counter(descRudpPeerRestarts, st.PeerRestarts)
	ch <- prometheus.MustNewConstMetric(descRudpPeers, prometheus.GaugeValue, float64(st.Peers))
	ch <- prometheus.MustNewConstMetric(descRudpReassembly, prometheus.GaugeValue, float64(st.ReassemblyBytes))
}
