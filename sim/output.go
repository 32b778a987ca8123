package sim

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// The output formats of results: JSON (Result's own form), CSV and an
// aligned text table. Each takes the results of one comparison, in series
// order, all with the same checkpoints (as Run gives for one horizon).

// WriteJSON writes one result as an indented JSON object, or several as an
// array of them.
func WriteJSON(w io.Writer, results []*Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if len(results) == 1 {
		return enc.Encode(results[0])
	}
	return enc.Encode(results)
}

// WriteCSV writes a header and one row per result and checkpoint: series
// (the Label), policy, batch, t, regret_mean, regret_stderr and lai_robbins
// (empty when undefined).
func WriteCSV(w io.Writer, results []*Result) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"series", "policy", "batch", "t", "regret_mean", "regret_stderr", "lai_robbins"})
	for _, r := range results {
		for _, p := range r.Checkpoints {
			lr := ""
			if p.LaiRobbins != nil {
				lr = formatFloat(*p.LaiRobbins)
			}
			_ = cw.Write([]string{r.Label, r.Policy, strconv.Itoa(r.Batch), strconv.Itoa(p.T),
				formatFloat(p.RegretMean), formatFloat(p.RegretStderr), lr})
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteTable writes a header describing cfg (what all series share) and the
// Lai–Robbins bound when the first result has one, then one row per
// checkpoint with each result's mean ± standard error in a column headed by
// its Label. It needs at least one result.
func WriteTable(w io.Writer, cfg Config, results []*Result) error {
	if len(results) == 0 {
		return fmt.Errorf("table: no results")
	}
	fmt.Fprintf(w, "%s\n%s; cumulative regret: mean ± standard error\n", cfg.Environment(), cfg.Summary())
	lr := results[0].LaiRobbinsC
	if lr != nil {
		fmt.Fprintf(w, "C·ln t: the Lai–Robbins asymptotic lower bound, C = %.3f. As t → ∞ every consistent policy's\n"+
			"expected regret is at least (C − o(1))·ln t; it is not a bound at each t: a good policy may lie below it.\n", *lr)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "t\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t", r.Label)
	}
	if lr != nil {
		fmt.Fprint(tw, "C·ln t (asymptotic)\t")
	}
	fmt.Fprintln(tw)
	for i, p := range results[0].Checkpoints {
		fmt.Fprintf(tw, "%d\t", p.T)
		for _, r := range results {
			c := r.Checkpoints[i]
			fmt.Fprintf(tw, "%s ± %s\t", tableNum(c.RegretMean), tableNum(c.RegretStderr))
		}
		if p.LaiRobbins != nil {
			fmt.Fprintf(tw, "%.1f\t", *p.LaiRobbins)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// Summary is "horizon H, R runs, seed S", the size of the simulation, for
// table headers and plot subtitles.
func (c *Config) Summary() string {
	return fmt.Sprintf("horizon %d, %d runs, seed %d", c.Horizon, c.Runs, c.Seed)
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// tableNum prints a regret with one decimal, or three below 1.
func tableNum(v float64) string {
	if math.Abs(v) < 1 {
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// PlotTitle is the default title of a plot of results: the series compared,
// or only "Cumulative regret" when naming them would not fit on one line.
func PlotTitle(results []*Result) string {
	labels := make([]string, len(results))
	for i, r := range results {
		labels[i] = r.Label
	}
	title := "Cumulative regret: " + strings.Join(labels, " vs ")
	if len([]rune(title)) > 75 {
		return "Cumulative regret"
	}
	return title
}
