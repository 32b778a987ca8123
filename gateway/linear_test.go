package gateway

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/modelgate/modelgate/internal/redistest"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/report"
)

// linearBody is the contextual endpoint of these tests: which arm is best
// depends on the surface.
const linearBody = `{"arms": ["mf@1", "mf@2"], "policy": {"type": "linear-thompson", "min_share": 0.05, "lambda": 1, "noise": 0.5,
	"context_features": [{"context": "surface", "values": ["home", "music"]}]}}`

// linearClicks says whether a prediction of arm on surface is clicked in
// round i: mf@1 wins on home, mf@2 on music, deterministically.
func linearClicks(arm, surface string, i int) bool {
	good := (arm == "mf@1") == (surface == "home")
	if good {
		return i%4 != 0 // 3 in 4
	}
	return i%4 == 0 // 1 in 4
}

// linearTally counts per arm what a test served and clicked.
type linearTally struct {
	trials, clicks map[string]uint64
}

func (l *linearTally) add(arm string, clicked bool) {
	if l.trials == nil {
		l.trials, l.clicks = map[string]uint64{}, map[string]uint64{}
	}
	l.trials[arm]++
	if clicked {
		l.clicks[arm]++
	}
}

// coef returns an arm's coefficient of a dimension in a report.
func coef(rep reportResp, arm, name string) (report.Coefficient, bool) {
	for _, a := range rep.Arms {
		if a.Arm != arm {
			continue
		}
		for _, c := range a.Coefficients {
			if c.Name == name {
				return c, true
			}
		}
	}
	return report.Coefficient{}, false
}

// serveLinear serves n recommends of endpoint "ctx" over HTTP spread over
// reps, alternating surfaces, and clicks by linearClicks on the next
// replica.
func serveLinear(t *testing.T, reps []*testApp, n int, tl *linearTally) {
	t.Helper()
	for i := range n {
		surface := []string{"home", "music"}[i%2]
		var rec recResp
		if st := call(t, "POST", reps[i%len(reps)].url+"/v1/endpoints/ctx/recommend",
			map[string]any{"user_id": fmt.Sprint("u", i), "context": map[string]string{"surface": surface}}, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		click := linearClicks(rec.Arm, surface, i/2)
		if click {
			ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}
			var fb fbResp
			if st := call(t, "POST", reps[(i+1)%len(reps)].url+"/v1/feedback", ev, &fb); st != 200 || fb.Accepted != 1 {
				t.Fatalf("feedback: %d %+v", st, fb)
			}
		}
		tl.add(rec.Arm, click)
	}
}

