package sim

import (
	"context"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/modelgate/modelgate/bandit"
)

// Point is the cumulative regret after T steps, over all runs.
type Point struct {
	T int `json:"t"`
	// RegretMean is the mean over runs of the cumulative pseudo-regret after
	// T steps. It, RegretStderr and LaiRobbins are rounded to 6 decimals.
	RegretMean float64 `json:"regret_mean"`
	// RegretStderr is its standard error: the runs' sample standard
	// deviation over √runs (0 with one run).
	RegretStderr float64 `json:"regret_stderr"`
	// LaiRobbins is C·ln T for a stationary environment, nil otherwise.
	LaiRobbins *float64 `json:"lai_robbins,omitempty"`
}

// Result is the outcome of Run. Its JSON form is the simulator's output:
// policy, horizon, runs, the final regret_mean and regret_stderr, lai_robbins
// (C·ln horizon, null when the environment is not stationary) and
// checkpoints, then the extra fields lai_robbins_c, lai_robbins_note, batch
// and seed.
type Result struct {
	Policy       string   `json:"policy"`
	Horizon      int      `json:"horizon"`
	Runs         int      `json:"runs"`
	RegretMean   float64  `json:"regret_mean"`
	RegretStderr float64  `json:"regret_stderr"`
	LaiRobbins   *float64 `json:"lai_robbins"`
	// Checkpoints are the default checkpoints (see Checkpoints) and the
	// Config's extra Points, in increasing order of T.
	Checkpoints []Point `json:"checkpoints"`
	// LaiRobbinsC is the constant C of the bound, nil when undefined.
	LaiRobbinsC *float64 `json:"lai_robbins_c,omitempty"`
	// LaiRobbinsNote says what kind of bound LaiRobbins is (LaiRobbinsNote),
	// empty when undefined.
	LaiRobbinsNote string `json:"lai_robbins_note,omitempty"`
	Batch          int    `json:"batch"`
	Seed           uint64 `json:"seed"`
	// Curve is the regret at every recorded step, checkpoints included,
	// dense enough to plot on a linear or a logarithmic axis.
	Curve []Point `json:"-"`
	// Label names the result in plots and tables; Run sets it to Policy.
	Label string `json:"-"`
}

// At returns the recorded point for step t, if t was recorded.
func (r *Result) At(t int) (Point, bool) {
	i, ok := slices.BinarySearchFunc(r.Curve, t, func(p Point, t int) int { return p.T - t })
	if !ok {
		return Point{}, false
	}
	return r.Curve[i], true
}

