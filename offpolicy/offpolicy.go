// Package offpolicy keeps the running sums behind the report's
// inverse-propensity estimates and its sample-ratio-mismatch check, per
// endpoint, segment and minute of serving time, so that a report over any
// range costs one pass over the minutes in it, however many predictions the
// log holds (incremental, not a scan of the log).
//
// For each served prediction i with propensity pᵢ of the arm that served it,
// and rᵢ = 1 if it became a success, the sums per arm A are: the number
// served, Σ p(A) over every prediction (the expected count), and over the
// predictions A served: W = Σ 1/pᵢ, W2 = Σ 1/pᵢ², RW = Σ rᵢ/pᵢ and RW2 = Σ
// rᵢ/pᵢ². With n the number of predictions in the range:
//
//	ips   = RW / n
//	snips = RW / W
//
// and the 95% interval of snips is snips ± 1.96·se by the delta method for
// the ratio of the means x̄ = RW/n and w̄ = W/n (xᵢ = rᵢ/pᵢ and wᵢ = 1/pᵢ for
// A's predictions, 0 otherwise; xᵢ² = xᵢwᵢ = rᵢ/pᵢ², wᵢ² = 1/pᵢ²):
//
//	se² = (Var x − 2·snips·Cov(x, w) + snips²·Var w) / (n · w̄²)
//
// clamped to [0, 1]. Rewards reach the bucket the prediction was served in.
//
// The doubly robust estimate (Result.DR) adds a direct-method model q(s, A),
// the arm's click rate in the prediction's segment s (the report passes the
// arm's posterior mean there), and corrects it by the logged rewards:
//
//	dr = (1/n) Σᵢ [q(sᵢ, A) + 1[aᵢ = A]·(rᵢ − q(sᵢ, A))/pᵢ]
//	   = (1/n) Σ_s [q(s, A)·(n_s − W_s) + RW_s]
//
// so it needs the sums per segment, which the day series keep (see
// BySegment). With tᵢ the bracket, rᵢ ∈ {0, 1} (rᵢ² = rᵢ) and q fixed,
//
//	Σ_{i in s} tᵢ² = n_s·q² + q²·W2_s − 2q²·W_s + 2q·RW_s − 2q·RW2_s + RW2_s
//
// and the 95% interval is dr ± 1.96·√((Σ tᵢ²/n − dr²)/n), clamped to [0, 1];
// dr itself is clamped to [0, 1] too (the sum can leave it by chance).
//
// State is bounded by the number of segments, not by time: an endpoint's
// sums across its segments are kept per minute (series "all" for an
// endpoint without segment_by, AggregateSeries for one with), and each
// segment's per day (DaySeries), so the minutes kept for the retention do
// not multiply by the segments. A segment's from/to are therefore widened to
// whole UTC days. Records written per segment and minute by earlier versions
// (legacy series) are still loaded, queried and pruned, never written again.
package offpolicy

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/modelgate/modelgate/counters"
)

// BucketWidth is the resolution of from/to for the endpoint-wide sums;
// DayWidth is a segment's.
const (
	BucketWidth = time.Minute
	DayWidth    = 24 * time.Hour
)

// Series names as stored (Key.Segment): an endpoint with
// segment_by keeps its sums across segments in AggregateSeries (minutes)
// and each segment's in DaySeries(segment) (days); an endpoint without one
// keeps them in its only segment, "all" (minutes).
const (
	AggregateSeries = "*"
	// No segment name starts with '%': it starts with a segment_by key,
	// which holds no '%', or is "all" or "other".
	dayPrefix = "%day:"
)

// DaySeries is the stored series name of one segment's daily sums.
func DaySeries(segment string) string { return dayPrefix + segment }

// width is the bucket width, in seconds, of a stored series.
func width(series string) int64 {
	if strings.HasPrefix(series, dayPrefix) {
		return int64(DayWidth / time.Second)
	}
	return int64(BucketWidth / time.Second)
}

// Key names one bucket of one series of an endpoint, as stored: Segment is
// the series name (see AggregateSeries, DaySeries) and Minute the unix
// seconds of the bucket's start.
type Key struct {
	Endpoint string
	Segment  string
	Minute   int64
}

// Sums are one arm's running sums in one bucket.
type Sums struct {
	Served   float64 `json:"served"`
	Expected float64 `json:"expected"`
	W        float64 `json:"w"`
	W2       float64 `json:"w2"`
	RW       float64 `json:"rw"`
	RW2      float64 `json:"rw2"`
}