// Bad linear-thompson bodies are documented 400s; the policy learns over
// HTTP and gRPC which arm wins on which surface; the report's
// coefficients show it, with every trial and click in the sums; they
// survive a restart on the embedded store.
func TestLinearThompsonEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a := startGateway(t, demoConfig(t, ""), Options{Seed: 11, DataDir: dir}, openedStore{})
	for _, tc := range []struct{ policy, field string }{
		{`{"type": "linear-thompson"}`, "policy.context_features"},
		{`{"type": "linear-thompson", "context_features": [{"context": "s", "buckets": 63}, "t"]}`, "policy.context_features"},
		{`{"type": "linear-thompson", "context_features": ["s"], "segment_by": ["s"]}`, "policy.segment_by"},
		{`{"type": "linear-thompson", "context_features": ["s"], "lambda": 0}`, "policy.lambda"},
		{`{"type": "linear-thompson", "context_features": ["s"], "noise": 0}`, "policy.noise"},
		{`{"type": "thompson", "context_features": ["s"]}`, "policy.context_features"},
	} {
		var e errResp
		if st := call(t, "PUT", a.url+"/v1/endpoints/ctx", `{"arms": ["mf@1", "mf@2"], "policy": `+tc.policy+`}`, &e); st != 400 ||
			e.Error.Code != "invalid_policy" || e.Error.Field != tc.field {
			t.Fatalf("policy %s: %d %+v; want 400 invalid_policy on %s", tc.policy, st, e.Error, tc.field)
		}
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/ctx", linearBody, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	var tl linearTally
	serveLinear(t, []*testApp{a}, 600, &tl)

	// gRPC: a recommend and its click count like HTTP's.
	conn, err := grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGatewayClient(conn)
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := c.Recommend(ctx, &pb.RecommendRequest{Endpoint: "ctx", UserId: fmt.Sprint("g", i), Context: map[string]string{"surface": "music"}})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		fb, err := c.Feedback(ctx, &pb.FeedbackRequest{Events: []*pb.FeedbackEvent{{PredictionId: r.GetPredictionId(), Type: "click", ItemId: r.GetItems()[0].GetId()}}})
		cancel()
		if err != nil || fb.GetAccepted() != 1 {
			t.Fatalf("gRPC feedback: %v %v", fb, err)
		}
		tl.add(r.GetArm(), true)
	}

	check := func(url string) reportResp {
		t.Helper()
		var rep reportResp
		waitUntil(t, 3*time.Second, func() bool {
			rep = reportResp{}
			call(t, "GET", url+"/v1/endpoints/ctx/report", nil, &rep)
			for _, arm := range []string{"mf@1", "mf@2"} {
				tr, su := rep.arm(arm)
				if tr != tl.trials[arm] || su != float64(tl.clicks[arm]) {
					return false
				}
			}
			return true
		})
		for _, arm := range []string{"mf@1", "mf@2"} {
			names := []string{}
			for _, a := range rep.Arms {
				if a.Arm == arm {
					for _, c := range a.Coefficients {
						names = append(names, c.Name)
					}
				}
			}
			if !slices.Equal(names, []string{"1", "surface=home", "surface=music"}) {
				t.Fatalf("%s: coefficients named %v", arm, names)
			}
		}
		// Each arm's expected reward per surface: base + the surface's own.
		rate := func(arm, surface string) float64 {
			b, _ := coef(rep, arm, "1")
			s, _ := coef(rep, arm, "surface="+surface)
			return b.Mean + s.Mean
		}
		if !(rate("mf@1", "home") > rate("mf@2", "home")+0.2 && rate("mf@2", "music") > rate("mf@1", "music")+0.2) {
			t.Fatalf("coefficients do not show who wins where: mf@1 home %.2f music %.2f, mf@2 home %.2f music %.2f",
				rate("mf@1", "home"), rate("mf@1", "music"), rate("mf@2", "home"), rate("mf@2", "music"))
		}
		return rep
	}
	before := check(a.url)

	// The policy serves each surface its arm most of the time by now.
	right := 0
	for i := range 200 {
		surface := []string{"home", "music"}[i%2]
		var rec recResp
		call(t, "POST", a.url+"/v1/endpoints/ctx/recommend", map[string]any{"user_id": "late", "context": map[string]string{"surface": surface}}, &rec)
		if (rec.Arm == "mf@1") == (surface == "home") {
			right++
		}
		tl.add(rec.Arm, false)
	}
	if right < 150 {
		t.Fatalf("served the surface's best arm %d times of 200, want ≥ 150", right)
	}

	// A restart on the same data dir keeps the sums: the same coefficients.
	a.stop()
	b := startGateway(t, demoConfig(t, ""), Options{Seed: 11, DataDir: dir}, openedStore{})
	after := check(b.url)
	c1, _ := coef(after, "mf@1", "surface=home")
	if c0, _ := coef(before, "mf@1", "surface=home"); c1.SD >= c0.SD {
		t.Fatalf("sd of mf@1's home coefficient %v after 200 more trials, was %v: the sums did not survive", c1.SD, c0.SD)
	}
}

