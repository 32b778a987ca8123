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
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/registry"
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
	Trials                    uint64
	Successes                 float64
	// MeanValue is the realised mean capped reward per trial, on an
	// endpoint with value rewards.
	MeanValue           float64
	Rate, Low, High     float64
	PBest, ExpectedLoss float64
	Share               float64
	HasOP               bool
	// OPTooFew is set when the arm served fewer than MinOffPolicy of the
	// logged predictions: the page then shows "too few", not the numbers.
	OPTooFew             bool
	SNIPS, OPLow, OPHigh float64
	// DR, DRLow and DRHigh are the doubly robust estimate and its
	// interval, shown beside SNIPS under the same rule.
	DR, DRLow, DRHigh float64
	OPN, OPServed     int
	Errors            string
	// NoTrials is set for an arm without trials: its rate is the prior's.
	NoTrials bool
}

// MinOffPolicy is the fewest logged predictions of an arm from which the
// page shows its off-policy estimates; below it they say "too few" (the JSON
// report keeps the numbers).
const MinOffPolicy = 30

// EndpointPage is an endpoint's page.
type EndpointPage struct {
	Endpoint, Segment, GeneratedAt string
	Segments                       []string
	Warnings                       []string
	// Holdout, shown first, is what the bandit is worth against the
	// endpoint's holdout; nil when it has none.
	Holdout  *HoldoutView
	Decision string
	Winner   bool
	// Early is set below the stop rule's min_trials (and at 0 trials): the
	// page then names no leader or winner.
	Early  bool
	Empty  bool // no trials at all: no P(best) or loss to show
	Regret float64
	SRM    string
	Arms   []ArmRow
	// Shadows are the endpoint's shadow arms, shown after the arms; empty
	// when it has none.
	Shadows     []ShadowRow
	ShareCharts []template.HTML // one per arm, each on its own scale from 0
	Charts      []template.HTML
	Refresh     int
	Draws       int
	Live        bool
	// Coefficients is a linear-thompson endpoint's model per arm; nil for
	// other policies.
	Coefficients *CoefView

	// ValueCap is the cap of an endpoint with value rewards, as text; ""
	// for a click endpoint. The page then says "capped reward ÷ cap" where
	// it would say "click rate" and shows each arm's mean value.
	ValueCap string
}

// CoefView is the page's table of a linear-thompson endpoint's
// coefficients: a row per dimension of the context vector, a column per
// arm.
type CoefView struct {
	Arms []string
	Rows []CoefRow
}

// CoefRow is one dimension's coefficients, one cell per arm.
type CoefRow struct {
	Name  string
	Cells []CoefCell
}

// CoefCell is one arm's coefficient of one dimension: its posterior mean
// and standard deviation; Best marks the arm with the highest mean.
type CoefCell struct {
	Arm      string
	Mean, SD float64
	Best     bool
}

// coefView arranges a report's coefficients by dimension; nil when no arm
// has any.
func coefView(rep *report.Report) *CoefView {
	var v *CoefView
	for _, a := range rep.Arms {
		if len(a.Coefficients) == 0 {
			continue
		}
		if v == nil {
			v = &CoefView{}
			for _, c := range a.Coefficients {
				v.Rows = append(v.Rows, CoefRow{Name: c.Name})
			}
		}
		if len(a.Coefficients) != len(v.Rows) {
			continue
		}
		v.Arms = append(v.Arms, a.Arm)
		for j, c := range a.Coefficients {
			v.Rows[j].Cells = append(v.Rows[j].Cells, CoefCell{Arm: a.Arm, Mean: c.Mean, SD: c.SD})
		}
	}
	if v == nil {
		return nil
	}
	for j := range v.Rows {
		best := -1
		for i, c := range v.Rows[j].Cells {
			if best < 0 || c.Mean > v.Rows[j].Cells[best].Mean {
				best = i
			}
		}
		if best >= 0 && len(v.Rows[j].Cells) > 1 {
			v.Rows[j].Cells[best].Best = true
		}
	}
	return v
}

// HoldoutView is the page's holdout panel: the report's holdout in words
// and figures.
type HoldoutView struct {
	Arm                        string
	Share                      string
	Trials, BanditTrials       uint64
	Successes, BanditSuccesses float64
	Rate, BanditRate           float64
	// Lift and CI are the lift and its interval as text; "—" when the
	// report has none.
	Lift, CI string
	Text     string
}

