package report

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/store"
)

// PointArm is one arm in a history point.
type PointArm struct {
	Arm          string  `json:"arm"`
	Trials       uint64  `json:"trials"`
	Successes    uint64  `json:"successes"`
	TrafficShare float64 `json:"traffic_share"`
	PBest        float64 `json:"p_best"`
}

// Point is the state of one endpoint segment at one time, cumulative.
type Point struct {
	T                        string     `json:"t"`
	RegretExpectedCumulative float64    `json:"regret_expected_cumulative"`
	Arms                     []PointArm `json:"arms"`
}

// History is GET /v1/endpoints/{endpoint}/report/history.
type History struct {
	Endpoint string  `json:"endpoint"`
	Segment  string  `json:"segment"`
	Interval string  `json:"interval"`
	Points   []Point `json:"points"`
}

// Series is where history points are kept. AddHistory must not overwrite an
// existing point, so that replicas sharing a store write one series.
type Series interface {
	AddHistory(ctx context.Context, r store.Record) (bool, error)
	History(ctx context.Context, endpoint, segment string, from, to int64) ([]store.Record, error)
	PruneSeries(ctx context.Context, cutoff, thinBefore, keepEvery int64) (int, error)
}

// Endpoints lists the endpoints to record.
type Endpoints interface {
	Endpoints() []*registry.Endpoint
}

// BuildFunc computes a report of an endpoint segment now; the recorder
// uses the same one the API serves.
type BuildFunc func(ep *registry.Endpoint, segment string, now time.Time) *Report

// Recorder writes a history point per endpoint and segment every interval
// and prunes the series to the retention, keeping full resolution for the
// last thirtieth of it and one point per 60 intervals before. It also logs
// every change of an endpoint's decision. Create it with NewRecorder.
type Recorder struct {
	reg       Endpoints
	table     *counters.Table
	series    Series
	build     BuildFunc
	interval  time.Duration
	retention time.Duration
	log       *slog.Logger
	decisions map[string]string // endpoint/segment -> last decision, owned by Run
	onChange  func(endpoint string)
	// Changes counts decision changes since start; read it after Run returns
	// or from Run's goroutine only.
	Changes int
}

// NewRecorder returns a recorder. log may be nil.
func NewRecorder(reg Endpoints, table *counters.Table, series Series, build BuildFunc, interval, retention time.Duration, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Recorder{reg: reg, table: table, series: series, build: build, interval: interval,
		retention: retention, log: log, decisions: map[string]string{}}
}

// OnDecisionChange sets a function called (from Run's goroutine) with the
// endpoint whenever a segment's decision changes. Call it before Run.
func (r *Recorder) OnDecisionChange(f func(endpoint string)) { r.onChange = f }

// Run records until ctx ends.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	prune := time.NewTicker(max(r.interval, time.Minute))
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.RecordAll(ctx, now)
		case now := <-prune.C:
			cutoff := now.Add(-r.retention).Unix()
			thin := now.Add(-r.retention / 30).Unix()
			keep := int64(r.interval/time.Second) * 60
			if n, err := r.series.PruneSeries(ctx, cutoff, thin, keep); err != nil {
				r.log.Error("pruning history", "err", err)
			} else if n > 0 {
				r.log.Debug("pruned history points", "n", n)
			}
		}
	}
}

// RecordAll records one point for every endpoint and segment at now
// (aligned down to the interval).
func (r *Recorder) RecordAll(ctx context.Context, now time.Time) {
	sec := int64(r.interval / time.Second)
	if sec < 1 {
		sec = 1
	}
	at := now.Unix() - now.Unix()%sec
	for _, ep := range r.reg.Endpoints() {
		segs := Segments(r.table, ep.Name)
		if len(ep.Policy.SegmentBy) > 0 {
			segs = append([]string{"all"}, segs...)
		} else if len(segs) == 0 {
			segs = []string{"all"}
		}
		for _, seg := range segs {
			rep := r.build(ep, seg, time.Unix(at, 0))
			r.noteDecision(ep.Name, seg, rep)
			p := PointOf(rep, time.Unix(at, 0))
			raw, _ := json.Marshal(p)
			if _, err := r.series.AddHistory(ctx, store.Record{Endpoint: ep.Name, Segment: seg, Time: at, Value: raw}); err != nil {
				r.log.Error("recording history", "endpoint", ep.Name, "segment", seg, "err", err)
			}
		}
	}
}

func (r *Recorder) noteDecision(endpoint, segment string, rep *Report) {
	d := rep.Decision.Status
	if rep.Decision.Arm != nil {
		d += " " + *rep.Decision.Arm
	}
	key := endpoint + "/" + segment
	if old, ok := r.decisions[key]; ok && old != d {
		r.Changes++
		if r.onChange != nil {
			r.onChange(endpoint)
		}
		r.log.Info("experiment decision changed", "endpoint", endpoint, "segment", segment, "from", old, "to", d,
			"value_remaining", rep.Decision.ValueRemaining)
	}
	r.decisions[key] = d
}

// PointOf is the history point of a report.
func PointOf(rep *Report, at time.Time) Point {
	p := Point{T: at.UTC().Format(time.RFC3339), RegretExpectedCumulative: rep.Regret.ExpectedCumulative}
	for _, a := range rep.Arms {
		p.Arms = append(p.Arms, PointArm{Arm: a.Arm, Trials: a.Trials, Successes: a.Successes,
			TrafficShare: a.TrafficShare, PBest: a.PBest})
	}
	return p
}

// ReadHistory returns an endpoint segment's points with from ≤ t < to.
func ReadHistory(ctx context.Context, series Series, endpoint, segment string, interval time.Duration, from, to time.Time) (*History, error) {
	var f, t int64
	if !from.IsZero() {
		f = from.Unix()
	}
	if !to.IsZero() {
		t = to.Unix()
	}
	recs, err := series.History(ctx, endpoint, segment, f, t)
	if err != nil {
		return nil, err
	}
	h := &History{Endpoint: endpoint, Segment: segment, Interval: ShortDuration(interval), Points: []Point{}}
	for _, rec := range recs {
		var p Point
		if json.Unmarshal(rec.Value, &p) == nil {
			h.Points = append(h.Points, p)
		}
	}
	return h, nil
}

// Segments lists the segments of an endpoint that have counts, sorted.
func Segments(table *counters.Table, endpoint string) []string {
	set := map[string]bool{}
	for _, e := range table.Entries(endpoint) {
		if e.Key.Segment != counters.AggregateSegment {
			set[e.Key.Segment] = true
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// ShortDuration writes d without zero units: 1m, 1h30m, 90s → 1m30s.
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
