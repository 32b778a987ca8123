package storetest

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/shadow"
	"github.com/modelgate/modelgate/store"
)

// ShadowStore is the store of the shadows' sums and lists, with the sweep
// that forgets expired lists where the store needs one.
type ShadowStore interface {
	shadow.Store
	feedback.Store
}

// RunShadows tests shadow.Store: concurrent adds to a shadow's sums all
// land, endpoints and arms apart; a prediction's lists are read back until
// they expire and are forgotten after.
func RunShadows(t *testing.T, open func(t *testing.T) ShadowStore) {
	ctx := context.Background()
	t.Run("sums add up exactly", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					d := map[store.ShadowKey]map[string]int64{
						{Endpoint: "home", Arm: "mf@3"}: {"calls": 2, "errors": 1},
						{Endpoint: "away", Arm: "mf@3"}: {"calls": 1},
					}
					if err := s.AddShadowSums(ctx, d); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		got, err := s.ShadowSums(ctx, "home", []string{"mf@3", "mf@4"})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]map[string]int64{"mf@3": {"calls": 160, "errors": 80}}
		if len(got) != 1 || !maps.Equal(got["mf@3"], want["mf@3"]) {
			t.Fatalf("home: %v, want %v", got, want)
		}
		got, _ = s.ShadowSums(ctx, "away", []string{"mf@3"})
		if got["mf@3"]["calls"] != 80 || got["mf@3"]["errors"] != 0 {
			t.Fatalf("away: %v", got)
		}
	})
	t.Run("lists live until they expire", func(t *testing.T) {
		s := open(t)
		live, dead := time.Now().Add(time.Hour), time.Now().Add(-time.Minute)
		if err := s.PutShadowLists(ctx, []store.ShadowList{
			{Endpoint: "home", Prediction: "p1", Expires: live, Value: []byte(`{"v":"p1"}`)},
			{Endpoint: "home", Prediction: "p2", Expires: dead, Value: []byte(`{"v":"p2"}`)},
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SweepExpired(ctx, 100); err != nil {
			t.Fatal(err)
		}
		if v, err := s.ShadowLists(ctx, "home", "p1", live); err != nil || string(v) != `{"v":"p1"}` {
			t.Fatalf("live lists: %q, %v", v, err)
		}
		if v, err := s.ShadowLists(ctx, "away", "p1", live); err != nil || v != nil {
			t.Fatalf("another endpoint's: %q, %v", v, err)
		}
		if v, err := s.ShadowLists(ctx, "home", "p2", dead); err != nil || v != nil {
			t.Fatalf("expired lists: %q, %v", v, err)
		}
	})
}
