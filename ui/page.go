// Package ui renders the analysts' pages: a list of endpoints and, per
// endpoint and segment, the decision in words, the arms table and charts of
// traffic share, rate with its interval, cumulative expected regret over
// time and the current posterior densities. Pages are server-rendered HTML
// with inline SVG and one embedded stylesheet: they work with no internet
// and no JavaScript.
package ui

import (
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/report"
)

// IndexEntry is one endpoint on the index page.
type IndexEntry struct {
	Name     string
	Arms     string
	Trials   uint64
	Decision string
}

// IndexPage is the index page.
type IndexPage struct {
	Endpoints []IndexEntry
}

// ArmRow is one row of the arms table.
type ArmRow struct {
	Arm, State, Reason, Color string
	Trials, Successes         uint64
	Rate, Low, High           float64
	PBest, ExpectedLoss       float64
	Share                     float64
	HasOP                     bool
	SNIPS, OPLow, OPHigh      float64
	OPN                       int
	Errors                    string
}

// EndpointPage is an endpoint's page.
type EndpointPage struct {
	Endpoint, Segment, GeneratedAt string
	Segments                       []string
	Warnings                       []string
	Decision                       string
	Winner                         bool
	Regret                         float64
	SRM                            string
	Arms                           []ArmRow
	Charts                         []template.HTML
	Refresh                        int
	Draws                          int
}

func fmtPct(x float64) string {
	switch {
	case x >= 0.9995 && x <= 1:
		return "over 99.9%"
	case x >= 0.995 && x < 1:
		return fmt.Sprintf("%.1f%%", 100*x)
	case x > 0 && x < 0.01:
		return fmt.Sprintf("%.2f%%", 100*x)
	}
	return fmt.Sprintf("%.0f%%", 100*x)
}

// DecisionText says the report's decision in words.
func DecisionText(rep *report.Report, stop float64, minTrials uint64) string {
	d := rep.Decision
	var total uint64
	lead, leadP := "", -1.0
	for _, a := range rep.Arms {
		total += a.Trials
		if a.PBest > leadP {
			lead, leadP = a.Arm, a.PBest
		}
	}
	if d.Status == "winner" && d.Arm != nil {
		if d.Reason != nil && *d.Reason == "value_remaining" {
			return fmt.Sprintf("%s wins: the value remaining in exploring is %s (below the stop rule's threshold), after %d trials.",
				*d.Arm, fmtPct(d.ValueRemaining), total)
		}
		for _, a := range rep.Arms {
			if a.Arm == *d.Arm {
				return fmt.Sprintf("%s wins with %s probability of being the best arm, after %d trials.", *d.Arm, fmtPct(a.PBest), total)
			}
		}
	}
	msg := fmt.Sprintf("Keep running: value remaining %s", fmtPct(d.ValueRemaining))
	if d.ValueRemaining > 10 {
		msg = "Keep running: too little data to bound the value remaining"
	}
	if lead != "" {
		msg += fmt.Sprintf("; the leader %s is best with %s probability (the stop rule wants %s)", lead, fmtPct(leadP), fmtPct(stop))
	}
	if total < minTrials {
		msg += fmt.Sprintf("; %d of the %d trials the stop rule needs", total, minTrials)
	}
	return msg + "."
}

// WarningText explains a report warning.
func WarningText(w string) string {
	switch {
	case w == "sample_ratio_mismatch":
		return "Sample ratio mismatch: the arms were not served as the policy chose (fallbacks, a cache, a sticky-assignment bug or a replica with an old registry). Every estimate on this page is suspect."
	case w == "low_traffic":
		return "Low traffic: fewer trials than the stop rule's minimum."
	case strings.HasPrefix(w, "paused_by_guardrail: "):
		return "Guardrail: " + strings.TrimPrefix(w, "paused_by_guardrail: ") + " was paused automatically (see its state below)."
	}
	return w
}

// Build assembles an endpoint page from its report and history. prior is
// the endpoint's Beta prior.
func Build(rep *report.Report, hist *report.History, prior bandit.Prior, stopPBest float64, minTrials uint64, refresh int) *EndpointPage {
	p := &EndpointPage{Endpoint: rep.Endpoint, Segment: rep.Segment, GeneratedAt: rep.GeneratedAt,
		Segments: append([]string{"all"}, without(rep.Segments, "all")...), Regret: rep.Regret.ExpectedCumulative,
		SRM: "—", Refresh: refresh, Draws: report.Draws}
	if rep.Health.SRMPValue != nil {
		p.SRM = fmt.Sprintf("%.3g", *rep.Health.SRMPValue)
	}
	// Raised warnings go first, SRM before the rest.
	for _, w := range rep.Health.Warnings {
		if w != "low_traffic" {
			p.Warnings = append(p.Warnings, WarningText(w))
		}
	}
	p.Decision = DecisionText(rep, stopPBest, minTrials)
	p.Winner = rep.Decision.Status == "winner"
	colors := map[string]string{}
	for i, a := range rep.Arms {
		colors[a.Arm] = Color(i)
		row := ArmRow{Arm: a.Arm, State: a.State, Reason: a.Reason, Color: Color(i), Trials: a.Trials, Successes: a.Successes,
			Rate: a.Rate, Low: a.CI95[0], High: a.CI95[1], PBest: a.PBest, ExpectedLoss: a.ExpectedLoss, Share: a.TrafficShare}
		if o := a.OffPolicy; o != nil {
			row.HasOP, row.SNIPS, row.OPLow, row.OPHigh, row.OPN = true, o.SNIPS, o.CI95[0], o.CI95[1], o.N
		}
		row.Errors = errorsText(a.Errors)
		p.Arms = append(p.Arms, row)
	}
	p.Charts = []template.HTML{
		shareChart(hist, colors),
		rateChart(hist, colors, prior),
		densityChart(rep, colors, prior),
		regretChart(hist),
	}
	return p
}

