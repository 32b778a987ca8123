package sim

import (
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/bandit"
)

// parseScenario registers a Scenario's flags on a fresh flag set and parses
// args; the error is the flag package's, which names the flag.
func parseScenario(args ...string) (Scenario, error) {
	var s Scenario
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s.RegisterFlags(fs)
	err := fs.Parse(args)
	return s, err
}

func TestRegisterFlagsDefaults(t *testing.T) {
	s, err := parseScenario()
	if err != nil {
		t.Fatal(err)
	}
	want := Scenario{Horizon: 10000, Runs: 100, Seed: 1, Batches: []int{1}, Policies: []string{Thompson}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("no flags: got %+v, want %+v", s, want)
	}
}

func TestRegisterFlagsParse(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(Scenario) bool
		want  string // what check expects, for the failure message
	}{
		{"rates", []string{"--rates", "0.5, 0.4,1e-2"},
			func(s Scenario) bool { return reflect.DeepEqual(s.Rates, []float64{0.5, 0.4, 0.01}) }, "Rates [0.5 0.4 0.01]"},
		{"rates replace", []string{"--rates", "0.1", "--rates", "0.2,0.3"},
			func(s Scenario) bool { return reflect.DeepEqual(s.Rates, []float64{0.2, 0.3}) }, "Rates [0.2 0.3]"},
		{"k", []string{"--k", "3"}, func(s Scenario) bool { return s.K != nil && *s.K == 3 }, "K 3"},
		{"k hex like IntVar", []string{"--k", "0x10"}, func(s Scenario) bool { return s.K != nil && *s.K == 16 }, "K 16"},
		{"k zero is given", []string{"--k", "0"}, func(s Scenario) bool { return s.K != nil && *s.K == 0 }, "K 0, not nil"},
		{"k last wins", []string{"--k", "3", "--k", "4"}, func(s Scenario) bool { return *s.K == 4 }, "K 4"},
		{"best and gap", []string{"--best", "0.5", "--gap", "0.1"},
			func(s Scenario) bool { return *s.Best == 0.5 && *s.Gap == 0.1 }, "Best 0.5 Gap 0.1"},
		{"unset pointers stay nil", []string{"--rates", "0.5"},
			func(s Scenario) bool {
				return s.K == nil && s.Best == nil && s.Gap == nil && s.MinShare == nil && s.Epsilon == nil &&
					s.UCBC == nil && s.HalfLife == nil && s.ArmPrior == nil && s.NewArmPrior == nil && s.Prior == nil
			}, "every optional field nil"},
		{"default value given is given", []string{"--epsilon", "0.1", "--ucb-c", "2", "--half-life", "1000", "--min-share", "0"},
			func(s Scenario) bool {
				return s.Epsilon != nil && *s.Epsilon == DefaultEpsilon && s.UCBC != nil && *s.UCBC == bandit.DefaultUCBC &&
					s.HalfLife != nil && *s.HalfLife == DefaultHalfLife && s.MinShare != nil && *s.MinShare == 0
			}, "Epsilon, UCBC, HalfLife, MinShare set to the defaults"},
		{"beta flags", []string{"--arm-prior", "2,3", "--new-arm-prior", "1, 1", "--prior", "0.5,0.5"},
			func(s Scenario) bool {
				return *s.ArmPrior == bandit.Prior{Alpha: 2, Beta: 3} && *s.NewArmPrior == bandit.Prior{Alpha: 1, Beta: 1} &&
					*s.Prior == bandit.Prior{Alpha: 0.5, Beta: 0.5}
			}, "ArmPrior Beta(2,3), NewArmPrior Beta(1,1), Prior Beta(0.5,0.5)"},
		{"environment", []string{"--horizon", "50", "--runs", "3", "--seed", "7", "--churn", "0.25", "--workers", "2"},
			func(s Scenario) bool {
				return s.Horizon == 50 && s.Runs == 3 && s.Seed == 7 && s.Churn == 0.25 && s.Workers == 2
			}, "Horizon 50 Runs 3 Seed 7 Churn 0.25 Workers 2"},
		{"batch replaces the default", []string{"--batch", "1, 10,100"},
			func(s Scenario) bool { return reflect.DeepEqual(s.Batches, []int{1, 10, 100}) }, "Batches [1 10 100]"},
		{"change points", []string{"--change-at", "10,20", "--rates-after", "0.1,0.2;0.3,0.4"},
			func(s Scenario) bool {
				return reflect.DeepEqual(s.ChangeAt, []int{10, 20}) &&
					reflect.DeepEqual(s.RatesAfter, [][]float64{{0.1, 0.2}, {0.3, 0.4}})
			}, "ChangeAt [10 20] RatesAfter [[0.1 0.2] [0.3 0.4]]"},
		{"rates-after repeated appends", []string{"--rates-after", "0.1,0.2", "--rates-after", "0.3;0.4"},
			func(s Scenario) bool { return reflect.DeepEqual(s.RatesAfter, [][]float64{{0.1, 0.2}, {0.3}, {0.4}}) },
			"RatesAfter [[0.1 0.2] [0.3] [0.4]]"},
		{"policies", []string{"--policy", " ucb1, ,thompson,"},
			func(s Scenario) bool { return reflect.DeepEqual(s.Policies, []string{UCB1, Thompson}) }, "Policies [ucb1 thompson]"},
		{"empty policy list", []string{"--policy", ","},
			func(s Scenario) bool { return s.Policies == nil }, "Policies nil (Configs refuses it)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseScenario(tt.args...)
			if err != nil {
				t.Fatalf("%q: %v", tt.args, err)
			}
			if !tt.check(s) {
				t.Errorf("%q: got %+v, want %s", tt.args, s, tt.want)
			}
		})
	}
}

