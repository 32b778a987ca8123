package bandit_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/modelgate/modelgate/bandit"
)

// A Thompson-sampling endpoint with a 5% exploration floor: the arm with
// the better click rate takes most traffic, the paused arm none.
func ExamplePolicy_Choose() {
	arms := []bandit.Arm{
		{Trials: 1200, Successes: 96, Active: true},  // mf@1: 8%
		{Trials: 1200, Successes: 132, Active: true}, // mf@2: 11%
		{Trials: 1200, Successes: 300},               // mf@3: paused by the kill switch
	}
	policy := &bandit.Policy{MinShare: 0.05}
	r := rand.New(rand.NewPCG(1, 2)) // one source per goroutine

	served := make([]int, len(arms))
	for range 10000 {
		served[policy.Choose(r, arms)]++
	}
	fmt.Println("served:", served)

	shares := make([]float64, len(arms))
	policy.Shares(r, arms, 10000, shares)
	fmt.Printf("traffic_share: [%.3f %.3f %.3f]\n", shares[0], shares[1], shares[2])
	// Output:
	// served: [542 9458 0]
	// traffic_share: [0.056 0.944 0.000]
}

// The analysts' report for two arms still too close to call: P(best) is
// below 0.95 and up to 9% relative uplift may remain (95th percentile), so
// the experiment keeps running.
func ExampleAnalyze() {
	arms := []bandit.Arm{
		{Trials: 1200, Successes: 96, Active: true},
		{Trials: 1200, Successes: 110, Active: true},
	}
	a := bandit.Analyze(rand.New(rand.NewPCG(1, 2)), bandit.Prior{}, arms, 10000)
	for i, s := range a.Arms {
		fmt.Printf("arm %d: rate %.4f ci95 [%.4f, %.4f] p_best %.2f expected_loss %.4f\n",
			i, s.Rate, s.CILow, s.CIHigh, s.PBest, s.ExpectedLoss)
	}
	fmt.Printf("best: arm %d, value remaining %.2f, regret %.0f clicks\n", a.Best, a.ValueRemaining, a.ExpectedRegret)
	// Output:
	// arm 0: rate 0.0807 ci95 [0.0660, 0.0967] p_best 0.15 expected_loss 0.0126
	// arm 1: rate 0.0923 ci95 [0.0766, 0.1093] p_best 0.85 expected_loss 0.0009
	// best: arm 1, value remaining 0.09, regret 16 clicks
}
