package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/modelgate/modelgate/client"
	"github.com/modelgate/modelgate/examples/demo/groundtruth"
	"github.com/modelgate/modelgate/examples/demo/traffic"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/topk"
)

type demoFlags struct {
	server      string
	endpoint    string
	truth       string
	requests    int
	concurrency int
	seed        uint64
	every       int
	k           int
	surfaces    string
}

func runDemoTraffic(args []string, stdout, stderr io.Writer) int {
	var f demoFlags
	fs := flag.NewFlagSet("demo-traffic", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.server, "server", "http://127.0.0.1:8080", "gateway base URL")
	fs.StringVar(&f.endpoint, "endpoint", "home", "endpoint to call")
	fs.StringVar(&f.truth, "truth", "examples/demo/truth", "directory of the demo's ground truth")
	fs.IntVar(&f.requests, "requests", 5000, "number of recommend calls")
	fs.IntVar(&f.concurrency, "concurrency", 4, "simulated users in parallel")
	fs.Uint64Var(&f.seed, "seed", 1, "random seed of the simulated users")
	fs.IntVar(&f.every, "every", 250, "print traffic shares every this many requests")
	fs.IntVar(&f.k, "k", 10, "items per recommendation")
	fs.StringVar(&f.surfaces, "surfaces", "home,music", "comma-separated values of context.surface, chosen at random")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: modelgate demo-traffic [--server URL] [--endpoint NAME] [--requests N] [--seed S]")
		fmt.Fprintln(stderr, "Plays simulated users against a running gateway: each asks for a recommendation,")
		fmt.Fprintln(stderr, "clicks items with the demo's ground-truth probabilities, and sends the clicks back.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if f.requests < 1 || f.concurrency < 1 || f.every < 1 || f.k < 1 {
		fmt.Fprintln(stderr, "demo-traffic: --requests, --concurrency, --every and --k must be ≥ 1")
		return 2
	}
	if err := topk.Check(f.k, false); err != nil {
		// Refused here rather than by every request the run would send.
		fmt.Fprintf(stderr, "demo-traffic: --k: %s\n", fault.As(err).Message)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := demoTraffic(ctx, f, stdout); err != nil {
		fmt.Fprintf(stderr, "demo-traffic: %v\n", err)
		return 1
	}
	return 0
}

// demoTraffic plays f's simulated users against the gateway, printing the
// arms' traffic shares as it goes and the endpoint's report at the end.
func demoTraffic(ctx context.Context, f demoFlags, stdout io.Writer) error {
	truth, err := groundtruth.Load(f.truth)
	if err != nil {
		return err
	}
	c, err := client.New(strings.TrimRight(f.server, "/"), client.Options{Timeout: 10 * time.Second, UserAgent: "modelgate-demo-traffic"})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo-traffic: %d requests to %s/v1/endpoints/%s/recommend, %d users\n", f.requests, c.BaseURL(), f.endpoint, len(truth.Users()))
	err = traffic.Run(ctx, c, truth, traffic.Options{
		Endpoint: f.endpoint, Requests: f.requests, Users: f.concurrency, Seed: f.seed, K: f.k,
		Surfaces: strings.Split(f.surfaces, ","), Every: f.every,
		Progress: func(p traffic.Progress) {
			fmt.Fprintf(stdout, "%6d requests  last %d: %s  success rate so far %.3f\n", p.Requests, p.Window,
				shares(p.Arms, p.Window), float64(p.Successes)/float64(p.Requests))
		},
	})
	if err != nil {
		return err
	}
	return printReport(ctx, c, f.endpoint, stdout)
}

func shares(m map[string]int, n int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %5.1f%%  ", k, 100*float64(m[k])/float64(n))
	}
	return strings.TrimSpace(b.String())
}

func printReport(ctx context.Context, c *client.Client, endpoint string, stdout io.Writer) error {
	rep, err := c.Report(ctx, endpoint, client.ReportQuery{})
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	fmt.Fprintf(stdout, "\nreport for %s:\n%-10s %8s %9s %7s %17s %7s %7s\n", endpoint, "arm", "trials", "successes", "rate", "ci95", "p_best", "share")
	for _, a := range rep.Arms {
		fmt.Fprintf(stdout, "%-10s %8d %9.6g %7.4f [%7.4f,%7.4f] %7.3f %7.3f\n", a.Arm, a.Trials, a.Successes, a.Rate, a.CI95[0], a.CI95[1], a.PBest, a.TrafficShare)
	}
	winner := "none yet"
	if rep.Decision.Arm != nil {
		winner = *rep.Decision.Arm
	}
	fmt.Fprintf(stdout, "decision: %s (winner: %s), expected cumulative regret %.1f\n", rep.Decision.Status, winner, rep.Regret.ExpectedCumulative)
	return nil
}
