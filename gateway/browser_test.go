package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/modelgate/modelgate/internal/testenv"
	"github.com/modelgate/modelgate/report"
)

// chromium finds Debian's headless browser; CI installs it (.ci/run).
func chromium(t *testing.T) string {
	t.Helper()
	return testenv.LookPath(t, "Debian: apt-get install chromium; .ci/run installs it", "chromium", "chromium-browser", "google-chrome")
}

// checkChartsJS lists, for every chart under a root element, what would
// make it mislead: repeated tick labels ("ticks"), a y axis of a share, rate,
// density or regret that does not start at 0 ("zero"), data or intervals
// outside the plot area ("band"), a legend or label over the data
// ("legend"), a regret line going down ("regret"), an axis without a label
// ("axislabel"), a label running off the chart ("clipped"), labels on top
// of each other ("overlap"). Each problem is "kind: chart: detail".
const checkChartsJS = `(root) => {
  const out = [];
  const segHitsBox = (x1, y1, x2, y2, b) => {
    // Liang–Barsky clipping of a segment against a box.
    let t0 = 0, t1 = 1;
    const dx = x2 - x1, dy = y2 - y1;
    const p = [-dx, dx, -dy, dy], q = [x1 - b.x, b.x + b.width - x1, y1 - b.y, b.y + b.height - y1];
    for (let i = 0; i < 4; i++) {
      if (p[i] === 0) { if (q[i] < 0) return false; continue; }
      const r = q[i] / p[i];
      if (p[i] < 0) { if (r > t1) return false; if (r > t0) t0 = r; }
      else { if (r < t0) return false; if (r < t1) t1 = r; }
    }
    return true;
  };
  for (const svg of root.querySelectorAll("svg.chart")) {
    const name = svg.dataset.chart;
    const plotEl = svg.querySelector("rect.plot");
    if (!plotEl) continue; // "no data yet"
    const plot = plotEl.getBBox();
    // An element's box in the chart's units, after its transforms (a
    // rotated axis label).
    const inv = svg.getScreenCTM().inverse();
    const box = el => {
      const r = el.getBoundingClientRect();
      const a = new DOMPoint(r.left, r.top).matrixTransform(inv), c = new DOMPoint(r.right, r.bottom).matrixTransform(inv);
      return {x: Math.min(a.x, c.x), y: Math.min(a.y, c.y), width: Math.abs(c.x - a.x), height: Math.abs(c.y - a.y)};
    };
    for (const axis of ["x", "y"]) {
      const labels = [...svg.querySelectorAll("text.tick." + axis)].map(e => e.textContent);
      if (new Set(labels).size !== labels.length) out.push("ticks: " + name + ": " + axis + " " + labels.join(" | "));
    }
    const ys = [...svg.querySelectorAll("text.tick.y")].map(e => ({v: e.textContent, y: e.getBBox().y + e.getBBox().height}));
    ys.sort((a, b) => b.y - a.y);
    if (ys.length === 0 || parseFloat(ys[0].v) !== 0 || Math.abs(ys[0].y - (plot.y + plot.height)) > 8)
      out.push("zero: " + name + ": lowest y tick " + (ys[0] ? ys[0].v : "none"));
    if (!svg.querySelector("text.axis-label")) out.push("axislabel: " + name);
    const texts = [...svg.querySelectorAll("text")].map(el => [el, box(el)]);
    for (let i = 0; i < texts.length; i++)
      for (let j = i + 1; j < texts.length; j++) {
        const a = texts[i][1], b = texts[j][1];
        if (a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height)
          out.push("overlap: " + name + ": " + texts[i][0].textContent + " and " + texts[j][0].textContent);
      }
    const view = svg.viewBox.baseVal;
    for (const el of svg.querySelectorAll("text")) {
      const b = box(el);
      if (b.x < view.x - 0.5 || b.y < view.y - 0.5 || b.x + b.width > view.x + view.width + 0.5 || b.y + b.height > view.y + view.height + 0.5)
        out.push("clipped: " + name + ": label " + el.textContent + " runs off the chart");
    }
    const inPlot = (x, y) => x >= plot.x - 0.5 && x <= plot.x + plot.width + 0.5 && y >= plot.y - 0.5 && y <= plot.y + plot.height + 0.5;
    // Data as segments.
    const segs = [];
    for (const el of svg.querySelectorAll("polyline, polygon")) {
      const pts = [...el.points].map(p => [p.x, p.y]);
      if (el.tagName === "polygon" && pts.length > 0) pts.push(pts[0]);
      for (const [x, y] of pts) if (!inPlot(x, y)) { out.push("band: " + name + ": point " + x + "," + y + " outside the plot"); break; }
      for (let i = 1; i < pts.length; i++) segs.push([...pts[i - 1], ...pts[i]]);
      if (pts.length === 1) segs.push([...pts[0], ...pts[0]]);
    }
    for (const el of svg.querySelectorAll("line.errorbar")) {
      const s = [el.x1, el.y1, el.x2, el.y2].map(a => a.baseVal.value);
      if (!inPlot(s[0], s[1]) || !inPlot(s[2], s[3])) out.push("band: " + name + ": error bar outside the plot");
      segs.push(s);
    }
    for (const el of svg.querySelectorAll("circle")) {
      const x = el.cx.baseVal.value, y = el.cy.baseVal.value;
      if (!inPlot(x, y)) out.push("band: " + name + ": dot outside the plot");
      segs.push([x, y, x, y]);
    }
    // Legends and every label must leave the data alone.
    const covers = [...svg.querySelectorAll("g.legend > *, text")];
    for (const el of covers) {
      const b = box(el);
      if (segs.some(s => segHitsBox(...s, b))) { out.push("legend: " + name + ": " + (el.textContent || el.tagName) + " covers the data"); }
    }
    if (name === "regret") {
      const line = svg.querySelector("polyline");
      const pts = line ? [...line.points] : [];
      for (let i = 1; i < pts.length; i++)
        if (pts[i].y > pts[i - 1].y + 1e-6) { out.push("regret: goes down at point " + i); break; }
    }
  }
  return out;
}`

