// Package traffic plays the demo's simulated users against a running
// gateway: each asks an endpoint for a recommendation, clicks the items
// shown with the probabilities of the demo's ground truth (package
// groundtruth), and sends the clicks back as feedback, so that the bandit
// has something true to learn.
package traffic

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/client"
	"github.com/modelgate/modelgate/examples/demo/groundtruth"
	"github.com/modelgate/modelgate/feedback"
)

// Options describe a run. Requests, Users and K must be at least 1, and
// Surfaces must name at least one surface.
type Options struct {
	// Endpoint is the endpoint every request goes to.
	Endpoint string
	// Requests is the number of recommend calls.
	Requests int
	// Users is the number of simulated users calling at the same time.
	// With 1 the run is sequential and depends on Seed alone.
	Users int
	// Seed seeds the simulated users: user w draws from (Seed, w).
	Seed uint64
	// K is the number of items asked for per request.
	K int
	// Surfaces are the values of context.surface, one chosen at random per
	// request.
	Surfaces []string
	// Every is how many requests each Progress call covers; 0 means no
	// Progress calls.
	Every int
	// Progress, when not nil, is called after every Every requests, by one
	// user at a time (the others wait), so it may write without locking.
	Progress func(Progress)
}

// Progress is the state of a run after Requests requests.
type Progress struct {
	// Requests is the number of requests answered so far.
	Requests int
	// Successes is how many of them got at least one click.
	Successes int
	// Window is the number of requests since the previous Progress, and
	// Arms how many of them each arm served. Arms is valid only during the
	// Progress call.
	Window int
	Arms   map[string]int
}

// tally is what the users have seen, shared by them.
type tally struct {
	mu        sync.Mutex
	n         int
	successes int
	window    map[string]int
	lastCall  int
}

// Run plays opt.Requests requests of simulated users from truth through c,
// and returns the first error a request or its feedback met, or nil when
// ctx ends first (the requests sent so far count). Every user goroutine has
// returned when Run does.
func Run(ctx context.Context, c *client.Client, truth *groundtruth.Truth, opt Options) error {
	if opt.Requests < 1 || opt.Users < 1 || opt.K < 1 || len(opt.Surfaces) == 0 {
		return fmt.Errorf("traffic: requests %d, users %d, k %d, %d surfaces: each must be at least 1",
			opt.Requests, opt.Users, opt.K, len(opt.Surfaces))
	}
	users := truth.Users()
	if len(users) == 0 {
		return fmt.Errorf("traffic: the ground truth knows no users")
	}
	t := &tally{window: map[string]int{}}
	jobs := make(chan int)
	errc := make(chan error, opt.Users)
	var wg sync.WaitGroup
	for w := range opt.Users {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(opt.Seed, uint64(w)))
			for range jobs {
				if err := one(ctx, c, opt, truth, users, rng, t); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	var runErr error
loop:
	for i := 0; i < opt.Requests; i++ {
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
	return runErr
}

// one plays one request of a random user.
func one(ctx context.Context, c *client.Client, opt Options, truth *groundtruth.Truth, users []string, rng *rand.Rand, t *tally) error {
	user := users[rng.IntN(len(users))]
	in := api.RecommendRequest{UserID: new(user), K: new(opt.K), Context: map[string]string{"surface": opt.Surfaces[rng.IntN(len(opt.Surfaces))]}}
	rec, err := c.Recommend(ctx, opt.Endpoint, in)
	if err != nil {
		return fmt.Errorf("recommend: %w", err)
	}
	var events []feedback.Event
	for _, it := range rec.Items {
		if rng.Float64() < truth.ClickProb(user, it.ID) {
			events = append(events, feedback.Event{PredictionID: rec.PredictionID, Type: "click", ItemID: it.ID})
		}
	}
	if len(events) > 0 {
		if _, err := c.Feedback(ctx, events); err != nil {
			return fmt.Errorf("feedback: %w", err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	if len(events) > 0 {
		t.successes++
	}
	t.window[rec.Arm]++
	if opt.Every > 0 && t.n-t.lastCall >= opt.Every {
		if opt.Progress != nil {
			opt.Progress(Progress{Requests: t.n, Successes: t.successes, Window: t.n - t.lastCall, Arms: t.window})
		}
		t.lastCall = t.n
		clear(t.window)
	}
	return nil
}