// Add adds o's sums to s; a nil o adds nothing.
func (s *Sums) Add(o *Sums) {
	if o == nil {
		return
	}
	s.Served += o.Served
	s.Expected += o.Expected
	s.W += o.W
	s.W2 += o.W2
	s.RW += o.RW
	s.RW2 += o.RW2
}

// Minute is one bucket's sums: N predictions and the sums per arm.
type Minute struct {
	N    float64          `json:"n"`
	Arms map[string]*Sums `json:"arms"`
}

// MarshalBinary returns m's storage encoding, its JSON, as both stores
// keep it.
func (m Minute) MarshalBinary() ([]byte, error) { return json.Marshal(m) }

// UnmarshalBinary sets m from MarshalBinary's encoding.
func (m *Minute) UnmarshalBinary(b []byte) error {
	var v Minute
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("off-policy minute: %w", err)
	}
	*m = v
	return nil
}

// Add adds o's sums to m, arm by arm; nil arms of o add nothing.
func (m *Minute) Add(o Minute) {
	m.N += o.N
	for name, a := range o.Arms {
		if a == nil {
			continue
		}
		if m.Arms == nil {
			m.Arms = map[string]*Sums{}
		}
		x := m.Arms[name]
		if x == nil {
			x = &Sums{}
			m.Arms[name] = x
		}
		x.Add(a)
	}
}

// Store keeps this process's sums across restarts. PutOffPolicy replaces
// the stored snapshot of each bucket given (a snapshot is cumulative);
// LoadOffPolicy returns every stored one, skipping malformed ones. When
// replicas share the store, each stores and loads only its own snapshots.
type Store interface {
	PutOffPolicy(ctx context.Context, buckets map[Key]Minute) error
	LoadOffPolicy(ctx context.Context) (map[Key]Minute, error)
}

// Others reads what other replicas sharing a store counted: for every
// bucket some replica wrote at or after since (by the writer's clock; zero
// means every bucket), the sum of the other replicas' snapshots of it,
// for Table.SetOthers.
type Others interface {
	OffPolicyOthers(ctx context.Context, since time.Time) (map[Key]Minute, error)
}

type atomicFloat struct{ bits atomic.Uint64 }

func (a *atomicFloat) add(x float64) {
	for {
		old := a.bits.Load()
		if a.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+x)) {
			return
		}
	}
}

func (a *atomicFloat) load() float64 { return math.Float64frombits(a.bits.Load()) }

type armSums struct{ served, expected, w, w2, rw, rw2 atomicFloat }

type bucket struct {
	key   Key
	n     atomicFloat
	arms  sync.Map // arm -> *armSums
	dirty atomic.Bool
}

func (m *bucket) arm(name string) *armSums {
	if a, ok := m.arms.Load(name); ok {
		return a.(*armSums)
	}
	a, _ := m.arms.LoadOrStore(name, new(armSums))
	return a.(*armSums)
}

func (m *bucket) snapshot() Minute {
	out := Minute{N: m.n.load(), Arms: map[string]*Sums{}}
	m.arms.Range(func(k, v any) bool {
		a := v.(*armSums)
		out.Arms[k.(string)] = &Sums{Served: a.served.load(), Expected: a.expected.load(), W: a.w.load(),
			W2: a.w2.load(), RW: a.rw.load(), RW2: a.rw2.load()}
		return true
	})
	return out
}

type seriesKey struct{ endpoint, series string }

// series is one stored series' buckets, by start.
type series struct {
	buckets sync.Map // int64 -> *bucket
}

// Table holds the sums. The zero value is ready to use; it is safe for
// concurrent use and takes no lock on the request path (but the first
// change of a bucket since the last Dirty, which lists it).
type Table struct {
	series sync.Map // seriesKey -> *series

	// legacy lists, per endpoint, the per-segment minute series loaded
	// from earlier versions' records (see the package comment).
	legacy sync.Map // endpoint -> *sync.Map (series name -> struct{})

	mu    sync.Mutex
	dirty []*bucket
	// others holds the sums of other replicas sharing a store, per series
	// and bucket, as last read; Query adds them. Never touched on the
	// request path.
	others map[seriesKey]map[int64]Minute
}

