package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/modelgate/modelgate/bandit"
)

// LinearThompson is the contextual policy's name: the server's
// linear-thompson (bandit.LinearScores and bandit.LinearChoose on
// bandit.FitLinear posteriors). Naming it in a Scenario makes the
// simulation contextual (see World).
const LinearThompson = "linear-thompson"

// World is a contextual environment, in which the best arm depends on the
// request. Every request has a segment s, uniform over Segments values of
// one context key, and a numeric feature z ~ N(0, 1) clamped to ±2.5.
// Arm a's click rate there is
//
//	p_a(s, z) = Base + u[a][s] + w[a]·z,  clamped to [0.01, 0.99],
//
// with u[a][s] ~ N(0, SegmentSD²) and w[a] ~ N(0, SlopeSD²) drawn afresh in
// every run: which arm is best changes from segment to segment and along
// z. Regret is Σ_t (max_a p_a(s_t, z_t) − p_{a_t}(s_t, z_t)).
//
// Three policies meet the same requests and clicks: linear-thompson over
// x = (1, one-hot of s, z) with λ = Lambda and noise Noise; Thompson
// sampling per segment (segment_by the key: Beta counts per (s, arm), z
// unseen, as no segment can hold a number); and plain Thompson sampling
// (one segment). Each applies its feedback every Batch steps (the
// linear posteriors are refitted then, as the server refits at each flush).
type World struct {
	K, Segments   int
	Base          float64
	SegmentSD     float64
	SlopeSD       float64
	Lambda, Noise float64
	MinShare      float64
	Horizon, Runs int
	Batch         int
	Seed          uint64
}

// DefaultWorld is the world `modelgate simulate --policy linear-thompson`
// plays unless flags change it.
func DefaultWorld() World {
	return World{K: 4, Segments: 8, Base: 0.3, SegmentSD: 0.05, SlopeSD: 0.08, Lambda: 1, Noise: 0.5,
		Horizon: 20000, Runs: 50, Batch: 100, Seed: 1}
}

// Validate reports the first problem with w, wrapping ErrConfig.
func (w *World) Validate() error {
	switch {
	case w.K < 2:
		return configErr("--k %d: a contextual world needs at least 2 arms", w.K)
	case w.Segments < 1 || w.Segments+2 > bandit.MaxLinearDims:
		return configErr("--segments %d: must be in [1, %d]", w.Segments, bandit.MaxLinearDims-2)
	case w.Horizon < 1 || w.Runs < 1:
		return configErr("--horizon %d --runs %d: both must be at least 1", w.Horizon, w.Runs)
	case w.Batch < 1:
		return configErr("--batch %d: must be at least 1", w.Batch)
	case !(w.MinShare >= 0 && w.MinShare <= 1):
		return configErr("--min-share %v: must be in [0, 1]", w.MinShare)
	}
	return nil
}

// Describe is the world in one line, for table headers and plots.
func (w *World) Describe() string {
	s := fmt.Sprintf("contextual: %d arms, %d segments and z ~ N(0,1); p = %g + u[a][s] + w[a]·z, u ~ N(0, %g²), w ~ N(0, %g²)",
		w.K, w.Segments, w.Base, w.SegmentSD, w.SlopeSD)
	if w.Batch > 1 {
		s += fmt.Sprintf("; feedback every %d steps", w.Batch)
	}
	return s
}

// Config returns a Config describing w's size, for the shared table and
// plot writers.
func (w *World) Config() Config {
	return Config{Horizon: w.Horizon, Runs: w.Runs, Seed: w.Seed, Batch: w.Batch, world: w}
}

// ContextualLabels are the series RunWorld returns, in order.
var ContextualLabels = [...]string{LinearThompson, "thompson per segment", "thompson"}

// RunWorld plays w's runs with the three policies (ContextualLabels) and
// returns one Result each. Every policy meets the same worlds, requests and
// click draws at a given seed.
func RunWorld(ctx context.Context, w World) ([]*Result, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	points := recordPoints(w.Horizon, nil)
	stats := make([][]welford, len(ContextualLabels))
	for p := range stats {
		stats[p] = make([]welford, len(points))
	}
	out := make([]float64, len(points))
	for run := range w.Runs {
		for p := range ContextualLabels {
			if !w.play(ctx, run, p, points, out) {
				return nil, ctx.Err()
			}
			for i, v := range out {
				stats[p][i].add(v)
			}
		}
	}
	results := make([]*Result, len(ContextualLabels))
	for p, label := range ContextualLabels {
		res := &Result{Policy: label, Label: label, Horizon: w.Horizon, Runs: w.Runs, Batch: w.Batch, Seed: w.Seed,
			Curve: make([]Point, len(points))}
		for i, t := range points {
			res.Curve[i] = Point{T: t, RegretMean: round6(stats[p][i].mean), RegretStderr: round6(stats[p][i].stderr())}
		}
		for _, t := range Checkpoints(w.Horizon) {
			pt, _ := res.At(t)
			res.Checkpoints = append(res.Checkpoints, pt)
		}
		last := res.Curve[len(res.Curve)-1]
		res.RegretMean, res.RegretStderr = last.RegretMean, last.RegretStderr
		results[p] = res
	}
	return results, nil
}

