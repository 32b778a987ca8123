package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/predlog"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/shadow"
)

// readPredLog reads the prediction log in dir once it holds n lines.
func readPredLog(t *testing.T, dir string, n int) map[string]predlog.Record {
	t.Helper()
	var out map[string]predlog.Record
	waitUntil(t, 5*time.Second, func() bool {
		out = readPredLogNow(dir)
		return len(out) >= n
	})
	return out
}

// shadowOf returns the report's entry of a shadow arm.
func shadowOf(rep reportResp, arm string) *shadow.Summary {
	for i := range rep.Shadows {
		if rep.Shadows[i].Arm == arm {
			return &rep.Shadows[i]
		}
	}
	return nil
}

// Over HTTP and gRPC with the embedded store: bad shadows are documented
// 400s; a shadow scores about its share of the predictions, logged with
// them; the report's calls, overlap and replay are exactly what the
// prediction log and the clicks say; promote makes it an arm.
func TestShadowEndToEnd(t *testing.T) {
	a := startGateway(t, demoConfig(t, ""), Options{Seed: 5}, openedStore{})
	for _, tc := range []struct{ shadows, code, field string }{
		{`[{"arm": "mf@1", "share": 0.5}]`, "invalid_shadow", "shadows[0].arm"},
		{`[{"arm": "mf@2", "share": 1.5}]`, "invalid_shadow", "shadows[0].share"},
		{`[{"arm": "mf@9", "share": 0.5}]`, "unknown_model_version", "shadows[0].arm"},
	} {
		var e errResp
		if st := call(t, "PUT", a.url+"/v1/endpoints/sh", `{"arms": ["mf@1"], "shadows": `+tc.shadows+`}`, &e); st != 400 ||
			e.Error.Code != tc.code || e.Error.Field != tc.field {
			t.Fatalf("shadows %s: %d %+v; want 400 %s on %s", tc.shadows, st, e.Error, tc.code, tc.field)
		}
	}
	if st := call(t, "PUT", a.url+"/v1/endpoints/sh", `{"arms": ["mf@1"], "shadows": [{"arm": "mf@2", "share": 0.5}]}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	var served []recResp
	const n = 200
	for i := range n {
		var rec recResp
		if st := call(t, "POST", a.url+"/v1/endpoints/sh/recommend", map[string]any{"user_id": fmt.Sprint("u", i), "k": 5}, &rec); st != 200 || rec.Arm != "mf@1" {
			t.Fatalf("recommend: %d %+v", st, rec)
		}
		served = append(served, rec)
	}
	conn, err := grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := pb.NewGatewayClient(conn).Recommend(ctx, &pb.RecommendRequest{Endpoint: "sh", UserId: fmt.Sprint("g", i), K: 5})
		cancel()
		if err != nil || r.GetArm() != "mf@1" {
			t.Fatalf("gRPC recommend: %v %v", err, r)
		}
		rec := recResp{PredictionID: r.GetPredictionId(), Arm: r.GetArm()}
		for _, it := range r.GetItems() {
			rec.Items = append(rec.Items, backend.Item{ID: it.GetId()})
		}
		served = append(served, rec)
	}
	logged := readPredLog(t, a.dataDir, len(served))
	// Click every second prediction on its served list's last item.
	var calls, dropped, replayN, replayHits int
	var overlap float64
	grpcShadowed := 0
	for i, rec := range served {
		l, ok := logged[rec.PredictionID]
		if !ok {
			t.Fatalf("prediction %d not logged", i)
		}
		if len(l.Shadows) == 0 {
			continue
		}
		if i >= n {
			grpcShadowed++
		}
		s := l.Shadows[0]
		if s.Arm != "mf@2" || s.Error != "" {
			t.Fatalf("logged shadow %+v", s)
		}
		if s.Dropped {
			dropped++
			continue
		}
		calls++
		ids := make([]string, len(l.Items))
		copy(ids, l.Items)
		overlap += shadow.Overlap(ids, s.Items)
		if i%2 == 0 {
			item := rec.Items[len(rec.Items)-1].ID
			ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": item}}}
			if st := call(t, "POST", a.url+"/v1/feedback", ev, nil); st != 200 {
				t.Fatalf("feedback: %d", st)
			}
			replayN++
			if slices.Contains(s.Items, item) {
				replayHits++
			}
		}
	}
	if calls+dropped < len(served)/4 || calls+dropped > len(served)*3/4 || grpcShadowed == 0 {
		t.Fatalf("%d of %d predictions shadowed (%d over gRPC) with a share of 0.5", calls+dropped, len(served), grpcShadowed)
	}
	var rep reportResp
	waitUntil(t, 3*time.Second, func() bool {
		rep = reportResp{}
		call(t, "GET", a.url+"/v1/endpoints/sh/report", nil, &rep)
		s := shadowOf(rep, "mf@2")
		return s != nil && s.Replay.N == int64(replayN)
	})
	s := shadowOf(rep, "mf@2")
	if s.Share != 0.5 || s.Calls != int64(calls) || s.Dropped != int64(dropped) || s.Errors != 0 || s.LatencyMs == nil {
		t.Fatalf("shadow %+v, want %d calls and %d dropped", s, calls, dropped)
	}
	if s.OverlapAtK == nil || abs(*s.OverlapAtK-overlap/float64(calls)) > 1e-5 {
		t.Fatalf("overlap_at_k %v, want %v", s.OverlapAtK, overlap/float64(calls))
	}
	if *s.Replay.Rate != float64(replayHits)/float64(replayN) || s.ServedReplay.N != int64(replayN) || *s.ServedReplay.Rate != 1 {
		t.Fatalf("replay %+v, served %+v; want %d of %d, and every click on the served list", s.Replay, s.ServedReplay, replayHits, replayN)
	}
	for _, a := range rep.Arms {
		if a.Arm == "mf@2" {
			t.Fatal("the shadow has a row among the arms")
		}
	}

	// Promote: one call makes it an active arm and ends the shadow.
	for _, tc := range []struct {
		path, code string
		status     int
	}{
		{"/v1/endpoints/nope/shadows/mf@2/promote", "endpoint_not_found", 404},
		{"/v1/endpoints/sh/shadows/mf@9/promote", "shadow_not_found", 404},
		{"/v1/endpoints/sh/shadows/mf@1/promote", "arm_exists", 409},
	} {
		var e errResp
		if st := call(t, "POST", a.url+tc.path, nil, &e); st != tc.status || e.Error.Code != tc.code {
			t.Fatalf("%s: %d %+v, want %d %s", tc.path, st, e.Error, tc.status, tc.code)
		}
	}
	var ep struct {
		Arms      []string          `json:"arms"`
		ArmStates map[string]string `json:"arm_states"`
		Shadows   []any             `json:"shadows"`
	}
	if st := call(t, "POST", a.url+"/v1/endpoints/sh/shadows/mf@2/promote", nil, &ep); st != 200 ||
		!slices.Equal(ep.Arms, []string{"mf@1", "mf@2"}) || ep.ArmStates["mf@2"] != "active" || len(ep.Shadows) != 0 {
		t.Fatalf("promote: %d %+v", st, ep)
	}
	var e errResp
	if st := call(t, "POST", a.url+"/v1/endpoints/sh/shadows/mf@2/promote", nil, &e); st != 409 || e.Error.Code != "arm_exists" {
		t.Fatalf("promote again: %d %+v", st, e.Error)
	}
	rep = reportResp{}
	call(t, "GET", a.url+"/v1/endpoints/sh/report", nil, &rep)
	if len(rep.Shadows) != 0 || len(rep.Arms) != 2 {
		t.Fatalf("after promote: shadows %+v, arms %d", rep.Shadows, len(rep.Arms))
	}
}

// Two replicas on one Redis: predictions served by one and clicked on the
// other are replayed, and both replicas' reports show the same, exact
// shadow figures.
func TestShadowReplicas(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	reps := replicas(t, rs.URL(), 2)
	if st := call(t, "PUT", reps[0].url+"/v1/endpoints/sh", `{"arms": ["mf@1"], "shadows": [{"arm": "mf@2", "share": 1}]}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	waitUntil(t, 2*time.Second, func() bool { return call(t, "GET", reps[1].url+"/v1/endpoints/sh", nil, nil) == 200 })
	const n = 60
	recs := make([]recResp, n)
	for i := range recs {
		if st := call(t, "POST", reps[i%2].url+"/v1/endpoints/sh/recommend", map[string]any{"user_id": fmt.Sprint("u", i), "k": 5}, &recs[i]); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
	}
	// Each replica flushes its lists before its sums: once both replicas'
	// calls are in the store, so are the lists the clicks look up.
	waitUntil(t, 5*time.Second, func() bool {
		var rep reportResp
		call(t, "GET", reps[0].url+"/v1/endpoints/sh/report", nil, &rep)
		s := shadowOf(rep, "mf@2")
		var rep1 reportResp
		call(t, "GET", reps[1].url+"/v1/endpoints/sh/report", nil, &rep1)
		s1 := shadowOf(rep1, "mf@2")
		return s != nil && s1 != nil && s.Calls+s.Dropped == n && s1.Calls+s1.Dropped == n
	})
	for i, rec := range recs {
		ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}
		if st := call(t, "POST", reps[(i+1)%2].url+"/v1/feedback", ev, nil); st != 200 {
			t.Fatalf("feedback: %d", st)
		}
	}
	var last string
	waitUntil(t, 5*time.Second, func() bool {
		for _, r := range reps {
			var rep reportResp
			call(t, "GET", r.url+"/v1/endpoints/sh/report", nil, &rep)
			s := shadowOf(rep, "mf@2")
			if s == nil || s.Calls+s.Dropped != n || s.Replay.N != s.Calls || s.ServedReplay.N != s.Calls ||
				s.ServedReplay.Rate == nil || *s.ServedReplay.Rate != 1 {
				last = fmt.Sprintf("%s: %+v", r.url, s)
				return false
			}
		}
		return true
	})
	if t.Failed() {
		t.Log(last)
	}
}

