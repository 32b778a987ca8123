package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/telemetry"
)

// A scrape reads the gauges' snapshot and computes nothing, whatever the
// number of endpoints: 100 endpoints, several scrapes, no report built.
func TestMetricsScrapeReadsSnapshot(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	ctx := context.Background()
	const n = 100
	for i := range n {
		if _, _, err := a.reg.PutEndpoint(ctx, fmt.Sprintf("e%03d", i), []byte(`{"arms": ["mf@1", "mf@2"]}`)); err != nil {
			t.Fatal(err)
		}
	}
	a.gauges.refresh() // what the loop does every gaugeInterval
	builds := a.gauges.builds.Load()
	for range 5 {
		fams := scrapeMetrics(t, a.url)
		got := samples(fams[telemetry.TrafficShare])
		for i := range n {
			for _, arm := range []string{"mf@1", "mf@2"} {
				if _, ok := got[fmt.Sprintf("arm=%s,endpoint=e%03d", arm, i)]; !ok {
					t.Fatalf("traffic_share of e%03d/%s missing", i, arm)
				}
			}
		}
	}
	if b := a.gauges.builds.Load(); b != builds {
		t.Fatalf("5 scrapes computed the gauges %d times, want 0", b-builds)
	}

	// The snapshot is what a scrape shows until the next computation.
	if _, err := a.reg.SetArmState(ctx, "e000", "mf@1", registry.Paused); err != nil {
		t.Fatal(err)
	}
	share := func() float64 {
		return samples(scrapeMetrics(t, a.url)[telemetry.TrafficShare])["arm=mf@1,endpoint=e000"]
	}
	if s := share(); s == 0 {
		t.Fatalf("traffic_share of a just-paused arm is already 0: the scrape computed it")
	}
	a.gauges.refresh()
	if s := share(); s != 0 {
		t.Fatalf("traffic_share of a paused arm after a computation = %v, want 0", s)
	}
}

// The loop that app.run owns recomputes the gauges until its context ends.
func TestArmGaugesLoop(t *testing.T) {
	calls := 0
	g := &armGauges{now: time.Now, every: time.Millisecond, compute: func(time.Time) []telemetry.ArmStat {
		calls++
		return []telemetry.ArmStat{{Endpoint: "home", Arm: "mf@1", TrafficShare: float64(calls)}}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.run(ctx); close(done) }()
	waitUntil(t, 10*time.Second, func() bool { return g.builds.Load() >= 3 })
	cancel()
	<-done
	b := g.builds.Load()
	if got := g.arms(ctx); len(got) != 1 || got[0].TrafficShare != float64(b) {
		t.Fatalf("snapshot %v after %d computations", got, b)
	}
}
