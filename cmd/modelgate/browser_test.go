package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/modelgate/modelgate/internal/testenv"
)

// chromium finds Debian's headless browser; CI installs it (.ci/run).
func chromium(t *testing.T) string {
	t.Helper()
	return testenv.LookPath(t, "Debian: apt-get install chromium; .ci/run installs it", "chromium", "chromium-browser", "google-chrome")
}

// The analysts' page in a real browser: it shows every arm with the JSON
// report's trials, successes and P(best), draws its charts, switches
// segment, and is screenshotted. With MODELGATE_SCREENSHOT=FILE the
// screenshot is written there (docs/img/ui-endpoint.png in the README).
func TestAnalystPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	exe := chromium(t)
	cfg := demoConfig(t, "")
	cfg.Report.Interval = time.Second
	a := startApp(t, cfg)
	if st := call(t, "PUT", a.url+"/v1/endpoints/shop", `{"arms": ["mf@1", "mf@2"], "policy": {"segment_by": ["surface"], "min_share": 0.05}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	for i := 0; i < 4; i++ { // a few history points
		traffic(t, a.url, "shop", 60, "home", "music", "music")
		time.Sleep(1100 * time.Millisecond)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.WindowSize(1280, 1250))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	check := func(segment string) {
		t.Helper()
		var rep reportResp
		call(t, "GET", a.url+"/v1/endpoints/shop/report?segment="+strings.ReplaceAll(segment, "=", "%3D"), nil, &rep)
		for _, arm := range rep.Arms {
			sel := `#arms tr[data-arm="` + arm.Arm + `"] `
			text := func(cell string) string {
				v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel+cell)))
				if err != nil {
					t.Fatalf("%s row of %s: %v", segment, arm.Arm, err)
				}
				return strings.TrimSpace(v)
			}
			trials, successes, pbest := text(".trials"), text(".successes"), text(".pbest")
			pb, _ := strconv.ParseFloat(pbest, 64)
			if trials != strconv.FormatUint(arm.Trials, 10) || successes != strconv.FormatUint(arm.Successes, 10) || abs(pb-arm.PBest) > 0.02 {
				t.Fatalf("segment %s, %s: page shows %s/%s/%s, report %d/%d/%.3f", segment, arm.Arm, trials, successes, pbest, arm.Trials, arm.Successes, arm.PBest)
			}
		}
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(a.url+"/ui/endpoints/shop"),
		chromedp.WaitVisible(chromedp.CSS("#arms")),
	); err != nil {
		t.Fatal(err)
	}
	lines, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#charts svg polyline").length`))
	if err != nil {
		t.Fatal(err)
	}
	if lines < 6 { // share, rate and density lines per arm, plus regret
		t.Fatalf("the charts drew %d lines", lines)
	}
	check("all")

	// Switch segment with the selector, as a person would.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#segment"), "surface=music"),
		chromedp.Click(chromedp.CSS("form.segments button")),
		chromedp.Query(chromedp.CSS(`option[value="surface=music"][selected]`)),
	); err != nil {
		t.Fatal(err)
	}
	header, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("header .sub")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(header, "segment surface=music") {
		t.Fatalf("after switching, the page says %q", header)
	}
	check("surface=music")

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

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
