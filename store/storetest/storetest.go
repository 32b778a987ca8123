// Package storetest states the contract of the gateway's stores as tests
// and runs them against any implementation: the embedded store in the data
// dir (store.DB) and Redis (redisstore.Store) pass the same suite.
//
// Each concern has its own Run function taking the narrowest interface its
// users declare (registry.Store, feedback.Store, report.Series, auth.Store,
// audit.Store, ...); Run runs them all. open must return a new, empty
// store for every call, closed by the test's cleanup.
package storetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/shadow"
	"github.com/modelgate/modelgate/store"
)

// Store is every concern a gateway keeps in its store.
type Store interface {
	registry.Store
	feedback.Store
	report.Series
	auth.Store
	audit.Store
	counters.Loader
	counters.DiscStore
	counters.LinearStore
	offpolicy.Store
	shadow.Store
	Meta
}

func countsOf(t *testing.T, s interface {
	LoadCounters(ctx context.Context) ([]counters.Entry, error)
}) map[counters.Key][2]uint64 {
	t.Helper()
	es, err := s.LoadCounters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[counters.Key][2]uint64{}
	for _, e := range es {
		m[e.Key] = [2]uint64{e.Trials, e.Successes}
	}
	return m
}

func equalCounts(a, b map[counters.Key][2]uint64) bool { return maps.Equal(a, b) }

// Rewards returns the stored reward units of every cell that has some.
func Rewards(t testing.TB, s counters.Loader) map[counters.Key]uint64 {
	t.Helper()
	es, err := s.LoadCounters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[counters.Key]uint64{}
	for _, e := range es {
		if e.Reward > 0 {
			m[e.Key] = e.Reward
		}
	}
	return m
}

func equalDisc(a, b []counters.DiscEntry) bool {
	return slices.EqualFunc(a, b, func(x, y counters.DiscEntry) bool {
		return x.Key == y.Key && x.Disc.Trials == y.Disc.Trials && x.Disc.Successes == y.Disc.Successes &&
			x.Disc.At.Equal(y.Disc.At) && x.Disc.RawTrials == y.Disc.RawTrials && x.Disc.RawSuccesses == y.Disc.RawSuccesses
	})
}

func equalMinutes(a, b map[offpolicy.Key]offpolicy.Minute) bool {
	return maps.EqualFunc(a, b, func(x, y offpolicy.Minute) bool {
		return x.N == y.N && maps.EqualFunc(x.Arms, y.Arms, func(p, q *offpolicy.Sums) bool {
			return p != nil && q != nil && *p == *q
		})
	})
}

func equalRecords(a, b []store.Record) bool {
	return slices.EqualFunc(a, b, func(x, y store.Record) bool {
		return x.Endpoint == y.Endpoint && x.Segment == y.Segment && x.Time == y.Time && string(x.Value) == string(y.Value)
	})
}

func showRecords(rs []store.Record) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "[%s/%s@%d %s]", r.Endpoint, r.Segment, r.Time, r.Value)
	}
	return b.String()
}
