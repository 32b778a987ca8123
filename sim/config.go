// Package sim is modelgate's offline bandit simulator: it plays a policy
// against Bernoulli arms with known click rates many times over and reports
// the cumulative regret the policy incurs, so that policies, priors,
// exploration floors and counter-flush intervals can be compared before they
// meet real traffic.
//
// Thompson sampling and uniform choice are the server's own: every step calls
// [bandit.Policy.Choose] on the same [bandit.Arm] counters the gateway keeps.
// ε-greedy and UCB1 are [bandit.EpsilonGreedy] and [bandit.UCB1]; discounted
// Thompson sampling feeds counts decayed by [bandit.Discount] to Choose as
// pseudo-counts.
//
// Regret is pseudo-regret, Σ_t (p*_t − p_{a_t}) with p*_t the best true rate
// among the arms alive at step t: what the choices cost in expectation,
// without the noise of the simulated clicks.
//
// Runs are independent and spread over GOMAXPROCS goroutines; each run draws
// from its own sources seeded from (Seed, run index) and results are combined
// in run order, so the output depends on the seed only, not on the number of
// cores.
package sim

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/modelgate/modelgate/bandit"
)

// Policy names, as the command line spells them.
const (
	Thompson           = "thompson"
	Uniform            = "uniform"
	EpsilonGreedy      = "epsilon-greedy"
	UCB1               = "ucb1"
	DiscountedThompson = "discounted-thompson"
)

// PolicyNames lists the policies the simulator knows, in the order the
// documentation presents them.
func PolicyNames() []string {
	return []string{Thompson, Uniform, EpsilonGreedy, UCB1, DiscountedThompson}
}

// Policy is the policy under test and its parameters.
//
// The zero value is Thompson sampling with a Beta(1, 1) prior and no
// exploration floor. Parameters a policy does not use are ignored. A Policy is
// a plain value, safe for concurrent use.
type Policy struct {
	// Name is one of the policy names above; "" means Thompson.
	Name string
	// Prior is the Beta prior of Thompson and discounted Thompson sampling,
	// and the posterior a new arm starts from; the zero value is Beta(1, 1),
	// and a zero component means 1. ε-greedy, UCB1 and uniform ignore it.
	Prior bandit.Prior
	// MinShare is the exploration floor of bandit.Policy, applied to
	// Thompson and discounted Thompson sampling; 0 means none.
	MinShare float64
	// Epsilon is ε-greedy's exploration probability, in [0, 1].
	Epsilon float64
	// UCBC is UCB1's exploration constant c in mean + √(c ln t / n); 0 means
	// the classic 2.
	UCBC float64
	// HalfLife is discounted Thompson sampling's half-life in steps: every
	// count is multiplied by 2^(−1/HalfLife) per step. Required (> 0) for
	// that policy.
	HalfLife float64
}

func (p Policy) name() string {
	if p.Name == "" {
		return Thompson
	}
	return p.Name
}

// Change is an abrupt change of every arm's true rate.
type Change struct {
	// At is the first step (from 1) that sees the new rates.
	At int
	// Rates has one rate in [0, 1] per arm, in arm order.
	Rates []float64
}

