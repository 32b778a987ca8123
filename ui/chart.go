package ui

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

// palette is the Okabe–Ito colour set, readable with colour-blindness.
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#7F7F7F", "#000000"}

// Color is the colour of the i-th series.
func Color(i int) string { return palette[i%len(palette)] }

// Series is one line of a chart, with an optional interval (Low/Hi per
// point, same length as Y).
type Series struct {
	Name    string
	Color   string
	X       []float64
	Y       []float64
	Low, Hi []float64
}

// Chart is a line chart drawn as inline SVG. Its zero value draws nothing
// useful; set at least Title and Series. The drawing keeps to rules that
// stop a chart from misleading:
//
//   - the y axis starts at 0 when FromZero is set, and always spans every
//     value and interval bound, so no interval is clipped;
//   - the legend sits in its own strip between the title and the plot
//     area, never on the data (and is left out for one unnamed series);
//   - tick labels are distinct: their precision follows the tick step;
//   - a series of one point is a dot, with its interval as an error bar.
type Chart struct {
	// ID names the chart in the page (data-chart), for links and tests.
	ID     string
	Title  string
	YLabel string // what y is, with its unit
	XLabel string // what x is; time axes say "time (UTC)" when empty
	Series []Series
	// TimeX formats x as unix seconds (UTC clock times); else numbers.
	TimeX bool
	// FromZero starts the y axis at 0 (shares, rates, counts): honest
	// magnitudes rather than an axis zoomed onto noise.
	FromZero bool
	// XFromZero starts a numeric x axis at 0 (a click-rate axis).
	XFromZero bool
	// Percent labels y ticks as percentages of 1.
	Percent bool
	// YMax, when > 0, caps the y axis (1 for a share), unless data exceed it.
	YMax   float64
	Width  int
	Height int
}

const (
	padL, padR, padB = 64.0, 14.0, 48.0
	titleH           = 28.0 // the title's strip
	legendRow        = 16.0
	charW            = 6.4 // estimated width of a legend character at 11px
)

// niceStep is a round step (1, 2, 2.5 or 5 × 10ⁿ) giving about n ticks over
// span.
func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw*(1-1e-12) {
			return m * mag
		}
	}
	return 10 * mag
}

// decimals is the number of decimals that tells apart multiples of step.
func decimals(step float64) int {
	for d := 0; d < 12; d++ {
		scaled := step * math.Pow(10, float64(d))
		if math.Abs(scaled-math.Round(scaled)) < 1e-9*math.Max(1, scaled) {
			return d
		}
	}
	return 12
}

// timeSteps are the round steps of a time axis, in seconds.
var timeSteps = []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800}

func timeStep(span float64, n int) float64 {
	for _, s := range timeSteps {
		if span/s <= float64(n) {
			return s
		}
	}
	return math.Ceil(span/float64(n)/86400) * 86400
}

// timeLayout is a clock layout fine enough for step and, over a span of
// days, naming the day too, so no two ticks read alike.
func timeLayout(step, span float64) string {
	switch {
	case step < 60:
		return "15:04:05"
	case step < 86400 && span > 86400:
		return "01-02 15:04"
	case step < 86400:
		return "15:04"
	}
	return "2006-01-02"
}

// ticks are the multiples of step in [lo, hi].
func ticks(lo, hi, step float64) []float64 {
	var out []float64
	for k := math.Ceil(lo/step - 1e-9); k*step <= hi+step*1e-9; k++ {
		v := k * step
		if v == 0 {
			v = 0 // not -0, which would read "-0"
		}
		out = append(out, v)
	}
	return out
}

func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 0.1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func esc(s string) string { return template.HTMLEscapeString(s) }

// legendLayout places the legend entries in rows of width w, returning
// each entry's x offset and row.
func legendLayout(names []string, w float64) (xs []float64, rows []int) {
	x, row := 0.0, 0
	for _, n := range names {
		width := 14 + charW*float64(len([]rune(n))) + 16
		if x > 0 && x+width > w {
			x, row = 0, row+1
		}
		xs, rows = append(xs, x), append(rows, row)
		x += width
	}
	return xs, rows
}

