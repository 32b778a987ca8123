package redisstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/store"
)

// replicas opens n Stores on one Redis under one prefix, as n gateway
// replicas would, with replica ids "r0", "r1", ...
func replicas(t *testing.T, url, prefix string, n int) []*Store {
	t.Helper()
	out := make([]*Store, n)
	for i := range out {
		opt := onlineOpts()
		opt.Prefix = prefix
		opt.ReplicaID = fmt.Sprintf("r%d", i)
		out[i] = openStore(t, url, opt)
	}
	return out
}

// rawClient is a plain client to look at the keys the store wrote.
func rawClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

func keysUnder(t *testing.T, c *redis.Client, prefix string) []string {
	t.Helper()
	ks, err := c.Keys(context.Background(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

type point struct {
	t int64
	v string
}

func pointsOf(rs []store.Record) []point {
	out := []point{}
	for _, r := range rs {
		out = append(out, point{r.Time, string(r.Value)})
	}
	return out
}

func TestHistoryFirstWriterWinsAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	type add struct {
		replica  int
		endpoint string
		segment  string
		t        int64
		v        string
		want     bool
	}
	type query struct {
		endpoint, segment string
		from, to          int64
		want              []point
	}
	tests := []struct {
		name    string
		adds    []add
		queries []query
	}{
		{"the first replica's point stays",
			[]add{
				{0, "home", "all", 120, "a120", true},
				{1, "home", "all", 120, "b120", false},
				{1, "home", "all", 60, "b60", true},
				{0, "home", "all", 60, "a60", false},
				{0, "home", "all", 180, "a180", true},
				{1, "home", "all", 180, "b180", false},
			},
			[]query{
				{"home", "all", 0, 0, []point{{60, "b60"}, {120, "a120"}, {180, "a180"}}},
				{"home", "all", 60, 180, []point{{60, "b60"}, {120, "a120"}}},
				{"home", "all", 61, 0, []point{{120, "a120"}, {180, "a180"}}},
				{"home", "all", 0, 120, []point{{60, "b60"}}},
				{"home", "all", -5, 61, []point{{60, "b60"}}},
				{"home", "all", 181, 0, []point{}},
				{"home", "all", 120, 120, []point{}},
				{"home", "other", 0, 0, []point{}},
				{"away", "all", 0, 0, []point{}},
			}},
		{"series are separate, NUL in a segment included",
			[]add{
				{0, "home", "a", 60, "a", true},
				{1, "home", "a\x00b", 60, "ab", true},
				{1, "home", "a\x00b", 0, "ab0", true},
				{0, "search", "a", 60, "s", true},
				{1, "search", "a", 60, "s2", false},
			},
			[]query{
				{"home", "a", 0, 0, []point{{60, "a"}}},
				{"home", "a\x00b", 0, 0, []point{{0, "ab0"}, {60, "ab"}}},
				{"search", "a", 0, 0, []point{{60, "s"}}},
			}},
		{"order is by time, not by insertion or as text",
			[]add{
				{1, "e", "all", 1_700_000_100, "3", true},
				{0, "e", "all", 999_999_999, "1", true},
				{1, "e", "all", 1_700_000_040, "2", true},
				{0, "e", "all", 1_700_000_100, "x", false},
			},
			[]query{
				{"e", "all", 0, 0, []point{{999_999_999, "1"}, {1_700_000_040, "2"}, {1_700_000_100, "3"}}},
				{"e", "all", 1_000_000_000, 1_700_000_100, []point{{1_700_000_040, "2"}}},
			}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := replicas(t, srv.URL(), fmt.Sprintf("hist%d:", i), 2)
			for j, a := range tc.adds {
				r := store.Record{Endpoint: a.endpoint, Segment: a.segment, Time: a.t, Value: []byte(a.v)}
				got, err := rs[a.replica].AddHistory(ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				if got != a.want {
					t.Errorf("add %d: added=%v, want %v", j, got, a.want)
				}
			}
			for _, q := range tc.queries {
				for ri, r := range rs {
					got, err := r.History(ctx, q.endpoint, q.segment, q.from, q.to)
					if err != nil {
						t.Fatal(err)
					}
					for _, rec := range got {
						if rec.Endpoint != q.endpoint || rec.Segment != q.segment {
							t.Errorf("History(%q, %q) returned a record of %q/%q", q.endpoint, q.segment, rec.Endpoint, rec.Segment)
						}
					}
					if !reflect.DeepEqual(pointsOf(got), q.want) {
						t.Errorf("replica %d History(%q, %q, %d, %d) = %v, want %v", ri, q.endpoint, q.segment, q.from, q.to, pointsOf(got), q.want)
					}
				}
			}
		})
	}
}

// minuteJSON is an offpolicy.Minute as PutOffPolicy receives it.
func minuteJSON(n float64, arms map[string]offpolicy.Sums) []byte {
	m := offpolicy.Minute{N: n, Arms: map[string]*offpolicy.Sums{}}
	for k, v := range arms {
		m.Arms[k] = &v
	}
	b, _ := json.Marshal(m)
	return b
}

// Replicas prune the series they share: from either, every replica's
// history and off-policy snapshots go, with their index entries.
// (storetest states what pruning keeps, through one handle.)
func TestPruneSeriesAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	raw := rawClient(t, srv)
	ctx := context.Background()
	// History every 60 s from 0 to 1200 in two series, and off-policy
	// minutes over the same range from two replicas.
	seed := func(t *testing.T, rs []*Store) {
		t.Helper()
		for _, seg := range []string{"all", "s=1"} {
			for ts := int64(0); ts <= 1200; ts += 60 {
				r := store.Record{Endpoint: "home", Segment: seg, Time: ts, Value: []byte(fmt.Sprint(ts))}
				if _, err := rs[ts/60%2].AddHistory(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
		}
		var recs []store.Record
		for ts := int64(0); ts <= 1200; ts += 60 {
			recs = append(recs, store.Record{Endpoint: "home", Segment: "all", Time: ts, Value: minuteJSON(1, nil)})
		}
		for _, r := range rs {
			if err := r.PutOffPolicy(ctx, minutesOf(recs)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name                        string
		cutoff, thinBefore, keep    int64
		wantDeleted                 int
		wantEmpty                   bool // nothing left under the prefix
		wantHistory, wantOffMinutes []int64
	}{
		{"nothing old", -1, -1, 0, 0, false,
			[]int64{0, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 660, 720, 780, 840, 900, 960, 1020, 1080, 1140, 1200},
			[]int64{0, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 660, 720, 780, 840, 900, 960, 1020, 1080, 1140, 1200}},
		{"cutoff only", 600, 0, 300, 2*10 + 10, false,
			[]int64{600, 660, 720, 780, 840, 900, 960, 1020, 1080, 1140, 1200},
			[]int64{600, 660, 720, 780, 840, 900, 960, 1020, 1080, 1140, 1200}},
		{"cutoff and thinning", 300, 900, 300, 2*(5+8) + 5, false,
			[]int64{300, 600, 900, 960, 1020, 1080, 1140, 1200},
			[]int64{300, 360, 420, 480, 540, 600, 660, 720, 780, 840, 900, 960, 1020, 1080, 1140, 1200}},
		{"thinning without keepEvery does nothing", 0, 900, 0, 0, false,
			[]int64{0, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 660, 720, 780, 840, 900, 960, 1020, 1080, 1140, 1200},
			[]int64{0, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 660, 720, 780, 840, 900, 960, 1020, 1080, 1140, 1200}},
		{"everything", 10_000, 10_000, 60, 2*21 + 21, true, []int64{}, []int64{}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := fmt.Sprintf("prune%d:", i)
			rs := replicas(t, srv.URL(), prefix, 2)
			seed(t, rs)
			n, err := rs[1].PruneSeries(ctx, tc.cutoff, tc.thinBefore, tc.keep)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.wantDeleted {
				t.Errorf("deleted %d, want %d", n, tc.wantDeleted)
			}
			for _, seg := range []string{"all", "s=1"} {
				got, err := rs[0].History(ctx, "home", seg, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(timesOf(got)) != fmt.Sprint(tc.wantHistory) {
					t.Errorf("%q: history left %v, want %v", seg, timesOf(got), tc.wantHistory)
				}
			}
			for ri, r := range rs {
				got, err := recordsOf(r.LoadOffPolicy(ctx))
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(timesOf(got)) != fmt.Sprint(tc.wantOffMinutes) {
					t.Errorf("replica %d: off-policy minutes left %v, want %v", ri, timesOf(got), tc.wantOffMinutes)
				}
				others, err := recordsOf(r.OffPolicyOthers(ctx, time.Time{}))
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(timesOf(others)) != fmt.Sprint(tc.wantOffMinutes) {
					t.Errorf("replica %d: other replicas' minutes left %v, want %v", ri, timesOf(others), tc.wantOffMinutes)
				}
			}
			if left := keysUnder(t, raw, prefix); tc.wantEmpty && len(left) != 0 {
				t.Errorf("after pruning everything, keys left: %q (indexes must go too)", left)
			}
			// Pruning again deletes nothing more, from either replica.
			for _, r := range rs {
				if n, err := r.PruneSeries(ctx, tc.cutoff, tc.thinBefore, tc.keep); err != nil || n != 0 {
					t.Errorf("second prune deleted %d, %v", n, err)
				}
			}
		})
	}
}

func timesOf(rs []store.Record) []int64 {
	out := []int64{}
	for _, r := range rs {
		out = append(out, r.Time)
	}
	return out
}

// TestPruneKeepsSeriesWrittenMeanwhile: a point added to a series that
// pruning emptied keeps the series in the index, so a later prune sees it.
func TestPruneKeepsSeriesWrittenMeanwhile(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	raw := rawClient(t, srv)
	ctx := context.Background()
	rs := replicas(t, srv.URL(), "again:", 2)
	r := store.Record{Endpoint: "home", Segment: "a\x00b", Time: 60, Value: []byte("1")}
	if _, err := rs[0].AddHistory(ctx, r); err != nil {
		t.Fatal(err)
	}
	if n, err := rs[1].PruneSeries(ctx, 1000, 0, 0); err != nil || n != 1 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if n, _ := raw.SCard(ctx, "again:hist:index").Result(); n != 0 {
		t.Fatalf("an emptied series stays in the index (%d members)", n)
	}
	r.Time = 2000
	if added, err := rs[1].AddHistory(ctx, r); err != nil || !added {
		t.Fatalf("add after prune: %v, %v", added, err)
	}
	if n, err := rs[0].PruneSeries(ctx, 3000, 0, 0); err != nil || n != 1 {
		t.Fatalf("the series written after it was emptied was not pruned: %d, %v", n, err)
	}
}

func TestDiscountedRoundTrip(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	raw := rawClient(t, srv)
	ctx := context.Background()
	at := time.Unix(1_700_000_000, 123_456_789)
	tests := []struct {
		name   string
		writes [][]counters.DiscEntry // in order, alternating replicas
		want   []counters.DiscEntry
	}{
		{"nothing", [][]counters.DiscEntry{nil, {}}, nil},
		{"one cell", [][]counters.DiscEntry{{{Key: kA, Disc: counters.Disc{Trials: 12.5, Successes: 0.25, At: at, RawTrials: 20, RawSuccesses: 1}}}},
			[]counters.DiscEntry{{Key: kA, Disc: counters.Disc{Trials: 12.5, Successes: 0.25, At: at, RawTrials: 20, RawSuccesses: 1}}}},
		{"the last writer wins per cell", [][]counters.DiscEntry{
			{{Key: kA, Disc: counters.Disc{Trials: 1, At: at}}, {Key: kB, Disc: counters.Disc{Trials: 2, At: at}}},
			{{Key: kA, Disc: counters.Disc{Trials: 3, Successes: 1, At: at.Add(time.Second), RawTrials: 1 << 60, RawSuccesses: 7}}},
		}, []counters.DiscEntry{
			{Key: kA, Disc: counters.Disc{Trials: 3, Successes: 1, At: at.Add(time.Second), RawTrials: 1 << 60, RawSuccesses: 7}},
			{Key: kB, Disc: counters.Disc{Trials: 2, At: at}},
		}},
		{"NUL in a segment, tiny and huge floats", [][]counters.DiscEntry{
			{{Key: counters.Key{Endpoint: "e", Arm: "m@1", Segment: "a\x00b"}, Disc: counters.Disc{Trials: 1e-300, Successes: 1e300, At: time.Unix(0, 0)}}},
		}, []counters.DiscEntry{
			{Key: counters.Key{Endpoint: "e", Arm: "m@1", Segment: "a\x00b"}, Disc: counters.Disc{Trials: 1e-300, Successes: 1e300, At: time.Unix(0, 0)}},
		}},
	}
	same := func(a, b []counters.DiscEntry) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			x, y := a[i], b[i]
			if x.Key != y.Key || !x.Disc.At.Equal(y.Disc.At) || x.Disc.Trials != y.Disc.Trials || x.Disc.Successes != y.Disc.Successes ||
				x.Disc.RawTrials != y.Disc.RawTrials || x.Disc.RawSuccesses != y.Disc.RawSuccesses {
				return false
			}
		}
		return true
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := fmt.Sprintf("disc%d:", i)
			rs := replicas(t, srv.URL(), prefix, 2)
			for j, w := range tc.writes {
				if err := rs[j%2].PutDiscounted(ctx, w); err != nil {
					t.Fatal(err)
				}
			}
			for ri, r := range rs {
				got, err := r.LoadDiscounted(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !same(got, tc.want) {
					t.Errorf("replica %d loaded %+v, want %+v", ri, got, tc.want)
				}
			}
			// The value is the 40-byte layout of the embedded store.
			for _, e := range tc.want {
				v, err := raw.HGet(ctx, prefix+"disc", e.Key.Encode()).Bytes()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(v, discBytes(e.Disc)) || len(v) != 40 {
					t.Errorf("stored %x, want %x", v, discBytes(e.Disc))
				}
			}
		})
	}
}

func TestDiscountedSkipsMalformed(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	raw := rawClient(t, srv)
	ctx := context.Background()
	s := replicas(t, srv.URL(), "bad:", 1)[0]
	good := counters.DiscEntry{Key: kA, Disc: counters.Disc{Trials: 1, At: time.Unix(5, 0)}}
	if err := s.PutDiscounted(ctx, []counters.DiscEntry{good}); err != nil {
		t.Fatal(err)
	}
	raw.HSet(ctx, "bad:disc", "no-separators", discBytes(good.Disc), "e\x00a\x00s", "short")
	got, err := s.LoadDiscounted(ctx)
	if err != nil || len(got) != 1 || got[0].Key != kA {
		t.Fatalf("LoadDiscounted = %+v, %v; want only the good entry", got, err)
	}
}

func TestOffPolicyAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	t0 := time.Unix(1_700_000_000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	const m1, m2 = 1_699_999_980, 1_700_000_040
	a1 := minuteJSON(2, map[string]offpolicy.Sums{"x": {Served: 1, Expected: 0.5, W: 2, W2: 4, RW: 2, RW2: 4}})
	a1b := minuteJSON(3, map[string]offpolicy.Sums{"x": {Served: 2, Expected: 1, W: 4, W2: 8, RW: 2, RW2: 4}})
	b1 := minuteJSON(4, map[string]offpolicy.Sums{"x": {Served: 1, Expected: 2, W: 4, W2: 16}, "y": {Served: 3, Expected: 2, W: 6, W2: 12, RW: 2, RW2: 4}})
	c1 := minuteJSON(1, map[string]offpolicy.Sums{"y": {Served: 1, Expected: 0.5, W: 2, W2: 4, RW: 2, RW2: 4}})
	bc1 := minuteJSON(5, map[string]offpolicy.Sums{"x": {Served: 1, Expected: 2, W: 4, W2: 16}, "y": {Served: 4, Expected: 2.5, W: 8, W2: 16, RW: 4, RW2: 8}})
	ac1 := minuteJSON(3, map[string]offpolicy.Sums{"x": {Served: 1, Expected: 0.5, W: 2, W2: 4, RW: 2, RW2: 4}, "y": {Served: 1, Expected: 0.5, W: 2, W2: 4, RW: 2, RW2: 4}})
	ab1 := minuteJSON(6, map[string]offpolicy.Sums{"x": {Served: 2, Expected: 2.5, W: 6, W2: 20, RW: 2, RW2: 4}, "y": {Served: 3, Expected: 2, W: 6, W2: 12, RW: 2, RW2: 4}})

	rec := func(seg string, minute int64, v []byte) store.Record {
		return store.Record{Endpoint: "home", Segment: seg, Time: minute, Value: v}
	}
	type put struct {
		replica int
		at      time.Time
		recs    []store.Record
	}
	type others struct {
		replica int
		since   time.Time
		want    []store.Record
	}
	tests := []struct {
		name     string
		replicas int
		puts     []put
		loads    [][]store.Record // per replica
		others   []others
	}{
		{"two replicas, one minute",
			2,
			[]put{{0, ms(0), []store.Record{rec("all", m1, a1)}}, {1, ms(10), []store.Record{rec("all", m1, b1)}}},
			[][]store.Record{{rec("all", m1, a1)}, {rec("all", m1, b1)}},
			[]others{
				{0, time.Time{}, []store.Record{rec("all", m1, b1)}},
				{1, time.Time{}, []store.Record{rec("all", m1, a1)}},
			}},
		{"three replicas: the others are summed",
			3,
			[]put{
				{0, ms(0), []store.Record{rec("all", m1, a1)}},
				{1, ms(1), []store.Record{rec("all", m1, b1)}},
				{2, ms(2), []store.Record{rec("all", m1, c1)}},
			},
			[][]store.Record{{rec("all", m1, a1)}, {rec("all", m1, b1)}, {rec("all", m1, c1)}},
			[]others{
				{0, time.Time{}, []store.Record{rec("all", m1, bc1)}},
				{1, time.Time{}, []store.Record{rec("all", m1, ac1)}},
				{2, time.Time{}, []store.Record{rec("all", m1, ab1)}},
			}},
		{"a replica overwrites only its own snapshot; minutes only it wrote are not others'",
			2,
			[]put{
				{0, ms(0), []store.Record{rec("all", m1, a1), rec("all", m2, a1)}},
				{1, ms(1), []store.Record{rec("all", m1, b1)}},
				{0, ms(2), []store.Record{rec("all", m1, a1b)}},
			},
			[][]store.Record{{rec("all", m1, a1b), rec("all", m2, a1)}, {rec("all", m1, b1)}},
			[]others{
				{0, time.Time{}, []store.Record{rec("all", m1, b1)}},
				{1, time.Time{}, []store.Record{rec("all", m1, a1b), rec("all", m2, a1)}},
			}},
		{"since selects the minutes touched at or after it",
			2,
			[]put{
				{1, ms(1000), []store.Record{rec("all", m1, b1)}},
				{1, ms(2000), []store.Record{rec("s=1", m1, b1)}},
				{1, ms(5000), []store.Record{rec("s=2\x00z", m2, b1)}},
				// A's write touches m1 of "all" again, after B's.
				{0, ms(6000), []store.Record{rec("all", m1, a1)}},
			},
			[][]store.Record{{rec("all", m1, a1)}, {rec("all", m1, b1), rec("s=1", m1, b1), rec("s=2\x00z", m2, b1)}},
			[]others{
				{0, ms(2000), []store.Record{rec("all", m1, b1), rec("s=1", m1, b1), rec("s=2\x00z", m2, b1)}},
				{0, ms(2001), []store.Record{rec("all", m1, b1), rec("s=2\x00z", m2, b1)}},
				{0, ms(5001), []store.Record{rec("all", m1, b1)}},
				{0, ms(6001), nil},
				{1, ms(5001), []store.Record{rec("all", m1, a1)}},
				{1, ms(999), []store.Record{rec("all", m1, a1)}},
			}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := replicas(t, srv.URL(), fmt.Sprintf("op%d:", i), tc.replicas)
			for _, p := range tc.puts {
				rs[p.replica].now = func() time.Time { return p.at }
				if err := rs[p.replica].PutOffPolicy(ctx, minutesOf(p.recs)); err != nil {
					t.Fatal(err)
				}
			}
			for ri, want := range tc.loads {
				got, err := recordsOf(rs[ri].LoadOffPolicy(ctx))
				if err != nil {
					t.Fatal(err)
				}
				if !sameRecords(t, got, want) {
					t.Errorf("replica %d LoadOffPolicy = %s, want %s", ri, showRecords(got), showRecords(want))
				}
			}
			for _, o := range tc.others {
				got, err := recordsOf(rs[o.replica].OffPolicyOthers(ctx, o.since))
				if err != nil {
					t.Fatal(err)
				}
				if !sameRecords(t, got, o.want) {
					t.Errorf("replica %d OffPolicyOthers(since %v) = %s, want %s", o.replica, o.since.Sub(t0), showRecords(got), showRecords(o.want))
				}
			}
		})
	}
}

// sameRecords compares records, values as decoded offpolicy.Minutes.
func sameRecords(t *testing.T, got, want []store.Record) bool {
	t.Helper()
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Endpoint != w.Endpoint || g.Segment != w.Segment || g.Time != w.Time {
			return false
		}
		var gm, wm offpolicy.Minute
		if err := json.Unmarshal(g.Value, &gm); err != nil {
			t.Fatalf("record value %q: %v", g.Value, err)
		}
		if err := json.Unmarshal(w.Value, &wm); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gm, wm) {
			return false
		}
	}
	return true
}

