package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

// The config seeds a data dir once per entry: a later start keeps what the
// API changed, and an endpoint deleted through the API stays deleted.
func TestConfigSeedsOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := newApp(ctx, demoConfig(t, ""), dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.reg.SetArmState(ctx, "home", "mf@1", "paused"); err != nil {
		t.Fatal(err)
	}
	a.close()

	a, err = newApp(ctx, demoConfig(t, ""), dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if ep, _ := a.reg.Endpoint("home"); ep.ArmStates["mf@1"] != "paused" {
		t.Fatalf("a restart with the same config resumed a paused arm: %v", ep.ArmStates)
	}
	if err := a.reg.DeleteEndpoint(ctx, "home"); err != nil {
		t.Fatal(err)
	}
	a.close()

	a, err = newApp(ctx, demoConfig(t, ""), dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if a.reg.HasEndpoint("home") {
		t.Fatal("a restart with the same config re-created an endpoint deleted through the API")
	}
	a.close()

	// Every entry is validated on every start, stored or not.
	bad := demoConfig(t, "")
	bad.Endpoints[0].Body = []byte(strings.Replace(string(bad.Endpoints[0].Body), `"arms"`, `"arms_typo": 1, "arms"`, 1))
	if _, err := newApp(ctx, bad, dir, log); err == nil || !strings.Contains(err.Error(), "arms_typo") {
		t.Fatalf("a typo in a stored config entry must fail the start, got %v", err)
	}
}

// A click on a prediction signed with the previous signing key is accepted
// after the key is rotated (new key first, old one kept); with the old key
// dropped, it is refused.
func TestSigningKeyRotation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	k1, k2 := strings.Repeat("11", 32), strings.Repeat("22", 32)
	with := func(keys string, f func(url string)) {
		t.Helper()
		a, err := newApp(ctx, demoConfig(t, "signing_keys: ["+keys+"]\n"), dir, log)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(a.srv.Handler())
		f(ts.URL)
		ts.Close()
		a.close()
	}
	var rec recResp
	with(k1, func(url string) {
		call(t, "POST", url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u1"}, &rec)
	})
	click := func(item string) map[string]any {
		return map[string]any{"events": []map[string]string{{"prediction_id": rec.PredictionID, "type": "click", "item_id": item}}}
	}
	with(k2+", "+k1, func(url string) {
		var fb fbResp
		if st := call(t, "POST", url+"/v1/feedback", click(rec.Items[0].ID), &fb); st != 200 || fb.Accepted != 1 {
			t.Fatalf("click on an old-key token after rotation: %d %+v", st, fb)
		}
	})
	with(k2, func(url string) {
		var fb fbResp
		if call(t, "POST", url+"/v1/feedback", click(rec.Items[1].ID), &fb); len(fb.Rejected) != 1 || fb.Rejected[0].Code != "invalid_prediction_id" {
			t.Fatalf("with the old key dropped: %+v", fb)
		}
	})
}