// xTicks writes x tick labels: centred on their tick, or ending there when
// centring would push one past the chart's right edge w, and left out when
// one would touch the label before it or repeat a label.
type xTicks struct {
	b     *strings.Builder
	y, w  float64
	right float64 // where the last label ends
	seen  map[string]bool
}

func (t *xTicks) add(x float64, label string) {
	width := charW * float64(len(label))
	left := x - width/2
	anchor := "middle"
	if x+width/2 > t.w-2 {
		anchor, left = "end", x-width
	}
	if t.seen[label] || (t.seen != nil && left < t.right+8) {
		return
	}
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	t.seen[label], t.right = true, left+width
	fmt.Fprintf(t.b, `<text class="tick x" x="%.1f" y="%.1f" text-anchor="%s">%s</text>`, x, t.y, anchor, label)
}

// SVG renders the chart. Charts without points say so instead.
func (c Chart) SVG() template.HTML {
	w, h := float64(c.Width), float64(c.Height)
	if w == 0 {
		w = 560
	}
	if h == 0 {
		h = 260
	}
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	points := 0
	for _, s := range c.Series {
		for i, x := range s.X {
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			ys := []float64{s.Y[i]}
			if s.Low != nil {
				ys = append(ys, s.Low[i], s.Hi[i])
			}
			for _, y := range ys {
				if !math.IsNaN(y) && !math.IsInf(y, 0) {
					ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
				}
			}
			points++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" data-chart="%s" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`,
		esc(c.ID), w, h, w, h, esc(c.Title))
	fmt.Fprintf(&b, `<text x="%.0f" y="18" class="title">%s</text>`, 8.0, esc(c.Title))
	if points == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="empty" text-anchor="middle">no data yet</text></svg>`, w/2, h/2)
		return template.HTML(b.String())
	}

	// Legend strip, below the title and above the plot area.
	var names []string
	for _, s := range c.Series {
		names = append(names, s.Name)
	}
	showLegend := len(c.Series) > 1 || (len(c.Series) == 1 && c.Series[0].Name != "")
	padT := titleH + 6
	var lxs []float64
	var lrows []int
	if showLegend {
		lxs, lrows = legendLayout(names, w-padL-padR)
		padT += legendRow*float64(lrows[len(lrows)-1]+1) + 4
	}
	pw, ph := w-padL-padR, h-padT-padB

	// y range: from 0 if asked, up to a round value above every bound.
	if c.FromZero {
		ymin = math.Min(0, ymin)
	}
	top := ymax // the highest value or bound
	if ymax <= ymin {
		if ymax == 0 {
			ymax = 1
		} else {
			ymin, ymax = ymin-math.Abs(ymin)*0.1-1e-9, ymax+math.Abs(ymax)*0.1+1e-9
			if c.FromZero {
				ymin = 0
			}
		}
	}
	ystep := niceStep(ymax-ymin, 4)
	ymin = math.Floor(ymin/ystep+1e-9) * ystep
	ymax = math.Ceil(ymax/ystep-1e-9) * ystep
	if c.YMax > 0 && ymax > c.YMax && top <= c.YMax {
		// A share never exceeds 1: the top tick is 100%, not 120%.
		ymax = c.YMax
	}

	if c.XFromZero && !c.TimeX {
		xmin = math.Min(0, xmin)
	}
	if xmin == xmax {
		if c.TimeX {
			xmin, xmax = xmin-30, xmax+30
		} else {
			xmin, xmax = xmin-1, xmax+1
		}
	}
	px := func(x float64) float64 { return padL + (x-xmin)/(xmax-xmin)*pw }
	py := func(y float64) float64 { return padT + ph - (y-ymin)/(ymax-ymin)*ph }

	fmt.Fprintf(&b, `<rect class="plot" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, padL, padT, pw, ph)
	// y ticks and grid.
	seen := map[string]bool{}
	for _, t := range ticks(ymin, ymax, ystep) {
		var label string
		if c.Percent {
			label = strconv.FormatFloat(100*t, 'f', decimals(100*ystep), 64) + "%"
		} else {
			label = strconv.FormatFloat(t, 'f', decimals(ystep), 64)
		}
		if seen[label] {
			continue
		}
		seen[label] = true
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, padL, py(t), padL+pw, py(t))
		fmt.Fprintf(&b, `<text class="tick y" x="%.1f" y="%.1f" text-anchor="end" data-v="%g">%s</text>`, padL-6, py(t)+4, t, label)
	}
	// x ticks.
	xlabel := c.XLabel
	xt := &xTicks{b: &b, y: padT + ph + 20, w: w}
	if c.TimeX {
		span := xmax - xmin
		// As many ticks as labels fit, each label about 8 characters.
		n := max(2, min(6, int(pw/(charW*8+16))))
		step := timeStep(span, n)
		layout := timeLayout(step, span)
		if n2 := max(2, min(6, int(pw/(charW*float64(len(layout))+16)))); n2 < n {
			step = timeStep(span, n2)
			layout = timeLayout(step, span)
		}
		for _, t := range ticks(xmin, xmax, step) {
			xt.add(px(t), time.Unix(int64(t), 0).UTC().Format(layout))
		}
		if xlabel == "" {
			xlabel = "time (UTC)"
		}
	} else {
		step := niceStep(xmax-xmin, 5)
		for _, t := range ticks(xmin, xmax, step) {
			xt.add(px(t), strconv.FormatFloat(t, 'f', decimals(step), 64))
		}
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, padL, padT+ph, padL+pw, padT+ph)
	fmt.Fprintf(&b, `<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, padL, padT, padL, padT+ph)
	if xlabel != "" {
		fmt.Fprintf(&b, `<text class="axis-label" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, padL+pw/2, padT+ph+38, esc(xlabel))
	}
	if c.YLabel != "" {
		fmt.Fprintf(&b, `<text class="axis-label" x="13" y="%.1f" transform="rotate(-90 13 %.1f)" text-anchor="middle">%s</text>`,
			padT+ph/2, padT+ph/2, esc(c.YLabel))
	}

	for si, s := range c.Series {
		col := s.Color
		if col == "" {
			col = Color(si)
		}
		name := esc(s.Name)
		if s.Low != nil && len(s.X) > 1 {
			var poly strings.Builder
			for i := range s.X {
				fmt.Fprintf(&poly, "%.1f,%.1f ", px(s.X[i]), py(s.Hi[i]))
			}
			for i := len(s.X) - 1; i >= 0; i-- {
				fmt.Fprintf(&poly, "%.1f,%.1f ", px(s.X[i]), py(s.Low[i]))
			}
			fmt.Fprintf(&b, `<polygon class="band" data-series="%s" fill="%s" points="%s"/>`, name, col, strings.TrimSpace(poly.String()))
		}
		if len(s.X) == 1 {
			if s.Low != nil {
				fmt.Fprintf(&b, `<line class="errorbar" data-series="%s" stroke="%s" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`,
					name, col, px(s.X[0]), py(s.Hi[0]), px(s.X[0]), py(s.Low[0]))
			}
			fmt.Fprintf(&b, `<circle class="dot" data-series="%s" cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s</title></circle>`,
				name, px(s.X[0]), py(s.Y[0]), col, name)
		} else {
			var line strings.Builder
			for i := range s.X {
				fmt.Fprintf(&line, "%.1f,%.1f ", px(s.X[i]), py(s.Y[i]))
			}
			fmt.Fprintf(&b, `<polyline class="line" data-series="%s" stroke="%s" points="%s"><title>%s</title></polyline>`,
				name, col, strings.TrimSpace(line.String()), name)
		}
	}
	if showLegend {
		b.WriteString(`<g class="legend">`)
		for si, s := range c.Series {
			col := s.Color
			if col == "" {
				col = Color(si)
			}
			lx := padL + lxs[si]
			ly := titleH + 6 + legendRow*float64(lrows[si]) + 10
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`,
				lx, ly-9, col, lx+14, ly, esc(s.Name))
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
