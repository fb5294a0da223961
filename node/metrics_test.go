package node

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/raftkv/raftkv/internal/proto"
)

// gather returns the metric families of reg by name.
func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value is the value of the unlabelled (or first) series of a gauge or
// counter, or the sample count of a histogram.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok || len(mf.GetMetric()) == 0 {
		t.Fatalf("metric %s missing", name)
	}
	m := mf.GetMetric()[0]
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	t.Fatalf("metric %s has no value", name)
	return 0
}

// Three nodes in one process each have a registry of their own (no
// duplicate registration); the gauges follow leadership and the counters
// and histograms move with writes.
func TestMetrics(t *testing.T) {
	c := newCluster(t, 3, func(c *cluster) { c.tune = func(cfg *Config) { cfg.NoSync = false; cfg.Version = "v-test" } })
	lead := c.waitLeader()
	regs := map[*prometheus.Registry]bool{}
	for _, tn := range c.nodes {
		regs[tn.n.Registry()] = true
		mfs := gather(t, tn.n.Registry())
		wantLeader := 0.0
		if tn == lead {
			wantLeader = 1
		}
		if v := value(t, mfs, "raftkv_server_is_leader"); v != wantLeader {
			t.Errorf("%s: is_leader %v, want %v", tn.name, v, wantLeader)
		}
		if v := value(t, mfs, "raftkv_server_has_leader"); v != 1 {
			t.Errorf("%s: has_leader %v", tn.name, v)
		}
		if v := value(t, mfs, "raftkv_server_term"); v < 1 {
			t.Errorf("%s: term %v", tn.name, v)
		}
		if v := testutil.ToFloat64(tn.n.met.leaderChanges); v < 1 {
			t.Errorf("%s: leader changes seen %v", tn.name, v)
		}
		bi := mfs["raftkv_build_info"].GetMetric()[0]
		labels := map[string]string{}
		for _, l := range bi.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if bi.GetGauge().GetValue() != 1 || labels["version"] != "v-test" || labels["component"] != "raftd" {
			t.Errorf("%s: build info %v %v", tn.name, bi.GetGauge().GetValue(), labels)
		}
		// 16 rudp series, 6 of them drop reasons.
		if n := testutil.CollectAndCount(&rudpCollector{n: tn.n}); n != 16 {
			t.Errorf("%s: %d rudp series, want 16", tn.name, n)
		}
	}
	if len(regs) != 3 {
		t.Fatalf("%d registries for 3 nodes", len(regs))
	}

	before := gather(t, lead.n.Registry())
	const writes = 20
	for i := range writes {
		mustOK(t, c.do(put(21, uint64(i+1), fmt.Sprintf("k%d", i), "v")))
	}
	// The leader answers a write before its state machine batch commits,
	// and the applied gauge (the store's applied index) moves after the
	// commit: wait for the last batch's commit.
	var after map[string]*dto.MetricFamily
	waitFor(t, "the leader's applied gauge to cover the writes", func() bool {
		after = gather(t, lead.n.Registry())
		return value(t, after, "raftkv_server_proposals_applied_total")-value(t, before, "raftkv_server_proposals_applied_total") >= writes
	})
	for _, name := range []string{
		"raftkv_server_proposals_committed_total", "raftkv_server_proposals_applied_total",
		"raftkv_disk_log_fsync_duration_seconds", "raftkv_disk_backend_commit_duration_seconds",
		"raftkv_rudp_datagrams_sent_total", "raftkv_rudp_datagrams_received_total",
		"raftkv_rudp_messages_sent_total", "raftkv_rudp_messages_received_total",
	} {
		if b, a := value(t, before, name), value(t, after, name); a <= b {
			t.Errorf("%s: %v before %d writes, %v after", name, b, writes, a)
		}
	}
	if v := value(t, after, "raftkv_server_proposals_pending"); v != 0 {
		t.Errorf("%v proposals pending after the writes were answered", v)
	}
	if v := testutil.ToFloat64(lead.n.met.failed); v != 0 {
		t.Errorf("%v proposals failed", v)
	}
	// Followers apply too.
	for _, tn := range c.nodes {
		if tn == lead {
			continue
		}
		waitFor(t, tn.name+" applying the writes", func() bool {
			return value(t, gather(t, tn.n.Registry()), "raftkv_server_proposals_applied_total") >= value(t, after, "raftkv_server_proposals_applied_total")
		})
	}

	// A write whose caller gave up before it was proposed fails.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := lead.n.Do(ctx, put(21, writes+1, "late", "v")); r.Code == proto.CodeOK {
		t.Fatalf("write with a cancelled context answered OK")
	}
	if v := testutil.ToFloat64(lead.n.met.failed); v != 1 {
		t.Errorf("proposals failed %v after a cancelled write, want 1", v)
	}

	// The exposition has the etcd-style names.
	var sb strings.Builder
	for name := range after {
		sb.WriteString(name + "\n")
	}
	for _, want := range []string{"raftkv_server_leader_changes_seen_total", "raftkv_rudp_dropped_total",
		"raftkv_rudp_unreachable_total", "raftkv_rudp_retransmits_total", "raftkv_rudp_duplicates_total",
		"raftkv_server_proposals_failed_total", "go_goroutines", "process_start_time_seconds"} {
		if !strings.Contains(sb.String(), want+"\n") {
			t.Errorf("metric %s missing", want)
		}
	}
}
