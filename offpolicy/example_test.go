package offpolicy_test

import (
	"fmt"
	"time"

	"github.com/modelgate/modelgate/offpolicy"
)

// The doubly robust estimate of arm "a" on a segmented endpoint: 100
// predictions in each of two segments, a served half of them at p = 0.5,
// and 10 of its 50 were clicked in k=x, 30 of 50 in k=y. The direct-method
// guesses q are those rates, 0.2 and 0.6, so each segment's correction
// (Σ r/p − q·Σ 1/p = 20 − 0.2·100 and 60 − 0.6·100) is 0 and dr is the
// guesses' mean, 0.4, as snips is. The terms are 0.2 (b served), 1.8 and
// −0.2 (a, clicked or not) in k=x, 0.6, 1.4 and −0.6 in k=y: Σ terms² =
// 120 over 200, se = √((0.6 − 0.16)/200) = 0.0469. SNIPS' interval, which
// does not know the segments differ, is a little wider.
func ExampleResult_DR() {
	var t offpolicy.Table
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	arms := []string{"a", "b"}
	for seg, clicks := range map[string]int{"k=x": 10, "k=y": 30} {
		for i := 0; i < 100; i++ {
			t.Served("shop", seg, at, arms, []float64{0.5, 0.5}, i%2, 0.5)
			if i%2 == 0 && i/2 < clicks {
				t.Success("shop", seg, "a", at, 0.5)
			}
		}
	}
	res := t.Query("shop", "all", true, time.Time{}, time.Time{})
	guess := map[string]float64{"k=x": 0.2, "k=y": 0.6}
	dr, ci, _ := res.DR("a", func(segment string) float64 { return guess[segment] })
	s := res.Arms["a"]
	fmt.Printf("snips %.2f [%.3f, %.3f]\n", s.SNIPS, s.CI95[0], s.CI95[1])
	fmt.Printf("dr    %.2f [%.3f, %.3f]\n", dr, ci[0], ci[1])
	// Output:
	// snips 0.40 [0.304, 0.496]
	// dr    0.40 [0.308, 0.492]
}
