package sim

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

// In a world whose best arm depends on the request, linear-thompson's
// regret is well below Thompson sampling's, per segment or not; the
// result depends on the seed only.
func TestRunWorldLinearBeatsSegments(t *testing.T) {
	w := DefaultWorld()
	w.Horizon, w.Runs = 5000, 20
	res, err := RunWorld(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Label != LinearThompson {
		t.Fatalf("results %v", res)
	}
	lin, seg, plain := res[0], res[1], res[2]
	// 4 (summed) standard errors apart at least: not a lucky seed.
	gap := func(a, b *Result) float64 { return (b.RegretMean - a.RegretMean) / (a.RegretStderr + b.RegretStderr) }
	if gap(lin, seg) < 4 || gap(lin, plain) < 4 {
		t.Fatalf("regret at %d: linear %v ± %v, per segment %v ± %v, plain %v ± %v", w.Horizon,
			lin.RegretMean, lin.RegretStderr, seg.RegretMean, seg.RegretStderr, plain.RegretMean, plain.RegretStderr)
	}
	again, err := RunWorld(context.Background(), w)
	if err != nil || again[0].RegretMean != lin.RegretMean {
		t.Fatalf("not reproducible: %v then %v (%v)", lin.RegretMean, again[0].RegretMean, err)
	}
	if env := w.Config(); !strings.HasPrefix(env.Environment(), "contextual: 4 arms, 8 segments") {
		t.Fatalf("environment %q", env.Environment())
	}
}

func TestScenarioWorld(t *testing.T) {
	tests := []struct {
		args []string
		ok   bool
		err  string
	}{
		{[]string{"--policy", "thompson"}, false, ""},
		{[]string{"--policy", "linear-thompson,thompson", "--k", "3", "--segments", "5", "--batch", "50"}, true, ""},
		{[]string{"--policy", "linear-thompson", "--rates", "0.1,0.2"}, false, "--rates does not apply"},
		{[]string{"--policy", "linear-thompson,ucb1"}, false, "--policy ucb1"},
		{[]string{"--policy", "linear-thompson", "--segments", "63"}, false, "--segments 63"},
		{[]string{"--policy", "linear-thompson", "--batch", "1,10"}, false, "one value"},
		{[]string{"--policy", "thompson", "--segments", "4", "--k", "2", "--best", "0.5", "--gap", "0.1"}, false, "--segments describes"},
	}
	for _, tc := range tests {
		var s Scenario
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		s.RegisterFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		w, ok, err := s.World()
		if tc.err != "" {
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want one with %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || ok != tc.ok {
			t.Errorf("%v: %v, %v", tc.args, ok, err)
		}
		if ok && (w.K != 3 || w.Segments != 5 || w.Batch != 50) {
			t.Errorf("%v: world %+v", tc.args, w)
		}
	}
}
