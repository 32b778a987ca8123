package gateway

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/report"
)

// traffic serves n recommends on endpoint with the given contexts in turn,
// clicking the first item of every third.
func traffic(t *testing.T, url, endpoint string, n int, surfaces ...string) {
	t.Helper()
	if len(surfaces) == 0 {
		surfaces = []string{""}
	}
	for i := 0; i < n; i++ {
		body := map[string]any{"user_id": "u1", "k": 3}
		if s := surfaces[i%len(surfaces)]; s != "" {
			body["context"] = map[string]string{"surface": s}
		}
		var rec recResp
		if st := call(t, "POST", url+"/v1/endpoints/"+endpoint+"/recommend", body, &rec); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
		if i%3 == 0 {
			ev := map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": rec.Items[0].ID}}}
			call(t, "POST", url+"/v1/feedback", ev, nil)
		}
	}
}

type historyResp = report.History

func TestReportHistoryAndBadInput(t *testing.T) {
	cfg := demoConfig(t, "")
	cfg.Report.Interval = time.Second
	a := startApp(t, cfg)
	traffic(t, a.url, "home", 30)
	var h historyResp
	waitUntil(t, 5*time.Second, func() bool {
		call(t, "GET", a.url+"/v1/endpoints/home/report/history", nil, &h)
		return len(h.Points) >= 2
	})
	last := h.Points[len(h.Points)-1]
	var total uint64
	for _, arm := range last.Arms {
		total += arm.Trials
	}
	if h.Interval != "1s" || h.Segment != "all" || total != 30 || len(last.Arms) != 2 {
		t.Fatalf("history: interval %q segment %q, last point %+v", h.Interval, h.Segment, last)
	}
	from := h.Points[len(h.Points)-1].T
	var later historyResp
	call(t, "GET", a.url+"/v1/endpoints/home/report/history?from="+from, nil, &later)
	if len(later.Points) == 0 || len(later.Points) >= len(h.Points)+2 || later.Points[0].T < from {
		t.Fatalf("from=%s gave %d points starting %v", from, len(later.Points), later.Points)
	}
	var b strings.Builder
	req := httptest.NewRequest("GET", "/v1/endpoints/home/report/history?format=csv", nil)
	rec := httptest.NewRecorder()
	a.srv.Handler().ServeHTTP(rec, req)
	b.WriteString(rec.Body.String())
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if rec.Code != 200 || lines[0] != "t,endpoint,segment,arm,trials,successes,traffic_share,p_best,regret_expected_cumulative" || len(lines) < 3 {
		t.Fatalf("history csv: %d\n%s", rec.Code, b.String())
	}

	for _, tc := range []struct {
		path, code, field string
		status            int
	}{
		{"/v1/endpoints/home/report?segment=surface%3Dnope", "segment_not_found", "", 404},
		{"/v1/endpoints/home/report/history?segment=nope", "segment_not_found", "", 404},
		{"/v1/endpoints/home/report?from=yesterday", "invalid_time", "from", 400},
		{"/v1/endpoints/home/report/history?to=2026-13-01T00:00:00Z", "invalid_time", "to", 400},
		{"/v1/endpoints/home/report?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "invalid_time", "to", 400},
		{"/v1/endpoints/home/report/history?format=xml", "invalid_format", "format", 400},
		{"/v1/endpoints/nope/report/history", "endpoint_not_found", "", 404},
		{"/ui/endpoints/nope", "endpoint_not_found", "", 404},
	} {
		var e errResp
		if st := call(t, "GET", a.url+tc.path, nil, &e); st != tc.status || e.Error.Code != tc.code || e.Error.Field != tc.field {
			t.Errorf("%s: %d %+v, want %d %s %s", tc.path, st, e.Error, tc.status, tc.code, tc.field)
		}
	}
}

// History points are durable: a restart on the same data dir still serves
// them, and the off-policy sums too.
func TestHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := demoConfig(t, "")
	cfg.Report.Interval = time.Second
	url, stop := runOn(t, cfg, dir)
	traffic(t, url, "home", 20)
	var before historyResp
	waitUntil(t, 5*time.Second, func() bool {
		call(t, "GET", url+"/v1/endpoints/home/report/history", nil, &before)
		return len(before.Points) >= 2
	})
	var repBefore reportResp
	call(t, "GET", url+"/v1/endpoints/home/report", nil, &repBefore)
	stop()

	// Started again: what it serves comes from the store.
	url, stop = runOn(t, cfg, dir)
	defer stop()
	var after historyResp
	call(t, "GET", url+"/v1/endpoints/home/report/history", nil, &after)
	if len(after.Points) < len(before.Points) || after.Points[0].T != before.Points[0].T {
		t.Fatalf("after a restart: %d points from %v, before %d from %v", len(after.Points), after.Points[0].T, len(before.Points), before.Points[0].T)
	}
	var raw map[string]any
	call(t, "GET", url+"/v1/endpoints/home/report", nil, &raw)
	arms := raw["arms"].([]any)
	for _, arm := range arms {
		op, _ := arm.(map[string]any)["off_policy"].(map[string]any)
		if op == nil || op["n"].(float64) == 0 {
			t.Fatalf("off-policy sums lost in the restart: %v", arm)
		}
	}
	// The doubly robust estimate, from the same counts and sums, too.
	var repAfter reportResp
	call(t, "GET", url+"/v1/endpoints/home/report", nil, &repAfter)
	for i, a := range repAfter.Arms {
		b := repBefore.Arms[i].OffPolicy
		if o := a.OffPolicy; o == nil || b == nil || abs(o.DR-b.DR) > 1e-9 || abs(o.DRCI95[1]-b.DRCI95[1]) > 1e-9 {
			t.Errorf("%s: dr after the restart %+v, before %+v", a.Arm, o, b)
		}
	}
}
