package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/store"
)

// CheckFixtureV1 checks that s holds what the fixtures of format version 1
// hold: store/testdata/v1 (a data dir) and
// store/redisstore/testdata/dump-v1.json (a Redis dump), both written by
// the stores of that version. A store that reads them back unchanged reads
// every data dir and Redis database written since.
//
// The fixtures hold: a model mf@1 and an endpoint home; the meta key
// "seeded/model/mf@1" = "1" and a signing key; the counters below, whose
// feedback events (expiring in 2100) are still deduplicated; two
// discounted-count snapshots; two off-policy buckets (an endpoint-wide
// minute and one segment's day); two history points of home/all; two
// audit entries; and the API key app1, last used a minute after At.
func CheckFixtureV1(t *testing.T, s Store) {
	t.Helper()
	ctx := context.Background()
	at := time.Date(2026, 12, 7, 12, 30, 15, 123456789, time.UTC)
	kA := counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}
	kB := counters.Key{Endpoint: "home", Segment: "surface=mu\x00sic", Arm: "mf@2"}

	models, err := s.List(ctx, store.Models)
	if err != nil || len(models) != 1 || string(models["mf@1"]) != `{"name":"mf","version":"1"}` {
		t.Errorf("models = %q, %v", models, err)
	}
	eps, err := s.List(ctx, store.Endpoints)
	if err != nil || len(eps) != 1 || string(eps["home"]) != `{"name":"home"}` {
		t.Errorf("endpoints = %q, %v", eps, err)
	}
	if v, err := s.Meta(ctx, "seeded/model/mf@1"); err != nil || string(v) != "1" {
		t.Errorf("meta = %q, %v", v, err)
	}
	k1, err := s.SigningKey(ctx)
	if err != nil || len(k1) != 32 {
		t.Errorf("signing key = %x, %v", k1, err)
	}
	if k2, _ := s.SigningKey(ctx); string(k1) != string(k2) {
		t.Error("the stored signing key was replaced")
	}

	got := countsOf(t, s)
	want := map[counters.Key][2]uint64{kA: {42, 1}, kB: {8, 1}}
	if !equalCounts(got, want) {
		t.Errorf("counters = %v, want %v", got, want)
	}
	res, err := s.ApplyFeedback(ctx, []store.FeedbackOp{
		{Prediction: "p1", Event: "click\x00i1", Item: "i1", Success: true, Counter: kA, Expires: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)},
	}, nil)
	if err != nil || len(res) != 1 || !res[0].Duplicate {
		t.Errorf("a stored event sent again: %+v, %v; want a duplicate", res, err)
	}

	discs, err := s.LoadDiscounted(ctx)
	wantDisc := []counters.DiscEntry{
		{Key: kA, Disc: counters.Disc{Trials: 30.25, Successes: 1.5, At: at, RawTrials: 42, RawSuccesses: 1}},
		{Key: kB, Disc: counters.Disc{Trials: 8, Successes: 0.75, At: at.Add(time.Second), RawTrials: 8, RawSuccesses: 1}},
	}
	if err != nil || !equalDisc(discs, wantDisc) {
		t.Errorf("discounted = %+v, %v; want %+v", discs, err, wantDisc)
	}

	ops, err := s.LoadOffPolicy(ctx)
	wantOps := map[offpolicy.Key]offpolicy.Minute{
		{Endpoint: "home", Segment: "*", Minute: 1796646600}: {N: 12, Arms: map[string]*offpolicy.Sums{
			"mf@1": {Served: 7, Expected: 6.5, W: 1.25, W2: 2.5, RW: 0.5, RW2: 0.25},
			"mf@2": {Served: 5, Expected: 5.5, W: 1, W2: 1}}},
		{Endpoint: "home", Segment: "%day:surface=music", Minute: 1796601600}: {N: 3, Arms: map[string]*offpolicy.Sums{
			"mf@1": {Served: 3, Expected: 3, W: 1.5, W2: 2.25, RW: 1.5, RW2: 2.25}}},
	}
	if err != nil || !equalMinutes(ops, wantOps) {
		t.Errorf("off-policy = %v, %v; want %v", ops, err, wantOps)
	}

	hist, err := s.History(ctx, "home", "all", 0, 0)
	wantHist := []store.Record{
		{Endpoint: "home", Segment: "all", Time: 1796646600, Value: []byte(`{"t":"2026-12-07T12:30:00Z","regret_expected_cumulative":0.5,"arms":[{"arm":"mf@1","trials":40,"successes":1,"traffic_share":0.75,"p_best":0.8}]}`)},
		{Endpoint: "home", Segment: "all", Time: 1796646660, Value: []byte(`{"t":"2026-12-07T12:31:00Z","regret_expected_cumulative":0.75,"arms":[{"arm":"mf@1","trials":42,"successes":1,"traffic_share":0.7,"p_best":0.85}]}`)},
	}
	if err != nil || !equalRecords(hist, wantHist) {
		t.Errorf("history = %s, %v", showRecords(hist), err)
	}

	raws, err := s.ListAudit(ctx, 10)
	if err != nil || len(raws) != 2 {
		t.Fatalf("audit = %q, %v; want 2 entries", raws, err)
	}
	for i, action := range []string{"put_endpoint", "put_version"} { // newest first
		var e audit.Entry
		if err := json.Unmarshal(raws[i], &e); err != nil || e.Action != action || !e.Time.Equal(at.Add(time.Duration(1-i)*time.Second)) {
			t.Errorf("audit entry %d = %s, %v; want %s", i, raws[i], err, action)
		}
	}

	keys, err := s.ListKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	if k := keys[0]; k.Name != "app1" || k.Rate != 10 || k.Burst != 20 || len(k.Scopes) != 1 || k.Scopes[0] != "client" ||
		!k.CreatedAt.Equal(at.Truncate(time.Second)) || !k.LastUsed.Equal(at.Add(time.Minute).Truncate(time.Millisecond)) {
		t.Errorf("key = %+v", k)
	}
}
