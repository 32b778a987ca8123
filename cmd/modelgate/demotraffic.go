package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelgate/modelgate/examples/demo/groundtruth"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := demoTraffic(ctx, f, stdout); err != nil {
		fmt.Fprintf(stderr, "demo-traffic: %v\n", err)
		return 1
	}
	return 0
}

type demoClient struct {
	base string
	http *http.Client
}

func (c *demoClient) post(ctx context.Context, path string, in, out any) error {
	body, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, out)
}

func (c *demoClient) do(req *http.Request, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, out)
}

type demoTally struct {
	mu        sync.Mutex
	n         int
	clicked   int
	total     map[string]int
	window    map[string]int
	lastPrint int
}

func demoTraffic(ctx context.Context, f demoFlags, stdout io.Writer) error {
	truth, err := groundtruth.Load(f.truth)
	if err != nil {
		return err
	}
	users := truth.Users()
	surfaces := strings.Split(f.surfaces, ",")
	c := &demoClient{base: strings.TrimRight(f.server, "/"), http: &http.Client{Timeout: 10 * time.Second}}
	tally := &demoTally{total: map[string]int{}, window: map[string]int{}}
	fmt.Fprintf(stdout, "demo-traffic: %d requests to %s/v1/endpoints/%s/recommend, %d users\n", f.requests, c.base, f.endpoint, len(users))
	jobs := make(chan int)
	errc := make(chan error, f.concurrency)
	var wg sync.WaitGroup
	for w := 0; w < f.concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(f.seed, uint64(w)))
			for range jobs {
				if err := demoOne(ctx, c, f, truth, users, surfaces, rng, tally, stdout); err != nil {
					errc <- err
					return
				}
			}
		}(w)
	}
	var runErr error
loop:
	for i := 0; i < f.requests; i++ {
		select {
		case jobs <- i:
		case runErr = <-errc:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	close(jobs)
	wg.Wait()
	if runErr == nil {
		select {
		case runErr = <-errc:
		default:
		}
	}
	if runErr != nil {
		return runErr
	}
	return printReport(ctx, c, f.endpoint, stdout)
}

type demoRec struct {
	PredictionID string `json:"prediction_id"`
	Arm          string `json:"arm"`
	Items        []struct {
		ID string `json:"id"`
	} `json:"items"`
}

func demoOne(ctx context.Context, c *demoClient, f demoFlags, truth *groundtruth.Truth, users, surfaces []string,
	rng *rand.Rand, tally *demoTally, stdout io.Writer) error {
	user := users[rng.IntN(len(users))]
	in := map[string]any{"user_id": user, "k": f.k, "context": map[string]string{"surface": surfaces[rng.IntN(len(surfaces))]}}
	var rec demoRec
	if err := c.post(ctx, "/v1/endpoints/"+f.endpoint+"/recommend", in, &rec); err != nil {
		return err
	}
	var events []map[string]string
	for _, it := range rec.Items {
		if rng.Float64() < truth.ClickProb(user, it.ID) {
			events = append(events, map[string]string{"prediction_id": rec.PredictionID, "type": "click", "item_id": it.ID})
		}
	}
	if len(events) > 0 {
		var res struct {
			Accepted int `json:"accepted"`
		}
		if err := c.post(ctx, "/v1/feedback", map[string]any{"events": events}, &res); err != nil {
			return err
		}
	}
	tally.mu.Lock()
	defer tally.mu.Unlock()
	tally.n++
	if len(events) > 0 {
		tally.clicked++
	}
	tally.total[rec.Arm]++
	tally.window[rec.Arm]++
	if tally.n-tally.lastPrint >= f.every {
		fmt.Fprintf(stdout, "%6d requests  last %d: %s  success rate so far %.3f\n", tally.n, tally.n-tally.lastPrint,
			shares(tally.window, tally.n-tally.lastPrint), float64(tally.clicked)/float64(tally.n))
		tally.lastPrint = tally.n
		clear(tally.window)
	}
	return nil
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

func printReport(ctx context.Context, c *demoClient, endpoint string, stdout io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/endpoints/"+endpoint+"/report", nil)
	if err != nil {
		return err
	}
	var rep struct {
		Arms []struct {
			Arm          string     `json:"arm"`
			Trials       uint64     `json:"trials"`
			Successes    uint64     `json:"successes"`
			Rate         float64    `json:"rate"`
			CI95         [2]float64 `json:"ci95"`
			PBest        float64    `json:"p_best"`
			TrafficShare float64    `json:"traffic_share"`
		} `json:"arms"`
		Decision struct {
			Status string  `json:"status"`
			Arm    *string `json:"arm"`
		} `json:"decision"`
		Regret struct {
			ExpectedCumulative float64 `json:"expected_cumulative"`
		} `json:"regret"`
	}
	if err := c.do(req, &rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nreport for %s:\n%-10s %8s %9s %7s %17s %7s %7s\n", endpoint, "arm", "trials", "successes", "rate", "ci95", "p_best", "share")
	for _, a := range rep.Arms {
		fmt.Fprintf(stdout, "%-10s %8d %9d %7.4f [%7.4f,%7.4f] %7.3f %7.3f\n", a.Arm, a.Trials, a.Successes, a.Rate, a.CI95[0], a.CI95[1], a.PBest, a.TrafficShare)
	}
	winner := "none yet"
	if rep.Decision.Arm != nil {
		winner = *rep.Decision.Arm
	}
	fmt.Fprintf(stdout, "decision: %s (winner: %s), expected cumulative regret %.1f\n", rep.Decision.Status, winner, rep.Regret.ExpectedCumulative)
	return nil
}
