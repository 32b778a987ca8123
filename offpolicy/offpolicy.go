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
// clamped to [0, 1]. Rewards reach the minute the prediction was served in.
package offpolicy

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// BucketWidth is the resolution of from/to.
const BucketWidth = time.Minute

// Key names one minute of one segment of an endpoint.
type Key struct {
	Endpoint string
	Segment  string
	Minute   int64 // unix seconds of the minute's start
}

// Sums are one arm's running sums in one minute.
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

// Minute is one minute's sums: N predictions and the sums per arm.
type Minute struct {
	N    float64          `json:"n"`
	Arms map[string]*Sums `json:"arms"`
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

type minute struct {
	n     atomicFloat
	arms  sync.Map // arm -> *armSums
	dirty atomic.Bool
}

func (m *minute) arm(name string) *armSums {
	if a, ok := m.arms.Load(name); ok {
		return a.(*armSums)
	}
	a, _ := m.arms.LoadOrStore(name, new(armSums))
	return a.(*armSums)
}

func (m *minute) snapshot() Minute {
	out := Minute{N: m.n.load(), Arms: map[string]*Sums{}}
	m.arms.Range(func(k, v any) bool {
		a := v.(*armSums)
		out.Arms[k.(string)] = &Sums{Served: a.served.load(), Expected: a.expected.load(), W: a.w.load(),
			W2: a.w2.load(), RW: a.rw.load(), RW2: a.rw2.load()}
		return true
	})
	return out
}

// Table holds the sums. The zero value is ready to use; it is safe for
// concurrent use and takes no lock on the request path.
type Table struct {
	m sync.Map // Key -> *minute

	// others holds the sums of other replicas sharing a store, by minute,
	// as last read; Query adds them. Never touched on the request path.
	mu     sync.Mutex
	others map[Key]Minute
}

// SetOthers records other replicas' sums for the given minutes, replacing
// what was recorded for those minutes before.
func (t *Table) SetOthers(sums map[Key]Minute) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.others == nil {
		t.others = map[Key]Minute{}
	}
	for k, m := range sums {
		t.others[k] = m
	}
}

func (t *Table) minute(endpoint, segment string, at time.Time) *minute {
	k := Key{Endpoint: endpoint, Segment: segment, Minute: at.Unix() - at.Unix()%60}
	if m, ok := t.m.Load(k); ok {
		return m.(*minute)
	}
	m, _ := t.m.LoadOrStore(k, new(minute))
	return m.(*minute)
}

// Served records one prediction: arms are the endpoint's arms, shares the
// policy's probability of each when it chose, served the index of the arm
// that served and p its propensity.
func (t *Table) Served(endpoint, segment string, at time.Time, arms []string, shares []float64, served int, p float64) {
	m := t.minute(endpoint, segment, at)
	m.n.add(1)
	for i, name := range arms {
		if i < len(shares) && shares[i] > 0 {
			m.arm(name).expected.add(shares[i])
		}
	}
	if p > 0 && served >= 0 && served < len(arms) {
		a := m.arm(arms[served])
		a.served.add(1)
		a.w.add(1 / p)
		a.w2.add(1 / (p * p))
	}
	m.dirty.Store(true)
}

// Success records that a prediction served at `at` by arm with propensity
// p became a success.
func (t *Table) Success(endpoint, segment, arm string, at time.Time, p float64) {
	if !(p > 0) {
		return
	}
	m := t.minute(endpoint, segment, at)
	a := m.arm(arm)
	a.rw.add(1 / p)
	a.rw2.add(1 / (p * p))
	m.dirty.Store(true)
}

// Load adds stored sums (at start-up).
func (t *Table) Load(k Key, s Minute) {
	m := t.minute(k.Endpoint, k.Segment, time.Unix(k.Minute, 0))
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

// Dirty returns the minutes changed since the last call, as snapshots, for
// the store.
func (t *Table) Dirty() map[Key]Minute {
	out := map[Key]Minute{}
	t.m.Range(func(k, v any) bool {
		m := v.(*minute)
		if m.dirty.Swap(false) {
			out[k.(Key)] = m.snapshot()
		}
		return true
	})
	return out
}

// Forget drops the minutes before cutoff (retention).
func (t *Table) Forget(cutoff time.Time) {
	t.mu.Lock()
	for k := range t.others {
		if k.Minute < cutoff.Unix() {
			delete(t.others, k)
		}
	}
	t.mu.Unlock()
	t.m.Range(func(k, _ any) bool {
		if k.(Key).Minute < cutoff.Unix() {
			t.m.Delete(k)
		}
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
}

// Query sums the minutes of endpoint in [from, to) — every segment when
// segment is "" or "all" and the endpoint is segmented — and estimates.
// A zero from or to leaves that side open.
func (t *Table) Query(endpoint, segment string, allSegments bool, from, to time.Time) Result {
	var n float64
	sums := map[string]*Sums{}
	in := func(key Key) bool {
		if key.Endpoint != endpoint || (!allSegments && key.Segment != segment) {
			return false
		}
		return !(!from.IsZero() && key.Minute+60 <= from.Unix()) && !(!to.IsZero() && key.Minute >= to.Unix())
	}
	var minutes []Minute
	t.m.Range(func(k, v any) bool {
		if in(k.(Key)) {
			minutes = append(minutes, v.(*minute).snapshot())
		}
		return true
	})
	t.mu.Lock()
	for k, m := range t.others {
		if in(k) {
			minutes = append(minutes, m)
		}
	}
	t.mu.Unlock()
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
	return estimate(n, sums)
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
