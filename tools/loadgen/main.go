// Command loadgen is an open-loop load generator for a running gateway: it
// sends recommend calls at a fixed rate, each timed from the moment it was
// due (so a stalled server shows in the latencies instead of slowing the
// sender down), spreads them over many distinct segment values and user
// ids, clicks one served item in -click of them (off the timed call), and
// prints a summary. The pacing is internal/loadtest's open loop.
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
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/internal/loadtest"
)

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
	window := flag.Duration("window", time.Minute, "also report p50 and p99 for each window of this length (a steady-state run: is p99 flat?)")
	flag.Parse()
	if *rate <= 0 || *segments <= 0 || *users <= 0 || *workers <= 0 || *window < time.Second {
		fmt.Fprintln(os.Stderr, "loadgen: -rate, -segments, -users and -workers must be positive, -window at least 1s")
		os.Exit(2)
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: *workers, MaxIdleConnsPerHost: *workers, IdleConnTimeout: time.Minute}}

	// Clicks go to their own workers, off the timed recommend calls; one
	// that finds them all busy is dropped and counted.
	type clickEvent struct{ predictionID, item string }
	clicks := make(chan clickEvent, 4096)
	var nClicks, clickErrs, clicksDropped atomic.Int64
	var clickers sync.WaitGroup
	for range 16 {
		clickers.Add(1)
		go func() {
			defer clickers.Done()
			for c := range clicks {
				ev := fmt.Sprintf(`{"events":[{"prediction_id":%q,"type":"click","item_id":%q}]}`, c.predictionID, c.item)
				nClicks.Add(1)
				if st, _ := post(context.Background(), client, *url+"/v1/feedback", *key, []byte(ev)); st != 200 {
					clickErrs.Add(1)
				}
			}
		}()
	}

	var mu sync.Mutex
	statuses := map[int]int{} // of the calls that were sent; 0: transport error
	recommend := func(ctx context.Context, i int) error {
		rng := rand.New(rand.NewPCG(*seed, uint64(i)))
		body := fmt.Sprintf(`{"user_id":"%s%d","context":{"surface":"s%d"},"k":10}`,
			*userPrefix, rng.IntN(*users), rng.IntN(*segments))
		st, pred := post(ctx, client, *url+"/v1/endpoints/"+*endpoint+"/recommend", *key, []byte(body))
		mu.Lock()
		statuses[st]++
		mu.Unlock()
		if st != 200 {
			return fmt.Errorf("recommend: status %d", st)
		}
		if pred.PredictionID != "" && len(pred.Items) > 0 && rng.Float64() < *click {
			select {
			case clicks <- clickEvent{pred.PredictionID, pred.Items[0].ID}:
			default:
				clicksDropped.Add(1)
			}
		}
		return nil
	}

	// The server's memory, every 10 s while the load runs.
	var mem []rss
	var rssAt []time.Duration
	start := time.Now()
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampled)
		if *pid <= 0 {
			return
		}
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			mem, rssAt = append(mem, readRSS(*pid)), append(rssAt, time.Since(start).Round(time.Second))
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	// The run in windows, each its own open loop (call numbers continue
	// across them), so that each window's percentiles can be told apart.
	var lat []time.Duration
	var failed, dropped int
	var windows []string
	for done := time.Duration(0); done < *duration; {
		w := min(*window, *duration-done)
		base := int(int64(*rate) * int64(done) / int64(time.Second))
		l, f, _, d, _ := loadtest.OpenLoop(context.Background(), func(ctx context.Context, i int) error { return recommend(ctx, base+i) },
			*rate, w, 10*time.Second, *workers)
		lat, failed, dropped = append(lat, l...), failed+f, dropped+d
		done += w
		windows = append(windows, fmt.Sprintf("  to %s: p50 %s  p99 %s  ok %d  failed %d", done.Round(time.Second),
			loadtest.Percentile(l, 0.5).Round(time.Microsecond), loadtest.Percentile(l, 0.99).Round(time.Microsecond), len(l), f+d))
	}
	slices.Sort(lat)
	close(stopSampling)
	<-sampled
	if *pid > 0 {
		mem, rssAt = append(mem, readRSS(*pid)), append(rssAt, time.Since(start).Round(time.Second))
	}
	close(clicks)
	clickers.Wait()

	ok := len(lat)
	fmt.Printf("sent %d in %s (%d rps target), %d segments, %d users\n", ok+failed+dropped, *duration, *rate, *segments, *users)
	fmt.Printf("latency p50 %s  p90 %s  p99 %s  max %s\n", loadtest.Percentile(lat, 0.5), loadtest.Percentile(lat, 0.9),
		loadtest.Percentile(lat, 0.99), loadtest.Percentile(lat, 1))
	if len(windows) > 1 {
		fmt.Printf("by window of %s:\n%s\n", *window, strings.Join(windows, "\n"))
	}
	var codes []string
	for st, n := range statuses {
		if st != 200 {
			codes = append(codes, fmt.Sprintf("%d×%d", n, st))
		}
	}
	if dropped > 0 {
		codes = append(codes, fmt.Sprintf("%d×-1", dropped))
	}
	sort.Strings(codes)
	fmt.Printf("ok %d  failed %d %v  (-1: no free worker, 0: transport error)\n", ok, failed+dropped, codes)
	fmt.Printf("clicks %d (failed %d, dropped %d)\n", nClicks.Load(), clickErrs.Load(), clicksDropped.Load())
	if len(mem) > 0 {
		var parts []string
		for i, r := range mem {
			parts = append(parts, fmt.Sprintf("%s:%.1f+%.1f", rssAt[i], float64(r.anon)/(1<<20), float64(r.file)/(1<<20)))
		}
		fmt.Printf("server RSS MiB (anonymous+file-backed) %s\n", strings.Join(parts, " "))
		// Growth after the first minute (after the first half of a
		// shorter run): what the steady state adds.
		base, warm := 0, min(time.Minute, *duration/2)
		for i, at := range rssAt {
			if at >= warm {
				base = i
				break
			}
		}
		growth := func(a, b int64) float64 { return 100 * float64(b-a) / float64(max(a, 1)) }
		last := mem[len(mem)-1]
		fmt.Printf("RSS growth after %s: %+.1f%% (anonymous %+.1f%%, file-backed %+.1f%%)\n", rssAt[base],
			growth(mem[base].total(), last.total()), growth(mem[base].anon, last.anon), growth(mem[base].file, last.file))
	}
	if failed+dropped > 0 {
		os.Exit(1)
	}
}

type prediction struct {
	PredictionID string `json:"prediction_id"`
	Items        []struct {
		ID string `json:"id"`
	} `json:"items"`
}

func post(ctx context.Context, c *http.Client, url, key string, body []byte) (int, prediction) {
	var p prediction
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
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

// rss is a process's resident memory: its anonymous part (heap, stacks)
// and its file-backed part (mapped files such as the embedded store, which
// the kernel may drop and read again).
type rss struct{ anon, file int64 }

func (r rss) total() int64 { return r.anon + r.file }

// readRSS returns pid's resident memory in bytes, zero when unknown.
func readRSS(pid int) rss {
	var r rss
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return r
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	kb := func(v string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return n << 10
	}
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			r.anon = kb(v)
		} else if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			r.file += kb(v)
		} else if v, ok := strings.CutPrefix(sc.Text(), "RssShmem:"); ok {
			r.file += kb(v)
		}
	}
	return r
}
