package ui

import (
	"encoding/xml"
	"fmt"
	"html/template"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/report"
)

func reportOf(counts ...[2]uint64) *report.Report {
	rep := &report.Report{Endpoint: "home", Segment: "all"}
	an := bandit.Analyze(rand.New(rand.NewPCG(1, 2)), bandit.Prior{}, armsOf(counts), 4000)
	for i, c := range counts {
		st := an.Arms[i]
		rep.Arms = append(rep.Arms, report.Arm{Arm: fmt.Sprintf("mf@%d", i+1), State: "active", Trials: c[0], Successes: float64(c[1]),
			Rate: st.Rate, CI95: [2]float64{st.CILow, st.CIHigh}, PBest: st.PBest, RegretGap: st.RegretGap,
			TrafficShare: 1 / float64(len(counts))})
	}
	rep.Decision = report.Decision{Status: "keep_running", ValueRemaining: an.ValueRemaining}
	rep.Regret.ExpectedCumulative = an.ExpectedRegret
	return rep
}

func armsOf(counts [][2]uint64) []bandit.Arm {
	arms := make([]bandit.Arm, len(counts))
	for i, c := range counts {
		arms[i] = bandit.Arm{Trials: c[0], Successes: float64(c[1]), Active: true}
	}
	return arms
}

func TestDecisionText(t *testing.T) {
	rule := StopRule{PBest: 0.95, ValueRemaining: 0.01, MinTrials: 1000}
	winner := reportOf([2]uint64{3000, 300}, [2]uint64{3000, 200})
	arm, reason := "mf@1", "p_best"
	winner.Decision.Status, winner.Decision.Arm, winner.Decision.Reason = "winner", &arm, &reason
	tests := []struct {
		name       string
		rep        *report.Report
		rule       StopRule
		want       []string
		mustNotSay []string
	}{
		{"no trials", reportOf([2]uint64{}, [2]uint64{}), rule,
			[]string{"No trials yet", "1000 trials"}, []string{"leader", "best with", "%", "wins"}},
		{"no trials, no minimum", reportOf([2]uint64{}, [2]uint64{}), StopRule{PBest: 0.95},
			[]string{"No trials yet"}, []string{"leader", "best with", "%", "wins"}},
		{"one trial", reportOf([2]uint64{1, 1}, [2]uint64{}), rule,
			[]string{"Too early to tell", "1 of the 1000", "999 more"}, []string{"leader", "best with", "%", "wins"}},
		{"enough trials", reportOf([2]uint64{800, 80}, [2]uint64{800, 70}), rule,
			[]string{"Keep running", "leader mf@1", "after 1600 trials"}, []string{"wins"}},
		{"winner", winner, rule, []string{"mf@1 wins", "after 6000 trials"}, []string{"Too early"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DecisionText(tt.rep, tt.rule)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
			for _, w := range tt.mustNotSay {
				if strings.Contains(got, w) {
					t.Errorf("%q says %q", got, w)
				}
			}
		})
	}
}

// svgFacts is what a chart's SVG shows, read back from its markup.
type svgFacts struct {
	plot       [4]float64 // x, y, w, h
	xTicks     []string
	yTicks     []string
	yTickVals  []float64
	lines      map[string][][2]float64 // polyline points by series
	bands      [][][2]float64
	legendBoxY []float64 // top and bottom of each legend element
}

func parseSVG(t *testing.T, h template.HTML) svgFacts {
	t.Helper()
	f := svgFacts{lines: map[string][][2]float64{}}
	d := xml.NewDecoder(strings.NewReader(string(h)))
	inLegend, textClass := false, ""
	attr := func(e xml.StartElement, name string) string {
		for _, a := range e.Attr {
			if a.Name.Local == name {
				return a.Value
			}
		}
		return ""
	}
	num := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("attribute %q: %v", s, err)
		}
		return v
	}
	pts := func(s string) [][2]float64 {
		var out [][2]float64
		for _, p := range strings.Fields(s) {
			x, y, _ := strings.Cut(p, ",")
			out = append(out, [2]float64{num(x), num(y)})
		}
		return out
	}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed: %v\n%s", err, h)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			switch e.Name.Local {
			case "g":
				inLegend = attr(e, "class") == "legend"
			case "rect":
				if attr(e, "class") == "plot" {
					f.plot = [4]float64{num(attr(e, "x")), num(attr(e, "y")), num(attr(e, "width")), num(attr(e, "height"))}
				} else if inLegend {
					y := num(attr(e, "y"))
					f.legendBoxY = append(f.legendBoxY, y, y+num(attr(e, "height")))
				}
			case "text":
				textClass = attr(e, "class")
				if inLegend {
					y := num(attr(e, "y"))
					f.legendBoxY = append(f.legendBoxY, y-11, y+3)
				}
				if textClass == "tick y" {
					f.yTickVals = append(f.yTickVals, num(attr(e, "data-v")))
				}
			case "polyline":
				f.lines[attr(e, "data-series")] = pts(attr(e, "points"))
			case "polygon":
				f.bands = append(f.bands, pts(attr(e, "points")))
			}
		case xml.EndElement:
			if e.Name.Local == "g" {
				inLegend = false
			}
			if e.Name.Local == "text" {
				textClass = ""
			}
		case xml.CharData:
			switch textClass {
			case "tick x":
				f.xTicks = append(f.xTicks, string(e))
			case "tick y":
				f.yTicks = append(f.yTicks, string(e))
			}
		}
	}
	return f
}

