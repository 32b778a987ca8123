package ui

import (
	"html"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/report"
)

// The holdout panel says what the bandit is worth, in words and figures,
// before anything else on the page; an endpoint without a holdout has none.
func TestHoldoutPanel(t *testing.T) {
	render := func(h *report.Holdout) string {
		return renderWith(t, func(rep *report.Report) { rep.Holdout = h })
	}
	lift, ci := report.Lift(10000, 600, 1000, 50)
	page := render(&report.Holdout{Arm: "mf@1", Share: 0.1, Trials: 1000, Successes: 50, Rate: 0.05,
		BanditTrials: 10000, BanditSuccesses: 600, BanditRate: 0.06, Lift: lift, LiftCI95: ci})
	for _, want := range []string{
		"The bandit's click rate is 6.00% against 5.00% for the holdout mf@1 (10% of requests): a lift of +20.0% (95% interval -9.4% to +58.9%).",
		`<td class="lift">+20.0%</td>`, `data-holdout="mf@1"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	at := func(s string) int { return strings.Index(page, s) }
	if h := at(`id="holdout"`); h < 0 || h > at(`id="decision"`) || h > at(`id="arms"`) || h > at(`class="segments"`) {
		t.Errorf("the holdout panel is not first (at %d)", h)
	}
	lift, _ = report.Lift(100, 3, 100, 2)
	if page := render(&report.Holdout{Arm: "mf@1", Share: 0.05, Trials: 100, Successes: 2, Rate: 0.02, BanditTrials: 100, BanditSuccesses: 3, BanditRate: 0.03, Lift: lift}); !strings.Contains(page, "a lift of +50.0%, too few clicks yet for an interval (5 on each side needed)") {
		t.Error("a lift without an interval is not explained")
	}
	if page := render(&report.Holdout{Arm: "mf@1", Share: 0.05}); !strings.Contains(page, "not enough data yet to tell what the bandit is worth") {
		t.Error("a holdout without data is not explained")
	}
	// A value endpoint's rates are capped reward ÷ cap, not click rates.
	if got := holdoutView(&report.Holdout{Arm: "mf@1", Share: 0.1, Trials: 1000, Successes: 50, Rate: 0.05,
		BanditTrials: 10000, BanditSuccesses: 600, BanditRate: 0.06, Lift: lift}, true).Text; !strings.Contains(got, "The bandit's capped reward ÷ cap is 6.00% against 5.00%") ||
		!strings.Contains(got, "too few rewards yet") {
		t.Errorf("a value endpoint's holdout reads %q", got)
	}
	if strings.Contains(render(nil), `id="holdout"`) {
		t.Error("a panel without a holdout")
	}
}

// renderWith renders the page of a two-arm report changed by change, its
// HTML entities unescaped.
func renderWith(t *testing.T, change func(rep *report.Report)) string {
	t.Helper()
	tpl, err := ParseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	rep := reportOf([2]uint64{5000, 300}, [2]uint64{5000, 320})
	change(rep)
	var b strings.Builder
	if err := tpl.Endpoint(&b, Build(Input{Report: rep, History: &report.History{}})); err != nil {
		t.Fatal(err)
	}
	return html.UnescapeString(b.String())
}