// badChart breaks every rule checkChartsJS knows, to show that it notices.
const badChart = `<svg class="chart" data-chart="regret" viewBox="0 0 300 200" width="300" height="200">
<rect class="plot" x="50" y="20" width="200" height="150"/>
<text class="tick y" x="44" y="174" text-anchor="end">0.4</text><text class="tick y" x="44" y="100" text-anchor="end">1</text>
<text class="tick x" x="60" y="186">01:59:29</text><text class="tick x" x="120" y="186">01:59:29</text><text class="tick x" x="295" y="186">01:59:35</text><text class="tick x" x="200" y="186">01:59:40</text><text class="tick x" x="210" y="186">01:59:44</text>
<polyline class="line" points="50,100 150,60 250,90"/>
<polygon class="band" points="50,10 250,10 250,180 50,180"/>
<g class="legend"><rect x="140" y="55" width="10" height="10"/><text x="154" y="64">arm</text></g></svg>`

// browse starts headless Chromium (exe) for the test, 1280×1250, and
// returns its context, ended with the test or after 90 s.
func browse(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.WindowSize(1280, 1250))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancel(); cancelCtx(); cancelAlloc() })
	return ctx
}

// textOf returns a function giving the trimmed text of the first element
// matching a CSS selector on the browser's page; it fails the test when
// there is none.
func textOf(ctx context.Context, t *testing.T) func(sel string) string {
	return func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
}

// offPolicyResp is a report, read for the page's off-policy cells.
type offPolicyResp = report.Report

// favour sends n recommends of endpoint, cycling through surfaces, and
// clicks for mf@2 far more often than for mf@1, so that the bandit moves
// nearly all traffic to mf@2 and mf@1 keeps only its floor.
func favour(t *testing.T, url, endpoint string, n int, surfaces ...string) {
	t.Helper()
	for i := 0; i < n; i++ {
		body := map[string]any{"user_id": "u1", "k": 3, "context": map[string]string{"surface": surfaces[i%len(surfaces)]}}
		var rec recResp
		if st := call(t, "POST", url+"/v1/endpoints/"+endpoint+"/recommend", body, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		if (rec.Arm == "mf@2" && i%5 < 3) || (rec.Arm == "mf@1" && i%10 == 0) {
			ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}
			call(t, "POST", url+"/v1/feedback", ev, nil)
		}
	}
}

