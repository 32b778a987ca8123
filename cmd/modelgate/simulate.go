package main

// `modelgate simulate`: the offline bandit simulator (package sim) on the
// command line. It parses and checks the flags into sim.Configs, one per
// (policy, batch) series, runs them and prints a table, CSV or JSON, and
// optionally an SVG chart.

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/sim"
)

const simulateHelp = `usage: modelgate simulate [flags]

Plays a bandit policy against simulated Bernoulli arms with known click rates,
many independent runs in parallel on all cores, and reports the cumulative
(pseudo-)regret Σ_t (p*_t − p_{a_t}) — p*_t the best true rate alive at step t —
as mean and standard error across runs at log-spaced checkpoints (10, 20, 50,
100, … and the horizon). Thompson sampling and uniform choice run the
gateway's own bandit package. For stationary arms (fixed rates, no churn, no
change) it also prints the Lai–Robbins lower bound C·ln t with
C = Σ_{pᵢ<p*} (p* − pᵢ)/KL(pᵢ‖p*). The bound is asymptotic: as t → ∞ every
consistent policy's expected regret is at least (C − o(1))·ln t; at a finite
checkpoint a good policy may lie below C·ln t.

Arms (exactly one of):
  --rates R1,R2,…        true click rate of each arm, e.g. 0.05,0.04,0.04
  --k K --best P --gap EPS
                         K arms: one at rate P, K−1 at P−EPS
  --k K --arm-prior A,B  K arms whose true rates are drawn from Beta(A,B) in
                         every run (no Lai–Robbins bound)

Environment:
  --horizon T            steps (requests) per run (default 10000)
  --runs R               independent runs (default 100)
  --seed S               random seed; run i is seeded from (S, i), so the
                         output depends on S only, not on the number of cores
                         (default 1)
  --batch D[,D2,…]       feedback is held and applied to the counters every D
                         steps (delayed feedback, like periodic counter
                         flushes); several values run one series each
                         (default 1: after every step)
  --churn Q              before each step, with probability Q, an arm chosen
                         uniformly at random retires (its held feedback is
                         lost) and is replaced by a new arm, its true rate
                         drawn from --new-arm-prior, its posterior the
                         policy's prior; regret is measured against the best
                         arm alive at each step (default 0)
  --new-arm-prior A,B    Beta distribution of the rates of arms that join under
                         churn (default: --arm-prior)
  --change-at T1,T2,…    steps at which every arm's true rate changes at once
  --rates-after R1,R2,…  the rates from the corresponding --change-at step on,
                         one list per change point: repeat the flag or
                         separate the lists with ';' (quote it in a shell)

Policy:
  --policy P[,P2,…]      thompson | uniform | epsilon-greedy | ucb1 |
                         discounted-thompson; several names run one series
                         each, compared in one table and plot (default
                         thompson)
  --prior A,B            Beta prior of thompson and discounted-thompson, also
                         the posterior a joining arm starts from (default 1,1)
  --min-share F          exploration floor of thompson and
                         discounted-thompson: with probability min(1, K·F)
                         serve an arm uniformly at random (default 0; the
                         gateway's endpoints default to 0.01)
  --epsilon E            epsilon-greedy: probability of serving a uniformly
                         random arm instead of the best observed one
                         (default 0.1)
  --ucb-c C              ucb1: exploration constant in mean + √(C·ln t / n)
                         (default 2, classic UCB1)
  --half-life H          discounted-thompson: half-life in steps; counts are
                         multiplied by 2^(−1/H) every step (default 1000)

Output:
  --format F             table | csv | json (default table). JSON is one
                         object {"policy", "horizon", "runs", "regret_mean",
                         "regret_stderr", "lai_robbins" (null unless
                         stationary), "checkpoints": [{"t", "regret_mean",
                         "regret_stderr", "lai_robbins"}], plus "lai_robbins_c",
                         "lai_robbins_note" (the bound is asymptotic),
                         "batch", "seed"}, or an array of such objects when
                         several series run (several --policy or --batch
                         values). CSV has one row per series and checkpoint.
  --plot FILE.svg        also write an SVG chart of mean cumulative regret
                         against t, one line per series with a ±1.96 s.e.
                         band, and the Lai–Robbins curve when defined
  --log-x                logarithmic t axis in the plot (default true;
                         --log-x=false for a linear axis)
  --plot-title TEXT      title of the plot (default: the policies compared)
  --workers N            goroutines playing runs (default 0: GOMAXPROCS);
                         does not change the results

Examples:
  modelgate simulate --k 10 --best 0.5 --gap 0.1 --horizon 100000 --runs 100
  modelgate simulate --rates 0.05,0.04 --policy thompson,ucb1,epsilon-greedy --plot regret.svg
  modelgate simulate --rates 0.6,0.4 --change-at 5000 --rates-after 0.4,0.6 \
      --policy thompson,discounted-thompson --half-life 500 --format json

Exit status: 0 ok; 1 the run failed (e.g. the plot could not be written);
2 usage error (bad flags).
`