// fmtLift writes a relative lift with its sign, in percent.
func fmtLift(x float64) string { return fmt.Sprintf("%+.1f%%", 100*x) }

// holdoutView puts a report's holdout in words; value says the endpoint
// has value rewards, whose rates are capped reward ÷ cap, not click rates.
func holdoutView(h *report.Holdout, value bool) *HoldoutView {
	if h == nil {
		return nil
	}
	v := &HoldoutView{Arm: h.Arm, Share: fmtPct(h.Share), Trials: h.Trials, BanditTrials: h.BanditTrials,
		Successes: h.Successes, BanditSuccesses: h.BanditSuccesses, Rate: h.Rate, BanditRate: h.BanditRate, Lift: "—", CI: "—"}
	rate, events := "click rate", "clicks"
	if value {
		rate, events = "capped reward ÷ cap", "rewards"
	}
	switch {
	case h.Lift == nil:
		v.Text = fmt.Sprintf("Holdout %s (%s of requests): not enough data yet to tell what the bandit is worth (%d held-out trials with %s successes, %d bandit trials).",
			h.Arm, v.Share, h.Trials, fmtCount(h.Successes), h.BanditTrials)
	case h.LiftCI95 == nil:
		v.Lift = fmtLift(*h.Lift)
		v.Text = fmt.Sprintf("The bandit's %s is %s against %s for the holdout %s (%s of requests): a lift of %s, too few %s yet for an interval (%d on each side needed).",
			rate, fmtRate(h.BanditRate), fmtRate(h.Rate), h.Arm, v.Share, v.Lift, events, report.HoldoutMinSuccesses)
	default:
		v.Lift, v.CI = fmtLift(*h.Lift), fmtLift(h.LiftCI95[0])+" to "+fmtLift(h.LiftCI95[1])
		v.Text = fmt.Sprintf("The bandit's %s is %s against %s for the holdout %s (%s of requests): a lift of %s (95%% interval %s).",
			rate, fmtRate(h.BanditRate), fmtRate(h.Rate), h.Arm, v.Share, v.Lift, v.CI)
	}
	return v
}

