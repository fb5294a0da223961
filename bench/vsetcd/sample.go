package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

// sample is the counters read just before and just after a measured phase.
type sample struct {
	at         time.Time
	serverCPU  float64 // seconds, summed over the cluster's pids
	clientCPU  float64 // seconds, this process
	machineCPU float64 // busy seconds of all cores (/proc/stat)
	metrics    []map[string]float64
}

func takeSample(o runOptions) sample {
	s := sample{at: time.Now(), machineCPU: machineBusy()}
	for _, pid := range o.pids {
		s.serverCPU += procCPU(pid)
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.clientCPU = tv(ru.Utime) + tv(ru.Stime)
	}
	for _, u := range o.metrics {
		m, err := scrape(u)
		if err != nil {
			m = nil // a member that does not answer counts as unknown
		}
		s.metrics = append(s.metrics, m)
	}
	return s
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// procCPU is utime+stime of pid (all its threads), in seconds (0
// if it cannot be read).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0
	}
	var sum float64
	for _, idx := range []int{11, 12} { // fields 14 utime, 15 stime
		v, _ := strconv.ParseFloat(f[idx], 64)
		sum += v
	}
	return sum / clockTicks
}

// machineBusy is the CPU time all cores spent not idle (nor in iowait),
// in seconds, from the first line of /proc/stat.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / clockTicks
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// scrape reads the unlabelled samples of a Prometheus text page.
func scrape(url string) (map[string]float64, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseProm(resp.Body)
}

// parseProm keeps the samples without labels ("name value"), which is
// all the histograms' _sum and _count and the gauges read here need.
func parseProm(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok || strings.ContainsRune(name, '{') {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[name] = v
	}
	return out, sc.Err()
}

// metricNames are each system's names for the same quantities.
type metricNames struct {
	isLeader, fsync, commit, datagrams, retransmits string
}

var names = map[string]metricNames{
	"etcd": {isLeader: "etcd_server_is_leader", fsync: "etcd_disk_wal_fsync_duration_seconds",
		commit: "etcd_disk_backend_commit_duration_seconds"},
	"raftkv": {isLeader: "raftkv_server_is_leader", fsync: "raftkv_disk_log_fsync_duration_seconds",
		commit: "raftkv_disk_backend_commit_duration_seconds", datagrams: "raftkv_rudp_datagrams_sent_total",
		retransmits: "raftkv_rudp_retransmits_total"},
}

// fillCosts sets the CPU and disk figures of res from two samples.
func fillCosts(res *result, system string, a, b sample) {
	wall := b.at.Sub(a.at).Seconds()
	server, client := b.serverCPU-a.serverCPU, b.clientCPU-a.clientCPU
	if wall > 0 {
		res.ServerCores = server / wall
		res.ClientCores = client / wall
		res.OtherCores = max(0, (b.machineCPU-a.machineCPU-server-client)/wall)
	}
	if res.OK == 0 {
		return
	}
	ok := float64(res.OK)
	res.ServerCPUMSPerOp = server * 1000 / ok
	res.ClientCPUMSPerOp = client * 1000 / ok
	nm := names[system]
	var followers, nf float64
	for i := range a.metrics {
		ma, mb := a.metrics[i], b.metrics[i]
		if ma == nil || mb == nil {
			continue
		}
		d := func(n string) float64 { return mb[n] - ma[n] }
		if ma[nm.isLeader] == 1 && mb[nm.isLeader] == 1 {
			fs, cs := d(nm.fsync+"_count"), d(nm.commit+"_count")
			res.LeaderFsyncsPerOp = fs / ok
			res.LeaderCommitsPerOp = cs / ok
			if fs > 0 {
				res.LeaderFsyncMeanMS = d(nm.fsync+"_sum") * 1000 / fs
			}
			if cs > 0 {
				res.LeaderCommitMeanMS = d(nm.commit+"_sum") * 1000 / cs
			}
			if nm.datagrams != "" {
				res.LeaderDatagramsPerOp = d(nm.datagrams) / ok
				res.LeaderRetransmitPerOp = d(nm.retransmits) / ok
			}
		} else {
			followers += d(nm.fsync + "_count")
			nf++
		}
	}
	if nf > 0 {
		res.FollowerFsyncsPerOp = followers / nf / ok
	}
}