// floatList is a comma-separated list of numbers.
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

// betaFlag is "A,B", the shapes of a Beta distribution.
type betaFlag struct{ p *bandit.Prior }

func (b *betaFlag) String() string {
	if b == nil || b.p == nil {
		return ""
	}
	return fmt.Sprintf("%g,%g", b.p.Alpha, b.p.Beta)
}

func (b *betaFlag) Set(v string) error {
	xs, err := parseFloats(v)
	if err != nil {
		return err
	}
	if len(xs) != 2 || !(xs[0] > 0 && xs[1] > 0) {
		return errors.New("want A,B: two positive numbers, the shapes of Beta(A,B)")
	}
	b.p = &bandit.Prior{Alpha: xs[0], Beta: xs[1]}
	return nil
}

// stringList is a comma-separated list of names.
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

type simulateFlags struct {
	rates                  floatList
	k                      int
	best, gap              float64
	armPrior, newArmPrior  betaFlag
	horizon, runs, workers int
	seed                   uint64
	batch                  intList
	churn                  float64
	changeAt               intList
	ratesAfter             rateLists
	policies               stringList
	prior                  betaFlag
	minShare, epsilon      float64
	ucbC, halfLife         float64
	format, plot           string
	plotTitle              string
	logX                   bool
}

// usageErr reports a problem with the flags (exit status 2).
func usageErr(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

// newSimulateFlagSet defines simulate's flags, parsed into f; errors go to
// stderr.
func newSimulateFlagSet(f *simulateFlags, stderr io.Writer) *flag.FlagSet {
	*f = simulateFlags{batch: intList{1}, policies: stringList{sim.Thompson}}
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&f.rates, "rates", "true click rate of each arm")
	fs.IntVar(&f.k, "k", 0, "number of arms (with --best/--gap or --arm-prior)")
	fs.Float64Var(&f.best, "best", 0, "rate of the best arm")
	fs.Float64Var(&f.gap, "gap", 0, "gap between the best arm and the K−1 others")
	fs.Var(&f.armPrior, "arm-prior", "Beta(A,B) of the true rates, drawn per run")
	fs.Var(&f.newArmPrior, "new-arm-prior", "Beta(A,B) of the true rates of arms joining under churn")
	fs.IntVar(&f.horizon, "horizon", 10000, "steps per run")
	fs.IntVar(&f.runs, "runs", 100, "independent runs")
	fs.Uint64Var(&f.seed, "seed", 1, "random seed")
	fs.Var(&f.batch, "batch", "apply feedback every D steps")
	fs.Float64Var(&f.churn, "churn", 0, "per-step probability that an arm is replaced")
	fs.Var(&f.changeAt, "change-at", "steps at which the true rates change")
	fs.Var(&f.ratesAfter, "rates-after", "rates after each change point")
	fs.Var(&f.policies, "policy", "policies to simulate")
	fs.Var(&f.prior, "prior", "Beta(A,B) prior of Thompson sampling")
	fs.Float64Var(&f.minShare, "min-share", 0, "exploration floor of Thompson sampling")
	fs.Float64Var(&f.epsilon, "epsilon", 0.1, "epsilon-greedy's exploration probability")
	fs.Float64Var(&f.ucbC, "ucb-c", bandit.DefaultUCBC, "UCB1's exploration constant")
	fs.Float64Var(&f.halfLife, "half-life", 1000, "discounted Thompson's half-life in steps")
	fs.StringVar(&f.format, "format", "table", "table, csv or json")
	fs.StringVar(&f.plot, "plot", "", "write an SVG chart to this file")
	fs.BoolVar(&f.logX, "log-x", true, "logarithmic t axis in the plot")
	fs.StringVar(&f.plotTitle, "plot-title", "", "title of the plot")
	fs.IntVar(&f.workers, "workers", 0, "goroutines playing runs (0: GOMAXPROCS)")
	// The flag package reports a bad flag itself; the full help goes to
	// stdout only when asked for.
	fs.Usage = func() {}
	return fs
}