// The analysts' page in a real browser: it shows every arm with the JSON
// report's trials, successes and P(best), draws its charts without
// misleading (checkChartsJS, itself checked on a chart that breaks every
// rule), says nothing it cannot know on an empty endpoint or a small
// segment, switches segment, and is screenshotted. With
// MODELGATE_SCREENSHOT=FILE the screenshot is written there
// (docs/img/ui-endpoint.png in the README).
func TestAnalystPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	exe := chromium(t)
	cfg := demoConfig(t, "")
	cfg.Report.Interval = time.Second
	a := startApp(t, cfg)
	if st := call(t, "PUT", a.url+"/v1/endpoints/shop", `{"arms": ["mf@1", "mf@2"], "policy": {"segment_by": ["surface"], "min_share": 0.02,
		"stop_rule": {"min_trials": 200}}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/fresh", `{"arms": ["mf@1", "mf@2"]}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	for i := 0; i < 4; i++ { // a few history points
		favour(t, a.url, "shop", 100, "home", "music", "music", "music")
		time.Sleep(1100 * time.Millisecond)
	}

	ctx := browse(t, exe)
	text := textOf(ctx, t)
	misleads := func(root string) []string {
		t.Helper()
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(`+checkChartsJS+`)(document.querySelector(`+strconv.Quote(root)+`))`))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	drShown := 0 // arms whose doubly robust cells were compared
	check := func(segment string) {
		t.Helper()
		var rep reportResp
		var op offPolicyResp
		q := "?segment=" + strings.ReplaceAll(segment, "=", "%3D")
		call(t, "GET", a.url+"/v1/endpoints/shop/report"+q, nil, &rep)
		call(t, "GET", a.url+"/v1/endpoints/shop/report"+q, nil, &op)
		for i, arm := range rep.Arms {
			sel := `#arms tr[data-arm="` + arm.Arm + `"] `
			trials, successes, pbest := text(sel+".trials"), text(sel+".successes"), text(sel+".pbest")
			// The page's report and this one estimate P(best) from the
			// same counts with the same seeded draws (common random
			// numbers): they agree up to the page's rounding. The 0.025
			// allowed is what two independent 20000-draw estimates
			// would need (5 standard deviations of their difference,
			// √(2·0.25/20000) = 0.005), so the check does not hang on
			// the seeding.
			pb, _ := strconv.ParseFloat(pbest, 64)
			if trials != strconv.FormatUint(arm.Trials, 10) || successes != strconv.FormatFloat(arm.Successes, 'f', -1, 64) || abs(pb-arm.PBest) > 0.025 {
				t.Fatalf("segment %s, %s: page shows %s/%s/%s, report %d/%g/%.3f", segment, arm.Arm, trials, successes, pbest, arm.Trials, arm.Successes, arm.PBest)
			}
			cell := text(sel + ".op")
			switch o := op.Arms[i].OffPolicy; {
			case o == nil:
			case o.Served < 30 && !strings.HasPrefix(cell, "too few"):
				t.Errorf("segment %s, %s: %d logged predictions, yet the page shows %q", segment, arm.Arm, o.Served, cell)
			case o.Served >= 30 && strings.Contains(cell, "too few"):
				t.Errorf("segment %s, %s: %d logged predictions, yet the page shows %q", segment, arm.Arm, o.Served, cell)
			case o.Served >= 30:
				// The doubly robust estimate and its interval, as the
				// report has them (the same counts and sums).
				drShown++
				dr, ci := text(sel+".dr"), strings.ReplaceAll(text(sel+".dr-ci"), "\u00a0", " ")
				if want := fmt.Sprintf("%.4f", o.DR); dr != want || ci != fmt.Sprintf("%.4f – %.4f", o.DRCI95[0], o.DRCI95[1]) {
					t.Errorf("segment %s, %s: the page shows dr %q [%s], the report %s %v", segment, arm.Arm, dr, ci, want, o.DRCI95)
				}
			}
		}
		if bad := misleads("#charts"); len(bad) > 0 {
			t.Errorf("segment %s: the charts mislead:\n%s", segment, strings.Join(bad, "\n"))
		}
	}

	// The checker notices each way a chart can mislead.
	if err := chromedp.Do(ctx, chromedp.Navigate(a.url+"/ui/endpoints/shop"), chromedp.WaitVisible(chromedp.CSS("#arms"))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.body.insertAdjacentHTML("beforeend", `+strconv.Quote(`<div id="selftest">`+badChart+`</div>`)+`), true`)); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, p := range misleads("#selftest") {
		kind, _, _ := strings.Cut(p, ":")
		kinds[kind] = true
	}
	for _, k := range []string{"ticks", "zero", "band", "legend", "regret", "axislabel", "clipped", "overlap"} {
		if !kinds[k] {
			t.Errorf("the chart checker misses %q on a chart made to fail it: it found %v", k, kinds)
		}
	}

	// The endpoint's page, with a decision past the stop rule's minimum.
	if err := chromedp.Do(ctx, chromedp.Navigate(a.url+"/ui/endpoints/shop"), chromedp.WaitVisible(chromedp.CSS("#arms"))); err != nil {
		t.Fatal(err)
	}
	// The arms table, with both off-policy estimates, fits the window.
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`)); err != nil || wide {
		t.Errorf("the page scrolls sideways (%v)", err)
	}
	lines, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#charts svg polyline").length`))
	if err != nil {
		t.Fatal(err)
	}
	if lines < 7 { // a share panel, rate and density line per arm, plus regret
		t.Fatalf("the charts drew %d lines", lines)
	}
	// An arm at its 2% floor still fills its own panel: its highest point
	// is at least a third of the way up.
	heights, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`[...document.querySelectorAll("#shares svg")].map(svg => {
		const plot = svg.querySelector("rect.plot").getBBox();
		const ys = [...svg.querySelector("polyline").points].map(p => p.y);
		return (plot.y + plot.height - Math.min(...ys)) / plot.height;
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if len(heights) != 2 || heights[0] < 1.0/3 || heights[1] < 1.0/3 {
		t.Errorf("share panels: highest points at %v of their height", heights)
	}
	// The stored points' shares are the report's, not a stale cache: no
	// traffic since the last point, so they agree but for draws' noise.
	var hist historyResp
	var now reportResp
	call(t, "GET", a.url+"/v1/endpoints/shop/report/history", nil, &hist)
	call(t, "GET", a.url+"/v1/endpoints/shop/report", nil, &now)
	if len(hist.Points) == 0 {
		t.Fatal("no history points")
	}
	for i, arm := range hist.Points[len(hist.Points)-1].Arms {
		if abs(arm.TrafficShare-now.Arms[i].TrafficShare) > 0.05 {
			t.Errorf("%s: share %.3f in the last point, %.3f in the report", arm.Arm, arm.TrafficShare, now.Arms[i].TrafficShare)
		}
	}
	if d := text("#decision"); !strings.Contains(d, "mf@2") || strings.Contains(d, "Too early") {
		t.Errorf("past the minimum trials the decision says %q", d)
	}
	check("all")
	if drShown == 0 {
		t.Error("no arm had enough logged predictions to show its doubly robust estimate")
	}

	// Switch segment with the selector, as a person would: surface=home has
	// fewer trials than the stop rule's minimum.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#segment"), "surface=home"),
		chromedp.Click(chromedp.CSS("form.segments button")),
		chromedp.Query(chromedp.CSS(`option[value="surface=home"][selected]`)),
	); err != nil {
		t.Fatal(err)
	}
	if header := text("header .sub"); !strings.Contains(header, "segment surface=home") {
		t.Fatalf("after switching, the page says %q", header)
	}
	var home reportResp
	call(t, "GET", a.url+"/v1/endpoints/shop/report?segment=surface%3Dhome", nil, &home)
	n := uint64(0)
	for _, arm := range home.Arms {
		n += arm.Trials
	}
	d := text("#decision")
	if n >= 200 || !strings.Contains(d, "Too early to tell") || !strings.Contains(d, strconv.FormatUint(200-n, 10)+" more") ||
		strings.Contains(d, "leader") || strings.Contains(d, "%") {
		t.Errorf("%d trials, below the 200 the rule needs; the decision says %q", n, d)
	}
	check("surface=home")

	// An endpoint without a single trial claims nothing.
	if err := chromedp.Do(ctx, chromedp.Navigate(a.url+"/ui/endpoints/fresh"), chromedp.WaitVisible(chromedp.CSS("#decision"))); err != nil {
		t.Fatal(err)
	}
	if d := text("#decision"); !strings.HasPrefix(d, "No trials yet") || !strings.Contains(d, "1000 trials") ||
		strings.Contains(d, "leader") || strings.Contains(d, "%") || strings.Contains(d, "value remaining") {
		t.Errorf("at 0 trials the decision says %q", d)
	}
	if pb := text(`#arms tr[data-arm="mf@1"] .pbest`); pb != "—" {
		t.Errorf("at 0 trials the page shows P(best) %q", pb)
	}
	if bad := misleads("#charts"); len(bad) > 0 {
		t.Errorf("empty endpoint: the charts mislead:\n%s", strings.Join(bad, "\n"))
	}
	screenshotTo(ctx, t, os.Getenv("MODELGATE_SCREENSHOT_EMPTY"))

	if err := chromedp.Do(ctx, chromedp.Navigate(a.url+"/ui/endpoints/shop"), chromedp.WaitVisible(chromedp.CSS("#charts"))); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "ui-endpoint.png")
	if p := os.Getenv("MODELGATE_SCREENSHOT"); p != "" {
		out = p
	}
	if len(png) < 10000 {
		t.Fatalf("screenshot of %d bytes", len(png))
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The holdout panel in a real browser: above everything else on the page
// (the segment selector, the decision, the arms), with the JSON report's
// counts and lift; the holdout is not one of the segments to choose.
func TestHoldoutFirstInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	exe := chromium(t)
	a := startApp(t, demoConfig(t, ""))
	if st := call(t, "PUT", a.url+"/v1/endpoints/hold", `{"arms": ["mf@1", "mf@2"], "policy": {"holdout": {"arm": "mf@1", "share": 0.3}}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	h := &holdoutTally{}
	driveHoldout(t, []*testApp{a}, 300, func(i int) string { return fmt.Sprint("u", i) }, h)
	rep := holdoutExact(t, []*testApp{a}, h, 3*time.Second)

	ctx := browse(t, exe)
	if err := chromedp.Do(ctx, chromedp.Navigate(a.url+"/ui/endpoints/hold"), chromedp.WaitVisible(chromedp.CSS("#holdout"))); err != nil {
		t.Fatal(err)
	}
	// Above everything but the endpoint's name (and raised warnings), in
	// the document and on the screen.
	order, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => {
		const top = sel => document.querySelector(sel).getBoundingClientRect().top;
		const h = document.querySelector("#holdout"), out = [];
		for (const sel of ["form.segments", "#decision", "#arms", "#charts"]) {
			const el = document.querySelector(sel);
			if (!(h.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) || top(sel) <= top("#holdout")) out.push(sel);
		}
		return out;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if len(order) > 0 {
		t.Errorf("the holdout panel is not above %v", order)
	}
	text := textOf(ctx, t)
	row := func(which string) string { return text(`#holdout-table tr[data-holdout="` + which + `"]`) }
	ho := rep.Holdout
	if r := row("mf@1"); !strings.Contains(r, fmt.Sprintf("%d\t%g", ho.Trials, ho.Successes)) {
		t.Errorf("holdout row %q, want %d trials and %g clicks", r, ho.Trials, ho.Successes)
	}
	if r := row("bandit"); !strings.Contains(r, fmt.Sprintf("%d\t%g", ho.BanditTrials, ho.BanditSuccesses)) {
		t.Errorf("bandit row %q, want %d trials and %g clicks", r, ho.BanditTrials, ho.BanditSuccesses)
	}
	if lift := text("#holdout-table .lift"); ho.Lift == nil || lift != fmt.Sprintf("%+.1f%%", 100**ho.Lift) {
		t.Errorf("the page's lift %q, the report's %v", lift, ho.Lift)
	}
	if p := text("#holdout-text"); !strings.Contains(p, "holdout mf@1 (30% of requests)") {
		t.Errorf("the holdout panel says %q", p)
	}
	opts, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#segment option")].map(o => o.value)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 1 || opts[0] != "all" {
		t.Errorf("segments to choose %v, want [all]", opts)
	}
}

