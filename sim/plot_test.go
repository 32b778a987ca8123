package sim

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/bandit"
)

// svgCounts parses doc as XML and counts its elements by name.
func svgCounts(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	n := map[string]int{}
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("plot is not well-formed XML: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			n[se.Name.Local]++
		}
	}
}

func TestWriteSVG(t *testing.T) {
	env := Config{Rates: []float64{0.5, 0.45, 0.4}, Horizon: 2000, Runs: 5}
	var results []*Result
	for _, p := range []Policy{{Name: Thompson}, {Name: UCB1}} {
		c := env
		c.Policy = p
		results = append(results, mustRun(t, c))
	}
	results[1].Label = "ucb1 <c=2> & co" // escaped, not markup
	for _, logX := range []bool{true, false} {
		var b bytes.Buffer
		err := WriteSVG(&b, results, PlotOptions{Title: "Regret", Subtitle: env.Environment() + "; horizon 2000", LogX: logX})
		if err != nil {
			t.Fatal(err)
		}
		doc := b.Bytes()
		n := svgCounts(t, doc)
		if n["svg"] != 1 || n["polyline"] != 3 || n["polygon"] != 2 {
			t.Errorf("logX %v: %d svg, %d polylines, %d bands; want 1, 3 (2 series and Lai–Robbins), 2", logX, n["svg"], n["polyline"], n["polygon"])
		}
		s := string(doc)
		for _, want := range []string{"Regret", "thompson: ", "ucb1 &lt;c=2&gt; &amp; co", "Lai–Robbins asymptotic lower bound C·ln t (t → ∞)", "cumulative regret (mean of 5 runs", "step t (requests)"} {
			if !strings.Contains(s, want) {
				t.Errorf("logX %v: plot lacks %q", logX, want)
			}
		}
		if strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
			t.Errorf("logX %v: plot has NaN or Inf coordinates", logX)
		}
		if tick := map[bool]string{true: ">1k<", false: ">2k<"}[logX]; !strings.Contains(s, tick) {
			t.Errorf("logX %v: axis lacks the tick %s", logX, tick)
		}
	}

	// Without a stationary environment there is no bound to draw.
	c := Config{K: 2, ArmPrior: &bandit.Prior{Alpha: 1, Beta: 1}, Horizon: 100, Runs: 2}
	var b bytes.Buffer
	if err := WriteSVG(&b, []*Result{mustRun(t, c)}, PlotOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := svgCounts(t, b.Bytes()); n["polyline"] != 1 || strings.Contains(b.String(), "Lai–Robbins") {
		t.Errorf("non-stationary plot: %d polylines, want 1 and no Lai–Robbins curve", n["polyline"])
	}
	if err := WriteSVG(&b, nil, PlotOptions{}); err == nil {
		t.Error("WriteSVG of no results: no error")
	}
}

func TestNiceTicks(t *testing.T) {
	for _, tt := range []struct {
		hi   float64
		want string
	}{
		{514.6, "0 100 200 300 400 500 600"},
		{1, "0 0.2 0.4 0.6 0.8 1"},
		{0, "0 0.2 0.4 0.6 0.8 1"},
		{41000, "0 10k 20k 30k 40k 50k"},
	} {
		var got []string
		for _, v := range niceTicks(0, tt.hi) {
			got = append(got, tickLabel(v))
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("niceTicks(0, %v) = %v, want %s", tt.hi, got, tt.want)
		}
	}
}