// Config describes one simulation: a policy, an environment of Bernoulli arms
// and how many runs of how many steps to play.
//
// The zero value is not valid: Horizon, Runs and the arms must be given. A
// Config is read, never modified, by Run; it may be shared by goroutines
// that do not modify it.
type Config struct {
	Policy Policy

	// Rates are the arms' true click rates, the same in every run. When nil,
	// K rates are drawn from ArmPrior at the start of every run.
	Rates []float64
	// K is the number of arms when Rates is nil; with Rates it must be 0 or
	// len(Rates).
	K int
	// ArmPrior is the distribution of the true rates when Rates is nil. It
	// must be nil when Rates is set (see NewArmPrior).
	ArmPrior *bandit.Prior
	// NewArmPrior is the distribution of the true rate of an arm that joins
	// under churn; nil means ArmPrior.
	NewArmPrior *bandit.Prior

	// Horizon is the number of steps (requests) per run, at least 1.
	Horizon int
	// Runs is the number of independent runs, at least 1.
	Runs int
	// Seed seeds every run, together with the run's index.
	Seed uint64

	// Batch holds feedback and applies it to the counters every Batch steps
	// (delayed feedback, like counters flushed periodically); 0 or 1 applies
	// it after every step.
	Batch int
	// Churn is the probability, before each step, that one arm chosen
	// uniformly at random retires and is replaced by a new arm with a true
	// rate drawn from NewArmPrior (or ArmPrior) and the policy's prior as its
	// posterior. The retired arm's held feedback is lost.
	Churn float64
	// Value makes the arms pay value rewards instead of clicks: each step's
	// reward is a fraction r in [0, 1] (a value endpoint's capped reward ÷
	// cap) with mean the arm's rate, drawn as U^((1−p)/p) from one uniform
	// U (so the environment's draws stay aligned across policies), and the
	// counters add r as the gateway does. Regret is still Σ (p* − p_a).
	Value bool
	// Changes are abrupt changes of all true rates, in increasing order of
	// At.
	Changes []Change

	// Workers is the number of goroutines that play runs; 0 means
	// GOMAXPROCS. The result does not depend on it.
	Workers int
	// Points are extra steps, in [1, Horizon], at which the regret is
	// reported besides the default checkpoints.
	Points []int

	// world, set by World.Config, is the contextual world this Config
	// only describes (for Environment and Summary); Run does not play it.
	world *World
}

// Arms returns the number of arms.
func (c *Config) Arms() int {
	if c.Rates != nil {
		return len(c.Rates)
	}
	return c.K
}

// Stationary reports whether the environment is stationary Bernoulli arms
// with fixed rates: Rates given, no churn, no change. The Lai–Robbins bound
// is defined only then.
func (c *Config) Stationary() bool {
	return c.Rates != nil && c.Churn == 0 && len(c.Changes) == 0
}

// ErrConfig is wrapped by every error of Validate.
var ErrConfig = errors.New("invalid simulation")

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// Validate reports the first problem with c, wrapping ErrConfig, or nil.
func (c *Config) Validate() error {
	switch {
	case c.Horizon < 1:
		return configErr("horizon %d: must be at least 1", c.Horizon)
	case c.Runs < 1:
		return configErr("runs %d: must be at least 1", c.Runs)
	case c.Batch < 0:
		return configErr("batch %d: must be at least 1", c.Batch)
	case c.Workers < 0:
		return configErr("workers %d: must not be negative", c.Workers)
	case !(c.Churn >= 0 && c.Churn <= 1):
		return configErr("churn %v: must be a probability in [0, 1]", c.Churn)
	}
	if c.Rates != nil {
		if len(c.Rates) == 0 {
			return configErr("no arms")
		}
		if c.K != 0 && c.K != len(c.Rates) {
			return configErr("%d rates for %d arms", len(c.Rates), c.K)
		}
		if c.ArmPrior != nil {
			return configErr("both fixed rates and an arm prior: use the new-arm prior for arms that join under churn")
		}
		if err := checkRates("rates", c.Rates); err != nil {
			return err
		}
	} else {
		if c.K < 1 {
			return configErr("%d arms: need at least 1", c.K)
		}
		if c.ArmPrior == nil {
			return configErr("neither rates nor an arm prior")
		}
	}
	if err := checkBeta("arm prior", c.ArmPrior); err != nil {
		return err
	}
	if err := checkBeta("new-arm prior", c.NewArmPrior); err != nil {
		return err
	}
	if c.Churn > 0 && c.ArmPrior == nil && c.NewArmPrior == nil {
		return configErr("churn needs a new-arm prior to draw the rates of joining arms from")
	}
	prev := 0
	for i, ch := range c.Changes {
		if ch.At <= prev || ch.At > c.Horizon {
			return configErr("change %d at step %d: change steps must increase and lie in [1, %d]", i+1, ch.At, c.Horizon)
		}
		prev = ch.At
		if len(ch.Rates) != c.Arms() {
			return configErr("change at step %d has %d rates for %d arms", ch.At, len(ch.Rates), c.Arms())
		}
		if err := checkRates("rates after step "+strconv.Itoa(ch.At), ch.Rates); err != nil {
			return err
		}
	}
	for _, t := range c.Points {
		if t < 1 || t > c.Horizon {
			return configErr("point %d: must lie in [1, %d]", t, c.Horizon)
		}
	}
	return c.Policy.validate()
}