func without(xs []string, drop string) []string {
	var out []string
	for _, x := range xs {
		if x != drop {
			out = append(out, x)
		}
	}
	return out
}

func errorsText(m map[string]uint64) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// perArm turns history points into one series per arm with y(point, arm).
func perArm(hist *report.History, colors map[string]string, y func(a report.PointArm) (v, lo, hi float64, band bool)) []Series {
	idx := map[string]int{}
	var out []Series
	for _, pt := range hist.Points {
		t, err := time.Parse(time.RFC3339, pt.T)
		if err != nil {
			continue
		}
		for _, a := range pt.Arms {
			i, ok := idx[a.Arm]
			if !ok {
				i = len(out)
				idx[a.Arm] = i
				out = append(out, Series{Name: a.Arm, Color: colors[a.Arm]})
			}
			v, lo, hi, band := y(a)
			s := &out[i]
			s.X = append(s.X, float64(t.Unix()))
			s.Y = append(s.Y, v)
			if band {
				s.Low = append(s.Low, lo)
				s.Hi = append(s.Hi, hi)
			}
		}
	}
	return out
}

func shareChart(hist *report.History, colors map[string]string) template.HTML {
	s := perArm(hist, colors, func(a report.PointArm) (float64, float64, float64, bool) { return a.TrafficShare, 0, 0, false })
	return Chart{Title: "Traffic share over time", YLabel: "share", Series: s, TimeX: true, YMin: 0, YMax: 1}.SVG()
}

func rateChart(hist *report.History, colors map[string]string, prior bandit.Prior) template.HTML {
	s := perArm(hist, colors, func(a report.PointArm) (float64, float64, float64, bool) {
		al, be := prior.Posterior(bandit.Arm{Trials: a.Trials, Successes: a.Successes})
		return al / (al + be), bandit.BetaQuantile(al, be, 0.025), bandit.BetaQuantile(al, be, 0.975), true
	})
	return Chart{Title: "Click rate with 95% interval over time", YLabel: "rate", Series: s, TimeX: true}.SVG()
}

func regretChart(hist *report.History) template.HTML {
	var s Series
	s.Name, s.Color = "expected regret", "#000000"
	for _, pt := range hist.Points {
		if t, err := time.Parse(time.RFC3339, pt.T); err == nil {
			s.X = append(s.X, float64(t.Unix()))
			s.Y = append(s.Y, pt.RegretExpectedCumulative)
		}
	}
	var series []Series
	if len(s.X) > 0 {
		series = []Series{s}
	}
	return Chart{Title: "Cumulative expected regret over time", YLabel: "successes lost", Series: series, TimeX: true}.SVG()
}

// densityChart draws each arm's posterior density now over the range that
// holds nearly all of their mass.
func densityChart(rep *report.Report, colors map[string]string, prior bandit.Prior) template.HTML {
	type post struct {
		name  string
		a, b  float64
		color string
	}
	var posts []post
	lo, hi := 1.0, 0.0
	for _, a := range rep.Arms {
		al, be := prior.Posterior(bandit.Arm{Trials: a.Trials, Successes: a.Successes})
		posts = append(posts, post{a.Arm, al, be, colors[a.Arm]})
		lo = math.Min(lo, bandit.BetaQuantile(al, be, 0.0005))
		hi = math.Max(hi, bandit.BetaQuantile(al, be, 0.9995))
	}
	if !(hi > lo) {
		lo, hi = 0, 1
	}
	var series []Series
	for _, p := range posts {
		s := Series{Name: p.name, Color: p.color}
		for i := 0; i <= 200; i++ {
			x := lo + (hi-lo)*float64(i)/200
			s.X = append(s.X, x)
			s.Y = append(s.Y, density(p.a, p.b, x))
		}
		series = append(series, s)
	}
	return Chart{Title: "Posterior density of each arm's click rate now", YLabel: "density", Series: series}.SVG()
}

// density is the Beta(a, b) density at x, by a normal approximation when
// both shapes are huge (where the exact one loses precision).
func density(a, b, x float64) float64 {
	if a+b > 1e6 {
		m := a / (a + b)
		sd := math.Sqrt(a * b / ((a + b) * (a + b) * (a + b + 1)))
		return distuv.Normal{Mu: m, Sigma: sd}.Prob(x)
	}
	v := distuv.Beta{Alpha: a, Beta: b}.Prob(x)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
