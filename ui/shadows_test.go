package ui

import (
	"strings"
	"testing"

	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/shadow"
)

// The shadows table comes after the arms with each shadow's figures; its
// replay rates show from MinReplay clicks, "too few" below; an endpoint
// without shadows has no table.
func TestShadowsTable(t *testing.T) {
	render := func(ss []shadow.Summary) string {
		return renderWith(t, func(rep *report.Report) { rep.Shadows = ss })
	}
	f := func(x float64) *float64 { return &x }
	page := render([]shadow.Summary{
		{Arm: "mf@3", Share: 0.1, Calls: 500, Errors: 2, Dropped: 7, LatencyMs: &shadow.Latency{P50: 3.25, P99: 18},
			OverlapAtK: f(0.625), Replay: shadow.Rate{N: 40, Rate: f(0.25), CI95: &[2]float64{0.142, 0.401}},
			ServedReplay: shadow.Rate{N: 40, Rate: f(0.9), CI95: &[2]float64{0.769, 0.960}}},
		{Arm: "mf@4", Share: 1, Calls: 12, Replay: shadow.Rate{N: 3, Rate: f(1)}, ServedReplay: shadow.Rate{N: 3, Rate: f(1)}},
	})
	for _, want := range []string{
		`<tr data-shadow="mf@3"><td>mf@3</td><td>10%</td><td class="calls">500</td><td class="errors">2</td><td class="dropped">7</td>`,
		`<td class="latency">3.2 / 18.0</td><td class="overlap">62.5%</td><td class="replay-n">40</td>`,
		`<td class="replay">25.0%</td><td class="ci">14.2% – 40.1%</td><td class="served">90.0%</td><td class="ci">76.9% – 96.0%</td>`,
		`<td class="replay too-few" title="fewer than 30 clicks replayed">too few</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if at := strings.Index(page, `id="shadows"`); at < strings.Index(page, `id="arms"`) {
		t.Error("the shadows table is not after the arms")
	}
	if strings.Contains(render(nil), `id="shadows"`) {
		t.Error("a shadows table without shadows")
	}
}