func showRecords(rs []store.Record) string {
	var b bytes.Buffer
	for _, r := range rs {
		fmt.Fprintf(&b, "[%s/%q@%d %s]", r.Endpoint, r.Segment, r.Time, r.Value)
	}
	return b.String()
}

func TestReplicaID(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	open := func(id string) *Store {
		opt := onlineOpts()
		opt.Prefix, opt.ReplicaID = "rid:", id
		return openStore(t, srv.URL(), opt)
	}
	a, b := open(""), open("")
	for _, s := range []*Store{a, b} {
		if id, err := hex.DecodeString(s.ReplicaID()); err != nil || len(id) != 8 {
			t.Fatalf("default replica id %q, want 8 random bytes in hex", s.ReplicaID())
		}
	}
	if a.ReplicaID() == b.ReplicaID() {
		t.Fatalf("two replicas chose the same id %q", a.ReplicaID())
	}
	v := minuteJSON(2, map[string]offpolicy.Sums{"x": {Served: 1, W: 1}})
	r := store.Record{Endpoint: "home", Segment: "all", Time: 60, Value: v}

	tests := []struct {
		name       string
		id         string // of the restarted replica; "" a new random one
		wantLoaded bool   // it loads the first instance's snapshot back
	}{
		{"stable id: the restarted replica resumes its own sums", "host-1", true},
		{"random id: it starts from zero, the old snapshot is another replica's", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			first := open(tc.id)
			if err := first.PutOffPolicy(ctx, minutesOf([]store.Record{r})); err != nil {
				t.Fatal(err)
			}
			first.Close()
			again := open(tc.id)
			got, err := recordsOf(again.LoadOffPolicy(ctx))
			if err != nil {
				t.Fatal(err)
			}
			if loaded := len(got) == 1 && bytes.Equal(got[0].Value, v); loaded != tc.wantLoaded || (!tc.wantLoaded && len(got) != 0) {
				t.Fatalf("after restart LoadOffPolicy = %s, want loaded=%v", showRecords(got), tc.wantLoaded)
			}
			others, err := recordsOf(again.OffPolicyOthers(ctx, time.Time{}))
			if err != nil {
				t.Fatal(err)
			}
			if sawOld := len(others) == 1 && sameRecords(t, others, []store.Record{r}); sawOld == tc.wantLoaded {
				t.Fatalf("after restart OffPolicyOthers = %s", showRecords(others))
			}
			// Clean up for the next case: this prefix is shared.
			if _, err := again.PruneSeries(ctx, 1000, 0, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestManyPoints crosses the chunk size of every paged read and write.
func TestManyPoints(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	raw := rawClient(t, srv)
	ctx := context.Background()
	rs := replicas(t, srv.URL(), "many:", 2)
	const n = 3*chunk + 7
	var recs []store.Record
	for i := range n {
		r := store.Record{Endpoint: "home", Segment: "all", Time: int64(i) * 60, Value: minuteJSON(float64(i), nil)}
		if added, err := rs[i%2].AddHistory(ctx, r); err != nil || !added {
			t.Fatalf("add %d: %v, %v", i, added, err)
		}
		recs = append(recs, r)
	}
	if err := rs[0].PutOffPolicy(ctx, minutesOf(recs)); err != nil {
		t.Fatal(err)
	}
	h, err := rs[1].History(ctx, "home", "all", 0, 0)
	if err != nil || !sameRecords(t, h, recs) {
		t.Fatalf("History returned %d points (%v), want the %d added in order", len(h), err, n)
	}
	if got, err := recordsOf(rs[0].LoadOffPolicy(ctx)); err != nil || !sameRecords(t, got, recs) {
		t.Fatalf("LoadOffPolicy returned %d minutes (%v), want %d", len(got), err, n)
	}
	if got, err := recordsOf(rs[1].OffPolicyOthers(ctx, time.Time{})); err != nil || !sameRecords(t, got, recs) {
		t.Fatalf("OffPolicyOthers returned %d minutes (%v), want %d", len(got), err, n)
	}
	if d, err := rs[1].PruneSeries(ctx, n*60, 0, 0); err != nil || d != 2*n {
		t.Fatalf("PruneSeries deleted %d (%v), want %d", d, err, 2*n)
	}
	if left := keysUnder(t, raw, "many:"); len(left) != 0 {
		t.Fatalf("keys left after pruning everything: %d", len(left))
	}
}

// minutesOf turns records whose Values are the JSON of offpolicy.Minutes
// into PutOffPolicy's argument.
func minutesOf(recs []store.Record) map[offpolicy.Key]offpolicy.Minute {
	out := make(map[offpolicy.Key]offpolicy.Minute, len(recs))
	for _, r := range recs {
		var m offpolicy.Minute
		if err := m.UnmarshalBinary(r.Value); err != nil {
			panic(err)
		}
		out[offpolicy.Key{Endpoint: r.Endpoint, Segment: r.Segment, Minute: r.Time}] = m
	}
	return out
}

// recordsOf turns off-policy buckets back into records, sorted by
// endpoint, segment and minute, for comparisons.
func recordsOf(m map[offpolicy.Key]offpolicy.Minute, err error) ([]store.Record, error) {
	out := make([]store.Record, 0, len(m))
	for k, v := range m {
		raw, merr := v.MarshalBinary()
		if merr != nil {
			return nil, merr
		}
		out = append(out, store.Record{Endpoint: k.Endpoint, Segment: k.Segment, Time: k.Minute, Value: raw})
	}
	slices.SortFunc(out, func(a, b store.Record) int {
		return cmp.Or(strings.Compare(a.Endpoint, b.Endpoint), strings.Compare(a.Segment, b.Segment), cmp.Compare(a.Time, b.Time))
	})
	return out, err
}

func discBytes(d counters.Disc) []byte {
	v, _ := d.MarshalBinary()
	return v
}
