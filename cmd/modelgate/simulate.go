package main

// `modelgate simulate`: the offline bandit simulator (package sim) on the
// command line. sim registers the flags that fill a sim.Scenario, checks it
// and expands it into one sim.Config per (policy, batch) series; the command
// adds the output flags, runs the series and prints them in sim's table, CSV
// or JSON form, and optionally writes sim's SVG chart.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/modelgate/modelgate/internal/cli"
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
  --value                the arms pay value rewards instead of clicks: each
                         reward a fraction in [0, 1] (a value endpoint's
                         capped reward ÷ cap) with mean the arm's rate,
                         counted as fractional successes as the gateway does
  --new-arm-prior A,B    Beta distribution of the rates of arms that join under
                         churn (default: --arm-prior)
  --change-at T1,T2,…    steps at which every arm's true rate changes at once
  --rates-after R1,R2,…  the rates from the corresponding --change-at step on,
                         one list per change point: repeat the flag or
                         separate the lists with ';' (quote it in a shell)

Policy:
  --policy P[,P2,…]      thompson | uniform | epsilon-greedy | ucb1 |
                         discounted-thompson | linear-thompson (see
                         Contextual world below); several names run one series
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

Contextual world (--policy linear-thompson):
  Naming linear-thompson plays a world whose best arm depends on the request:
  a segment s (one context key, --segments values) and a number z ~ N(0,1);
  arm a clicks with p = 0.3 + u[a][s] + w[a]·z, u ~ N(0, 0.05²) and
  w ~ N(0, 0.08²) drawn per run. linear-thompson over x = (1, one-hot s, z),
  λ = 1, noise 0.5, is compared with thompson per segment (segment_by the
  key) and plain thompson on the same requests and clicks. It takes --k
  (default 4), --segments, --horizon, --runs, --seed, one --batch (the
  linear posteriors are refitted at each) and --min-share.
  --segments N           values of the context key (default 8, at most 62)

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
  modelgate simulate --policy linear-thompson --horizon 20000 --runs 50 --batch 100

Exit status: 0 ok; 1 the run failed (e.g. the plot could not be written);
2 usage error (bad flags).
`

// simulateFlags is what simulate's flags fill in: the scenario (its flags
// are sim's) and the output options, which only the command knows.
type simulateFlags struct {
	scn          sim.Scenario
	format, plot string
	plotTitle    string
	logX         bool
}

// newSimulateFlagSet defines simulate's flags, parsed into f; errors go to
// stderr.
func newSimulateFlagSet(f *simulateFlags, stderr io.Writer) *flag.FlagSet {
	*f = simulateFlags{}
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.scn.RegisterFlags(fs)
	fs.StringVar(&f.format, "format", "table", "table, csv or json")
	fs.StringVar(&f.plot, "plot", "", "write an SVG chart to this file")
	fs.BoolVar(&f.logX, "log-x", true, "logarithmic t axis in the plot")
	fs.StringVar(&f.plotTitle, "plot-title", "", "title of the plot")
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
			return cli.ExitOK
		}
		fmt.Fprintln(stderr, "Run 'modelgate simulate --help' for the flags.")
		return cli.ExitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	scn, err := f.scenario(fs.Args(), set)
	var cfgs []sim.Config
	var world sim.World
	contextual := false
	if err == nil {
		world, contextual, err = scn.World()
	}
	if err == nil && !contextual {
		cfgs, err = scn.Configs()
	}
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), sim.ErrConfig.Error()+": ")
		fmt.Fprintf(stderr, "simulate: %s\nRun 'modelgate simulate --help' for the flags.\n", msg)
		return cli.ExitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if contextual {
		results, err := sim.RunWorld(ctx, world)
		if err != nil {
			fmt.Fprintf(stderr, "simulate: %v\n", err)
			return cli.ExitError
		}
		return writeResults(&f, world.Config(), results, stdout, stderr)
	}
	results := make([]*sim.Result, len(cfgs))
	for i, c := range cfgs {
		res, err := sim.Run(ctx, c)
		if err != nil {
			fmt.Fprintf(stderr, "simulate: %v\n", err)
			if errors.Is(err, sim.ErrConfig) {
				return cli.ExitUsage
			}
			return cli.ExitError
		}
		res.Label = scn.Label(c)
		results[i] = res
	}

	// The header describes what all series share; the batch size is in the
	// labels when it differs between series.
	header := cfgs[0]
	if len(scn.Batches) > 1 {
		header.Batch = 0
	}
	return writeResults(&f, header, results, stdout, stderr)
}

// writeResults writes the plot, if asked for, and the results in the
// chosen format; header describes what the series share.
func writeResults(f *simulateFlags, header sim.Config, results []*sim.Result, stdout, stderr io.Writer) int {
	if f.plot != "" {
		if err := writePlot(f, header, results); err != nil {
			fmt.Fprintf(stderr, "simulate: %v\n", err)
			return cli.ExitError
		}
	}
	var err error
	switch f.format {
	case "json":
		err = sim.WriteJSON(stdout, results)
	case "csv":
		err = sim.WriteCSV(stdout, results)
	default:
		err = sim.WriteTable(stdout, header, results)
	}
	if err != nil {
		fmt.Fprintf(stderr, "simulate: %v\n", err)
		return cli.ExitError
	}
	return cli.ExitOK
}

// scenario checks what only the command line knows (arguments, output
// format, plot options) and returns the scenario sim's flags filled in; the
// scenario's own rules are sim's.
func (f *simulateFlags) scenario(args []string, set map[string]bool) (*sim.Scenario, error) {
	if len(args) > 0 {
		return nil, fmt.Errorf("unexpected argument %q: simulate takes only flags", args[0])
	}
	switch f.format {
	case "table", "csv", "json":
	default:
		return nil, fmt.Errorf("--format %q: want table, csv or json", f.format)
	}
	if (set["plot-title"] || set["log-x"]) && f.plot == "" {
		return nil, errors.New("--plot-title and --log-x shape the plot: give --plot FILE.svg")
	}
	return &f.scn, nil
}

func writePlot(f *simulateFlags, cfg sim.Config, results []*sim.Result) error {
	title := f.plotTitle
	if title == "" {
		title = sim.PlotTitle(results)
	}
	out, err := os.Create(f.plot)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	err = sim.WriteSVG(out, results, sim.PlotOptions{Title: title, Subtitle: cfg.Environment() + "; " + cfg.Summary(), LogX: f.logX})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("plot %s: %w", f.plot, err)
	}
	return nil
}
