package main

import (
	"context"
	"sort"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/router"
	"github.com/modelgate/modelgate/telemetry"
)

// observeGauges registers the sources of the gauges computed at scrape
// time: each arm's traffic share and P(best) across segments, as the
// report shows them, and the trial flush backlog.
func observeGauges(tel *telemetry.Telemetry, reg *registry.Registry, rt *router.Router, table *counters.Table, db stateStore) error {
	var storeState func() (bool, int, int64)
	if sh, ok := db.(sharedStore); ok {
		storeState = func() (bool, int, int64) {
			b, n := sh.Backlog()
			return sh.Healthy(), b, n
		}
	}
	return tel.Observe(telemetry.Sources{
		Store: storeState,
		Arms: func(context.Context) []telemetry.ArmStat {
			snap := reg.Snapshot()
			names := make([]string, 0, len(snap.Endpoints))
			for name := range snap.Endpoints {
				names = append(names, name)
			}
			sort.Strings(names)
			avail := func(arm string) bool { return router.Available(snap.Versions[arm]) }
			var out []telemetry.ArmStat
			now := time.Now()
			for _, name := range names {
				ep := snap.Endpoints[name]
				rep := report.Build(report.Input{Endpoint: ep, Table: table, Errors: rt.Errors(), Available: avail,
					Segment: "all", Now: now, Shares: rt.PolicyShares(ep.Name, "all")})
				for _, a := range rep.Arms {
					out = append(out, telemetry.ArmStat{Endpoint: ep.Name, Arm: a.Arm, TrafficShare: a.TrafficShare, PBest: a.PBest})
				}
			}
			return out
		},
		PendingTrials: func() int64 { return int64(table.Pending()) },
	})
}