// SetOthers records other replicas' sums for the given buckets, replacing
// what was recorded for those buckets before.
func (t *Table) SetOthers(sums map[Key]Minute) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.others == nil {
		t.others = map[seriesKey]map[int64]Minute{}
	}
	for k, m := range sums {
		t.noteLegacy(k)
		sk := seriesKey{k.Endpoint, k.Segment}
		if t.others[sk] == nil {
			t.others[sk] = map[int64]Minute{}
		}
		t.others[sk][k.Minute] = m
	}
}

// noteLegacy registers k's series when it is a legacy per-segment minute
// series, so queries of its endpoint read it.
func (t *Table) noteLegacy(k Key) {
	if k.Segment == counters.AllSegment || k.Segment == AggregateSeries || strings.HasPrefix(k.Segment, dayPrefix) {
		return
	}
	v, _ := t.legacy.LoadOrStore(k.Endpoint, new(sync.Map))
	v.(*sync.Map).Store(k.Segment, struct{}{})
}

func (t *Table) bucket(endpoint, name string, at int64) *bucket {
	sk := seriesKey{endpoint, name}
	v, ok := t.series.Load(sk)
	if !ok {
		v, _ = t.series.LoadOrStore(sk, new(series))
	}
	sr := v.(*series)
	start := at - at%width(name)
	if b, ok := sr.buckets.Load(start); ok {
		return b.(*bucket)
	}
	b, _ := sr.buckets.LoadOrStore(start, &bucket{key: Key{Endpoint: endpoint, Segment: name, Minute: start}})
	return b.(*bucket)
}

func (t *Table) markDirty(b *bucket) {
	if !b.dirty.Swap(true) {
		t.mu.Lock()
		t.dirty = append(t.dirty, b)
		t.mu.Unlock()
	}
}

// seriesOf names the series a prediction of segment is summed into.
func seriesOf(segment string) []string {
	if segment == counters.AllSegment {
		return []string{counters.AllSegment}
	}
	return []string{AggregateSeries, DaySeries(segment)}
}

// Served records one prediction: arms are the endpoint's arms, shares the
// policy's probability of each when it chose, served the index of the arm
// that served and p its propensity.
func (t *Table) Served(endpoint, segment string, at time.Time, arms []string, shares []float64, served int, p float64) {
	for _, name := range seriesOf(segment) {
		m := t.bucket(endpoint, name, at.Unix())
		m.n.add(1)
		for i, arm := range arms {
			if i < len(shares) && shares[i] > 0 {
				m.arm(arm).expected.add(shares[i])
			}
		}
		if p > 0 && served >= 0 && served < len(arms) {
			a := m.arm(arms[served])
			a.served.add(1)
			a.w.add(1 / p)
			a.w2.add(1 / (p * p))
		}
		t.markDirty(m)
	}
}

// Success records that a prediction served at `at` by arm with propensity
// p became a success: its reward r went from 0 to 1.
func (t *Table) Success(endpoint, segment, arm string, at time.Time, p float64) {
	t.Reward(endpoint, segment, arm, at, p, 0, 1)
}

// Reward records that the reward r of a prediction served at `at` by arm
// with propensity p rose from before to after (value rewards: its capped,
// normalised reward, which grows event by event, in [0, 1]). The sums get
// the difference of r/p and of r²/p², so they hold each prediction's final
// r exactly as if it had been recorded once.
func (t *Table) Reward(endpoint, segment, arm string, at time.Time, p, before, after float64) {
	if !(p > 0) || !(after > before) {
		return
	}
	for _, name := range seriesOf(segment) {
		m := t.bucket(endpoint, name, at.Unix())
		a := m.arm(arm)
		a.rw.add((after - before) / p)
		a.rw2.add((after*after - before*before) / (p * p))
		t.markDirty(m)
	}
}

// Load adds stored sums (at start-up). A record of a per-segment minute
// series (written by an earlier version) is kept as a legacy series.
func (t *Table) Load(k Key, s Minute) {
	t.noteLegacy(k)
	m := t.bucket(k.Endpoint, k.Segment, k.Minute)
	m.n.add(s.N)
	for name, a := range s.Arms {
		x := m.arm(name)
		x.served.add(a.Served)
		x.expected.add(a.Expected)
		x.w.add(a.W)
		x.w2.add(a.W2)
		x.rw.add(a.RW)
		x.rw2.add(a.RW2)
	}
}

// Dirty returns the buckets changed since the last call, as snapshots, for
// the store. It costs the number of changed buckets, not of all buckets.
func (t *Table) Dirty() map[Key]Minute {
	t.mu.Lock()
	list := t.dirty
	t.dirty = nil
	t.mu.Unlock()
	out := make(map[Key]Minute, len(list))
	for _, b := range list {
		// Cleared before the snapshot: a change after this is listed anew.
		b.dirty.Store(false)
		out[b.key] = b.snapshot()
	}
	return out
}