// play runs run number idx of policy p (an index of ContextualLabels),
// writing the cumulative regret at points into out; false if ctx ended.
func (w *World) play(ctx context.Context, idx, p int, points []int, out []float64) bool {
	env := rand.New(rand.NewPCG(w.Seed, mix(2*uint64(idx))))
	pol := rand.New(rand.NewPCG(w.Seed, mix(2*uint64(idx)+1)+uint64(p)))
	k, S := w.K, w.Segments
	u := make([][]float64, k)
	slope := make([]float64, k)
	for a := range k {
		u[a] = make([]float64, S)
		for s := range S {
			u[a][s] = w.SegmentSD * env.NormFloat64()
		}
		slope[a] = w.SlopeSD * env.NormFloat64()
	}
	rate := func(a, s int, z float64) float64 {
		return min(0.99, max(0.01, w.Base+u[a][s]+slope[a]*z))
	}
	d := S + 2
	// Linear: sums (applied), pending sums, posteriors.
	sums := make([][]float64, k)
	pend := make([][]float64, k)
	fits := make([]*bandit.LinearArm, k)
	for a := range k {
		sums[a] = make([]float64, bandit.LinearSumsLen(d))
		pend[a] = make([]float64, bandit.LinearSumsLen(d))
	}
	active := make([]bool, k)
	for a := range active {
		active[a] = true
	}
	scores := make([]bandit.LinearScore, k)
	x := make([]float64, d)
	// Thompson: counters per segment (segs = S) or one (segs = 1), and
	// held feedback.
	segs := 1
	if p == 1 {
		segs = S
	}
	arms := make([][]bandit.Arm, segs)
	pendT := make([][]uint64, segs)
	pendS := make([][]uint64, segs)
	for s := range segs {
		arms[s] = make([]bandit.Arm, k)
		for a := range k {
			arms[s][a].Active = true
		}
		pendT[s], pendS[s] = make([]uint64, k), make([]uint64, k)
	}
	policy := bandit.Policy{MinShare: w.MinShare}

	regret := 0.0
	pi := 0
	for t := 1; t <= w.Horizon; t++ {
		if t&0xfff == 0 && ctx.Err() != nil {
			return false
		}
		s := env.IntN(S)
		z := max(-2.5, min(2.5, env.NormFloat64()))
		click := env.Float64() // the same draw for every policy
		var a int
		if p == 0 {
			clear(x)
			x[0], x[1+s], x[d-1] = 1, 1, z
			bandit.LinearScores(x, w.Noise, fits, active, scores)
			a = bandit.LinearChoose(pol, scores, w.MinShare)
			bandit.AddTrial(pend[a], x)
			if click < rate(a, s, z) {
				bandit.AddReward(pend[a], x, 1)
			}
		} else {
			seg := 0
			if segs > 1 {
				seg = s
			}
			a = policy.Choose(pol, arms[seg])
			pendT[seg][a]++
			if click < rate(a, s, z) {
				pendS[seg][a]++
			}
		}
		best := 0.0
		for b := range k {
			best = max(best, rate(b, s, z))
		}
		regret += best - rate(a, s, z)
		if t%w.Batch == 0 {
			if p == 0 {
				for b := range k {
					for i, v := range pend[b] {
						sums[b][i] += v
					}
					clear(pend[b])
					fits[b], _ = bandit.FitLinear(d, w.Lambda, sums[b])
				}
			} else {
				for seg := range segs {
					for b := range k {
						arms[seg][b].Trials += pendT[seg][b]
						arms[seg][b].Successes += float64(pendS[seg][b])
						pendT[seg][b], pendS[seg][b] = 0, 0
					}
				}
			}
		}
		if pi < len(points) && t == points[pi] {
			out[pi] = regret
			pi++
		}
	}
	return true
}

// World reports whether s names linear-thompson (ok), and then the world
// it describes: DefaultWorld with --k, --segments, --horizon, --runs,
// --seed, --batch (one value) and --min-share; the flags of Bernoulli arms
// and of other policies are refused. Its errors wrap ErrConfig.
func (s *Scenario) World() (w World, ok bool, err error) {
	if !slices.Contains(s.Policies, LinearThompson) {
		if s.Segments != nil {
			return World{}, false, configErr("--segments describes the contextual world of --policy linear-thompson")
		}
		return World{}, false, nil
	}
	w = DefaultWorld()
	for _, p := range s.Policies {
		if p != LinearThompson && p != Thompson {
			return World{}, false, configErr("--policy %s: linear-thompson is compared with thompson (per segment and plain) in a contextual world; simulate %s on its own", p, p)
		}
	}
	for _, other := range []struct {
		name  string
		given bool
	}{{"rates", s.Rates != nil}, {"best", s.Best != nil}, {"gap", s.Gap != nil}, {"arm-prior", s.ArmPrior != nil},
		{"new-arm-prior", s.NewArmPrior != nil}, {"churn", s.Churn != 0}, {"change-at", s.ChangeAt != nil},
		{"prior", s.Prior != nil}, {"epsilon", s.Epsilon != nil}, {"ucb-c", s.UCBC != nil}, {"half-life", s.HalfLife != nil}} {
		if other.given {
			return World{}, false, configErr("--%s does not apply to the contextual world of --policy linear-thompson", other.name)
		}
	}
	if s.K != nil {
		w.K = *s.K
	}
	if s.Segments != nil {
		w.Segments = *s.Segments
	}
	if s.MinShare != nil {
		w.MinShare = *s.MinShare
	}
	w.Horizon, w.Runs, w.Seed = s.Horizon, s.Runs, s.Seed
	if len(s.Batches) > 1 {
		return World{}, false, configErr("--batch: one value with --policy linear-thompson")
	}
	if len(s.Batches) == 1 {
		w.Batch = s.Batches[0]
	}
	if math.IsNaN(w.MinShare) {
		return World{}, false, configErr("--min-share: not a number")
	}
	return w, true, w.Validate()
}
