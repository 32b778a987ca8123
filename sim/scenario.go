package sim

import (
	"fmt"
	"slices"
	"strings"

	"github.com/modelgate/modelgate/bandit"
)

// Defaults of a Scenario's optional policy parameters.
const (
	DefaultEpsilon  = 0.1
	DefaultHalfLife = 1000
)

// Scenario is a comparison as a user describes it: one environment, several
// policies and batch sizes, each (policy, batch) pair a series of its own.
// Configs checks that the description is coherent (one way of giving the
// arms, parameters only for policies that use them) and expands it into one
// Config per series.
//
// Its fields are the simulator's options, and its errors name them as the
// command line spells them (--rates, --k, …), since that is where a scenario
// is written. A nil pointer field was not given. The zero value is invalid
// (no arms, no policy). A Scenario is a plain value; Configs does not modify
// it.
type Scenario struct {
	// Arms: exactly one of Rates; K with Best and Gap (one arm at Best, K−1
	// at Best−Gap); or K with ArmPrior (rates drawn per run).
	Rates       []float64
	K           *int
	Best, Gap   *float64
	ArmPrior    *bandit.Prior
	NewArmPrior *bandit.Prior // arms joining under Churn; nil means ArmPrior

	Horizon, Runs int
	Seed          uint64
	// Batches are the batch sizes compared, one series each; at least one.
	Batches []int
	Churn   float64
	// Value plays value rewards instead of clicks (Config.Value).
	Value bool
	// ChangeAt and RatesAfter pair up: the rates from step ChangeAt[i] on
	// are RatesAfter[i].
	ChangeAt   []int
	RatesAfter [][]float64

	// Policies are the policy names compared, one series each; at least one.
	Policies []string
	// Prior is the Beta prior of Thompson and discounted Thompson sampling;
	// nil means Beta(1, 1).
	Prior *bandit.Prior
	// MinShare, Epsilon, UCBC and HalfLife are the parameters of the
	// policies that use them; nil means the default (0, DefaultEpsilon,
	// bandit.DefaultUCBC, DefaultHalfLife). Giving one that no named policy
	// uses is an error.
	MinShare, Epsilon, UCBC, HalfLife *float64

	// Workers is Config.Workers of every series.
	Workers int

	// Segments is the number of segments of the contextual world that
	// naming linear-thompson plays (see World); nil means its default.
	Segments *int
}

// Configs checks s and returns one valid Config per series, policies in
// the outer and batch sizes in the inner order. Its errors wrap ErrConfig.
func (s *Scenario) Configs() ([]Config, error) {
	if s.Horizon < 1 || s.Runs < 1 {
		return nil, configErr("--horizon %d --runs %d: both must be at least 1", s.Horizon, s.Runs)
	}
	rates, k, err := s.arms()
	if err != nil {
		return nil, err
	}
	if s.NewArmPrior != nil && !(s.Churn > 0) {
		return nil, configErr("--new-arm-prior is for arms joining under --churn, which is 0")
	}
	if s.RatesAfter != nil && s.ChangeAt == nil {
		return nil, configErr("--rates-after needs --change-at")
	}
	if len(s.ChangeAt) != len(s.RatesAfter) {
		return nil, configErr("%d --change-at steps but %d --rates-after lists: give one list per change point", len(s.ChangeAt), len(s.RatesAfter))
	}
	var changes []Change
	for i, at := range s.ChangeAt {
		changes = append(changes, Change{At: at, Rates: s.RatesAfter[i]})
	}
	policy, err := s.policy()
	if err != nil {
		return nil, err
	}
	if len(s.Batches) == 0 {
		return nil, configErr("--batch: no value")
	}
	for _, d := range s.Batches {
		if d < 1 {
			return nil, configErr("--batch %d: must be at least 1", d)
		}
	}
	if dup, ok := firstDuplicate(s.Batches); ok {
		return nil, configErr("--batch: %d named twice", dup)
	}
	if s.Workers < 0 {
		return nil, configErr("--workers %d: must not be negative", s.Workers)
	}

	var cfgs []Config
	for _, name := range s.Policies {
		for _, d := range s.Batches {
			c := Config{
				Policy:      policy,
				Rates:       rates,
				K:           k,
				ArmPrior:    s.ArmPrior,
				NewArmPrior: s.NewArmPrior,
				Horizon:     s.Horizon,
				Runs:        s.Runs,
				Seed:        s.Seed,
				Batch:       d,
				Churn:       s.Churn,
				Value:       s.Value,
				Changes:     changes,
				Workers:     s.Workers,
			}
			c.Policy.Name = name
			if err := c.Validate(); err != nil {
				return nil, err
			}
			cfgs = append(cfgs, c)
		}
	}
	return cfgs, nil
}

