package offpolicy

import (
	"math"
	"testing"
	"time"
)

// With constant propensities the estimates reduce to plain rates: ips =
// successes/p ÷ n, snips = successes ÷ served.
func TestEstimatesOnKnownSums(t *testing.T) {
	var tb Table
	at := time.Unix(1_764_000_000, 0)
	arms := []string{"a", "b"}
	for i := 0; i < 1000; i++ {
		served := i % 4 / 3 // b one time in four
		p := []float64{0.75, 0.25}[served]
		tb.Served("e", "all", at, arms, []float64{0.75, 0.25}, served, p)
		if (i/4)%10 == 0 {
			tb.Success("e", "all", arms[served], at, p)
		}
	}
	res := tb.Query("e", "all", false, time.Time{}, time.Time{})
	a, b := res.Arms["a"], res.Arms["b"]
	if res.N != 1000 || a.N != 1000 || b.N != 1000 || a.Served != 750 || b.Served != 250 {
		t.Fatalf("n %v, a %+v, b %+v", res.N, a, b)
	}
	// a: 75 successes of 750; b: 25 of 250 (every tenth request).
	for name, e := range map[string]*Estimate{"a": a, "b": b} {
		if math.Abs(e.SNIPS-0.1) > 1e-9 || math.Abs(e.IPS-0.1) > 1e-9 || !(e.CI95[0] < 0.1 && 0.1 < e.CI95[1]) {
			t.Fatalf("%s: %+v", name, e)
		}
	}
	if res.SRMPValue == nil || *res.SRMPValue < 0.5 {
		t.Fatalf("served exactly as expected, SRM p-value %v", res.SRMPValue)
	}
	// Ranges are by minute; other replicas' sums add in.
	if r := tb.Query("e", "all", false, at.Add(time.Minute), time.Time{}); r.N != 0 {
		t.Fatalf("a later range holds %v predictions", r.N)
	}
	tb.SetOthers(map[Key]Minute{{Endpoint: "e", Segment: "all", Minute: at.Unix() - at.Unix()%60}: {N: 1000, Arms: map[string]*Sums{
		"a": {Served: 750, Expected: 750, W: 1000, W2: 1333.33, RW: 100, RW2: 133.33}}}})
	if r := tb.Query("e", "all", false, time.Time{}, time.Time{}); r.N != 2000 || r.Arms["a"].N != 2000 || r.Arms["a"].Served != 1500 {
		t.Fatalf("with another replica's sums: n %v, a %+v", r.N, r.Arms["a"])
	}
}

