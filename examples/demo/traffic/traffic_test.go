package traffic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/client"
	"github.com/modelgate/modelgate/examples/demo/groundtruth"
	"github.com/modelgate/modelgate/examples/demo/traffic"
	"github.com/modelgate/modelgate/router"
)

// fakeGateway answers recommend with the demo's first k items, from arms
// "a" and "b" in turn, and records the clicks it is sent.
type fakeGateway struct {
	items []string
	fail  bool // recommend answers 503

	mu     sync.Mutex
	n      int
	clicks []string // prediction id/item id, in arrival order
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case r.URL.Path == "/v1/endpoints/home/recommend" && g.fail:
		http.Error(w, `{"error":{"code":"unavailable","message":"down"}}`, http.StatusServiceUnavailable)
	case r.URL.Path == "/v1/endpoints/home/recommend":
		var req api.RecommendRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.K == nil || req.UserID == nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		g.n++
		resp := router.Response{PredictionID: fmt.Sprintf("p%d", g.n), Endpoint: "home", Arm: []string{"a", "b"}[g.n%2]}
		for _, id := range g.items[:*req.K] {
			resp.Items = append(resp.Items, backend.Item{ID: id})
		}
		_ = json.NewEncoder(w).Encode(resp)
	case r.URL.Path == "/v1/feedback":
		var req api.FeedbackRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		for _, e := range req.Events {
			g.clicks = append(g.clicks, e.PredictionID+"/"+e.ItemID)
		}
		_ = json.NewEncoder(w).Encode(map[string]int{"accepted": len(req.Events)})
	default:
		http.NotFound(w, r)
	}
}

func TestRun(t *testing.T) {
	truth, err := groundtruth.Load("../truth")
	if err != nil {
		t.Fatal(err)
	}
	play := func(t *testing.T, g *fakeGateway, opt traffic.Options) ([]traffic.Progress, error) {
		srv := httptest.NewServer(g)
		defer srv.Close()
		c, err := client.New(srv.URL, client.Options{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var got []traffic.Progress
		opt.Progress = func(p traffic.Progress) {
			n := 0
			for _, v := range p.Arms {
				n += v
			}
			if n != p.Window {
				t.Errorf("progress %+v: arms add up to %d, not the window", p, n)
			}
			p.Arms = nil // valid only during the call
			got = append(got, p)
		}
		return got, traffic.Run(context.Background(), c, truth, opt)
	}
	opt := traffic.Options{Endpoint: "home", Requests: 200, Users: 1, Seed: 3, K: 10, Surfaces: []string{"home"}, Every: 50}

	t.Run("sequential", func(t *testing.T) {
		var runs [][]string
		for range 2 {
			g := &fakeGateway{items: truth.Items()}
			progress, err := play(t, g, opt)
			if err != nil {
				t.Fatal(err)
			}
			if g.n != 200 {
				t.Errorf("%d recommend calls, want 200", g.n)
			}
			if len(progress) != 4 || progress[3].Requests != 200 || progress[3].Window != 50 {
				t.Errorf("progress %+v, want 4 reports of 50 requests", progress)
			}
			if last := progress[len(progress)-1]; last.Successes == 0 || last.Successes > 200 {
				t.Errorf("%d successes in 200 requests", last.Successes)
			}
			runs = append(runs, g.clicks)
		}
		if len(runs[0]) == 0 || !slices.Equal(runs[0], runs[1]) {
			t.Errorf("two runs with seed 3 clicked %d and %d items, or differently", len(runs[0]), len(runs[1]))
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		g := &fakeGateway{items: truth.Items()}
		o := opt
		o.Users = 4
		if _, err := play(t, g, o); err != nil || g.n != 200 {
			t.Fatalf("%d calls, %v; want 200 and nil", g.n, err)
		}
	})
	t.Run("gateway down", func(t *testing.T) {
		_, err := play(t, &fakeGateway{items: truth.Items(), fail: true}, opt)
		if err == nil || !strings.Contains(err.Error(), "recommend") {
			t.Fatalf("Run: %v, want the recommend error", err)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		o := opt
		o.Surfaces = nil
		if _, err := play(t, &fakeGateway{}, o); err == nil {
			t.Fatal("Run without surfaces: nil error")
		}
	})
}