func distinct(xs []string) bool {
	seen := map[string]bool{}
	for _, x := range xs {
		if seen[x] {
			return false
		}
		seen[x] = true
	}
	return true
}

// history builds n points, interval s apart, of two arms whose counts grow
// by the given per-point trials (successes at the given rates).
func history(n int, interval time.Duration, trials [2]uint64, rates [2]float64, shares [2]float64) *report.History {
	h := &report.History{Endpoint: "home", Segment: "all"}
	t0 := time.Date(2026, 12, 7, 1, 59, 0, 0, time.UTC)
	var rep *report.Report
	var prev *report.Point
	for k := range n {
		c := [2][2]uint64{}
		for i := range 2 {
			c[i][0] = uint64(k) * trials[i]
			c[i][1] = uint64(float64(c[i][0]) * rates[i])
		}
		rep = reportOf(c[0], c[1])
		for i := range rep.Arms {
			rep.Arms[i].TrafficShare = shares[i]
		}
		p := report.PointAfter(prev, rep, t0.Add(time.Duration(k)*interval))
		h.Points = append(h.Points, p)
		prev = &h.Points[len(h.Points)-1]
	}
	return h
}

func TestChartsDoNotMislead(t *testing.T) {
	tests := []struct {
		name string
		hist *report.History
		now  time.Time
	}{
		{"one point and the live one", history(1, time.Second, [2]uint64{40, 2}, [2]float64{0.1, 0.05}, [2]float64{0.98, 0.02}),
			time.Date(2026, 12, 7, 1, 59, 4, 0, time.UTC)},
		{"a minute of 1 s points", history(60, time.Second, [2]uint64{40, 2}, [2]float64{0.1, 0.05}, [2]float64{0.96, 0.04}), time.Time{}},
		{"two days of hourly points", history(48, time.Hour, [2]uint64{4000, 100}, [2]float64{0.08, 0.07}, [2]float64{0.5, 0.5}), time.Time{}},
		{"no points", &report.History{}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rep *report.Report
			if n := len(tt.hist.Points); n > 0 {
				last := tt.hist.Points[n-1]
				rep = reportOf([2]uint64{last.Arms[0].Trials, uint64(last.Arms[0].Successes)}, [2]uint64{last.Arms[1].Trials, uint64(last.Arms[1].Successes)})
			} else {
				rep = reportOf([2]uint64{}, [2]uint64{})
			}
			p := Build(Input{Report: rep, History: tt.hist, Rule: StopRule{MinTrials: 1000}, Now: tt.now})
			charts := append(append([]template.HTML(nil), p.ShareCharts...), p.Charts...)
			for i, c := range charts {
				f := parseSVG(t, c)
				if !distinct(f.xTicks) || !distinct(f.yTicks) {
					t.Errorf("chart %d: repeated tick labels x %q y %q", i, f.xTicks, f.yTicks)
				}
				if len(f.yTickVals) > 0 && f.yTickVals[0] != 0 {
					t.Errorf("chart %d: y axis starts at %v, want 0", i, f.yTickVals[0])
				}
				top, bottom := f.plot[1], f.plot[1]+f.plot[3]
				for j := 0; j < len(f.legendBoxY); j += 2 {
					if f.legendBoxY[j+1] > top {
						t.Errorf("chart %d: legend reaches y %v, into the plot from %v", i, f.legendBoxY[j+1], top)
					}
				}
				for _, band := range f.bands {
					for _, pt := range band {
						if pt[1] < top-0.05 || pt[1] > bottom+0.05 {
							t.Errorf("chart %d: interval point %v outside the plot %v–%v", i, pt, top, bottom)
						}
					}
				}
			}
			regret := parseSVG(t, p.Charts[2]).lines[""]
			for j := 1; j < len(regret); j++ {
				if regret[j][1] > regret[j-1][1] {
					t.Fatalf("the regret line goes down at point %d: %v", j, regret)
				}
			}
		})
	}
}
