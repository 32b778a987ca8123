package ui

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// palette is the Okabe–Ito colour set, readable with colour-blindness.
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#7F7F7F", "#000000"}

// Color is the colour of the i-th series.
func Color(i int) string { return palette[i%len(palette)] }

// Series is one line of a chart, with an optional band (low/high per point).
type Series struct {
	Name     string
	Color    string
	X        []float64
	Y        []float64
	Low, Hi  []float64 // optional interval band, same length as Y
	Stepwise bool
}

// Chart is a line chart drawn as inline SVG.
type Chart struct {
	Title  string
	YLabel string
	Series []Series
	// TimeX formats x as unix seconds (UTC clock times); else numbers.
	TimeX  bool
	YMin   float64
	YMax   float64 // YMax ≤ YMin: fit the data
	Width  int
	Height int
}

const (
	padL, padR, padT, padB = 56.0, 12.0, 28.0, 36.0
)

func niceTicks(lo, hi float64, n int) []float64 {
	if !(hi > lo) {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
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

// SVG renders the chart. Charts without points say so instead.
func (c Chart) SVG() template.HTML {
	w, h := float64(c.Width), float64(c.Height)
	if w == 0 {
		w = 560
	}
	if h == 0 {
		h = 240
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
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`,
		w, h, w, h, template.HTMLEscapeString(c.Title))
	fmt.Fprintf(&b, `<text x="%.0f" y="18" class="title">%s</text>`, padL, template.HTMLEscapeString(c.Title))
	if points == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="empty">no data yet</text></svg>`, w/2-40, h/2)
		return template.HTML(b.String())
	}
	if c.YMax > c.YMin {
		ymin, ymax = c.YMin, c.YMax
	} else if ymin == ymax {
		ymin, ymax = ymin-0.5, ymax+0.5
	}
	if xmin == xmax {
		xmin, xmax = xmin-1, xmax+1
	}
	pw, ph := w-padL-padR, h-padT-padB
	px := func(x float64) float64 { return padL + (x-xmin)/(xmax-xmin)*pw }
	py := func(y float64) float64 { return padT + ph - (math.Max(ymin, math.Min(ymax, y))-ymin)/(ymax-ymin)*ph }
	// Axes and grid.
	for _, t := range niceTicks(ymin, ymax, 4) {
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, padL, py(t), padL+pw, py(t))
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, padL-6, py(t)+4, fmtNum(t))
	}
	for _, t := range niceTicks(xmin, xmax, 4) {
		label := fmtNum(t)
		if c.TimeX {
			layout := "15:04"
			switch span := xmax - xmin; {
			case span < 600:
				layout = "15:04:05"
			case span > 2*86400:
				layout = "01-02"
			}
			label = time.Unix(int64(t), 0).UTC().Format(layout)
		}
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, px(t), padT+ph+16, label)
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, padL, padT+ph, padL+pw, padT+ph)
	fmt.Fprintf(&b, `<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, padL, padT, padL, padT+ph)
	if c.YLabel != "" {
		fmt.Fprintf(&b, `<text class="tick" x="12" y="%.1f" transform="rotate(-90 12 %.1f)" text-anchor="middle">%s</text>`,
			padT+ph/2, padT+ph/2, template.HTMLEscapeString(c.YLabel))
	}
	for si, s := range c.Series {
		col := s.Color
		if col == "" {
			col = Color(si)
		}
		if s.Low != nil && len(s.X) > 1 {
			var poly strings.Builder
			for i := range s.X {
				fmt.Fprintf(&poly, "%.1f,%.1f ", px(s.X[i]), py(s.Hi[i]))
			}
			for i := len(s.X) - 1; i >= 0; i-- {
				fmt.Fprintf(&poly, "%.1f,%.1f ", px(s.X[i]), py(s.Low[i]))
			}
			fmt.Fprintf(&b, `<polygon class="band" fill="%s" points="%s"/>`, col, strings.TrimSpace(poly.String()))
		}
		var line strings.Builder
		for i := range s.X {
			fmt.Fprintf(&line, "%.1f,%.1f ", px(s.X[i]), py(s.Y[i]))
		}
		if len(s.X) == 1 {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, px(s.X[0]), py(s.Y[0]), col)
		} else {
			fmt.Fprintf(&b, `<polyline class="line" stroke="%s" points="%s"><title>%s</title></polyline>`, col,
				strings.TrimSpace(line.String()), template.HTMLEscapeString(s.Name))
		}
		// Legend.
		lx := padL + 8 + float64(si%4)*130
		ly := padT + 12 + float64(si/4)*14
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text class="legend" x="%.1f" y="%.1f">%s</text>`,
			lx, ly-9, col, lx+14, ly, template.HTMLEscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