// A segmented endpoint keeps one minute series across its segments and one
// day bucket per segment: a day of traffic over many segments is as many
// buckets as segments plus minutes, not their product. The endpoint-wide
// query equals the sum of the segments; a segment's range widens to days.
func TestSegmentedSeries(t *testing.T) {
	var tb Table
	day := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	arms := []string{"a", "b"}
	const segments, minutes = 50, 120
	for m := 0; m < minutes; m++ {
		at := day.Add(time.Duration(m) * time.Minute)
		for s := 0; s < segments; s++ {
			seg := "k=" + string(rune('A'+s%26)) + string(rune('a'+s/26))
			tb.Served("e", seg, at, arms, []float64{0.5, 0.5}, s%2, 0.5)
			if m%10 == 0 {
				tb.Success("e", seg, arms[s%2], at, 0.5)
			}
		}
	}
	buckets := 0
	tb.series.Range(func(_, v any) bool {
		v.(*series).buckets.Range(func(any, any) bool { buckets++; return true })
		return true
	})
	if want := minutes + segments; buckets != want {
		t.Fatalf("%d buckets, want %d (minutes + segments)", buckets, want)
	}
	all := tb.Query("e", "all", true, time.Time{}, time.Time{})
	if all.N != segments*minutes || all.Arms["a"].Served != segments*minutes/2 {
		t.Fatalf("all: n %v, a %+v", all.N, all.Arms["a"])
	}
	one := tb.Query("e", "k=Aa", false, time.Time{}, time.Time{})
	if one.N != minutes || one.Arms["a"].Served != minutes || math.Abs(one.Arms["a"].SNIPS-0.1) > 1e-9 {
		t.Fatalf("one segment: n %v, a %+v", one.N, one.Arms["a"])
	}
	// A range inside the day: the endpoint-wide sums resolve minutes, a
	// segment's the whole day.
	from, to := day.Add(30*time.Minute), day.Add(40*time.Minute)
	if r := tb.Query("e", "all", true, from, to); r.N != segments*10 {
		t.Fatalf("all in [30m, 40m): n %v", r.N)
	}
	if r := tb.Query("e", "k=Aa", false, from, to); r.N != minutes {
		t.Fatalf("segment in [30m, 40m): n %v, want the day's %d", r.N, minutes)
	}
	if r := tb.Query("e", "k=Aa", false, day.Add(24*time.Hour), time.Time{}); r.N != 0 {
		t.Fatalf("segment the next day: n %v", r.N)
	}
	// Dirty lists what changed since the last call, and only that.
	if d := tb.Dirty(); len(d) != minutes+segments {
		t.Fatalf("first Dirty: %d buckets", len(d))
	}
	tb.Served("e", "k=Aa", day.Add(time.Hour), arms, []float64{0.5, 0.5}, 0, 0.5)
	d := tb.Dirty()
	if len(d) != 2 {
		t.Fatalf("after one prediction Dirty lists %d buckets, want 2", len(d))
	}
	if _, ok := d[Key{Endpoint: "e", Segment: DaySeries("k=Aa"), Minute: day.Unix()}]; !ok {
		t.Fatalf("the segment's day bucket is not listed: %v", d)
	}
	// Retention drops buckets that ended before the cutoff.
	tb.Forget(day.Add(time.Hour))
	if r := tb.Query("e", "all", true, time.Time{}, time.Time{}); r.N != segments*(minutes-60)+1 {
		t.Fatalf("after Forget: n %v", r.N)
	}
	if r := tb.Query("e", "k=Aa", false, time.Time{}, time.Time{}); r.N != minutes+1 {
		t.Fatalf("the day bucket, not over yet, must stay: n %v", r.N)
	}
}

// Records of per-segment minute series written by earlier versions load,
// count in the endpoint-wide and the segment's queries, and are never
// listed as dirty (never written again).
func TestLegacySegmentMinutes(t *testing.T) {
	var tb Table
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC).Unix()
	tb.Load(Key{Endpoint: "e", Segment: "k=v", Minute: at}, Minute{N: 10, Arms: map[string]*Sums{"a": {Served: 10, Expected: 5, W: 20, W2: 40, RW: 4, RW2: 8}}})
	tb.Load(Key{Endpoint: "e", Segment: "k=w", Minute: at}, Minute{N: 6, Arms: map[string]*Sums{"a": {Served: 6, Expected: 3, W: 12, W2: 24}}})
	tb.Dirty()
	if r := tb.Query("e", "all", true, time.Time{}, time.Time{}); r.N != 16 || r.Arms["a"].Served != 16 {
		t.Fatalf("all: %+v", r)
	}
	if r := tb.Query("e", "k=v", false, time.Time{}, time.Time{}); r.N != 10 {
		t.Fatalf("k=v: %+v", r)
	}
	tb.Served("e", "k=v", time.Unix(at, 0).Add(48*time.Hour), []string{"a"}, []float64{1}, 0, 1)
	if r := tb.Query("e", "k=v", false, time.Time{}, time.Time{}); r.N != 11 {
		t.Fatalf("k=v after new traffic: %+v", r)
	}
	for k := range tb.Dirty() {
		if k.Segment == "k=v" || k.Segment == "k=w" {
			t.Fatalf("a legacy bucket was listed dirty: %+v", k)
		}
	}
}

