package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

func cmdReport(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	md := fs.Bool("markdown", false, "print Markdown tables")
	// Flags may follow the file name.
	var files []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) == 0 {
		return errors.New("report needs a results file (JSON lines from vsetcd run --out)")
	}
	var rs []result
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		got, err := readResults(f)
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rs = append(rs, got...)
	}
	return writeReport(stdout, rs, *md)
}

func readResults(r io.Reader) ([]result, error) {
	var rs []result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var res result
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		rs = append(rs, res)
	}
	return rs, sc.Err()
}

// line is one workload (label, op, clients) across rounds.
type line struct {
	label, op string
	clients   int
}

// pair is one round of one line: the reference side and the side measured
// against it.
type pair struct{ ref, sub *result }

// table writes rows of cells as aligned text or as Markdown.
type table struct {
	md   bool
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) error {
	if t.md {
		for i, r := range t.rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
			if i == 0 {
				seps := make([]string, len(r))
				for j := range seps {
					seps[j] = "---"
					if j >= 3 {
						seps[j] = "---:"
					}
				}
				fmt.Fprintf(w, "|%s|\n", strings.Join(seps, "|"))
			}
		}
		_, err := fmt.Fprintln(w)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, r := range t.rows {
		fmt.Fprintf(tw, "%s\t\n", strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

// sides names the two sides of a results file: the reference (etcd when
// present, else the first side seen) and the side compared with it.
func sides(rs []result) (ref, sub string, err error) {
	var seen []string
	for _, r := range rs {
		if !slices.Contains(seen, r.side()) {
			seen = append(seen, r.side())
		}
	}
	if len(seen) > 2 {
		return "", "", fmt.Errorf("results hold %d sides (%s); a report compares two", len(seen), strings.Join(seen, ", "))
	}
	if i := slices.Index(seen, "etcd"); i > 0 {
		seen[0], seen[i] = seen[i], seen[0]
	}
	seen = append(seen, "-", "-")
	return seen[0], seen[1], nil
}

func writeReport(w io.Writer, rs []result, md bool) error {
	refName, subName, err := sides(rs)
	if err != nil {
		return err
	}
	byLine := map[line]map[int]*pair{}
	var lines []line
	for i := range rs {
		r := &rs[i]
		l := line{r.Label, r.Op, r.Clients}
		if byLine[l] == nil {
			byLine[l] = map[int]*pair{}
			lines = append(lines, l)
		}
		p := byLine[l][r.Round]
		if p == nil {
			p = &pair{}
			byLine[l][r.Round] = p
		}
		if r.side() == refName {
			p.ref = r
		} else {
			p.sub = r
		}
	}
	slices.SortStableFunc(lines, func(a, b line) int {
		if a.label != b.label {
			return strings.Compare(a.label, b.label)
		}
		if a.op != b.op {
			return opOrder[a.op] - opOrder[b.op]
		}
		return a.clients - b.clients
	})
	rounds := func(l line) []int {
		var rr []int
		for r := range byLine[l] {
			rr = append(rr, r)
		}
		slices.Sort(rr)
		return rr
	}
	f1 := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	f3 := func(v float64) string { return fmt.Sprintf("%.3f", v) }
	ratio := func(a, b float64) string {
		if b == 0 || a == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	or := func(r *result, f func(*result) string) string {
		if r == nil {
			return "-"
		}
		return f(r)
	}

	a, b := refName, subName
	fmt.Fprintf(w, "Throughput and latency per round (ratio = %s / %s: above 1 is faster for ops/s, slower for latency;\n"+
		"other cores = CPU used by everything else on the machine meanwhile, %s/%s)\n\n", b, a, a, b)
	t := &table{md: md}
	t.add("label", "op", "clients", "round", a+" ops/s", a+" p50 ms", a+" p99 ms",
		b+" ops/s", b+" p50 ms", b+" p99 ms", "ratio ops/s", "ratio p50", "ratio p99", "errors", "other cores")
	for _, l := range lines {
		if l.op == "idle" {
			continue
		}
		for _, rd := range rounds(l) {
			p := byLine[l][rd]
			e, k := p.ref, p.sub
			row := []string{l.label, l.op, fmt.Sprint(l.clients), fmt.Sprint(rd),
				or(e, func(r *result) string { return f1(r.OpsPerSec) }),
				or(e, func(r *result) string { return f3(r.P50MS) }),
				or(e, func(r *result) string { return f3(r.P99MS) }),
				or(k, func(r *result) string { return f1(r.OpsPerSec) }),
				or(k, func(r *result) string { return f3(r.P50MS) }),
				or(k, func(r *result) string { return f3(r.P99MS) }),
				"-", "-", "-",
				or(e, func(r *result) string { return fmt.Sprint(r.Errors) }) + "/" + or(k, func(r *result) string { return fmt.Sprint(r.Errors) }),
				or(e, func(r *result) string { return fmt.Sprintf("%.2f", r.OtherCores) }) + "/" +
					or(k, func(r *result) string { return fmt.Sprintf("%.2f", r.OtherCores) })}
			if e != nil && k != nil {
				row[10], row[11], row[12] = ratio(k.OpsPerSec, e.OpsPerSec), ratio(k.P50MS, e.P50MS), ratio(k.P99MS, e.P99MS)
			}
			t.add(row...)
		}
	}
	if err := t.write(w); err != nil {
		return err
	}

	fmt.Fprintf(w, "Summary: ratio %s/%s of ops/s per line, geometric mean over rounds [lowest .. highest]\n\n", b, a)
	t = &table{md: md}
	t.add("label", "op", "clients", "rounds", "ratio ops/s", "lowest", "highest", "ratio p50", "ratio p99")
	for _, l := range lines {
		var ops, p50, p99 []float64
		for _, rd := range rounds(l) {
			p := byLine[l][rd]
			if p.ref == nil || p.sub == nil || p.ref.OpsPerSec == 0 || p.sub.OpsPerSec == 0 {
				continue
			}
			ops = append(ops, p.sub.OpsPerSec/p.ref.OpsPerSec)
			p50 = append(p50, p.sub.P50MS/p.ref.P50MS)
			p99 = append(p99, p.sub.P99MS/p.ref.P99MS)
		}
		if len(ops) == 0 {
			continue
		}
		t.add(l.label, l.op, fmt.Sprint(l.clients), fmt.Sprint(len(ops)), fmt.Sprintf("%.2f", geomean(ops)),
			fmt.Sprintf("%.2f", slices.Min(ops)), fmt.Sprintf("%.2f", slices.Max(ops)),
			fmt.Sprintf("%.2f", geomean(p50)), fmt.Sprintf("%.2f", geomean(p99)))
	}
	if err := t.write(w); err != nil {
		return err
	}

	fmt.Fprintf(w, "Cost per operation, mean over rounds (CPU in ms per op; cores = CPU seconds per second of the run; other = the rest of the machine)\n\n")
	t = &table{md: md}
	t.add("label", "op", "clients", "system", "server cpu-ms/op", "client cpu-ms/op", "server cores", "client cores", "other cores",
		"leader log fsyncs/op", "fsync mean ms", "follower fsyncs/op", "backend commits/op", "datagrams sent/op")
	for _, l := range lines {
		for _, sub := range []bool{false, true} {
			var sel []*result
			for _, rd := range rounds(l) {
				p := byLine[l][rd]
				if r := map[bool]*result{false: p.ref, true: p.sub}[sub]; r != nil {
					sel = append(sel, r)
				}
			}
			if len(sel) == 0 {
				continue
			}
			m := func(f func(*result) float64) float64 {
				var s float64
				for _, r := range sel {
					s += f(r)
				}
				return s / float64(len(sel))
			}
			sys := sel[0].side()
			dg := "-"
			if sel[0].System == "raftkv" {
				dg = f3(m(func(r *result) float64 { return r.LeaderDatagramsPerOp }))
			}
			row := []string{l.label, l.op, fmt.Sprint(l.clients), sys,
				f3(m(func(r *result) float64 { return r.ServerCPUMSPerOp })),
				f3(m(func(r *result) float64 { return r.ClientCPUMSPerOp })),
				fmt.Sprintf("%.2f", m(func(r *result) float64 { return r.ServerCores })),
				fmt.Sprintf("%.2f", m(func(r *result) float64 { return r.ClientCores })),
				fmt.Sprintf("%.2f", m(func(r *result) float64 { return r.OtherCores })),
				f3(m(func(r *result) float64 { return r.LeaderFsyncsPerOp })),
				f3(m(func(r *result) float64 { return r.LeaderFsyncMeanMS })),
				f3(m(func(r *result) float64 { return r.FollowerFsyncsPerOp })),
				f3(m(func(r *result) float64 { return r.LeaderCommitsPerOp })),
				dg}
			if l.op == "idle" { // no operations: only the cores mean something
				for _, i := range []int{4, 5, 9, 10, 11, 12, 13} {
					row[i] = "-"
				}
			}
			t.add(row...)
		}
	}
	return t.write(w)
}

var opOrder = map[string]int{"idle": 0, "put": 1, "get": 2}

func geomean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += math.Log(x)
	}
	return math.Exp(s / float64(len(xs)))
}