func runSimulate(args []string, stdout, stderr io.Writer) int {
	var f simulateFlags
	fs := newSimulateFlagSet(&f, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, simulateHelp)
			return exitOK
		}
		fmt.Fprintln(stderr, "Run 'modelgate simulate --help' for the flags.")
		return exitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	cfgs, err := f.configs(fs.Args(), set)
	if err != nil {
		fmt.Fprintf(stderr, "simulate: %v\nRun 'modelgate simulate --help' for the flags.\n", err)
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	results := make([]*sim.Result, len(cfgs))
	for i, c := range cfgs {
		res, err := sim.Run(ctx, c)
		if err != nil {
			fmt.Fprintf(stderr, "simulate: %v\n", err)
			if errors.Is(err, sim.ErrConfig) {
				return exitUsage
			}
			return exitError
		}
		res.Label = seriesLabel(c, len(f.batch) > 1)
		results[i] = res
	}

	// The header describes what all series share; the batch size is in the
	// labels when it differs between series.
	header := cfgs[0]
	if len(f.batch) > 1 {
		header.Batch = 0
	}
	if f.plot != "" {
		if err := writePlot(f, header, results); err != nil {
			fmt.Fprintf(stderr, "simulate: %v\n", err)
			return exitError
		}
	}
	switch f.format {
	case "json":
		err = writeSimJSON(stdout, results)
	case "csv":
		err = writeSimCSV(stdout, results)
	default:
		err = writeSimTable(stdout, header, results)
	}
	if err != nil {
		fmt.Fprintf(stderr, "simulate: %v\n", err)
		return exitError
	}
	return exitOK
}

