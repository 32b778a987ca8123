// Command loadgen is an open-loop load generator for a running gateway: it
// sends recommend calls at a fixed rate, each timed from the moment it was
// due (so a stalled server shows in the latencies instead of slowing the
// sender down), spreads them over many distinct segment values and user
// ids, clicks one served item in -click of them, and prints a summary.
//
//	go run ./tools/loadgen -url http://127.0.0.1:8080 -endpoint home \
//	    -rate 1000 -duration 60s -segments 5000 -users 1000000 -pid $(pidof modelgate)
//
// Traffic goes only where -url points; the run stops by itself after
// -duration.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type result struct {
	latency time.Duration
	status  int // 0: transport error
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "gateway base URL")
	endpoint := flag.String("endpoint", "home", "endpoint to call")
	rate := flag.Int("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 30*time.Second, "how long to send")
	segments := flag.Int("segments", 10, "distinct values of context.surface")
	users := flag.Int("users", 400, "distinct user ids (u0…)")
	userPrefix := flag.String("user-prefix", "u", "user ids are this prefix and a number")
	click := flag.Float64("click", 0.1, "share of served predictions that get a click")
	workers := flag.Int("workers", 512, "most calls in flight at once")
	key := flag.String("key", "", "API key (Authorization: Bearer)")
	pid := flag.Int("pid", 0, "server pid: report its resident memory (Linux /proc)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if *rate <= 0 || *segments <= 0 || *users <= 0 || *workers <= 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -rate, -segments, -users and -workers must be positive")
		os.Exit(2)
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: *workers, MaxIdleConnsPerHost: *workers, IdleConnTimeout: time.Minute}}
	type job struct {
		due  time.Time
		body []byte
	}
	jobs := make(chan job, *workers)
	results := make(chan result, 4096)
	var clicks, clickErrs, late int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(*seed, uint64(w)))
			for j := range jobs {
				st, pred := post(client, *url+"/v1/endpoints/"+*endpoint+"/recommend", *key, j.body)
				results <- result{latency: time.Since(j.due), status: st}
				if st == 200 && pred.PredictionID != "" && len(pred.Items) > 0 && rng.Float64() < *click {
					ev := fmt.Sprintf(`{"events":[{"prediction_id":%q,"type":"click","item_id":%q}]}`, pred.PredictionID, pred.Items[0].ID)
					cst, _ := post(client, *url+"/v1/feedback", *key, []byte(ev))
					mu.Lock()
					clicks++
					if cst != 200 {
						clickErrs++
					}
					mu.Unlock()
				}
			}
		}(w)
	}
	var lat []time.Duration
	statuses := map[int]int{}
	done := make(chan struct{})
	go func() {
		for r := range results {
			lat = append(lat, r.latency)
			statuses[r.status]++
		}
		close(done)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var rss []int64
	rssAt := []time.Duration{}
	start := time.Now()
	if *pid > 0 {
		rss, rssAt = append(rss, readRSS(*pid)), append(rssAt, 0)
	}
	rng := rand.New(rand.NewPCG(*seed, 1<<40))
	interval := time.Second / time.Duration(*rate)
	next := start
	nextRSS := start.Add(10 * time.Second)
	sent := 0
pacing:
	for {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				break pacing
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		body := fmt.Sprintf(`{"user_id":"%s%d","context":{"surface":"s%d"},"k":10}`,
			*userPrefix, rng.IntN(*users), rng.IntN(*segments))
		select {
		case jobs <- job{due: next, body: []byte(body)}:
		default:
			late++ // every worker busy: counted as a failure, never queued behind
			results <- result{latency: time.Since(next), status: -1}
		}
		sent++
		next = next.Add(interval)
		if *pid > 0 && time.Now().After(nextRSS) {
			rss, rssAt = append(rss, readRSS(*pid)), append(rssAt, time.Since(start).Round(time.Second))
			nextRSS = nextRSS.Add(10 * time.Second)
		}
	}
	close(jobs)
	wg.Wait()
	close(results)
	<-done
	if *pid > 0 {
		rss, rssAt = append(rss, readRSS(*pid)), append(rssAt, time.Since(start).Round(time.Second))
	}

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	ok := statuses[200]
	fmt.Printf("sent %d in %s (%d rps target), %d segments, %d users\n", sent, *duration, *rate, *segments, *users)
	fmt.Printf("latency p50 %s  p90 %s  p99 %s  max %s\n", pct(0.5), pct(0.9), pct(0.99), pct(1))
	var codes []string
	for st, n := range statuses {
		if st != 200 {
			codes = append(codes, fmt.Sprintf("%d×%d", n, st))
		}
	}
	sort.Strings(codes)
	fmt.Printf("ok %d  failed %d %v  (-1: no free worker, 0: transport error)\n", ok, len(lat)-ok, codes)
	fmt.Printf("clicks %d (failed %d)\n", clicks, clickErrs)
	if len(rss) > 0 {
		var parts []string
		for i, r := range rss {
			parts = append(parts, fmt.Sprintf("%s:%.1fMiB", rssAt[i], float64(r)/(1<<20)))
		}
		fmt.Printf("server RSS %s\n", strings.Join(parts, " "))
		// Growth after the first minute (after the first half of a
		// shorter run): what the steady state adds.
		base, warm := 0, min(time.Minute, *duration/2)
		for i, at := range rssAt {
			if at >= warm {
				base = i
				break
			}
		}
		if rss[base] > 0 {
			fmt.Printf("RSS growth after %s: %+.1f%%\n", rssAt[base], 100*float64(rss[len(rss)-1]-rss[base])/float64(rss[base]))
		}
	}
	if ok != len(lat) {
		os.Exit(1)
	}
}

type prediction struct {
	PredictionID string `json:"prediction_id"`
	Items        []struct {
		ID string `json:"id"`
	} `json:"items"`
}

func post(c *http.Client, url, key string, body []byte) (int, prediction) {
	var p prediction
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, p
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, p
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		_ = json.Unmarshal(raw, &p)
	}
	return resp.StatusCode, p
}

// readRSS returns the resident set size of pid in bytes, 0 when unknown.
func readRSS(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
