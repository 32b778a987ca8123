package sim

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// PlotOptions configures WriteSVG. The zero value plots on a linear x axis
// at 800×500 with no title.
type PlotOptions struct {
	// Title and Subtitle are printed above the chart.
	Title, Subtitle string
	// LogX puts the steps on a logarithmic axis, where C·ln t is a straight
	// line.
	LogX bool
	// Width and Height are the image size in pixels; 0 means 800×500.
	Width, Height int
}

// palette holds distinguishable colors (Okabe–Ito, readable by most color
// blind people), used in turn by the series.
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"}

// WriteSVG writes a line chart of mean cumulative regret against steps for
// each result, with a band of ±1.96 standard errors around each mean, and
// the Lai–Robbins curve C·ln t of the first result that has one. Results are
// labelled by their Label (Policy if empty). It is a self-contained SVG 1.1
// document without scripts or external references.
func WriteSVG(w io.Writer, results []*Result, opt PlotOptions) error {
	if len(results) == 0 {
		return fmt.Errorf("plot: no results")
	}
	width, height := float64(opt.Width), float64(opt.Height)
	if width <= 0 || height <= 0 {
		width, height = 800, 500
	}
	const left, right, bottom = 80.0, 24.0, 56.0
	// The subtitle wraps at "; " so that a long environment stays readable.
	sub := wrap(opt.Subtitle, int((width-left-right)/6.5))
	top := 40.0 + 16*float64(len(sub))
	if len(sub) == 0 {
		top = 48
	}
	pw, ph := width-left-right, height-top-bottom

	horizon := 1
	ymax := 0.0
	var lrc *float64
	for _, r := range results {
		horizon = max(horizon, r.Horizon)
		for _, p := range r.Curve {
			ymax = max(ymax, p.RegretMean+1.96*p.RegretStderr)
		}
		if lrc == nil && r.LaiRobbinsC != nil {
			lrc = r.LaiRobbinsC
		}
	}
	if lrc != nil {
		ymax = max(ymax, *lrc*math.Log(float64(horizon)))
	}
	yticks := niceTicks(0, ymax)
	ytop := yticks[len(yticks)-1]
	if ytop <= 0 {
		ytop = 1
	}

	logX := opt.LogX && horizon > 1
	xmin := 0.0
	if logX {
		xmin = 1
	}
	xpos := func(t float64) float64 {
		if logX {
			return left + pw*math.Log10(max(t, 1))/math.Log10(float64(horizon))
		}
		return left + pw*(t-xmin)/(float64(horizon)-xmin)
	}
	ypos := func(v float64) float64 { return top + ph*(1-v/ytop) }

	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%g" height="%g" viewBox="0 0 %g %g" font-family="Helvetica, Arial, sans-serif" font-size="13">
<rect width="100%%" height="100%%" fill="#ffffff"/>
`, width, height, width, height)
	if opt.Title != "" {
		fmt.Fprintf(b, "<text x=\"%g\" y=\"24\" font-size=\"16\" font-weight=\"bold\">%s</text>\n", left, esc(opt.Title))
	}
	for i, line := range sub {
		fmt.Fprintf(b, "<text x=\"%g\" y=\"%d\" font-size=\"12\" fill=\"#444444\">%s</text>\n", left, 42+16*i, esc(line))
	}

	// Grid and y axis.
	b.WriteString("<g stroke=\"#dddddd\" stroke-width=\"1\">\n")
	for _, v := range yticks {
		fmt.Fprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", left, ypos(v), left+pw, ypos(v))
	}
	xt, minor := xTicks(horizon, logX)
	for _, t := range xt {
		fmt.Fprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", xpos(t), top, xpos(t), top+ph)
	}
	b.WriteString("</g>\n<g stroke=\"#444444\" stroke-width=\"1\">\n")
	for _, t := range minor {
		fmt.Fprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", xpos(t), top+ph, xpos(t), top+ph+3)
	}
	for _, t := range xt {
		fmt.Fprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", xpos(t), top+ph, xpos(t), top+ph+6)
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(b, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#444444\"/>\n", left, top, pw, ph)
	b.WriteString("<g fill=\"#222222\" text-anchor=\"end\">\n")
	for _, v := range yticks {
		fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", left-6, ypos(v)+4, tickLabel(v))
	}
	b.WriteString("</g>\n<g fill=\"#222222\" text-anchor=\"middle\">\n")
	for _, t := range xt {
		fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", xpos(t), top+ph+20, tickLabel(t))
	}
	b.WriteString("</g>\n")
	xlabel := "step t (requests)"
	if logX {
		xlabel += ", log scale"
	}
	fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", left+pw/2, height-12, esc(xlabel))
	fmt.Fprintf(b, "<text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n", top+ph/2,
		esc(fmt.Sprintf("cumulative regret (mean of %d runs, ±1.96 s.e.)", results[0].Runs)))

	// Series: bands first, lines over them.
	for i, r := range results {
		if len(r.Curve) == 0 {
			continue
		}
		color := palette[i%len(palette)]
		var pts []string
		for _, p := range r.Curve {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xpos(float64(p.T)), ypos(p.RegretMean+1.96*p.RegretStderr)))
		}
		for j := len(r.Curve) - 1; j >= 0; j-- {
			p := r.Curve[j]
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xpos(float64(p.T)), ypos(max(p.RegretMean-1.96*p.RegretStderr, 0))))
		}
		fmt.Fprintf(b, "<polygon points=\"%s\" fill=\"%s\" fill-opacity=\"0.18\" stroke=\"none\"/>\n", strings.Join(pts, " "), color)
	}
	type legend struct{ label, color, dash string }
	var legends []legend
	for i, r := range results {
		if len(r.Curve) == 0 {
			continue
		}
		color := palette[i%len(palette)]
		var pts []string
		for _, p := range r.Curve {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xpos(float64(p.T)), ypos(p.RegretMean)))
		}
		fmt.Fprintf(b, "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n", strings.Join(pts, " "), color)
		label := r.Label
		if label == "" {
			label = r.Policy
		}
		legends = append(legends, legend{fmt.Sprintf("%s: %s ± %s at t = %s", label, num(r.RegretMean), num(r.RegretStderr), tickLabel(float64(r.Horizon))), color, ""})
	}
	if lrc != nil {
		var pts []string
		n := 200
		for j := 0; j <= n; j++ {
			var t float64
			if logX {
				t = math.Pow(float64(horizon), float64(j)/float64(n))
			} else {
				t = max(1, float64(horizon)*float64(j)/float64(n))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xpos(t), ypos(*lrc*math.Log(t))))
		}
		fmt.Fprintf(b, "<polyline points=\"%s\" fill=\"none\" stroke=\"#555555\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n", strings.Join(pts, " "))
		legends = append(legends, legend{fmt.Sprintf("Lai–Robbins asymptotic lower bound C·ln t (t → ∞), C = %s", num(*lrc)), "#555555", "6 4"})
	}

	// Legend, top left inside the plot, on a white box so lines stay readable.
	lw := 0.0
	for _, l := range legends {
		lw = max(lw, 7*float64(len([]rune(l.label))))
	}
	fmt.Fprintf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ffffff\" fill-opacity=\"0.85\" stroke=\"#cccccc\"/>\n",
		left+8, top+8, lw+48, 20*float64(len(legends))+8)
	for i, l := range legends {
		y := top + 8 + 18 + 20*float64(i)
		dash := ""
		if l.dash != "" {
			dash = fmt.Sprintf(" stroke-dasharray=%q", l.dash)
		}
		fmt.Fprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", left+16, y-4, left+40, y-4, l.color, dash)
		fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", left+46, y, esc(l.label))
	}
	b.WriteString("</svg>\n")
	return b.Flush()
}

func esc(s string) string { return html.EscapeString(s) }

// wrap splits s into lines of at most width characters, breaking after
// "; " where it can (a single longer part keeps its own line).
func wrap(s string, width int) []string {
	if s == "" {
		return nil
	}
	var parts []string
	for len(s) > 0 {
		i := strings.IndexByte(s, ';')
		if i < 0 {
			parts = append(parts, s)
			break
		}
		parts = append(parts, s[:i+1])
		s = s[i+1:]
	}
	var lines []string
	cur := ""
	for _, p := range parts {
		if cur != "" && len([]rune(cur+p)) > width {
			lines = append(lines, strings.TrimSpace(cur))
			cur = ""
		}
		cur += p
	}
	return append(lines, strings.TrimSpace(cur))
}

// num formats a regret for a label: 3 significant digits, at least integer
// precision.
func num(v float64) string {
	if math.Abs(v) >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// tickLabel formats an axis value compactly: 1k, 20k, 1M.
func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6 && math.Mod(v, 1e5) == 0:
		return strconv.FormatFloat(v/1e6, 'g', -1, 64) + "M"
	case a >= 1e3 && math.Mod(v, 1e2) == 0:
		return strconv.FormatFloat(v/1e3, 'g', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// niceTicks returns 4 to 10 round values from lo up to at least hi, spaced by
// 1, 2 or 5 times a power of ten.
func niceTicks(lo, hi float64) []float64 {
	if !(hi > lo) {
		hi = lo + 1
	}
	raw := (hi - lo) / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	// Round every tick to the step's decimals: 3 × 0.2 is not 0.6 in
	// float64.
	scale := math.Pow(10, max(0, -math.Floor(math.Log10(step))))
	var ts []float64
	for i := math.Floor(lo / step); ; i++ {
		v := math.Round(i*step*scale) / scale
		ts = append(ts, v)
		if v >= hi {
			break
		}
	}
	return ts
}

// xTicks returns labelled and minor tick positions: powers of ten (and
// 2, …, 9 times them as minor ticks) on a log axis, nice values otherwise.
func xTicks(horizon int, logX bool) (major, minor []float64) {
	if !logX {
		ts := niceTicks(0, float64(horizon))
		for _, t := range ts {
			if t <= float64(horizon) {
				major = append(major, t)
			}
		}
		return major, nil
	}
	for d := 1.0; d <= float64(horizon); d *= 10 {
		major = append(major, d)
		for m := 2.0; m <= 9 && m*d <= float64(horizon); m++ {
			minor = append(minor, m*d)
		}
	}
	return major, minor
}