// configs checks the flags and turns them into one sim.Config per series.
// Range checks sim.Config.Validate makes on its own are left to it.
func (f *simulateFlags) configs(args []string, set map[string]bool) ([]sim.Config, error) {
	if len(args) > 0 {
		return nil, usageErr("unexpected argument %q: simulate takes only flags", args[0])
	}
	switch f.format {
	case "table", "csv", "json":
	default:
		return nil, usageErr("--format %q: want table, csv or json", f.format)
	}
	if f.horizon < 1 || f.runs < 1 {
		return nil, usageErr("--horizon %d --runs %d: both must be at least 1", f.horizon, f.runs)
	}

	// Arms.
	var rates []float64
	switch {
	case set["rates"]:
		for _, other := range []string{"k", "best", "gap", "arm-prior"} {
			if set[other] {
				return nil, usageErr("--rates already gives the arms: drop --%s (arms joining under churn take --new-arm-prior)", other)
			}
		}
		rates = f.rates
	case !set["k"]:
		return nil, usageErr("no arms: give --rates R1,R2,…, or --k K with --best P --gap EPS, or --k K with --arm-prior A,B")
	case f.k < 1:
		return nil, usageErr("--k %d: need at least one arm", f.k)
	case set["arm-prior"] && (set["best"] || set["gap"]):
		return nil, usageErr("--arm-prior draws the rates at random: drop --best and --gap")
	case set["arm-prior"]:
	case set["best"] != set["gap"]:
		return nil, usageErr("--best and --gap go together")
	case !set["best"]:
		return nil, usageErr("--k %d needs --best P --gap EPS or --arm-prior A,B", f.k)
	case !(f.best >= 0 && f.best <= 1):
		return nil, usageErr("--best %v: must be a rate in [0, 1]", f.best)
	case !(f.gap >= 0 && f.gap <= f.best):
		return nil, usageErr("--gap %v: must be in [0, --best]", f.gap)
	default:
		rates = make([]float64, f.k)
		rates[0] = f.best
		for i := 1; i < f.k; i++ {
			rates[i] = f.best - f.gap
		}
	}

	if set["new-arm-prior"] && !(f.churn > 0) {
		return nil, usageErr("--new-arm-prior is for arms joining under --churn, which is 0")
	}
	if (set["plot-title"] || set["log-x"]) && f.plot == "" {
		return nil, usageErr("--plot-title and --log-x shape the plot: give --plot FILE.svg")
	}
	if set["rates-after"] && !set["change-at"] {
		return nil, usageErr("--rates-after needs --change-at")
	}
	if len(f.changeAt) != len(f.ratesAfter) {
		return nil, usageErr("%d --change-at steps but %d --rates-after lists: give one list per change point", len(f.changeAt), len(f.ratesAfter))
	}
	var changes []sim.Change
	for i, at := range f.changeAt {
		changes = append(changes, sim.Change{At: at, Rates: f.ratesAfter[i]})
	}

	// Policies and their parameters.
	if len(f.policies) == 0 {
		return nil, usageErr("--policy: no policy named")
	}
	for _, p := range f.policies {
		if !slices.Contains(sim.PolicyNames(), p) {
			return nil, usageErr("--policy %q: want one of %s", p, strings.Join(sim.PolicyNames(), ", "))
		}
	}
	if dup := firstDuplicate(f.policies); dup != "" {
		return nil, usageErr("--policy: %s named twice", dup)
	}
	for _, pf := range []struct {
		flag     string
		policies []string
	}{
		{"epsilon", []string{sim.EpsilonGreedy}},
		{"ucb-c", []string{sim.UCB1}},
		{"half-life", []string{sim.DiscountedThompson}},
		{"min-share", []string{sim.Thompson, sim.DiscountedThompson}},
		{"prior", []string{sim.Thompson, sim.DiscountedThompson}},
	} {
		if set[pf.flag] && !slices.ContainsFunc(f.policies, func(p string) bool { return slices.Contains(pf.policies, p) }) {
			return nil, usageErr("--%s applies only to %s, which --policy does not name", pf.flag, strings.Join(pf.policies, " and "))
		}
	}
	if set["ucb-c"] && !(f.ucbC > 0) {
		return nil, usageErr("--ucb-c %v: must be positive", f.ucbC)
	}
	if !(f.halfLife > 0) {
		return nil, usageErr("--half-life %v: must be positive", f.halfLife)
	}
	if len(f.batch) == 0 {
		return nil, usageErr("--batch: no value")
	}
	for _, d := range f.batch {
		if d < 1 {
			return nil, usageErr("--batch %d: must be at least 1", d)
		}
	}
	if dup := firstDuplicate(f.batch); dup != 0 {
		return nil, usageErr("--batch: %d named twice", dup)
	}
	if f.workers < 0 {
		return nil, usageErr("--workers %d: must not be negative", f.workers)
	}
	var prior bandit.Prior
	if f.prior.p != nil {
		prior = *f.prior.p
	}

	var cfgs []sim.Config
	for _, name := range f.policies {
		for _, d := range f.batch {
			c := sim.Config{
				Policy: sim.Policy{
					Name: name, Prior: prior, MinShare: f.minShare,
					Epsilon: f.epsilon, UCBC: f.ucbC, HalfLife: f.halfLife,
				},
				Rates:       rates,
				K:           f.k,
				ArmPrior:    f.armPrior.p,
				NewArmPrior: f.newArmPrior.p,
				Horizon:     f.horizon,
				Runs:        f.runs,
				Seed:        f.seed,
				Batch:       d,
				Churn:       f.churn,
				Changes:     changes,
				Workers:     f.workers,
			}
			if err := c.Validate(); err != nil {
				return nil, usageErr("%s", strings.TrimPrefix(err.Error(), sim.ErrConfig.Error()+": "))
			}
			cfgs = append(cfgs, c)
		}
	}
	return cfgs, nil
}