// screenshotTo writes a screenshot of the browser's page to path; "" writes
// none.
func screenshotTo(ctx context.Context, t *testing.T, path string) {
	t.Helper()
	if path == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// A value endpoint's page in a real browser: it says what its numbers are
// (capped reward ÷ cap, not a click rate), shows each arm's mean value and
// fractional successes as the JSON report has them, and its charts pass
// the same checks as a click endpoint's.
func TestValueRewardsInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	exe := chromium(t)
	a := startApp(t, demoConfig(t, ""))
	if st := call(t, "PUT", a.url+"/v1/endpoints/watch", `{"arms": ["mf@1", "mf@2"], "policy": {"reward": {"type": "value", "cap": 100}}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	// Watch times in seconds, some above the cap, some predictions with
	// two items watched, some none.
	for i := range 60 {
		var rec recResp
		if st := call(t, "POST", a.url+"/v1/endpoints/watch/recommend", map[string]any{"user_id": fmt.Sprint("u", i), "k": 2}, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		var evs []map[string]any
		if i%3 != 0 {
			evs = append(evs, map[string]any{"prediction_id": rec.PredictionID, "type": "reward", "item_id": rec.Items[0].ID, "value": float64(i*7%130) + 0.25})
		}
		if i%4 == 0 {
			evs = append(evs, map[string]any{"prediction_id": rec.PredictionID, "type": "reward", "item_id": rec.Items[1].ID, "value": 12.5})
		}
		var fb fbResp
		if len(evs) > 0 {
			if st := call(t, "POST", a.url+"/v1/feedback", map[string]any{"events": evs}, &fb); st != 200 || fb.Accepted != len(evs) {
				t.Fatalf("feedback: %d %+v", st, fb)
			}
		}
	}
	var rep reportResp
	call(t, "GET", a.url+"/v1/endpoints/watch/report", nil, &rep)

	ctx := browse(t, exe)
	if err := chromedp.Do(ctx, chromedp.Navigate(a.url+"/ui/endpoints/watch"), chromedp.WaitVisible(chromedp.CSS("#arms"))); err != nil {
		t.Fatal(err)
	}
	text := textOf(ctx, t)
	if note := text("#value-note"); !strings.Contains(note, "capped at 100") {
		t.Errorf("value note %q", note)
	}
	if head := text("#arms thead"); strings.Contains(head, "click") || !strings.Contains(head, "Mean value per trial (capped at 100)") ||
		!strings.Contains(head, "Posterior mean capped reward ÷ cap") {
		t.Errorf("the arms table's head says %q", head)
	}
	num := func(sel string) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(text(sel), 64)
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return v
	}
	for _, arm := range rep.Arms {
		row := `#arms tr[data-arm="` + arm.Arm + `"] `
		if arm.Trials == 0 || arm.MeanValue == nil {
			t.Fatalf("%s: %d trials, mean_value %v: the test needs both arms served", arm.Arm, arm.Trials, arm.MeanValue)
		}
		if su := num(row + ".successes"); abs(su-arm.Successes) > 0.00051 { // three decimals
			t.Errorf("%s: the page shows %g successes, the report %g", arm.Arm, su, arm.Successes)
		}
		if mv := num(row + ".mean-value"); abs(mv-*arm.MeanValue) > 0.051 {
			t.Errorf("%s: the page shows mean value %g, the report %g", arm.Arm, mv, *arm.MeanValue)
		}
	}
	problems, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(`+checkChartsJS+`)(document.querySelector("#charts"))`))
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Errorf("charts of a value endpoint: %v", problems)
	}
}