// arms returns the fixed rates (nil when drawn from ArmPrior) and K.
func (s *Scenario) arms() ([]float64, int, error) {
	k := 0
	if s.K != nil {
		k = *s.K
	}
	switch {
	case s.Rates != nil:
		for _, other := range []struct {
			name  string
			given bool
		}{{"k", s.K != nil}, {"best", s.Best != nil}, {"gap", s.Gap != nil}, {"arm-prior", s.ArmPrior != nil}} {
			if other.given {
				return nil, 0, configErr("--rates already gives the arms: drop --%s (arms joining under churn take --new-arm-prior)", other.name)
			}
		}
		return s.Rates, k, nil
	case s.K == nil:
		return nil, 0, configErr("no arms: give --rates R1,R2,…, or --k K with --best P --gap EPS, or --k K with --arm-prior A,B")
	case k < 1:
		return nil, 0, configErr("--k %d: need at least one arm", k)
	case s.ArmPrior != nil && (s.Best != nil || s.Gap != nil):
		return nil, 0, configErr("--arm-prior draws the rates at random: drop --best and --gap")
	case s.ArmPrior != nil:
		return nil, k, nil
	case (s.Best != nil) != (s.Gap != nil):
		return nil, 0, configErr("--best and --gap go together")
	case s.Best == nil:
		return nil, 0, configErr("--k %d needs --best P --gap EPS or --arm-prior A,B", k)
	}
	best, gap := *s.Best, *s.Gap
	switch {
	case !(best >= 0 && best <= 1):
		return nil, 0, configErr("--best %v: must be a rate in [0, 1]", best)
	case !(gap >= 0 && gap <= best):
		return nil, 0, configErr("--gap %v: must be in [0, --best]", gap)
	}
	rates := make([]float64, k)
	rates[0] = best
	for i := 1; i < k; i++ {
		rates[i] = best - gap
	}
	return rates, k, nil
}

// policy checks the policy names and parameters and returns the parameters
// every series shares (Name is set per series).
func (s *Scenario) policy() (Policy, error) {
	if len(s.Policies) == 0 {
		return Policy{}, configErr("--policy: no policy named")
	}
	for _, p := range s.Policies {
		if !slices.Contains(PolicyNames(), p) {
			return Policy{}, configErr("--policy %q: want one of %s", p, strings.Join(PolicyNames(), ", "))
		}
	}
	if dup, ok := firstDuplicate(s.Policies); ok {
		return Policy{}, configErr("--policy: %s named twice", dup)
	}
	for _, pf := range []struct {
		flag     string
		given    bool
		policies []string
	}{
		{"epsilon", s.Epsilon != nil, []string{EpsilonGreedy}},
		{"ucb-c", s.UCBC != nil, []string{UCB1}},
		{"half-life", s.HalfLife != nil, []string{DiscountedThompson}},
		{"min-share", s.MinShare != nil, []string{Thompson, DiscountedThompson}},
		{"prior", s.Prior != nil, []string{Thompson, DiscountedThompson}},
	} {
		if pf.given && !slices.ContainsFunc(s.Policies, func(p string) bool { return slices.Contains(pf.policies, p) }) {
			return Policy{}, configErr("--%s applies only to %s, which --policy does not name", pf.flag, strings.Join(pf.policies, " and "))
		}
	}
	p := Policy{
		MinShare: valueOr(s.MinShare, 0),
		Epsilon:  valueOr(s.Epsilon, DefaultEpsilon),
		UCBC:     valueOr(s.UCBC, bandit.DefaultUCBC),
		HalfLife: valueOr(s.HalfLife, DefaultHalfLife),
	}
	// Config.Validate reads a zero UCBC as the default and would accept
	// it; a scenario that names 0 means it and is refused.
	if s.UCBC != nil && !(p.UCBC > 0) {
		return Policy{}, configErr("--ucb-c %v: must be positive", p.UCBC)
	}
	if !(p.HalfLife > 0) {
		return Policy{}, configErr("--half-life %v: must be positive", p.HalfLife)
	}
	if s.Prior != nil {
		p.Prior = *s.Prior
	}
	return p, nil
}

// Label names c, one of s's series, in tables and plots: its policy, with
// its parameter, and its batch size when s compares several.
func (s *Scenario) Label(c Config) string {
	l := c.Policy.Name
	switch c.Policy.Name {
	case EpsilonGreedy:
		l += fmt.Sprintf(" ε=%g", c.Policy.Epsilon)
	case DiscountedThompson:
		l += fmt.Sprintf(" h=%g", c.Policy.HalfLife)
	}
	if c.Policy.MinShare > 0 && (c.Policy.Name == Thompson || c.Policy.Name == DiscountedThompson) {
		l += fmt.Sprintf(" floor=%g", c.Policy.MinShare)
	}
	if len(s.Batches) > 1 {
		l += fmt.Sprintf(" batch=%d", c.Batch)
	}
	return l
}

func valueOr(p *float64, def float64) float64 {
	if p == nil {
		return def
	}
	return *p
}

func firstDuplicate[T comparable](xs []T) (T, bool) {
	seen := map[T]bool{}
	for _, x := range xs {
		if seen[x] {
			return x, true
		}
		seen[x] = true
	}
	var zero T
	return zero, false
}
