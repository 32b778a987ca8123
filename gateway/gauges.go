package gateway

import (
	"context"
	"sort"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/predlog"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/router"
	"github.com/modelgate/modelgate/telemetry"
)

// gaugeInterval is how often the traffic_share and p_best gauges are
// recomputed: a scrape shows values at most this old (plus one
// computation), well within the 15 s the contract allows.
const gaugeInterval = 5 * time.Second

// armGauges keeps each arm's traffic share and P(best) across segments, as
// the report shows them, computed off the scrape path: run recomputes them
// every gaugeInterval into a snapshot that a scrape only reads, so a scrape
// costs the same whatever the traffic and the number of endpoints. Safe for
// concurrent use.
type armGauges struct {
	compute func(now time.Time) []telemetry.ArmStat
	now     func() time.Time
	every   time.Duration
	snap    atomic.Pointer[[]telemetry.ArmStat]
	builds  atomic.Int64 // computations so far
}

// newArmGauges returns the gauges of every endpoint of reg, computed once
// already.
func newArmGauges(reg *registry.Registry, rt *router.Router, table *counters.Table) *armGauges {
	g := &armGauges{now: time.Now, every: gaugeInterval, compute: func(now time.Time) []telemetry.ArmStat {
		snap := reg.Snapshot()
		names := make([]string, 0, len(snap.Endpoints))
		for name := range snap.Endpoints {
			names = append(names, name)
		}
		sort.Strings(names)
		avail := func(arm string) bool { return router.Available(snap.Versions[arm]) }
		var out []telemetry.ArmStat
		for _, name := range names {
			ep := snap.Endpoints[name]
			rep := report.Build(report.Input{Endpoint: ep, Table: table, Errors: rt.Errors(), Available: avail,
				Segment: counters.AllSegment, Now: now, Shares: rt.PolicyShares(ep.Name, counters.AllSegment)})
			for _, a := range rep.Arms {
				out = append(out, telemetry.ArmStat{Endpoint: ep.Name, Arm: a.Arm, TrafficShare: a.TrafficShare, PBest: a.PBest})
			}
		}
		return out
	}}
	g.refresh()
	return g
}

// refresh recomputes the gauges.
func (g *armGauges) refresh() {
	out := g.compute(g.now())
	g.snap.Store(&out)
	g.builds.Add(1)
}

// arms is the last computed snapshot; it computes nothing.
func (g *armGauges) arms(context.Context) []telemetry.ArmStat {
	if p := g.snap.Load(); p != nil {
		return *p
	}
	return nil
}

// run recomputes the gauges every g.every until ctx ends.
func (g *armGauges) run(ctx context.Context) {
	t := time.NewTicker(g.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.refresh()
		}
	}
}

// observeGauges registers the sources of the gauges: each arm's traffic
// share and P(best) from the snapshot of arms, the trial flush backlog, the
// prediction log's dropped records and, with Redis, the store's state; all
// are cheap reads.
func observeGauges(tel *telemetry.Telemetry, arms *armGauges, table *counters.Table, db openedStore, plog *predlog.Log) error {
	var storeState func() (bool, int, int64)
	if sh := db.shared; sh != nil {
		storeState = func() (bool, int, int64) {
			b, n := sh.Backlog()
			return sh.Healthy(), b, n
		}
	}
	return tel.Observe(telemetry.Sources{
		Store:         storeState,
		Arms:          arms.arms,
		PendingTrials: func() int64 { return int64(table.Pending()) },
		PredictionLog: func() (int64, int64) { return int64(plog.Dropped()), int64(plog.Failed()) },
	})
}
