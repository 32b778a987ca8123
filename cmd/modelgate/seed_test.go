package main

import (
	"context"
	"io"
	"log/slog"
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
