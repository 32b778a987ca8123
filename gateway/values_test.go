package gateway

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/modelgate/modelgate/internal/redistest"
	pb "github.com/modelgate/modelgate/proto/modelgate/v1"
	"github.com/modelgate/modelgate/telemetry"
)

// Value rewards end to end, with the embedded store and with two replicas
// sharing Redis, over HTTP and gRPC: reward events sent to either replica
// and transport add their prediction's capped, normalised reward once; the
// report's successes, rate and mean_value follow; bad values and rewards on
// a click endpoint get their per-event codes; a value that is not a number
// is the call's 400 invalid_type.
func TestValueRewardsEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		apps func(t *testing.T) []*testApp
	}{
		{"embedded", func(t *testing.T) []*testApp { a := startApp(t, demoConfig(t, "")); return []*testApp{a, a} }},
		{"redis replicas", func(t *testing.T) []*testApp {
			srv := redistest.Start(t, redistest.Options{})
			return replicas(t, srv.URL(), 2)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { valueRewards(t, tc.apps(t)) })
	}
}

func valueRewards(t *testing.T, apps []*testApp) {
	a, b := apps[0], apps[1]
	body := map[string]any{"arms": []string{"mf@1", "mf@2"}, "policy": map[string]any{"reward": map[string]any{"type": "value", "cap": 100}}}
	if st := call(t, "PUT", a.url+"/v1/endpoints/watch", body, nil); st != 201 {
		t.Fatalf("create value endpoint: %d", st)
	}
	// The other replica learns of the endpoint through the store.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var ep map[string]any
		st := callQuiet("GET", b.url+"/v1/endpoints/watch", nil, &ep)
		if st == 200 && fmt.Sprint(ep["policy"].(map[string]any)["reward"]) == "map[cap:100 type:value]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("value endpoint as read on the other replica: %d %v", st, ep)
		}
	}
	// Three predictions of one user, so they land on one arm only if the
	// bandit says so: count per arm from the tokens' answers.
	recs := make([]recResp, 3)
	for i := range recs {
		if st := call(t, "POST", a.url+"/v1/endpoints/watch/recommend", map[string]any{"user_id": fmt.Sprint("u", i), "k": 3}, &recs[i]); st != 200 {
			t.Fatalf("recommend: %d", st)
		}
	}
	conn, err := grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gc := pb.NewGatewayClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	num := func(v float64) *float64 { return &v }

	// Prediction 0: 30 then 50 on two items (0.8); the first again, over
	// gRPC to the other replica, is a duplicate.
	// Prediction 1: 250 on the whole list, capped at 100 (1.0).
	// Prediction 2: a click (no success on a value endpoint) and 0.
	var fb fbResp
	ev := func(i int, typ, item string, v any) map[string]any {
		e := map[string]any{"prediction_id": recs[i].PredictionID, "type": typ, "item_id": item}
		if v != nil {
			e["value"] = v
		}
		return e
	}
	events := []map[string]any{ev(0, "reward", "i1", 30), ev(0, "reward", "i2", 50), ev(1, "reward", "", 250), ev(2, "click", "i1", nil), ev(2, "reward", "i1", 0)}
	if st := call(t, "POST", b.url+"/v1/feedback", map[string]any{"events": events}, &fb); st != 200 || fb.Accepted != 5 || len(fb.Rejected) != 0 {
		t.Fatalf("feedback: %d %+v", st, fb)
	}
	out, err := gc.Feedback(ctx, &pb.FeedbackRequest{Events: []*pb.FeedbackEvent{
		{PredictionId: recs[0].PredictionID, Type: "reward", ItemId: "i1", Value: num(30)},
		{PredictionId: recs[0].PredictionID, Type: "reward", ItemId: "i3", Value: num(math.NaN())},
		{PredictionId: recs[0].PredictionID, Type: "reward", ItemId: "i3"},
		{PredictionId: recs[0].PredictionID, Type: "click", ItemId: "i3", Value: num(1)},
	}})
	if err != nil || out.GetAccepted() != 0 || out.GetDuplicates() != 1 || fmt.Sprint(rejections(out)) != "[1:invalid_value 2:invalid_value 3:invalid_value]" {
		t.Fatalf("gRPC feedback: %v %v", out, err)
	}
	// Over HTTP: a value too large for a float64, a negative one, none;
	// a reward on the click endpoint home.
	var home recResp
	call(t, "POST", a.url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u9"}, &home)
	raw := fmt.Sprintf(`{"events": [
		{"prediction_id": %q, "type": "reward", "item_id": "i3", "value": 1e400},
		{"prediction_id": %q, "type": "reward", "item_id": "i3", "value": -1},
		{"prediction_id": %q, "type": "reward", "item_id": "i3"},
		{"prediction_id": %q, "type": "reward", "item_id": "i1", "value": 1}]}`,
		recs[0].PredictionID, recs[0].PredictionID, recs[0].PredictionID, home.PredictionID)
	if st := call(t, "POST", a.url+"/v1/feedback", raw, &fb); st != 200 || fb.Accepted != 0 ||
		fmt.Sprint(fb.Rejected) != "[{0 invalid_value} {1 invalid_value} {2 invalid_value} {3 unknown_type}]" {
		t.Fatalf("bad values: %d %+v", st, fb)
	}
	var e errResp
	if st := call(t, "POST", a.url+"/v1/feedback", fmt.Sprintf(`{"events": [{"prediction_id": %q, "type": "reward", "value": "5"}]}`, recs[0].PredictionID), &e); st != 400 || e.Error.Code != "invalid_type" || e.Error.Field != "events[0].value" {
		t.Fatalf("a value that is not a number: %d %+v", st, e)
	}

	// Each arm's successes are the sum of its predictions' rewards; both
	// replicas report them once flushed and refreshed.
	want := map[string]float64{}
	trials := map[string]uint64{}
	for i, r := range []float64{0.8, 1, 0} {
		want[recs[i].Arm] += r
		trials[recs[i].Arm]++
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, app := range []*testApp{a, b} {
		for {
			var rep reportResp
			call(t, "GET", app.url+"/v1/endpoints/watch/report", nil, &rep)
			last, ok := "", true
			for _, arm := range rep.Arms {
				tr, su := trials[arm.Arm], want[arm.Arm]
				mean := 0.0
				if tr > 0 {
					mean = su * 100 / float64(tr)
				}
				if arm.Trials != tr || math.Abs(arm.Successes-su) > 1e-9 || arm.MeanValue == nil || math.Abs(*arm.MeanValue-mean) > 1e-9 {
					ok = false
					last = fmt.Sprintf("%s: %d trials %g successes mean_value %v; want %d, %g, %g", arm.Arm, arm.Trials, arm.Successes, arm.MeanValue, tr, su, mean)
				}
				// rate is the posterior mean of the capped reward ÷ cap.
				if wantRate := (1 + su) / (2 + float64(tr)); ok && math.Abs(arm.Rate-wantRate) > 1e-9 {
					t.Fatalf("%s: rate %g, want %g", arm.Arm, arm.Rate, wantRate)
				}
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s", app.url, last)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The replica that took the rewards counted them as fractional
	// successes in its metrics.
	total := 0.0
	for _, v := range samples(scrapeMetrics(t, b.url)[telemetry.RewardSuccesses]) {
		total += v
	}
	if math.Abs(total-1.8) > 1e-9 {
		t.Errorf("%s sums to %g, want 1.8", telemetry.RewardSuccesses, total)
	}
	// A click endpoint's report has no mean_value.
	var rep map[string]any
	call(t, "GET", a.url+"/v1/endpoints/home/report", nil, &rep)
	for _, arm := range rep["arms"].([]any) {
		if _, ok := arm.(map[string]any)["mean_value"]; ok {
			t.Fatalf("click endpoint arm with mean_value: %v", arm)
		}
	}
}

func rejections(r *pb.FeedbackResponse) []string {
	out := []string{}
	for _, x := range r.GetRejected() {
		out = append(out, fmt.Sprint(x.GetIndex(), ":", x.GetCode()))
	}
	return out
}

// A value endpoint's fractional successes and its predictions' capped sums
// survive a restart on the same data dir: the counts are read back
// exactly, and a reward on an item already rewarded is still a duplicate.
func TestValueRewardsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	url, stop := runOn(t, demoConfig(t, ""), dir)
	if st := call(t, "PUT", url+"/v1/endpoints/watch", `{"arms": ["mf@1"], "policy": {"reward": {"type": "value", "cap": 60}}}`, nil); st != 201 {
		t.Fatalf("endpoint: %d", st)
	}
	var rec recResp
	call(t, "POST", url+"/v1/endpoints/watch/recommend", map[string]any{"user_id": "u1", "k": 2}, &rec)
	reward := func(url, item string, v float64) fbResp {
		var fb fbResp
		call(t, "POST", url+"/v1/feedback", map[string]any{"events": []map[string]any{
			{"prediction_id": rec.PredictionID, "type": "reward", "item_id": item, "value": v}}}, &fb)
		return fb
	}
	if fb := reward(url, "a", 15); fb.Accepted != 1 {
		t.Fatalf("reward: %+v", fb)
	}
	stop()
	url, _ = runOn(t, demoConfig(t, ""), dir)
	if fb := reward(url, "a", 15); fb.Duplicates != 1 {
		t.Fatalf("the same reward after a restart: %+v, want a duplicate", fb)
	}
	if fb := reward(url, "b", 60); fb.Accepted != 1 {
		t.Fatalf("another item's reward: %+v", fb)
	}
	var rep reportResp
	call(t, "GET", url+"/v1/endpoints/watch/report", nil, &rep)
	// 15 of 60, then capped: one whole success from one trial.
	if tr, su := rep.arm("mf@1"); tr != 1 || su != 1 || rep.Arms[0].MeanValue == nil || *rep.Arms[0].MeanValue != 60 {
		t.Fatalf("after restart: %d trials, %g successes, mean_value %v; want 1, 1, 60", tr, su, rep.Arms[0].MeanValue)
	}
}