// Two replicas sharing Redis: one serves, the other takes the clicks; both
// end with exactly the same sums, so the same coefficients.
func TestLinearThompsonReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	reps := replicas(t, srv.URL(), 2)
	if st := call(t, "PUT", reps[0].url+"/v1/endpoints/ctx", linearBody, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	waitUntil(t, 3*time.Second, func() bool {
		return call(t, "GET", reps[1].url+"/v1/endpoints/ctx", nil, nil) == 200
	})
	var tl linearTally
	serveLinear(t, reps, 300, &tl)
	var reports [2]reportResp
	waitUntil(t, 5*time.Second, func() bool {
		for i, r := range reps {
			reports[i] = reportResp{}
			call(t, "GET", r.url+"/v1/endpoints/ctx/report", nil, &reports[i])
		}
		for _, arm := range []string{"mf@1", "mf@2"} {
			for _, name := range []string{"1", "surface=home", "surface=music"} {
				c0, ok0 := coef(reports[0], arm, name)
				c1, ok1 := coef(reports[1], arm, name)
				if !ok0 || !ok1 || c0 != c1 {
					return false
				}
			}
			for i := range reps {
				if tr, su := reports[i].arm(arm); tr != tl.trials[arm] || su != float64(tl.clicks[arm]) {
					return false
				}
			}
		}
		return true
	})
	// Whoever served, the shared sums hold every trial: the base
	// coefficient's sd is noise/√(λ + n) when every x has a 1 there…
	// checked via its match across replicas above; and the arms differ.
	h1, _ := coef(reports[0], "mf@1", "surface=home")
	h2, _ := coef(reports[0], "mf@2", "surface=home")
	if h1.Mean <= h2.Mean {
		t.Fatalf("shared sums: mf@1's home coefficient %v not above mf@2's %v", h1.Mean, h2.Mean)
	}
}

// The analysts' page of a linear-thompson endpoint in a real browser: a
// table of every arm's coefficients, named per dimension, as the JSON
// report has them, each row's best arm in bold, and charts that do not
// mislead.
func TestLinearCoefficientsInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	exe := chromium(t)
	a := startGateway(t, demoConfig(t, ""), Options{Seed: 5}, openedStore{})
	if st := call(t, "PUT", a.url+"/v1/endpoints/ctx", linearBody, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	var tl linearTally
	serveLinear(t, []*testApp{a}, 400, &tl)
	var rep reportResp
	waitUntil(t, 3*time.Second, func() bool {
		rep = reportResp{}
		call(t, "GET", a.url+"/v1/endpoints/ctx/report", nil, &rep)
		tr, _ := rep.arm("mf@1")
		return tr == tl.trials["mf@1"]
	})

	ctx := browse(t, exe)
	if err := chromedp.Do(ctx, chromedp.Navigate(a.url+"/ui/endpoints/ctx"), chromedp.WaitVisible(chromedp.CSS("#coef-table"))); err != nil {
		t.Fatal(err)
	}
	text := textOf(ctx, t)
	for _, name := range []string{"1", "surface=home", "surface=music"} {
		best, bestMean := "", -1e9
		for _, arm := range []string{"mf@1", "mf@2"} {
			c, ok := coef(rep, arm, name)
			if !ok {
				t.Fatalf("report: no %s coefficient of %s", name, arm)
			}
			cell := strings.ReplaceAll(text(`#coef-table tr[data-dim="`+name+`"] td[data-arm="`+arm+`"]`), "\u00a0", " ")
			if want := fmt.Sprintf("%+.4f ± %.4f", c.Mean, c.SD); cell != want {
				t.Errorf("%s of %s: the page shows %q, the report %q", name, arm, cell, want)
			}
			if c.Mean > bestMean {
				best, bestMean = arm, c.Mean
			}
		}
		bold, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector('#coef-table tr[data-dim="`+name+`"] td[data-arm="`+best+`"]')).fontWeight`))
		if err != nil || bold != "700" {
			t.Errorf("%s: the best arm %s is not bold (%q, %v)", name, best, bold, err)
		}
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(`+checkChartsJS+`)(document.querySelector("#charts"))`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > 0 {
		t.Errorf("the charts mislead:\n%s", strings.Join(got, "\n"))
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if p := os.Getenv("MODELGATE_SCREENSHOT"); p != "" {
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