// readPredLogNow reads the prediction log in dir as it is.
func readPredLogNow(dir string) map[string]predlog.Record {
	out := map[string]predlog.Record{}
	f, err := os.Open(filepath.Join(dir, predlog.FileName))
	if err != nil {
		return out
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var r predlog.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out[r.PredictionID] = r
		}
	}
	return out
}

// The shadows table in a real browser: after the arms, with the JSON
// report's calls, replayed clicks and replay rates, inside the window.
func TestShadowsInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	exe := chromium(t)
	a := startApp(t, demoConfig(t, ""))
	if st := call(t, "PUT", a.url+"/v1/endpoints/sh", `{"arms": ["mf@1"], "shadows": [{"arm": "mf@2", "share": 1}]}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	const n = 60
	recs := make([]recResp, n)
	for i := range recs {
		if st := call(t, "POST", a.url+"/v1/endpoints/sh/recommend", map[string]any{"user_id": fmt.Sprint("u", i), "k": 5}, &recs[i]); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
	}
	readPredLog(t, a.dataDir, n) // every shadow answered: its lists are kept
	for i, rec := range recs {
		ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[i%len(rec.Items)].ID}}}
		if st := call(t, "POST", a.url+"/v1/feedback", ev, nil); st != 200 {
			t.Fatalf("feedback: %d", st)
		}
	}
	var rep reportResp
	waitUntil(t, 3*time.Second, func() bool {
		rep = reportResp{}
		call(t, "GET", a.url+"/v1/endpoints/sh/report", nil, &rep)
		s := shadowOf(rep, "mf@2")
		return s != nil && s.Replay.N == s.Calls && s.Calls+s.Dropped == n
	})
	s := shadowOf(rep, "mf@2")

	ctx := browse(t, exe)
	if err := chromedp.Do(ctx, chromedp.Navigate(a.url+"/ui/endpoints/sh"), chromedp.WaitVisible(chromedp.CSS("#shadows"))); err != nil {
		t.Fatal(err)
	}
	text := textOf(ctx, t)
	sel := `#shadows tr[data-shadow="mf@2"] `
	for _, c := range []struct{ cell, want string }{
		{"calls", fmt.Sprint(s.Calls)}, {"errors", fmt.Sprint(s.Errors)}, {"dropped", fmt.Sprint(s.Dropped)},
		{"replay-n", fmt.Sprint(s.Replay.N)},
		{"replay", fmt.Sprintf("%.1f%%", 100**s.Replay.Rate)}, {"served", fmt.Sprintf("%.1f%%", 100**s.ServedReplay.Rate)},
		{"overlap", fmt.Sprintf("%.1f%%", 100**s.OverlapAtK)},
	} {
		if got := text(sel + "." + c.cell); got != c.want {
			t.Errorf("%s: the page shows %q, the report %q", c.cell, got, c.want)
		}
	}
	below, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#shadows").getBoundingClientRect().top > document.querySelector("#arms").getBoundingClientRect().bottom`))
	if err != nil || !below {
		t.Errorf("the shadows table is not below the arms (%v)", err)
	}
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#shadows").getBoundingClientRect().right > window.innerWidth`)); err != nil || wide {
		t.Errorf("the shadows table runs past the window (%v)", err)
	}
	if share := text(sel + "td:nth-child(2)"); share != "100%" {
		t.Errorf("a share of 1 shows as %q", share)
	}
	screenshotTo(ctx, t, os.Getenv("MODELGATE_SCREENSHOT_SHADOWS"))
}
