package counters

import (
	"slices"
	"sync"
	"testing"

	"github.com/modelgate/modelgate/bandit"
)

func TestLinKeyEncoding(t *testing.T) {
	k := LinKey{Endpoint: "home", Arm: "mf@1", Layout: 0xdeadbeef}
	got, ok := DecodeLinKey(k.Encode())
	if !ok || got != k {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
	for _, bad := range []string{"", "home\x00mf@1", "home\x00mf@1\x00xyz", "home\x00mf@1\x00zzzzzzzz"} {
		if _, ok := DecodeLinKey(bad); ok {
			t.Errorf("DecodeLinKey(%q) accepted", bad)
		}
	}
}

// Trials and rewards land in the sums at once and in the pending delta
// until drained; a failed flush restores them; a refresh from a shared
// store keeps what is still pending on top of the store's totals.
func TestLinearSumsPendingAndRefresh(t *testing.T) {
	var tab Table
	k := LinKey{Endpoint: "home", Arm: "mf@1", Layout: 7}
	c := tab.Linear(k, 2)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				c.AddTrial([]float64{1, 0.5})
				c.AddReward([]float64{1, 0.5}, 1)
			}
		}()
	}
	wg.Wait()
	c.AddTrial([]float64{1, 2, 3}) // wrong length: ignored
	want := []float64{800, 800, 800, 400, 800, 400, 200}
	if got := c.Sums(); !slices.Equal(got, want) {
		t.Fatalf("sums %v, want %v", got, want)
	}
	d := tab.DrainLinear()
	if !slices.Equal(d[k], want) || len(d) != 1 {
		t.Fatalf("drained %v", d)
	}
	if again := tab.DrainLinear(); len(again) != 0 {
		t.Fatalf("drained twice: %v", again)
	}
	tab.RestoreLinear(d)
	c.AddTrial([]float64{1, 0})
	d = tab.DrainLinear()
	if want := []float64{801, 800, 800, 400, 801, 400, 200}; !slices.Equal(d[k], want) {
		t.Fatalf("restored and added: %v, want %v", d[k], want)
	}
	// The store has everything drained plus another replica's trial; one
	// more trial here is pending.
	c.AddTrial([]float64{0, 1})
	stored := []float64{802, 800, 800, 400, 802, 400, 200}
	tab.RefreshLinear(map[LinKey][]float64{k: stored, {Endpoint: "x", Arm: "y"}: {1, 2}})
	if got, want := c.Sums(), []float64{803, 800, 800, 400, 802, 400, 201}; !slices.Equal(got, want) {
		t.Fatalf("refreshed: %v, want %v", got, want)
	}
	if tab.LookupLinear(LinKey{Endpoint: "x", Arm: "y"}) != nil {
		t.Fatal("an entry of no valid length made a cell")
	}
}

// The posterior is fitted once per λ and then only by Refit, after the
// sums changed.
func TestLinearPosteriorRefit(t *testing.T) {
	var tab Table
	c := tab.Linear(LinKey{Endpoint: "home", Arm: "mf@1"}, 1)
	p0 := c.Posterior(1)
	if p0 == nil || p0.Mu[0] != 0 {
		t.Fatalf("prior: %+v", p0)
	}
	for range 9 {
		c.AddTrial([]float64{1})
		c.AddReward([]float64{1}, 1)
	}
	if c.Posterior(1) != p0 {
		t.Fatal("the request path refitted")
	}
	tab.Refit()
	p1 := c.Posterior(1)
	if want := 9.0 / 10; p1.Mu[0] != want { // b / (λ + n)
		t.Fatalf("μ = %v, want %v", p1.Mu[0], want)
	}
	if p2 := c.Posterior(2); p2.Mu[0] != 9.0/11 {
		t.Fatalf("λ = 2: μ = %v", p2.Mu[0])
	}
	if got := bandit.LinearSumsLen(1); len(c.Sums()) != got {
		t.Fatalf("len %d", len(c.Sums()))
	}
}
