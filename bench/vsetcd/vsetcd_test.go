package main

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestQuantilesNearestRank(t *testing.T) {
	var lats []time.Duration
	for i := 100; i >= 1; i-- { // 100 ms .. 1 ms, unsorted
		lats = append(lats, time.Duration(i)*time.Millisecond)
	}
	got := quantiles(lats, 0.5, 0.99, 1)
	want := []float64{50, 99, 100}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("quantile %d = %v ms, want %v ms", i, got[i], want[i])
		}
	}
	if q := quantiles(nil, 0.5); q[0] != 0 {
		t.Errorf("quantile of nothing = %v, want 0", q[0])
	}
}

func TestParsePromKeepsUnlabelledSamples(t *testing.T) {
	page := `# HELP etcd_server_is_leader Whether or not this member is a leader.
# TYPE etcd_server_is_leader gauge
etcd_server_is_leader 1
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 7
etcd_disk_wal_fsync_duration_seconds_sum 0.25
etcd_disk_wal_fsync_duration_seconds_count 120
raftkv_rudp_datagrams_sent_total 1.5e+06 1700000000000
`
	m, err := parseProm(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"etcd_server_is_leader": 1, "etcd_disk_wal_fsync_duration_seconds_sum": 0.25,
		"etcd_disk_wal_fsync_duration_seconds_count": 120, "raftkv_rudp_datagrams_sent_total": 1.5e6}
	if len(m) != len(want) {
		t.Errorf("parsed %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
}

func TestFillCostsUsesTheLeader(t *testing.T) {
	a := sample{at: time.Unix(100, 0), serverCPU: 10, clientCPU: 1, machineCPU: 50, metrics: []map[string]float64{
		{"raftkv_server_is_leader": 0, "raftkv_disk_log_fsync_duration_seconds_count": 10},
		{"raftkv_server_is_leader": 1, "raftkv_disk_log_fsync_duration_seconds_count": 10,
			"raftkv_disk_log_fsync_duration_seconds_sum": 1, "raftkv_disk_backend_commit_duration_seconds_count": 5},
		nil, // a member that did not answer
	}}
	b := sample{at: time.Unix(102, 0), serverCPU: 12, clientCPU: 1.5, machineCPU: 54, metrics: []map[string]float64{
		{"raftkv_server_is_leader": 0, "raftkv_disk_log_fsync_duration_seconds_count": 60},
		{"raftkv_server_is_leader": 1, "raftkv_disk_log_fsync_duration_seconds_count": 110,
			"raftkv_disk_log_fsync_duration_seconds_sum": 1.2, "raftkv_disk_backend_commit_duration_seconds_count": 55},
		{"raftkv_server_is_leader": 0},
	}}
	res := result{OK: 1000}
	fillCosts(&res, "raftkv", a, b)
	checks := []struct {
		name      string
		got, want float64
	}{
		{"server cores", res.ServerCores, 1},
		{"client cores", res.ClientCores, 0.25},
		{"other cores", res.OtherCores, 0.75},
		{"server cpu-ms/op", res.ServerCPUMSPerOp, 2},
		{"leader fsyncs/op", res.LeaderFsyncsPerOp, 0.1},
		{"leader fsync mean ms", res.LeaderFsyncMeanMS, 2},
		{"follower fsyncs/op", res.FollowerFsyncsPerOp, 0.05},
		{"backend commits/op", res.LeaderCommitsPerOp, 0.05},
	}
	for _, c := range checks {
		if d := c.got - c.want; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestProcCPUReadsThisProcess(t *testing.T) {
	end := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(end) { // burn some CPU so the count is above zero
	}
	if got := procCPU(os.Getpid()); got <= 0 {
		t.Errorf("procCPU(self) = %v, want > 0", got)
	}
	if got := procCPU(-1); got != 0 {
		t.Errorf("procCPU(-1) = %v, want 0", got)
	}
}

func TestReportRatiosPerRound(t *testing.T) {
	var buf bytes.Buffer
	for _, r := range []result{
		{System: "etcd", Round: 1, Op: "put", Clients: 1, OpsPerSec: 1000, P50MS: 1, P99MS: 4},
		{System: "raftkv", Round: 1, Op: "put", Clients: 1, OpsPerSec: 500, P50MS: 2, P99MS: 8},
		{System: "etcd", Round: 2, Op: "put", Clients: 1, OpsPerSec: 800, P50MS: 1, P99MS: 4},
		{System: "raftkv", Round: 2, Op: "put", Clients: 1, OpsPerSec: 800, P50MS: 1, P99MS: 4},
		{System: "raftkv", Round: 1, Op: "idle", ServerCores: 0.04},
	} {
		line, _ := json.Marshal(r)
		buf.Write(append(line, '\n'))
	}
	rs, err := readResults(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := writeReport(&out, rs, false); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	// Round 1 halves the rate and doubles the latencies; round 2 is even;
	// the summary's geometric mean of 0.5 and 1 is 0.71.
	for _, want := range []string{`put +1 +1 .* 0\.50 +2\.00 +2\.00 +0/0 +0\.00/0\.00`, `put +1 +2 .* 1\.00 +1\.00 +1\.00 +0/0`,
		`put +1 +2 +0\.71 +0\.50 +1\.00 +1\.41 +1\.41`, `idle +0 +raftkv +- +- +0\.04`} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("report lacks a line matching %q:\n%s", want, text)
		}
	}
}

func TestReportComparesTwoNamedSidesOfOneSystem(t *testing.T) {
	rs := []result{
		{System: "raftkv", Name: "raftkv@base", Round: 1, Op: "put", Clients: 16, OpsPerSec: 400, P50MS: 4, P99MS: 10},
		{System: "raftkv", Round: 1, Op: "put", Clients: 16, OpsPerSec: 600, P50MS: 2, P99MS: 10},
	}
	var out bytes.Buffer
	if err := writeReport(&out, rs, false); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{`raftkv@base ops/s`, `ratio = raftkv / raftkv@base`,
		`put +16 +1 .* 1\.50 +0\.50 +1\.00 +0/0`} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	rs = append(rs, result{System: "etcd", Round: 1, Op: "put", Clients: 16, OpsPerSec: 1})
	if err := writeReport(&out, rs, false); err == nil {
		t.Error("a report of three sides did not fail")
	}
}