// Forget drops the buckets that ended before cutoff (retention).
func (t *Table) Forget(cutoff time.Time) {
	c := cutoff.Unix()
	t.mu.Lock()
	for sk, bs := range t.others {
		for start := range bs {
			if start+width(sk.series) <= c {
				delete(bs, start)
			}
		}
		if len(bs) == 0 {
			delete(t.others, sk)
		}
	}
	t.mu.Unlock()
	t.series.Range(func(k, v any) bool {
		w := width(k.(seriesKey).series)
		v.(*series).buckets.Range(func(start, _ any) bool {
			if start.(int64)+w <= c {
				v.(*series).buckets.Delete(start)
			}
			return true
		})
		return true
	})
}

// Estimate is one arm's off-policy estimate. N is every logged prediction
// of the range; Served is how many of them the arm served.
type Estimate struct {
	N      int        `json:"n"`
	Served int        `json:"served"`
	IPS    float64    `json:"ips"`
	SNIPS  float64    `json:"snips"`
	CI95   [2]float64 `json:"ci95"`
}

// Result is the estimates of every arm with logged predictions, and the
// sample-ratio-mismatch p-value (nil without enough data).
type Result struct {
	Arms      map[string]*Estimate
	SRMPValue *float64
	N         float64
	// BySegment holds the sums per segment behind DR: each segment's
	// day buckets overlapping the range (a range inside a day counts the
	// whole day, as a segment's query does), the minutes of the "all"
	// series and of legacy per-segment series in the range.
	BySegment map[string]Minute
}

// DR returns arm's doubly robust estimate and its 95% interval (see the
// package comment), q(segment) giving the direct-method click rate of arm
// in a segment. ok is false when BySegment holds no prediction.
func (r Result) DR(arm string, q func(segment string) float64) (dr float64, ci [2]float64, ok bool) {
	var n, sum, sq float64
	for seg, m := range r.BySegment {
		n += m.N
		qs := q(seg)
		sum += qs * m.N
		sq += qs * qs * m.N
		if a := m.Arms[arm]; a != nil {
			sum += a.RW - qs*a.W
			sq += qs*qs*(a.W2-2*a.W) + 2*qs*(a.RW-a.RW2) + a.RW2
		}
	}
	if !(n > 0) {
		return 0, ci, false
	}
	dr = sum / n
	se := math.Sqrt(math.Max(sq/n-dr*dr, 0) / n)
	// The sum can leave [0, 1] (an arm served more often than its
	// propensities expect, with few clicks): a rate is reported clamped,
	// and so is each end of its interval, which therefore contains it.
	clamp := func(x float64) float64 { return math.Min(1, math.Max(0, x)) }
	return clamp(dr), [2]float64{clamp(dr - 1.96*se), clamp(dr + 1.96*se)}, true
}

// Query sums the buckets of endpoint in [from, to) — every segment when
// segment is "" or "all" and the endpoint is segmented (or allSegments) —
// and estimates. A zero from or to leaves that side open. A segment's
// buckets are days: a bucket counts when it overlaps the range. It costs
// the buckets of the series it reads, not every bucket kept, plus, for
// Result.BySegment, a look at every series' name and the segments' buckets
// in the range.
func (t *Table) Query(endpoint, segment string, allSegments bool, from, to time.Time) Result {
	var names []string
	if allSegments || segment == "" || segment == counters.AllSegment {
		names = []string{counters.AllSegment, AggregateSeries}
		if v, ok := t.legacy.Load(endpoint); ok {
			v.(*sync.Map).Range(func(k, _ any) bool {
				names = append(names, k.(string))
				return true
			})
		}
	} else {
		names = []string{DaySeries(segment)}
		if v, ok := t.legacy.Load(endpoint); ok {
			if _, ok := v.(*sync.Map).Load(segment); ok {
				names = append(names, segment)
			}
		}
	}
	in := func(name string, start int64) bool { return inRange(name, start, from, to) }
	var minutes []Minute
	for _, name := range names {
		if v, ok := t.series.Load(seriesKey{endpoint, name}); ok {
			v.(*series).buckets.Range(func(k, b any) bool {
				if in(name, k.(int64)) {
					minutes = append(minutes, b.(*bucket).snapshot())
				}
				return true
			})
		}
	}
	t.mu.Lock()
	for _, name := range names {
		for start, m := range t.others[seriesKey{endpoint, name}] {
			if in(name, start) {
				minutes = append(minutes, m)
			}
		}
	}
	t.mu.Unlock()
	res := estimate(minutesSum(minutes))
	res.BySegment = t.bySegment(endpoint, segment, allSegments, from, to)
	return res
}