func TestRegisterFlagsBad(t *testing.T) {
	tests := []struct {
		args []string
		want string // the whole error, as the flag package reports it
	}{
		{[]string{"--rates", "0.5,x"}, `invalid value "0.5,x" for flag -rates: "x" is not a number`},
		{[]string{"--rates", "0.5,,0.4"}, `invalid value "0.5,,0.4" for flag -rates: "" is not a number`},
		{[]string{"--rates", "NaN"}, `invalid value "NaN" for flag -rates: "NaN" is not a number`},
		{[]string{"--rates", "0.5,Inf"}, `invalid value "0.5,Inf" for flag -rates: "Inf" is not a number`},
		{[]string{"--k", "abc"}, `invalid value "abc" for flag -k: parse error`},
		{[]string{"--k", "2.5"}, `invalid value "2.5" for flag -k: parse error`},
		{[]string{"--k", "99999999999999999999"}, `invalid value "99999999999999999999" for flag -k: value out of range`},
		{[]string{"--best", "x"}, `invalid value "x" for flag -best: parse error`},
		{[]string{"--gap", "1e999"}, `invalid value "1e999" for flag -gap: value out of range`},
		{[]string{"--epsilon", ""}, `invalid value "" for flag -epsilon: parse error`},
		{[]string{"--k"}, "flag needs an argument: -k"},
		{[]string{"--arm-prior", "1"}, `invalid value "1" for flag -arm-prior: want A,B: two positive numbers, the shapes of Beta(A,B)`},
		{[]string{"--prior", "1,2,3"}, `invalid value "1,2,3" for flag -prior: want A,B: two positive numbers, the shapes of Beta(A,B)`},
		{[]string{"--new-arm-prior", "0,1"}, `invalid value "0,1" for flag -new-arm-prior: want A,B: two positive numbers, the shapes of Beta(A,B)`},
		{[]string{"--prior", "-1,1"}, `invalid value "-1,1" for flag -prior: want A,B: two positive numbers, the shapes of Beta(A,B)`},
		{[]string{"--prior", "a,1"}, `invalid value "a,1" for flag -prior: "a" is not a number`},
		{[]string{"--batch", "1,x"}, `invalid value "1,x" for flag -batch: "x" is not an integer`},
		{[]string{"--change-at", "1.5"}, `invalid value "1.5" for flag -change-at: "1.5" is not an integer`},
		{[]string{"--rates-after", "0.1;y"}, `invalid value "0.1;y" for flag -rates-after: "y" is not a number`},
		{[]string{"--horizon", "abc"}, `invalid value "abc" for flag -horizon: parse error`},
		{[]string{"--seed", "-1"}, `invalid value "-1" for flag -seed: parse error`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := parseScenario(tt.args...)
			if err == nil || err.Error() != tt.want {
				t.Errorf("%q: error %v, want %s", tt.args, err, tt.want)
			}
		})
	}
}

// TestFlagValueString checks the values' String, which the flag package
// calls for a flag's default and on the zero value of a flag's type.
func TestFlagValueString(t *testing.T) {
	var nilPrior *bandit.Prior
	prior := &bandit.Prior{Alpha: 2, Beta: 0.5}
	k := 3
	kp := &k
	var nilK *int
	tests := []struct {
		name string
		v    flag.Value
		want string
	}{
		{"floatList", &floatList{0.5, 1e-3}, "0.5,0.001"},
		{"nil floatList", (*floatList)(nil), ""},
		{"intList", &intList{1, 10}, "1,10"},
		{"nil intList", (*intList)(nil), ""},
		{"rateLists", &rateLists{{0.1, 0.2}, {0.3}}, "0.1,0.2;0.3"},
		{"nil rateLists", (*rateLists)(nil), ""},
		{"stringList", &stringList{"a", "b"}, "a,b"},
		{"nil stringList", (*stringList)(nil), ""},
		{"betaFlag", betaFlag{&prior}, "2,0.5"},
		{"betaFlag not given", betaFlag{&nilPrior}, ""},
		{"zero betaFlag", betaFlag{}, ""},
		{"optional", optional[int]{&kp, parseInt}, "3"},
		{"optional not given", optional[int]{&nilK, parseInt}, ""},
		{"zero optional", optional[float64]{}, ""},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%s: String() = %q, want %q", tt.name, got, tt.want)
		}
	}
}
