package sim

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/bandit"
)

func ptr[T any](v T) *T { return &v }

func TestScenarioConfigs(t *testing.T) {
	base := func() Scenario {
		return Scenario{Rates: []float64{0.5, 0.4}, Horizon: 100, Runs: 2, Batches: []int{1}, Policies: []string{Thompson}}
	}
	beta := &bandit.Prior{Alpha: 1, Beta: 1}
	tests := []struct {
		name string
		edit func(s *Scenario)
		want string // substring of the error; "" = valid
	}{
		{"valid", func(s *Scenario) {}, ""},
		{"valid gap", func(s *Scenario) { s.Rates, s.K, s.Best, s.Gap = nil, ptr(3), ptr(0.5), ptr(0.1) }, ""},
		{"valid arm prior", func(s *Scenario) { s.Rates, s.K, s.ArmPrior = nil, ptr(3), beta }, ""},
		{"no arms", func(s *Scenario) { s.Rates = nil }, "no arms"},
		{"zero horizon", func(s *Scenario) { s.Horizon = 0 }, "--horizon 0 --runs 2: both must be at least 1"},
		{"rates and k", func(s *Scenario) { s.K = ptr(2) }, "drop --k"},
		{"rates and arm prior", func(s *Scenario) { s.ArmPrior = beta }, "drop --arm-prior"},
		{"k alone", func(s *Scenario) { s.Rates, s.K = nil, ptr(3) }, "--k 3 needs --best P --gap EPS or --arm-prior A,B"},
		{"zero arms", func(s *Scenario) { s.Rates, s.K, s.Best, s.Gap = nil, ptr(0), ptr(0.5), ptr(0.1) }, "--k 0"},
		{"best without gap", func(s *Scenario) { s.Rates, s.K, s.Best = nil, ptr(3), ptr(0.5) }, "--best and --gap go together"},
		{"gap above best", func(s *Scenario) { s.Rates, s.K, s.Best, s.Gap = nil, ptr(3), ptr(0.1), ptr(0.2) }, "--gap 0.2"},
		{"best above 1", func(s *Scenario) { s.Rates, s.K, s.Best, s.Gap = nil, ptr(3), ptr(1.5), ptr(0.2) }, "--best 1.5"},
		{"arm prior and best", func(s *Scenario) { s.Rates, s.K, s.ArmPrior, s.Best = nil, ptr(3), beta, ptr(0.5) }, "drop --best and --gap"},
		{"new-arm prior without churn", func(s *Scenario) { s.NewArmPrior = beta }, "--new-arm-prior is for arms joining under --churn"},
		{"rates-after alone", func(s *Scenario) { s.RatesAfter = [][]float64{{0.4, 0.5}} }, "--rates-after needs --change-at"},
		{"change without rates", func(s *Scenario) { s.ChangeAt = []int{5} }, "1 --change-at steps but 0 --rates-after lists"},
		{"change beyond horizon", func(s *Scenario) { s.ChangeAt, s.RatesAfter = []int{500}, [][]float64{{0.4, 0.5}} }, "change 1 at step 500"},
		{"no policy", func(s *Scenario) { s.Policies = nil }, "--policy: no policy named"},
		{"unknown policy", func(s *Scenario) { s.Policies = []string{Thompson, "greedy"} }, `--policy "greedy"`},
		{"policy twice", func(s *Scenario) { s.Policies = []string{UCB1, UCB1} }, "ucb1 named twice"},
		{"epsilon without its policy", func(s *Scenario) { s.Epsilon = ptr(0.2) }, "--epsilon applies only to epsilon-greedy"},
		{"prior with ucb1", func(s *Scenario) { s.Policies, s.Prior = []string{UCB1}, beta }, "--prior applies only to thompson and discounted-thompson"},
		{"zero ucb-c", func(s *Scenario) { s.Policies, s.UCBC = []string{UCB1}, ptr(0.0) }, "--ucb-c 0"},
		{"zero half-life", func(s *Scenario) { s.Policies, s.HalfLife = []string{DiscountedThompson}, ptr(0.0) }, "--half-life 0"},
		{"min-share above 1", func(s *Scenario) { s.MinShare = ptr(3.0) }, "min-share 3"},
		{"no batch", func(s *Scenario) { s.Batches = nil }, "--batch: no value"},
		{"zero batch", func(s *Scenario) { s.Batches = []int{0} }, "--batch 0"},
		{"batch twice", func(s *Scenario) { s.Batches = []int{5, 5} }, "--batch: 5 named twice"},
		{"negative workers", func(s *Scenario) { s.Workers = -1 }, "--workers -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.edit(&s)
			cfgs, err := s.Configs()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Configs: %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Configs: nil, want an error with %q", tt.want)
			case tt.want != "" && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Configs: %v, want ErrConfig with %q", err, tt.want)
			}
			for _, c := range cfgs {
				if err := c.Validate(); err != nil {
					t.Errorf("config %+v: %v", c, err)
				}
			}
		})
	}
}