// fmtCount writes a success count: whole counts as integers, fractional
// ones (value rewards) with three decimals.
func fmtCount(x float64) string {
	if x == math.Trunc(x) {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.3f", x)
}

// fmtRate writes a click rate in percent with two decimals.
func fmtRate(x float64) string { return fmt.Sprintf("%.2f%%", 100*x) }

// StopRule is the endpoint's stop rule, as the page explains it.
type StopRule struct {
	PBest, ValueRemaining float64
	MinTrials             uint64
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

// DecisionText says the report's decision in words. Below the rule's
// min_trials, and always at 0 trials, it names no leader and no winner and
// gives no value remaining: only how many more trials the rule needs.
func DecisionText(rep *report.Report, rule StopRule) string {
	d := rep.Decision
	var total uint64
	lead, leadP := "", -1.0
	for _, a := range rep.Arms {
		total += a.Trials
		if a.State == string(registry.Active) && a.PBest > leadP {
			lead, leadP = a.Arm, a.PBest
		}
	}
	switch {
	case total == 0:
		need := max(rule.MinTrials, 1)
		return fmt.Sprintf("No trials yet: nothing to tell. The stop rule needs %d trials before it can name a winner.", need)
	case total < rule.MinTrials:
		return fmt.Sprintf("Too early to tell: %d of the %d trials the stop rule needs (%d more). Until then no arm can be picked.",
			total, rule.MinTrials, rule.MinTrials-total)
	}
	if d.Status == "winner" && d.Arm != nil {
		if d.Reason != nil && *d.Reason == "value_remaining" {
			return fmt.Sprintf("%s wins: the best other arm is at most %s better (95%% sure), below the stop rule's %s, after %d trials.",
				*d.Arm, fmtPct(d.ValueRemaining), fmtPct(rule.ValueRemaining), total)
		}
		for _, a := range rep.Arms {
			if a.Arm == *d.Arm {
				return fmt.Sprintf("%s wins with %s probability of being the best arm, after %d trials.", *d.Arm, fmtPct(a.PBest), total)
			}
		}
	}
	msg := "Keep running: no arm is sure enough yet"
	if lead != "" {
		msg += fmt.Sprintf(". The leader %s is best with %s probability (the stop rule wants %s)", lead, fmtPct(leadP), fmtPct(rule.PBest))
		if d.ValueRemaining <= 10 {
			msg += fmt.Sprintf("; another arm could still be up to %s better (95%% sure; the rule stops below %s)",
				fmtPct(d.ValueRemaining), fmtPct(rule.ValueRemaining))
		}
	}
	return msg + fmt.Sprintf(", after %d trials.", total)
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

// Input is what an endpoint page is built from.
type Input struct {
	Report  *report.Report
	History *report.History // the stored points, oldest first
	Prior   bandit.Prior    // the endpoint's Beta prior
	Rule    StopRule
	// RewardCap is the endpoint's value reward cap; 0 for a click
	// endpoint.
	RewardCap float64
	Refresh   int // seconds between reloads
	// Now, when not zero, adds the report itself as the newest point of the
	// charts (after the stored ones, with report.PointAfter so its regret
	// continues theirs): the charts reach the present, and a series with a
	// single stored point is already a line. Leave it zero for a range that
	// ends in the past.
	Now time.Time
}

// Build assembles an endpoint page from its report and history.
func Build(in Input) *EndpointPage {
	rep, hist, prior := in.Report, in.History, in.Prior
	p := &EndpointPage{Endpoint: rep.Endpoint, Segment: rep.Segment, GeneratedAt: rep.GeneratedAt,
		Segments: append([]string{counters.AllSegment}, without(rep.Segments, counters.AllSegment)...), Regret: rep.Regret.ExpectedCumulative,
		SRM: "—", Refresh: in.Refresh, Draws: report.Draws}
	if in.RewardCap > 0 {
		p.ValueCap = strconv.FormatFloat(in.RewardCap, 'g', -1, 64)
	}
	if rep.Health.SRMPValue != nil {
		p.SRM = fmt.Sprintf("%.3g", *rep.Health.SRMPValue)
	}
	if !in.Now.IsZero() {
		var prev *report.Point
		if n := len(hist.Points); n > 0 {
			prev = &hist.Points[n-1]
		}
		now := in.Now.Truncate(time.Second)
		if prev == nil || prev.T < now.UTC().Format(time.RFC3339) {
			live := report.PointAfter(prev, rep, now)
			h := *hist
			h.Points = append(append([]report.Point(nil), hist.Points...), live)
			hist = &h
			p.Regret, p.Live = live.RegretExpectedCumulative, true
		} else {
			p.Regret, p.Live = prev.RegretExpectedCumulative, true
		}
	}
	// Raised warnings go first, SRM before the rest.
	for _, w := range rep.Health.Warnings {
		if w != "low_traffic" {
			p.Warnings = append(p.Warnings, WarningText(w))
		}
	}
	p.Holdout = holdoutView(rep.Holdout, p.ValueCap != "")
	p.Shadows = shadowRows(rep.Shadows)
	p.Coefficients = coefView(rep)
	p.Decision = DecisionText(rep, in.Rule)
	p.Winner = rep.Decision.Status == "winner"
	var total uint64
	colors := map[string]string{}
	for i, a := range rep.Arms {
		total += a.Trials
		colors[a.Arm] = Color(i)
		row := ArmRow{Arm: a.Arm, State: a.State, Reason: a.Reason, Color: Color(i), Trials: a.Trials, Successes: a.Successes,
			Rate: a.Rate, Low: a.CI95[0], High: a.CI95[1], PBest: a.PBest, ExpectedLoss: a.ExpectedLoss, Share: a.TrafficShare}
		if o := a.OffPolicy; o != nil {
			row.HasOP, row.SNIPS, row.OPLow, row.OPHigh, row.OPN, row.OPServed = true, o.SNIPS, o.CI95[0], o.CI95[1], o.N, o.Served
			row.DR, row.DRLow, row.DRHigh = o.DR, o.DRCI95[0], o.DRCI95[1]
			row.OPTooFew = o.Served < MinOffPolicy
		}
		if a.MeanValue != nil {
			row.MeanValue = *a.MeanValue
		}
		row.Errors = errorsText(a.Errors)
		row.NoTrials = a.Trials == 0
		p.Arms = append(p.Arms, row)
	}
	p.Early = total == 0 || total < in.Rule.MinTrials
	p.Empty = total == 0
	p.ShareCharts = shareCharts(hist, colors)
	p.Charts = []template.HTML{
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

// shareCharts draws one small chart per arm, each from 0 to a round value
// above its own highest share: an arm at 2% stays readable next to one at
// 96%, and arms with equal small shares do not hide each other.
func shareCharts(hist *report.History, colors map[string]string) []template.HTML {
	var out []template.HTML
	for _, s := range perArm(hist, colors, func(a report.PointArm) (float64, float64, float64, bool) { return a.TrafficShare, 0, 0, false }) {
		title := fmt.Sprintf("%s: traffic share", s.Name)
		if n := len(s.Y); n > 0 {
			title += " (latest " + fmtPct(s.Y[n-1]) + ")"
		}
		name := s.Name
		s.Name = "" // the title names the arm: no legend
		out = append(out, Chart{ID: "share-" + name, Title: title, YLabel: "share of requests", Series: []Series{s},
			TimeX: true, FromZero: true, Percent: true, YMax: 1, Width: 360, Height: 170}.SVG())
	}
	return out
}

// rateChart draws each arm's posterior mean click rate with its 95%
// interval, from the points where the arm has trials (before, it is the
// prior, not data).
func rateChart(hist *report.History, colors map[string]string, prior bandit.Prior) template.HTML {
	var pts []report.Point
	for _, pt := range hist.Points {
		q := report.Point{T: pt.T}
		for _, a := range pt.Arms {
			if a.Trials > 0 {
				q.Arms = append(q.Arms, a)
			}
		}
		pts = append(pts, q)
	}
	s := perArm(&report.History{Points: pts}, colors, func(a report.PointArm) (float64, float64, float64, bool) {
		al, be := prior.Posterior(bandit.Arm{Trials: a.Trials, Successes: a.Successes})
		return al / (al + be), bandit.BetaQuantile(al, be, 0.025), bandit.BetaQuantile(al, be, 0.975), true
	})
	return Chart{ID: "rate", Title: "Posterior mean click rate with its 95% interval, over time", YLabel: "click rate",
		Series: s, TimeX: true, FromZero: true, YMax: 1}.SVG()
}

func regretChart(hist *report.History) template.HTML {
	var s Series
	s.Color = "#000000"
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
	return Chart{ID: "regret", Title: "Cumulative expected regret: clicks lost by not always serving the best arm",
		YLabel: "expected clicks lost", Series: series, TimeX: true, FromZero: true}.SVG()
}

// densityChart draws each arm with trials' posterior density now, on a
// click-rate axis from 0: each curve is sampled evenly over the axis and
// densely over the range holding nearly all of its mass, so a narrow
// posterior is drawn as the spike it is.
func densityChart(rep *report.Report, colors map[string]string, prior bandit.Prior) template.HTML {
	type post struct {
		name   string
		a, b   float64
		lo, hi float64
		color  string
	}
	var posts []post
	top := 0.0
	for _, a := range rep.Arms {
		if a.Trials == 0 {
			continue // its prior, not data
		}
		al, be := prior.Posterior(bandit.Arm{Trials: a.Trials, Successes: a.Successes})
		p := post{a.Arm, al, be, bandit.BetaQuantile(al, be, 0.0005), bandit.BetaQuantile(al, be, 0.9995), colors[a.Arm]}
		posts = append(posts, p)
		top = math.Max(top, p.hi)
	}
	top = math.Min(1, top*1.05)
	var series []Series
	for _, p := range posts {
		var xs []float64
		for i := 0; i <= 100; i++ {
			xs = append(xs, top*float64(i)/100)
		}
		for i := 0; i <= 150; i++ {
			xs = append(xs, p.lo+(p.hi-p.lo)*float64(i)/150)
		}
		sort.Float64s(xs)
		s := Series{Name: p.name, Color: p.color}
		for i, x := range xs {
			if i > 0 && x == xs[i-1] {
				continue
			}
			s.X = append(s.X, x)
			s.Y = append(s.Y, density(p.a, p.b, x))
		}
		series = append(series, s)
	}
	return Chart{ID: "density", Title: "What each arm's click rate may be now (posterior density)", YLabel: "probability density",
		XLabel: "click rate", Series: series, FromZero: true, XFromZero: true}.SVG()
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