func TestMinuteEncodingAndAdd(t *testing.T) {
	m := Minute{N: 3, Arms: map[string]*Sums{"mf@1": {Served: 3, Expected: 3, W: 1.5, W2: 2.25, RW: 1.5, RW2: 2.25}}}
	// The stored form is the JSON both stores have always kept.
	const golden = `{"n":3,"arms":{"mf@1":{"served":3,"expected":3,"w":1.5,"w2":2.25,"rw":1.5,"rw2":2.25}}}`
	raw, err := m.MarshalBinary()
	if err != nil || string(raw) != golden {
		t.Fatalf("MarshalBinary = %s, %v; want %s", raw, err, golden)
	}
	var back Minute
	if err := back.UnmarshalBinary(raw); err != nil || back.N != 3 || *back.Arms["mf@1"] != *m.Arms["mf@1"] {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
	if err := back.UnmarshalBinary([]byte("{")); err == nil {
		t.Fatal("UnmarshalBinary of malformed JSON succeeded")
	}

	var sum Minute
	sum.Add(m)
	sum.Add(Minute{N: 1, Arms: map[string]*Sums{"mf@1": {Served: 1, W: 1}, "mf@2": {Served: 1}, "gone": nil}})
	if sum.N != 4 || sum.Arms["mf@1"].Served != 4 || sum.Arms["mf@1"].W != 2.5 || sum.Arms["mf@2"].Served != 1 || sum.Arms["gone"] != nil {
		t.Fatalf("sum = %+v", sum)
	}
	if m.Arms["mf@1"].Served != 3 {
		t.Fatal("Add changed its argument's sums")
	}
}

// The doubly robust estimate on sums worked by hand. Per block of eight
// predictions, with q(k=a) = 0.3 and q(k=b) = 0.2 for arm a:
//
//	k=a: a served two at p = 0.5, one a success: terms 0.3 + 0.7/0.5 = 1.7
//	     and 0.3 − 0.3/0.5 = −0.3; b served two: 0.3 each.
//	k=b: a served one at p = 0.25, no success: 0.2 − 0.2/0.25 = −0.6;
//	     b served three at p = 0.75: 0.2 each.
//
// Σ terms = 2.0 and Σ terms² = 3.64 per block, so dr = 2/8 = 0.25 and, over
// 100 blocks, se = √((3.64/8 − 0.25²)/800) = 0.02215: [0.20659, 0.29341].
func TestDoublyRobustOnKnownSums(t *testing.T) {
	var tb Table
	day := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	at := day.Add(10 * time.Hour)
	arms := []string{"a", "b"}
	for i := 0; i < 100; i++ {
		for j := 0; j < 4; j++ {
			tb.Served("e", "k=a", at, arms, []float64{0.5, 0.5}, j/2, 0.5)
		}
		tb.Success("e", "k=a", "a", at, 0.5)
		tb.Served("e", "k=b", at, arms, []float64{0.25, 0.75}, 0, 0.25)
		for j := 0; j < 3; j++ {
			tb.Served("e", "k=b", at, arms, []float64{0.25, 0.75}, 1, 0.75)
		}
		tb.Success("e", "k=b", "b", at, 0.75)
	}
	q := func(seg string) float64 { return map[string]float64{"k=a": 0.3, "k=b": 0.2}[seg] }
	near := func(x, y float64) bool { return math.Abs(x-y) < 1e-5 }
	res := tb.Query("e", "all", true, time.Time{}, time.Time{})
	if len(res.BySegment) != 2 || res.BySegment["k=a"].N != 400 || res.BySegment["k=b"].N != 400 {
		t.Fatalf("by segment: %+v", res.BySegment)
	}
	dr, ci, ok := res.DR("a", q)
	if !ok || !near(dr, 0.25) || !near(ci[0], 0.25-1.96*math.Sqrt(0.3925/800)) || !near(ci[1], 0.25+1.96*math.Sqrt(0.3925/800)) {
		t.Fatalf("dr %v %v %v, want 0.25 [0.20659, 0.29341]", dr, ci, ok)
	}
	// One segment: k=b alone, dr = 0 + 0 = 0 (the −0.6 and 3 × 0.2 cancel).
	one := tb.Query("e", "k=b", false, time.Time{}, time.Time{})
	if dr, _, ok := one.DR("a", q); !ok || !near(dr, 0) || len(one.BySegment) != 1 {
		t.Fatalf("k=b: dr %v %v, %+v", dr, ok, one.BySegment)
	}
	// A range inside the day reads the segments' whole day, as a segment's
	// query does; a later day holds nothing.
	in := tb.Query("e", "all", true, at.Add(time.Hour), at.Add(2*time.Hour))
	if d, _, ok := in.DR("a", q); in.N != 0 || !ok || !near(d, 0.25) {
		t.Fatalf("range inside the day: n %v, dr %v %v", in.N, d, ok)
	}
	if _, _, ok := tb.Query("e", "all", true, day.Add(24*time.Hour), time.Time{}).DR("a", q); ok {
		t.Fatal("dr over a day without predictions")
	}
	// Another replica's day buckets add in, segment by segment: the same
	// traffic again leaves the estimate and halves the variance.
	tb.SetOthers(tb.Dirty())
	res = tb.Query("e", "all", true, time.Time{}, time.Time{})
	dr, ci, ok = res.DR("a", q)
	if !ok || res.BySegment["k=a"].N != 800 || !near(dr, 0.25) || !near(ci[1], 0.25+1.96*math.Sqrt(0.3925/1600)) {
		t.Fatalf("with another replica: dr %v %v, %+v", dr, ci, res.BySegment)
	}
}

// An arm served more often than its propensities expect and never clicked
// sums below 0: dr is clamped to [0, 1], as its interval is. One segment,
// q = 0.1: four predictions, all served by a at p = 0.5 (W = 8), no click:
// (0.1·(4 − 8) + 0)/4 = −0.1 → 0, every term −0.1 (se 0): [0, 0].
func TestDoublyRobustClamped(t *testing.T) {
	res := Result{BySegment: map[string]Minute{"all": {N: 4, Arms: map[string]*Sums{"a": {Served: 4, W: 8, W2: 16}}}}}
	dr, ci, ok := res.DR("a", func(string) float64 { return 0.1 })
	if !ok || dr != 0 || ci != [2]float64{0, 0} {
		t.Fatalf("dr %v %v %v, want 0 in [0, 0]", dr, ci, ok)
	}
}

// Which buckets the doubly robust estimate reads, per query: an endpoint
// without segment_by its "all" minutes (the range resolved to the minute,
// as snips'), a segmented one its segments' days and, for segments written
// by earlier versions, their legacy minutes.
func TestBySegment(t *testing.T) {
	var tb Table
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	arms := []string{"a"}
	for m := 0; m < 10; m++ {
		tb.Served("flat", "all", day.Add(time.Duration(m)*time.Minute), arms, []float64{1}, 0, 1)
		tb.Served("seg", "k=v", day.Add(time.Duration(m)*time.Minute), arms, []float64{1}, 0, 1)
	}
	tb.Load(Key{Endpoint: "seg", Segment: "k=old", Minute: day.Unix()}, Minute{N: 3, Arms: map[string]*Sums{"a": {Served: 3, W: 3, W2: 3}}})
	tb.Load(Key{Endpoint: "seg", Segment: "k=old", Minute: day.Add(-24 * time.Hour).Unix()}, Minute{N: 2, Arms: map[string]*Sums{"a": {Served: 2, W: 2, W2: 2}}})
	five := day.Add(5 * time.Minute)
	for _, tc := range []struct {
		name, endpoint, segment string
		all                     bool
		from                    time.Time
		want                    map[string]float64 // segment -> n
	}{
		{"flat, everything", "flat", "all", false, time.Time{}, map[string]float64{"all": 10}},
		{"flat, from the fifth minute", "flat", "all", false, five, map[string]float64{"all": 5}},
		{"segmented, everything", "seg", "all", true, time.Time{}, map[string]float64{"k=v": 10, "k=old": 5}},
		{"segmented, from the fifth minute: whole days, legacy minutes", "seg", "all", true, five, map[string]float64{"k=v": 10}},
		{"one segment", "seg", "k=v", false, time.Time{}, map[string]float64{"k=v": 10}},
		{"one legacy segment", "seg", "k=old", false, day, map[string]float64{"k=old": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tb.Query(tc.endpoint, tc.segment, tc.all, tc.from, time.Time{}).BySegment
			if len(got) != len(tc.want) {
				t.Fatalf("segments %v, want %v", got, tc.want)
			}
			for seg, n := range tc.want {
				if got[seg].N != n {
					t.Errorf("%s: n %v, want %v", seg, got[seg].N, n)
				}
			}
		})
	}
}
