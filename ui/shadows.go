package ui

import (
	"fmt"
	"strconv"

	"github.com/modelgate/modelgate/shadow"
)

// MinReplay is the fewest replayed clicks from which the page shows a
// shadow's replay rates; below it they say "too few" (the JSON report keeps
// the numbers).
const MinReplay = 30

// ShadowRow is one shadow's row on the page: the report's figures as text.
type ShadowRow struct {
	Arm, Share             string
	Calls, Errors, Dropped int64
	// Latency is "p50 / p99" in milliseconds; "—" before an answer.
	Latency string
	// Overlap is overlap_at_k in percent; "—" before an answer.
	Overlap string
	// ReplayN is the clicks replayed; Replay and Served the shares of
	// them in the shadow's list and in the served list, with their
	// intervals ("too few" below MinReplay).
	ReplayN         int64
	TooFew          bool
	Replay, Served  string
	ReplayCI, SrvCI string
}

// shadowRows puts the report's shadows in words.
func shadowRows(ss []shadow.Summary) []ShadowRow {
	out := make([]ShadowRow, 0, len(ss))
	for _, s := range ss {
		r := ShadowRow{Arm: s.Arm, Share: strconv.FormatFloat(100*s.Share, 'g', 4, 64) + "%", Calls: s.Calls, Errors: s.Errors, Dropped: s.Dropped,
			Latency: "—", Overlap: "—", ReplayN: s.Replay.N, Replay: "—", Served: "—", ReplayCI: "—", SrvCI: "—"}
		if l := s.LatencyMs; l != nil {
			r.Latency = fmt.Sprintf("%.1f / %.1f", l.P50, l.P99)
		}
		if o := s.OverlapAtK; o != nil {
			r.Overlap = fmt.Sprintf("%.1f%%", 100**o)
		}
		switch {
		case s.Replay.N == 0:
		case s.Replay.N < MinReplay:
			r.TooFew = true
		default:
			r.Replay, r.ReplayCI = rateText(s.Replay)
			r.Served, r.SrvCI = rateText(s.ServedReplay)
		}
		out = append(out, r)
	}
	return out
}

// rateText writes a replay rate and its interval in percent.
func rateText(r shadow.Rate) (rate, ci string) {
	if r.Rate == nil || r.CI95 == nil {
		return "—", "—"
	}
	return fmt.Sprintf("%.1f%%", 100**r.Rate), fmt.Sprintf("%.1f%% – %.1f%%", 100*r.CI95[0], 100*r.CI95[1])
}
