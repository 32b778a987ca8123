package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/sim"
)

// simulate runs `modelgate simulate args…` in-process.
func simulate(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(append([]string{"simulate"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestSimulateHelp(t *testing.T) {
	for _, h := range []string{"--help", "-h"} {
		code, out, errOut := simulate(h)
		if code != 0 || errOut != "" {
			t.Fatalf("simulate %s: exit %d, stderr %q; want 0 and nothing", h, code, errOut)
		}
		// Every flag is documented.
		var f simulateFlags
		newSimulateFlagSet(&f, io.Discard).VisitAll(func(fl *flag.Flag) {
			if !strings.Contains(out, "--"+fl.Name+" ") && !strings.Contains(out, "--"+fl.Name+"\n") {
				t.Errorf("help does not document --%s", fl.Name)
			}
		})
		for _, p := range sim.PolicyNames() {
			if !strings.Contains(out, p) {
				t.Errorf("help does not name policy %s", p)
			}
		}
	}
	var help bytes.Buffer
	if code := run([]string{"help"}, &help, io.Discard); code != 0 || !strings.Contains(help.String(), "simulate") {
		t.Errorf("modelgate help: exit %d, want 0 and simulate listed:\n%s", code, help.String())
	}
}

func TestSimulateBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no arms", nil, "no arms"},
		{"unknown flag", []string{"--rates", "0.5,0.4", "--bogus"}, "flag provided but not defined: -bogus"},
		{"not a number", []string{"--rates", "0.5,x"}, `"x" is not a number`},
		{"bad horizon", []string{"--rates", "0.5,0.4", "--horizon", "abc"}, "invalid value"},
		{"zero horizon", []string{"--rates", "0.5,0.4", "--horizon", "0"}, "--horizon 0 --runs 100: both must be at least 1"},
		{"zero runs", []string{"--rates", "0.5,0.4", "--runs", "0"}, "--runs 0: both"},
		{"rate above 1", []string{"--rates", "0.5,1.4"}, "arm 2 rate 1.4"},
		{"rates and k", []string{"--rates", "0.5,0.4", "--k", "2"}, "drop --k"},
		{"k alone", []string{"--k", "3"}, "--k 3 needs --best P --gap EPS or --arm-prior A,B"},
		{"best without gap", []string{"--k", "3", "--best", "0.5"}, "--best and --gap go together"},
		{"gap above best", []string{"--k", "3", "--best", "0.1", "--gap", "0.2"}, "--gap 0.2"},
		{"zero arms", []string{"--k", "0", "--best", "0.5", "--gap", "0.1"}, "--k 0"},
		{"arm prior and best", []string{"--k", "3", "--arm-prior", "1,1", "--best", "0.5", "--gap", "0.1"}, "drop --best and --gap"},
		{"bad arm prior", []string{"--k", "3", "--arm-prior", "1"}, "want A,B"},
		{"negative prior", []string{"--rates", "0.5,0.4", "--prior", "-1,1"}, "want A,B"},
		{"churn without prior", []string{"--rates", "0.5,0.4", "--churn", "0.1"}, "churn needs a new-arm prior"},
		{"churn above 1", []string{"--k", "2", "--arm-prior", "1,1", "--churn", "1.5"}, "churn 1.5"},
		{"unknown policy", []string{"--rates", "0.5,0.4", "--policy", "thompson,greedy"}, `--policy "greedy"`},
		{"policy twice", []string{"--rates", "0.5,0.4", "--policy", "ucb1,ucb1"}, "ucb1 named twice"},
		{"epsilon without its policy", []string{"--rates", "0.5,0.4", "--epsilon", "0.2"}, "--epsilon applies only to epsilon-greedy"},
		{"half-life without its policy", []string{"--rates", "0.5,0.4", "--half-life", "10"}, "--half-life applies only to discounted-thompson"},
		{"ucb-c without its policy", []string{"--rates", "0.5,0.4", "--ucb-c", "1"}, "--ucb-c applies only to ucb1"},
		{"min-share with ucb1", []string{"--rates", "0.5,0.4", "--policy", "ucb1", "--min-share", "0.01"}, "--min-share applies only to thompson and discounted-thompson"},
		{"epsilon above 1", []string{"--rates", "0.5,0.4", "--policy", "epsilon-greedy", "--epsilon", "2"}, "epsilon 2"},
		{"zero half-life", []string{"--rates", "0.5,0.4", "--policy", "discounted-thompson", "--half-life", "0"}, "--half-life 0"},
		{"zero ucb-c", []string{"--rates", "0.5,0.4", "--policy", "ucb1", "--ucb-c", "0"}, "--ucb-c 0"},
		{"min-share above 1", []string{"--rates", "0.5,0.4", "--min-share", "3"}, "min-share 3"},
		{"zero batch", []string{"--rates", "0.5,0.4", "--batch", "0"}, "--batch 0"},
		{"bad format", []string{"--rates", "0.5,0.4", "--format", "xml"}, `--format "xml"`},
		{"rates-after alone", []string{"--rates", "0.5,0.4", "--rates-after", "0.4,0.5"}, "--rates-after needs --change-at"},
		{"change without rates", []string{"--rates", "0.5,0.4", "--change-at", "5"}, "1 --change-at steps but 0 --rates-after lists"},
		{"change beyond horizon", []string{"--rates", "0.5,0.4", "--horizon", "10", "--change-at", "50", "--rates-after", "0.4,0.5"}, "change 1 at step 50"},
		{"change rate count", []string{"--rates", "0.5,0.4", "--change-at", "5", "--rates-after", "0.4"}, "1 rates for 2 arms"},
		{"new-arm prior without churn", []string{"--rates", "0.5,0.4", "--new-arm-prior", "1,1"}, "--new-arm-prior is for arms joining under --churn"},
		{"log-x without plot", []string{"--rates", "0.5,0.4", "--log-x=false"}, "give --plot FILE.svg"},
		{"positional argument", []string{"--rates", "0.5,0.4", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := simulate(tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, errOut)
			}
			if !strings.Contains(errOut, "modelgate simulate --help") {
				t.Errorf("stderr does not point to --help:\n%s", errOut)
			}
			if out != "" {
				t.Errorf("stdout not empty on a usage error:\n%s", out)
			}
		})
	}
}

func TestSimulateJSON(t *testing.T) {
	code, out, errOut := simulate("--k", "10", "--best", "0.5", "--gap", "0.1", "--horizon", "1000", "--runs", "8", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &obj); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"policy", "horizon", "runs", "regret_mean", "regret_stderr", "lai_robbins", "checkpoints"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("JSON lacks %q:\n%s", k, out)
		}
	}
	var res struct {
		Policy       string   `json:"policy"`
		Horizon      int      `json:"horizon"`
		Runs         int      `json:"runs"`
		RegretMean   float64  `json:"regret_mean"`
		RegretStderr float64  `json:"regret_stderr"`
		LaiRobbins   *float64 `json:"lai_robbins"`
		Checkpoints  []struct {
			T            int      `json:"t"`
			RegretMean   *float64 `json:"regret_mean"`
			RegretStderr *float64 `json:"regret_stderr"`
			LaiRobbins   *float64 `json:"lai_robbins"`
		} `json:"checkpoints"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Policy != "thompson" || res.Horizon != 1000 || res.Runs != 8 {
		t.Errorf("policy %q horizon %d runs %d, want thompson 1000 8", res.Policy, res.Horizon, res.Runs)
	}
	wantLR := sim.LaiRobbinsConstant([]float64{0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4}) * math.Log(1000)
	if res.LaiRobbins == nil || math.Abs(*res.LaiRobbins-wantLR) > 1e-6 {
		t.Errorf("lai_robbins %v, want %v", res.LaiRobbins, wantLR)
	}
	if note := string(obj["lai_robbins_note"]); !strings.Contains(note, "asymptotic") || !strings.Contains(note, "not a bound at each t") {
		t.Errorf("lai_robbins_note %s: want it to say the bound is asymptotic", note)
	}
	var ts []int
	for _, c := range res.Checkpoints {
		ts = append(ts, c.T)
		if c.RegretMean == nil || c.RegretStderr == nil || c.LaiRobbins == nil {
			t.Errorf("checkpoint %d lacks a field", c.T)
		}
	}
	if want := []int{10, 20, 50, 100, 200, 500, 1000}; !slices.Equal(ts, want) {
		t.Errorf("checkpoints at %v, want %v", ts, want)
	}
	if last := res.Checkpoints[len(res.Checkpoints)-1]; *last.RegretMean != res.RegretMean || !(res.RegretMean > 0) {
		t.Errorf("regret_mean %v, last checkpoint %v: want equal and positive", res.RegretMean, *last.RegretMean)
	}

	// Random rates: lai_robbins is null, not absent.
	_, out, _ = simulate("--k", "3", "--arm-prior", "1,1", "--horizon", "100", "--runs", "4", "--format", "json")
	obj = nil // Unmarshal into a map keeps the keys it had
	if err := json.Unmarshal([]byte(out), &obj); err != nil {
		t.Fatal(err)
	}
	if lr, ok := obj["lai_robbins"]; !ok || string(lr) != "null" {
		t.Errorf("arm-prior run: lai_robbins %s (present %v), want null", lr, ok)
	}
	if note, ok := obj["lai_robbins_note"]; ok {
		t.Errorf("arm-prior run: lai_robbins_note %s, want none without a bound", note)
	}

	// Several series: an array, one object per (policy, batch).
	code, out, errOut = simulate("--rates", "0.5,0.4", "--horizon", "100", "--runs", "4", "--format", "json",
		"--policy", "thompson,ucb1", "--batch", "1,10")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var arr []struct {
		Policy string `json:"policy"`
		Batch  int    `json:"batch"`
	}
	if err := json.Unmarshal([]byte(out), &arr); err != nil {
		t.Fatalf("several series: not a JSON array: %v\n%s", err, out)
	}
	var got []string
	for _, a := range arr {
		got = append(got, a.Policy+"/"+strconv.Itoa(a.Batch))
	}
	if want := []string{"thompson/1", "thompson/10", "ucb1/1", "ucb1/10"}; !slices.Equal(got, want) {
		t.Errorf("series %v, want %v", got, want)
	}
}

// The output depends on the seed only: not on the run, nor on the number of
// cores.
func TestSimulateDeterministic(t *testing.T) {
	args := []string{"--k", "4", "--arm-prior", "2,5", "--churn", "0.01", "--batch", "3",
		"--horizon", "2000", "--runs", "9", "--seed", "42", "--format", "json",
		"--policy", "thompson,discounted-thompson,epsilon-greedy", "--half-life", "200"}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var outs []string
	for _, procs := range []int{1, 2, 2} {
		runtime.GOMAXPROCS(procs)
		code, out, errOut := simulate(args...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		outs = append(outs, out)
	}
	if outs[0] != outs[1] || outs[1] != outs[2] {
		t.Errorf("output differs between GOMAXPROCS 1 and 2 or between runs:\n%s\n---\n%s", outs[0], outs[1])
	}
	_, other, _ := simulate(append(args, "--seed", "43")...)
	if other == outs[0] {
		t.Error("seeds 42 and 43 give the same output")
	}
}

func TestSimulateTableAndCSV(t *testing.T) {
	args := []string{"--rates", "0.5,0.4,0.4", "--horizon", "500", "--runs", "5", "--policy", "thompson,epsilon-greedy"}
	code, out, errOut := simulate(args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"3 arms, rates 0.5, 0.4 ×2", "horizon 500, 5 runs, seed 1", "the Lai–Robbins asymptotic lower bound, C = ",
		"As t → ∞", "not a bound at each t", "thompson", "epsilon-greedy ε=0.1", "C·ln t (asymptotic)", " ± "} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); !strings.HasPrefix(strings.TrimSpace(lines[len(lines)-1]), "500 ") {
		t.Errorf("table's last row is not t = 500:\n%s", out)
	}

	code, out, errOut = simulate(append(args, "--format", "csv")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("not CSV: %v\n%s", err, out)
	}
	if want := []string{"series", "policy", "batch", "t", "regret_mean", "regret_stderr", "lai_robbins"}; !slices.Equal(rows[0], want) {
		t.Errorf("CSV header %v, want %v", rows[0], want)
	}
	// Two series × checkpoints 10, 20, 50, 100, 200, 500.
	if len(rows) != 1+2*6 {
		t.Errorf("%d CSV rows, want 13:\n%s", len(rows), out)
	}
	if r := rows[len(rows)-1]; r[1] != "epsilon-greedy" || r[3] != "500" || r[6] == "" {
		t.Errorf("last CSV row %v", r)
	}
}

func TestSimulateChangeAndPlot(t *testing.T) {
	dir := t.TempDir()
	plot := filepath.Join(dir, "regret.svg")
	// Two change points, given as one ';'-separated value and as a
	// repeated flag.
	for _, ra := range [][]string{
		{"--rates-after", "0.4,0.6;0.6,0.4"},
		{"--rates-after", "0.4,0.6", "--rates-after", "0.6,0.4"},
	} {
		args := append([]string{"--rates", "0.6,0.4", "--change-at", "300,600", "--horizon", "1000", "--runs", "4",
			"--policy", "thompson,discounted-thompson", "--half-life", "100", "--format", "json", "--plot", plot, "--log-x=false"}, ra...)
		code, out, errOut := simulate(args...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out, `"lai_robbins": null`) {
			t.Errorf("changing rates: lai_robbins not null:\n%s", out)
		}
		doc, err := os.ReadFile(plot)
		if err != nil {
			t.Fatal(err)
		}
		d := xml.NewDecoder(bytes.NewReader(doc))
		lines := 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("plot is not XML: %v", err)
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
				lines++
			}
		}
		if lines != 2 || !strings.Contains(string(doc), "from step 300: 0.4, 0.6; from step 600: 0.6, 0.4") {
			t.Errorf("plot has %d lines (want 2) or lacks the change points", lines)
		}
	}
	// A plot that cannot be written is a run failure, exit 1.
	code, _, errOut := simulate("--rates", "0.5,0.4", "--horizon", "10", "--runs", "1", "--plot", filepath.Join(dir, "no", "such", "dir.svg"))
	if code != 1 || !strings.Contains(errOut, "plot") {
		t.Errorf("unwritable plot: exit %d, stderr %q; want 1", code, errOut)
	}
}