func (p Policy) validate() error {
	switch p.name() {
	case Thompson, Uniform, EpsilonGreedy, UCB1, DiscountedThompson:
	default:
		return configErr("unknown policy %q (want one of %s)", p.Name, strings.Join(PolicyNames(), ", "))
	}
	for _, s := range []struct {
		name string
		v    float64
	}{{"prior alpha", p.Prior.Alpha}, {"prior beta", p.Prior.Beta}} {
		if !(s.v >= 0) || math.IsInf(s.v, 1) {
			return configErr("%s %v: must be a finite positive number (0 means 1)", s.name, s.v)
		}
	}
	switch {
	case !(p.MinShare >= 0 && p.MinShare <= 1):
		return configErr("min-share %v: must be in [0, 1]", p.MinShare)
	case !(p.Epsilon >= 0 && p.Epsilon <= 1):
		return configErr("epsilon %v: must be in [0, 1]", p.Epsilon)
	case !(p.UCBC >= 0) || math.IsInf(p.UCBC, 1):
		return configErr("ucb-c %v: must be a finite number ≥ 0 (0 means 2)", p.UCBC)
	case math.IsNaN(p.HalfLife) || p.HalfLife < 0:
		return configErr("half-life %v: must be positive", p.HalfLife)
	case p.name() == DiscountedThompson && p.HalfLife == 0:
		return configErr("discounted-thompson needs a half-life (> 0 steps)")
	}
	return nil
}

func checkRates(what string, rates []float64) error {
	for i, r := range rates {
		if !(r >= 0 && r <= 1) {
			return configErr("%s: arm %d rate %v: must be in [0, 1]", what, i+1, r)
		}
	}
	return nil
}

func checkBeta(what string, p *bandit.Prior) error {
	if p == nil {
		return nil
	}
	if !(p.Alpha > 0 && p.Beta > 0) || math.IsInf(p.Alpha, 1) || math.IsInf(p.Beta, 1) {
		return configErr("%s Beta(%v, %v): both shapes must be finite and positive", what, p.Alpha, p.Beta)
	}
	return nil
}

// DescribeRates summarizes rates compactly, runs of equal rates as "r ×n":
// "0.5, 0.4 ×9".
func DescribeRates(rates []float64) string {
	var parts []string
	for i := 0; i < len(rates); {
		j := i + 1
		for j < len(rates) && rates[j] == rates[i] {
			j++
		}
		s := strconv.FormatFloat(rates[i], 'g', -1, 64)
		if j-i > 1 {
			s += " ×" + strconv.Itoa(j-i)
		}
		parts = append(parts, s)
		i = j
	}
	return strings.Join(parts, ", ")
}

// Environment describes c's arms in one line, for table headers and plots.
func (c *Config) Environment() string {
	if c.world != nil {
		return c.world.Describe()
	}
	var b strings.Builder
	if c.Rates != nil {
		fmt.Fprintf(&b, "%d arms, rates %s", len(c.Rates), DescribeRates(c.Rates))
	} else {
		fmt.Fprintf(&b, "%d arms, rates ~ Beta(%g, %g) per run", c.K, c.ArmPrior.Alpha, c.ArmPrior.Beta)
	}
	for _, ch := range c.Changes {
		fmt.Fprintf(&b, "; from step %d: %s", ch.At, DescribeRates(ch.Rates))
	}
	if c.Churn > 0 {
		np := c.NewArmPrior
		if np == nil {
			np = c.ArmPrior
		}
		fmt.Fprintf(&b, "; churn %g per step, new arms ~ Beta(%g, %g)", c.Churn, np.Alpha, np.Beta)
	}
	if c.Batch > 1 {
		fmt.Fprintf(&b, "; feedback every %d steps", c.Batch)
	}
	if c.Value {
		b.WriteString("; value rewards in [0, 1] with mean the rate")
	}
	return b.String()
}