func TestScenarioExpands(t *testing.T) {
	s := Scenario{K: ptr(3), Best: ptr(0.5), Gap: ptr(0.1), Horizon: 100, Runs: 2, Batches: []int{1, 10},
		Policies: []string{EpsilonGreedy, DiscountedThompson}, MinShare: ptr(0.01)}
	cfgs, err := s.Configs()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cfgs {
		got = append(got, s.Label(c))
		if !slices.Equal(c.Rates, []float64{0.5, 0.4, 0.4}) {
			t.Errorf("rates %v, want 0.5, 0.4, 0.4", c.Rates)
		}
		if c.Policy.Epsilon != DefaultEpsilon || c.Policy.HalfLife != DefaultHalfLife || c.Policy.UCBC != bandit.DefaultUCBC {
			t.Errorf("policy %+v: want the default parameters", c.Policy)
		}
	}
	want := []string{"epsilon-greedy ε=0.1 batch=1", "epsilon-greedy ε=0.1 batch=10",
		"discounted-thompson h=1000 floor=0.01 batch=1", "discounted-thompson h=1000 floor=0.01 batch=10"}
	if !slices.Equal(got, want) {
		t.Errorf("series %q, want %q", got, want)
	}
}

func TestWriters(t *testing.T) {
	cfg := Config{Rates: []float64{0.5, 0.4}, Horizon: 50, Runs: 2}
	a := mustRun(t, cfg)
	cfg.Policy.Name = UCB1
	b := mustRun(t, cfg)
	a.Label, b.Label = "thompson", "ucb1"
	results := []*Result{a, b}

	var buf bytes.Buffer
	if err := WriteJSON(&buf, results[:1]); err != nil {
		t.Fatal(err)
	}
	var one map[string]any
	if err := json.Unmarshal(buf.Bytes(), &one); err != nil || one["policy"] != "thompson" {
		t.Errorf("one result: %v, %v; want an object", one, err)
	}
	buf.Reset()
	if err := WriteJSON(&buf, results); err != nil {
		t.Fatal(err)
	}
	var many []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &many); err != nil || len(many) != 2 {
		t.Errorf("two results: %d, %v; want an array of 2", len(many), err)
	}

	buf.Reset()
	if err := WriteCSV(&buf, results); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// Header, then checkpoints 10, 20, 50 per series.
	if len(rows) != 1+2*3 || rows[6][0] != "ucb1" || rows[6][3] != "50" || rows[6][6] == "" {
		t.Errorf("CSV rows %v", rows)
	}

	buf.Reset()
	if err := WriteTable(&buf, cfg, results); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"2 arms, rates 0.5, 0.4", "horizon 50, 2 runs, seed 0", "Lai–Robbins", "C·ln t (asymptotic)", " ± "} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	if err := WriteTable(&buf, cfg, nil); err == nil {
		t.Error("WriteTable of no results: nil error")
	}

	if got := PlotTitle(results); got != "Cumulative regret: thompson vs ucb1" {
		t.Errorf("PlotTitle = %q", got)
	}
	if got := PlotTitle([]*Result{{Label: strings.Repeat("x", 80)}}); got != "Cumulative regret" {
		t.Errorf("long PlotTitle = %q", got)
	}
}
