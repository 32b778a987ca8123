package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelgate/modelgate/internal/loadtest"
)

// result is one path's run: open-loop latencies (sorted) and counts, and
// the closed loop's throughput.
type result struct {
	name     string
	baseline string // the path whose added latency this one is compared with; "" for none
	open     []time.Duration
	failed   int // calls that returned an error, open and closed loop
	shed     int // calls the server refused as overloaded, open and closed loop
	dropped  int // open-loop sends skipped because the in-flight bound was full
	firstErr error
	closed   int // calls completed in the closed loop
	closedIn time.Duration
	// cpu is the CPU time the path's server process (with its children)
	// used during the open loop, over cpuCalls calls; 0 calls when /proc
	// could not tell.
	cpu      time.Duration
	cpuCalls int
}

// cpuPerCall is the server's CPU time per open-loop call, in µs, or "-".
func (r *result) cpuPerCall() string {
	if r.cpuCalls == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(r.cpu.Microseconds())/float64(r.cpuCalls))
}

func (r *result) p(q float64) time.Duration { return loadtest.Percentile(r.open, q) }

func (r *result) rps() float64 {
	if r.closedIn <= 0 {
		return 0
	}
	return float64(r.closed) / r.closedIn.Seconds()
}

// ratio is a/b, or NaN when b is not positive (the baseline added nothing
// measurable) or a is negative (the path measured faster than the direct
// call: noise): then no ratio means anything.
func ratio(a, b time.Duration) float64 {
	if b <= 0 || a < 0 {
		return nan()
	}
	return float64(a) / float64(b)
}

func nan() float64 { var z float64; return z / z }

// budget is a ratio's limit from DESIGN.md ("Performance budget").
type budget struct {
	p50, p99 float64
	minRPS   float64 // closed-loop throughput over the baseline's, at least
}

var budgets = map[string]budget{
	pathMGHTTP: {p50: 1.0, p99: 1.25, minRPS: 1.0},
	pathMGGRPC: {p50: 1.5, p99: 1.5},
	// Redis mode is held to the same budget (the request path must not
	// wait on Redis).
	pathMGHTTPRedis: {p50: 1.0, p99: 1.25, minRPS: 1.0},
	pathMGGRPCRedis: {p50: 1.5, p99: 1.5},
	pathMGHTTPB:     {p50: 1.0, p99: 1.25, minRPS: 1.0},
	pathMGGRPCB:     {p50: 1.5, p99: 1.5},
}

func verdict(r, limit float64) string {
	switch {
	case limit == 0:
		return ""
	case r != r:
		return " (n/a)"
	case r <= limit:
		return fmt.Sprintf(" (≤%.2f ok)", limit)
	}
	return fmt.Sprintf(" (>%.2f over)", limit)
}

func verdictMin(r, limit float64) string {
	switch {
	case limit == 0:
		return ""
	case r != r:
		return " (n/a)"
	case r >= limit:
		return fmt.Sprintf(" (≥%.2f ok)", limit)
	}
	return fmt.Sprintf(" (<%.2f under)", limit)
}

func us(d time.Duration) string { return fmt.Sprintf("%d", d.Microseconds()) }

func fmtRatio(r float64) string {
	if r != r {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", r)
}

// printTable writes the table: latencies in µs, "added" over the direct
// path, the ratios of added latency and throughput over each path's
// baseline and the budget verdicts.
// With markdown it writes a Markdown table instead of aligned columns.
func printTable(w io.Writer, results []*result, direct *result, markdown bool) {
	byName := map[string]*result{}
	for _, r := range results {
		byName[r.name] = r
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"path", "p50 µs", "p99 µs", "added p50", "added p99", "vs", "ratio p50", "ratio p99", "closed rps", "ratio rps", "ok/dropped/failed/shed", "server cpu µs/call"}
	line := func(cells []string) {
		if markdown {
			fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |")
			return
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	line(head)
	if markdown {
		line(strings.Split(strings.Repeat("---,", len(head)-1)+"---", ","))
	}
	for _, r := range results {
		a50, a99 := r.p(0.5)-direct.p(0.5), r.p(0.99)-direct.p(0.99)
		row := []string{r.name, us(r.p(0.5)), us(r.p(0.99)), "-", "-", "-", "-", "-", fmt.Sprintf("%.0f", r.rps()), "-",
			fmt.Sprintf("%d/%d/%d/%d", len(r.open), r.dropped, r.failed, r.shed), r.cpuPerCall()}
		if r != direct {
			row[3], row[4] = us(a50), us(a99)
		}
		if b := byName[r.baseline]; b != nil {
			lim := budgets[r.name]
			b50, b99 := b.p(0.5)-direct.p(0.5), b.p(0.99)-direct.p(0.99)
			r50, r99, rr := ratio(a50, b50), ratio(a99, b99), nan()
			if b.rps() > 0 {
				rr = r.rps() / b.rps()
			}
			row[5] = b.name
			row[6] = fmtRatio(r50) + verdict(r50, lim.p50)
			row[7] = fmtRatio(r99) + verdict(r99, lim.p99)
			row[9] = fmtRatio(rr) + verdictMin(rr, lim.minRPS)
		}
		line(row)
	}
	tw.Flush()
}
