package sim

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/modelgate/modelgate/bandit"
)

// RegisterFlags defines the scenario's command-line flags on fs, each
// parsing into a field of s, and sets s to the flags' defaults: horizon
// 10000, 100 runs, seed 1, batch 1, policy thompson. A flag of an optional
// field (--k, --best, --gap, --min-share, --epsilon, --ucb-c, --half-life,
// the Beta flags) sets that field's pointer only when it is given, so after
// fs.Parse the nil fields are the ones not given and s is ready for Configs.
//
// The flags are the ones the Scenario's errors name: --rates, --k, --best,
// --gap, --arm-prior, --new-arm-prior, --horizon, --runs, --seed, --batch,
// --churn, --change-at, --rates-after, --policy, --prior, --min-share,
// --epsilon, --ucb-c, --half-life and --workers. Lists are comma-separated;
// --rates-after takes ';'-separated lists and may be repeated. The usage
// strings are short; the command that owns fs writes the full help.
//
// s must outlive the parsing of fs, and fs must not be parsed concurrently
// with any other use of s.
func (s *Scenario) RegisterFlags(fs *flag.FlagSet) {
	*s = Scenario{Horizon: 10000, Runs: 100, Seed: 1, Batches: []int{1}, Policies: []string{Thompson}}
	fs.Var((*floatList)(&s.Rates), "rates", "true click rate of each arm")
	fs.Var(optional[int]{&s.K, parseInt}, "k", "number of arms (with --best/--gap or --arm-prior)")
	fs.Var(optional[float64]{&s.Best, parseFloat}, "best", "rate of the best arm")
	fs.Var(optional[float64]{&s.Gap, parseFloat}, "gap", "gap between the best arm and the K−1 others")
	fs.Var(betaFlag{&s.ArmPrior}, "arm-prior", "Beta(A,B) of the true rates, drawn per run")
	fs.Var(betaFlag{&s.NewArmPrior}, "new-arm-prior", "Beta(A,B) of the true rates of arms joining under churn")
	fs.IntVar(&s.Horizon, "horizon", s.Horizon, "steps per run")
	fs.IntVar(&s.Runs, "runs", s.Runs, "independent runs")
	fs.Uint64Var(&s.Seed, "seed", s.Seed, "random seed")
	fs.Var((*intList)(&s.Batches), "batch", "apply feedback every D steps")
	fs.Float64Var(&s.Churn, "churn", 0, "per-step probability that an arm is replaced")
	fs.BoolVar(&s.Value, "value", false, "value rewards in [0, 1] with mean the rate, instead of clicks")
	fs.Var((*intList)(&s.ChangeAt), "change-at", "steps at which the true rates change")
	fs.Var((*rateLists)(&s.RatesAfter), "rates-after", "rates after each change point")
	fs.Var((*stringList)(&s.Policies), "policy", "policies to simulate")
	fs.Var(betaFlag{&s.Prior}, "prior", "Beta(A,B) prior of Thompson sampling")
	fs.Var(optional[float64]{&s.MinShare, parseFloat}, "min-share", "exploration floor of Thompson sampling")
	fs.Var(optional[float64]{&s.Epsilon, parseFloat}, "epsilon", "epsilon-greedy's exploration probability")
	fs.Var(optional[float64]{&s.UCBC, parseFloat}, "ucb-c", "UCB1's exploration constant")
	fs.Var(optional[float64]{&s.HalfLife, parseFloat}, "half-life", "discounted Thompson's half-life in steps")
	fs.IntVar(&s.Workers, "workers", 0, "goroutines playing runs (0: GOMAXPROCS)")
	fs.Var(optional[int]{&s.Segments, parseInt}, "segments", "segments of the contextual world of linear-thompson")
}

// floatList is a comma-separated list of finite numbers.
type floatList []float64

func (l *floatList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

func (l *floatList) Set(v string) error {
	xs, err := parseFloats(v)
	if err != nil {
		return err
	}
	*l = xs
	return nil
}

func parseFloats(v string) ([]float64, error) {
	var xs []float64
	for _, f := range strings.Split(v, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%q is not a number", strings.TrimSpace(f))
		}
		xs = append(xs, x)
	}
	return xs, nil
}

// intList is a comma-separated list of integers.
type intList []int

func (l *intList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var xs []int
	for _, f := range strings.Split(v, ",") {
		x, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("%q is not an integer", strings.TrimSpace(f))
		}
		xs = append(xs, x)
	}
	*l = xs
	return nil
}

// rateLists collects --rates-after: each use of the flag appends one or more
// ';'-separated lists.
type rateLists [][]float64

func (l *rateLists) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, v := range *l {
		fl := floatList(v)
		s[i] = fl.String()
	}
	return strings.Join(s, ";")
}

func (l *rateLists) Set(v string) error {
	for part := range strings.SplitSeq(v, ";") {
		xs, err := parseFloats(part)
		if err != nil {
			return err
		}
		*l = append(*l, xs)
	}
	return nil
}

// betaFlag is "A,B", the shapes of a Beta distribution; Set points *p at
// the parsed prior, so *p stays nil when the flag is not given.
type betaFlag struct{ p **bandit.Prior }

func (b betaFlag) String() string {
	if b.p == nil || *b.p == nil {
		return ""
	}
	return fmt.Sprintf("%g,%g", (*b.p).Alpha, (*b.p).Beta)
}

func (b betaFlag) Set(v string) error {
	xs, err := parseFloats(v)
	if err != nil {
		return err
	}
	if len(xs) != 2 || !(xs[0] > 0 && xs[1] > 0) {
		return errors.New("want A,B: two positive numbers, the shapes of Beta(A,B)")
	}
	*b.p = &bandit.Prior{Alpha: xs[0], Beta: xs[1]}
	return nil
}

// stringList is a comma-separated list of names; blanks are dropped and a
// later use of the flag replaces an earlier one.
type stringList []string

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *stringList) Set(v string) error {
	var xs []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			xs = append(xs, f)
		}
	}
	*l = xs
	return nil
}

// optional is a number flag of a Scenario pointer field: Set points *dst at
// the parsed value, so *dst stays nil when the flag is not given and a flag
// given with its default value still counts as given.
type optional[T int | float64] struct {
	dst   **T
	parse func(string) (T, error)
}

func (o optional[T]) String() string {
	if o.dst == nil || *o.dst == nil {
		return ""
	}
	return fmt.Sprint(**o.dst)
}

func (o optional[T]) Set(v string) error {
	x, err := o.parse(v)
	if err != nil {
		return err
	}
	*o.dst = &x
	return nil
}

// parseInt and parseFloat parse as the flag package's IntVar and
// Float64Var do, with the same error text, so that a bad --k or --best
// reads like a bad --horizon or --churn.
func parseInt(v string) (int, error) {
	x, err := strconv.ParseInt(v, 0, strconv.IntSize)
	return int(x), numError(err)
}

func parseFloat(v string) (float64, error) {
	x, err := strconv.ParseFloat(v, 64)
	return x, numError(err)
}

// numError words a strconv error as the flag package does.
func numError(err error) error {
	var ne *strconv.NumError
	switch {
	case err == nil || !errors.As(err, &ne):
		return err
	case errors.Is(ne.Err, strconv.ErrSyntax):
		return errors.New("parse error")
	case errors.Is(ne.Err, strconv.ErrRange):
		return errors.New("value out of range")
	}
	return err
}