func firstDuplicate[T comparable](xs []T) T {
	var zero T
	seen := map[T]bool{}
	for _, x := range xs {
		if seen[x] {
			return x
		}
		seen[x] = true
	}
	return zero
}

// seriesLabel names a series in tables and plots: its policy, with its
// parameter, and its batch size when several are compared.
func seriesLabel(c sim.Config, batches bool) string {
	l := c.Policy.Name
	switch c.Policy.Name {
	case sim.EpsilonGreedy:
		l += fmt.Sprintf(" ε=%g", c.Policy.Epsilon)
	case sim.DiscountedThompson:
		l += fmt.Sprintf(" h=%g", c.Policy.HalfLife)
	}
	if c.Policy.MinShare > 0 && (c.Policy.Name == sim.Thompson || c.Policy.Name == sim.DiscountedThompson) {
		l += fmt.Sprintf(" floor=%g", c.Policy.MinShare)
	}
	if batches {
		l += fmt.Sprintf(" batch=%d", c.Batch)
	}
	return l
}

func writeSimJSON(w io.Writer, results []*sim.Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if len(results) == 1 {
		return enc.Encode(results[0])
	}
	return enc.Encode(results)
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func writeSimCSV(w io.Writer, results []*sim.Result) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"series", "policy", "batch", "t", "regret_mean", "regret_stderr", "lai_robbins"})
	for _, r := range results {
		for _, p := range r.Checkpoints {
			lr := ""
			if p.LaiRobbins != nil {
				lr = formatFloat(*p.LaiRobbins)
			}
			_ = cw.Write([]string{r.Label, r.Policy, strconv.Itoa(r.Batch), strconv.Itoa(p.T),
				formatFloat(p.RegretMean), formatFloat(p.RegretStderr), lr})
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeSimTable(w io.Writer, cfg sim.Config, results []*sim.Result) error {
	fmt.Fprintf(w, "%s\nhorizon %d, %d runs, seed %d; cumulative regret: mean ± standard error\n",
		cfg.Environment(), cfg.Horizon, cfg.Runs, cfg.Seed)
	lr := results[0].LaiRobbinsC
	if lr != nil {
		fmt.Fprintf(w, "C·ln t: the Lai–Robbins asymptotic lower bound, C = %.3f. As t → ∞ every consistent policy's\n"+
			"expected regret is at least (C − o(1))·ln t; it is not a bound at each t: a good policy may lie below it.\n", *lr)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "t\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t", r.Label)
	}
	if lr != nil {
		fmt.Fprint(tw, "C·ln t (asymptotic)\t")
	}
	fmt.Fprintln(tw)
	for i, p := range results[0].Checkpoints {
		fmt.Fprintf(tw, "%d\t", p.T)
		for _, r := range results {
			c := r.Checkpoints[i]
			fmt.Fprintf(tw, "%s ± %s\t", tableNum(c.RegretMean), tableNum(c.RegretStderr))
		}
		if p.LaiRobbins != nil {
			fmt.Fprintf(tw, "%.1f\t", *p.LaiRobbins)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// tableNum prints a regret with one decimal, or three below 1.
func tableNum(v float64) string {
	if math.Abs(v) < 1 {
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func writePlot(f simulateFlags, cfg sim.Config, results []*sim.Result) error {
	title := f.plotTitle
	if title == "" {
		labels := make([]string, len(results))
		for i, r := range results {
			labels[i] = r.Label
		}
		title = "Cumulative regret: " + strings.Join(labels, " vs ")
		if len([]rune(title)) > 75 {
			title = "Cumulative regret"
		}
	}
	out, err := os.Create(f.plot)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	err = sim.WriteSVG(out, results, sim.PlotOptions{
		Title:    title,
		Subtitle: fmt.Sprintf("%s; horizon %d, %d runs, seed %d", cfg.Environment(), cfg.Horizon, cfg.Runs, cfg.Seed),
		LogX:     f.logX,
	})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("plot %s: %w", f.plot, err)
	}
	return nil
}