// bySegment sums, per segment, the buckets of the range that keep a
// segment's predictions apart: day series (widened to whole days), the
// "all" series and legacy per-segment minutes. For every segment it reads
// every series of the table to find the endpoint's day series.
func (t *Table) bySegment(endpoint, segment string, allSegments bool, from, to time.Time) map[string]Minute {
	want := func(name string) (string, bool) {
		seg, day := strings.CutPrefix(name, dayPrefix)
		switch {
		case name == AggregateSeries:
			return "", false
		case allSegments || segment == "" || segment == counters.AllSegment:
			return seg, true
		default:
			return seg, seg == segment && (day || name == segment)
		}
	}
	in := func(name string, start int64) bool { return inRange(name, start, from, to) }
	out := map[string]Minute{}
	add := func(seg string, m Minute) {
		x := out[seg]
		x.Add(m)
		out[seg] = x
	}
	// Only the wanted series' buckets in the range are snapshotted: not
	// the endpoint-wide minutes of a segmented endpoint, which hold no
	// segment.
	t.series.Range(func(k, v any) bool {
		sk := k.(seriesKey)
		if seg, ok := want(sk.series); ok && sk.endpoint == endpoint {
			v.(*series).buckets.Range(func(start, b any) bool {
				if in(sk.series, start.(int64)) {
					add(seg, b.(*bucket).snapshot())
				}
				return true
			})
		}
		return true
	})
	t.mu.Lock()
	for sk, bs := range t.others {
		if seg, ok := want(sk.series); ok && sk.endpoint == endpoint {
			for start, m := range bs {
				if in(sk.series, start) {
					add(seg, m)
				}
			}
		}
	}
	t.mu.Unlock()
	return out
}

// inRange tells whether the bucket of series name starting at start
// overlaps [from, to); a zero from or to leaves that side open.
func inRange(name string, start int64, from, to time.Time) bool {
	return !(!from.IsZero() && start+width(name) <= from.Unix()) && !(!to.IsZero() && start >= to.Unix())
}

// minutesSum adds up buckets: the predictions and each arm's sums.
func minutesSum(minutes []Minute) (float64, map[string]*Sums) {
	var n float64
	sums := map[string]*Sums{}
	for _, s := range minutes {
		n += s.N
		for name, a := range s.Arms {
			x := sums[name]
			if x == nil {
				x = &Sums{}
				sums[name] = x
			}
			x.Add(a)
		}
	}
	return n, sums
}

func estimate(n float64, sums map[string]*Sums) Result {
	res := Result{Arms: map[string]*Estimate{}, N: n}
	if n == 0 {
		return res
	}
	names := make([]string, 0, len(sums))
	for name := range sums {
		names = append(names, name)
	}
	sort.Strings(names)
	var chi2 float64
	df := -1
	for _, name := range names {
		s := sums[name]
		if s.Expected > 0 {
			d := s.Served - s.Expected
			chi2 += d * d / s.Expected
			df++
		}
		if s.W <= 0 {
			continue
		}
		// N is every logged prediction in the range (the n of ips), not
		// just the arm's: the estimate is of the arm serving all of them.
		e := &Estimate{N: int(math.Round(n)), Served: int(math.Round(s.Served)), IPS: s.RW / n, SNIPS: s.RW / s.W}
		xbar, wbar := s.RW/n, s.W/n
		varX := s.RW2/n - xbar*xbar
		varW := s.W2/n - wbar*wbar
		cov := s.RW2/n - xbar*wbar
		v := (varX - 2*e.SNIPS*cov + e.SNIPS*e.SNIPS*varW) / (n * wbar * wbar)
		se := math.Sqrt(math.Max(v, 0))
		e.CI95 = [2]float64{math.Max(0, e.SNIPS-1.96*se), math.Min(1, e.SNIPS+1.96*se)}
		res.Arms[name] = e
	}
	if df >= 1 {
		p := distuv.ChiSquared{K: float64(df)}.Survival(chi2)
		res.SRMPValue = &p
	}
	return res
}