// Run plays cfg.Runs independent runs of cfg and summarizes their regret.
// It returns an error wrapping ErrConfig if cfg is invalid, or ctx's error if
// ctx is done first.
//
// The result depends only on cfg (Workers aside): each run's random sources
// are seeded from (cfg.Seed, run index) and runs are combined in order. Each
// run uses two sources, one for the environment (initial rates, churn, new
// rates, clicks) and one for the policy, so that at a given seed every policy
// meets the same churn and the same new arms. Run is safe for concurrent use.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	points := recordPoints(cfg.Horizon, cfg.Points)
	workers := cfg.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, cfg.Runs)

	stats := make([]welford, len(points))
	var (
		next      atomic.Int64
		mu        sync.Mutex
		pending   = map[int][]float64{}
		nextMerge int
		wg        sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			r := newRunner(&cfg, points)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.Runs {
					return
				}
				out := make([]float64, len(points))
				if !r.run(ctx, i, out) {
					return
				}
				// Combine in run order, whichever worker finishes first,
				// so that sums are rounded the same on any core count.
				mu.Lock()
				pending[i] = out
				for {
					o, ok := pending[nextMerge]
					if !ok {
						break
					}
					for j, v := range o {
						stats[j].add(v)
					}
					delete(pending, nextMerge)
					nextMerge++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	res := &Result{
		Policy:  cfg.Policy.name(),
		Label:   cfg.Policy.name(),
		Horizon: cfg.Horizon,
		Runs:    cfg.Runs,
		Batch:   max(cfg.Batch, 1),
		Seed:    cfg.Seed,
		Curve:   make([]Point, len(points)),
	}
	var lrc float64
	if cfg.Stationary() {
		lrc = LaiRobbinsConstant(cfg.Rates)
		res.LaiRobbinsC = &lrc
		res.LaiRobbinsNote = LaiRobbinsNote
	}
	for i, t := range points {
		p := Point{T: t, RegretMean: round6(stats[i].mean), RegretStderr: round6(stats[i].stderr())}
		if res.LaiRobbinsC != nil {
			lr := round6(lrc * math.Log(float64(t)))
			p.LaiRobbins = &lr
		}
		res.Curve[i] = p
	}
	for _, t := range append(Checkpoints(cfg.Horizon), cfg.Points...) {
		p, _ := res.At(t)
		res.Checkpoints = append(res.Checkpoints, p)
	}
	slices.SortFunc(res.Checkpoints, func(a, b Point) int { return a.T - b.T })
	res.Checkpoints = slices.CompactFunc(res.Checkpoints, func(a, b Point) bool { return a.T == b.T })
	last := res.Curve[len(res.Curve)-1]
	res.RegretMean, res.RegretStderr, res.LaiRobbins = last.RegretMean, last.RegretStderr, last.LaiRobbins
	return res, nil
}

// round6 rounds to 6 decimals, far below any standard error, so that the
// output reads 0.9 rather than 0.8999999999999998.
func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// welford accumulates a mean and variance in one pass (Welford 1962).
type welford struct {
	n        int
	mean, m2 float64
}

func (w *welford) add(x float64) {
	w.n++
	d := x - w.mean
	w.mean += d / float64(w.n)
	w.m2 += d * (x - w.mean)
}

func (w *welford) stderr() float64 {
	if w.n < 2 {
		return 0
	}
	return math.Sqrt(w.m2 / float64(w.n-1) / float64(w.n))
}

// kind is a policy name resolved once, for the inner loop's switch.
type kind uint8

const (
	kThompson kind = iota
	kUniform
	kEpsilonGreedy
	kUCB1
	kDiscounted
)

func kindOf(name string) kind {
	switch name {
	case Uniform:
		return kUniform
	case EpsilonGreedy:
		return kEpsilonGreedy
	case UCB1:
		return kUCB1
	case DiscountedThompson:
		return kDiscounted
	}
	return kThompson
}

// runner plays runs one after another on one goroutine; all its state is
// allocated once, so a step allocates nothing.
type runner struct {
	cfg    *Config
	kind   kind
	policy bandit.Policy
	points []int
	newArm bandit.Prior
	envSrc *rand.PCG
	env    *rand.Rand
	polSrc *rand.PCG
	pol    *rand.Rand
	rates  []float64
	arms   []bandit.Arm
	pendT  []uint64 // feedback held until the next flush
	pendS  []float64
	dS, dF []float64 // discounted successes and failures as of step last
	last   []int
}

func newRunner(cfg *Config, points []int) *runner {
	k := cfg.Arms()
	r := &runner{
		cfg:    cfg,
		kind:   kindOf(cfg.Policy.name()),
		points: points,
		envSrc: rand.NewPCG(0, 0),
		polSrc: rand.NewPCG(0, 0),
		rates:  make([]float64, k),
		arms:   make([]bandit.Arm, k),
		pendT:  make([]uint64, k),
		pendS:  make([]float64, k),
		dS:     make([]float64, k),
		dF:     make([]float64, k),
		last:   make([]int, k),
	}
	r.env = rand.New(r.envSrc)
	r.pol = rand.New(r.polSrc)
	r.policy = bandit.Policy{Prior: cfg.Policy.Prior, MinShare: cfg.Policy.MinShare}
	if r.kind == kUniform {
		r.policy.Kind = bandit.Uniform
	}
	switch {
	case cfg.NewArmPrior != nil:
		r.newArm = *cfg.NewArmPrior
	case cfg.ArmPrior != nil:
		r.newArm = *cfg.ArmPrior
	}
	return r
}

// mix is SplitMix64's finalizer: it turns run indices into well-spread PCG
// stream words.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// reset gives arm i a fresh posterior (the prior) from step t on.
func (r *runner) reset(i, t int) {
	r.arms[i] = bandit.Arm{Active: true}
	r.pendT[i], r.pendS[i] = 0, 0
	r.dS[i], r.dF[i] = 0, 0
	r.last[i] = t
}

// flush applies the held feedback at step t.
func (r *runner) flush(t int) {
	h := r.cfg.Policy.HalfLife
	for i, n := range r.pendT {
		if n == 0 {
			continue
		}
		s := r.pendS[i]
		if r.kind == kDiscounted {
			dt := float64(t - r.last[i])
			r.dS[i] = bandit.Discount(r.dS[i], dt, h) + s
			r.dF[i] = bandit.Discount(r.dF[i], dt, h) + float64(n) - s
			r.last[i] = t
		} else {
			r.arms[i].Trials += n
			r.arms[i].Successes += s
		}
		r.pendT[i], r.pendS[i] = 0, 0
	}
}

func bestOf(rates []float64) float64 { return slices.Max(rates) }

// run plays run number idx, writing the cumulative regret at each of
// r.points into out. It returns false if ctx was done first.
func (r *runner) run(ctx context.Context, idx int, out []float64) bool {
	cfg := r.cfg
	r.envSrc.Seed(cfg.Seed, mix(2*uint64(idx)))
	r.polSrc.Seed(cfg.Seed, mix(2*uint64(idx)+1))
	if cfg.Rates != nil {
		copy(r.rates, cfg.Rates)
	} else {
		for i := range r.rates {
			r.rates[i] = bandit.SampleBeta(r.env, cfg.ArmPrior.Alpha, cfg.ArmPrior.Beta)
		}
	}
	for i := range r.arms {
		r.reset(i, 0)
	}
	best := bestOf(r.rates)
	batch := max(cfg.Batch, 1)
	h := cfg.Policy.HalfLife
	eps, c := cfg.Policy.Epsilon, cfg.Policy.UCBC
	regret := 0.0
	nextChg, pi := 0, 0
	for t := 1; t <= cfg.Horizon; t++ {
		if t&0xffff == 0 && ctx.Err() != nil {
			return false
		}
		if nextChg < len(cfg.Changes) && cfg.Changes[nextChg].At == t {
			copy(r.rates, cfg.Changes[nextChg].Rates)
			best = bestOf(r.rates)
			nextChg++
		}
		// The churn coin is tossed at every step, whatever the policy, so
		// that the environment's draws are the same for every policy.
		if cfg.Churn > 0 && r.env.Float64() < cfg.Churn {
			i := r.env.IntN(len(r.rates))
			r.rates[i] = bandit.SampleBeta(r.env, r.newArm.Alpha, r.newArm.Beta)
			r.reset(i, t)
			best = bestOf(r.rates)
		}
		var a int
		switch r.kind {
		case kThompson, kUniform:
			a = r.policy.Choose(r.pol, r.arms)
		case kDiscounted:
			for i := range r.arms {
				f := bandit.Discount(1, float64(t-r.last[i]), h)
				r.arms[i].PseudoSuccesses = r.dS[i] * f
				r.arms[i].PseudoFailures = r.dF[i] * f
			}
			a = r.policy.Choose(r.pol, r.arms)
		case kEpsilonGreedy:
			a = bandit.EpsilonGreedy(r.pol, r.arms, eps)
		case kUCB1:
			a = bandit.UCB1(r.pol, r.arms, c)
		}
		regret += best - r.rates[a]
		r.pendT[a]++
		if u := r.env.Float64(); cfg.Value {
			r.pendS[a] += valueReward(u, r.rates[a])
		} else if u < r.rates[a] {
			r.pendS[a]++
		}
		if t%batch == 0 {
			r.flush(t)
		}
		if pi < len(r.points) && t == r.points[pi] {
			out[pi] = regret
			pi++
		}
	}
	return true
}

// valueReward turns a uniform u in [0, 1) into a reward in [0, 1] whose
// mean over u is p: u^((1−p)/p), as E[U^k] = 1/(k+1).
func valueReward(u, p float64) float64 {
	switch {
	case p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	return math.Pow(u, (1-p)/p)
}
