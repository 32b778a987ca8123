package report

import (
	"context"
	"encoding/json"
	"fmt"
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
	Successes    float64 `json:"successes"`
	TrafficShare float64 `json:"traffic_share"`
	PBest        float64 `json:"p_best"`
}

// Point is the state of one endpoint segment at one time, cumulative.
type Point struct {
	T                        string     `json:"t"`
	RegretExpectedCumulative float64    `json:"regret_expected_cumulative"`
	Arms                     []PointArm `json:"arms"`
}

// MarshalBinary returns p's storage encoding as a history record's value:
// its JSON, the form both stores have always kept.
func (p Point) MarshalBinary() ([]byte, error) { return json.Marshal(p) }

// UnmarshalBinary sets p from MarshalBinary's encoding.
func (p *Point) UnmarshalBinary(b []byte) error {
	var v Point
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("history point: %w", err)
	}
	*p = v
	return nil
}

// History is GET /v1/endpoints/{endpoint}/report/history.
type History struct {
	Endpoint string  `json:"endpoint"`
	Segment  string  `json:"segment"`
	Interval string  `json:"interval"`
	Points   []Point `json:"points"`
}

// Series is where history points are kept. AddHistoryBatch must not
// overwrite an existing point, so that replicas sharing a store write one
// series, and writes the batch in one transaction.
type Series interface {
	AddHistoryBatch(ctx context.Context, recs []store.Record) (int, error)
	History(ctx context.Context, endpoint, segment string, from, to int64) ([]store.Record, error)
	PruneSeries(ctx context.Context, cutoff, thinBefore, keepEvery int64) (int, error)
}

// Endpoints lists the endpoints to record.
type Endpoints interface {
	Endpoints() []*registry.Endpoint
}

// BuildFunc completes in (Endpoint, Segment, Now, Entries, Segments and
// Draws are set) and builds the report behind a history point. It should
// compute nothing the point does not hold (off-policy sums) and reuse the
// traffic shares the router keeps.
type BuildFunc func(in Input) *Report

// History budget per tick: every endpoint's "all" point is recorded; of a
// segmented endpoint's segments, those whose counts changed since their
// last point are, least recently recorded first, at most SegmentPointsPerTick
// per endpoint, each from SegmentPointDraws posterior draws. So a tick costs
// O(cells) to read the counts plus a bounded number of reports, whatever
// the number of segments; with more active segments than the budget, a
// segment's points are further apart than the interval.
const (
	SegmentPointsPerTick = 200
	SegmentPointDraws    = 4000
)

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
	marks     map[string]mark   // endpoint/segment -> its last recorded point, owned by Run
	// last holds each series' newest point as the store holds it, owned by
	// Run: the base of the next point's regret. An entry is dropped when a
	// write may not have stored it (another replica wrote that time first),
	// so the next point re-reads the store.
	last     map[string]*Point
	onChange func(endpoint string)
	// Changes counts decision changes since start; read it after Run returns
	// or from Run's goroutine only.
	Changes int
}

// RecorderOptions are a Recorder's optional settings. The zero value logs
// nothing and calls nothing on a decision change.
type RecorderOptions struct {
	// Logger receives the recorder's logs, among them every decision
	// change; nil discards them.
	Logger *slog.Logger
	// OnDecisionChange, when set, is called from Run's goroutine with the
	// endpoint whenever one of its segments' decision changes; it should
	// return quickly, as the next point waits for it.
	OnDecisionChange func(endpoint string)
}

// NewRecorder returns a recorder that writes a point per endpoint and
// segment of reg every interval into series and keeps retention of them.
func NewRecorder(reg Endpoints, table *counters.Table, series Series, build BuildFunc, interval, retention time.Duration, opts RecorderOptions) *Recorder {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Recorder{reg: reg, table: table, series: series, build: build, interval: interval,
		retention: retention, log: log, onChange: opts.OnDecisionChange,
		decisions: map[string]string{}, marks: map[string]mark{}, last: map[string]*Point{}}
}

// Run records a point at once (so that a fresh series has a start before
// the first interval ends) and then every interval, until ctx ends.
func (r *Recorder) Run(ctx context.Context) {
	r.RecordAll(ctx, time.Now())
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

// mark is what a segment's last point was recorded from.
type mark struct {
	trials    uint64
	successes float64
	at        int64
}

// RecordAll records the points of one tick at now (aligned down to the
// interval), in one write; see SegmentPointsPerTick for which.
func (r *Recorder) RecordAll(ctx context.Context, now time.Time) {
	sec := int64(r.interval / time.Second)
	if sec < 1 {
		sec = 1
	}
	at := now.Unix() - now.Unix()%sec
	atTime := time.Unix(at, 0)
	byEndpoint := map[string][]counters.Entry{}
	for _, e := range r.table.Entries("") { // one pass, sorted by endpoint, segment, arm
		if e.Key.Segment != counters.AggregateSegment {
			byEndpoint[e.Key.Endpoint] = append(byEndpoint[e.Key.Endpoint], e)
		}
	}
	var (
		recs   []store.Record
		points []*Point
	)
	point := func(ep *registry.Endpoint, seg string, entries []counters.Entry, segs []string, draws int) bool {
		rep := r.build(Input{Endpoint: ep, Segment: seg, Now: atTime, Entries: entries, Segments: segs, Draws: draws})
		r.noteDecision(ep.Name, seg, rep)
		prev, err := r.lastPoint(ctx, ep.Name, seg, at, sec)
		if err != nil {
			// Without the series' last point the regret would restart
			// from its snapshot and could go down: skip this point.
			r.log.Error("reading the last history point", "endpoint", ep.Name, "segment", seg, "err", err)
			return false
		}
		p := PointAfter(prev, rep, atTime)
		raw, _ := p.MarshalBinary() // a Point always encodes
		recs = append(recs, store.Record{Endpoint: ep.Name, Segment: seg, Time: at, Value: raw})
		points = append(points, &p)
		return true
	}
	live := make(map[string]bool, len(r.marks))
	for _, ep := range r.reg.Endpoints() {
		entries := byEndpoint[ep.Name]
		if entries == nil {
			entries = []counters.Entry{}
		}
		segs := []string{}
		type run struct {
			seg     string
			entries []counters.Entry
			m       mark
		}
		var changed []run
		for i := 0; i < len(entries); {
			j := i
			var m mark
			for j < len(entries) && entries[j].Key.Segment == entries[i].Key.Segment {
				m.trials += entries[j].Trials
				m.successes += entries[j].SuccessCount()
				j++
			}
			seg := entries[i].Key.Segment
			segs = append(segs, seg)
			key := ep.Name + "/" + seg
			live[key] = true
			if last, ok := r.marks[key]; len(ep.Policy.SegmentBy) > 0 && (!ok || last.trials != m.trials || last.successes != m.successes) {
				m.at = last.at
				changed = append(changed, run{seg, entries[i:j], m})
			}
			i = j
		}
		point(ep, counters.AllSegment, entries, segs, 0)
		live[ep.Name+"/"+counters.AllSegment] = true
		sort.SliceStable(changed, func(i, j int) bool { return changed[i].m.at < changed[j].m.at })
		for _, c := range changed[:min(len(changed), SegmentPointsPerTick)] {
			if !point(ep, c.seg, c.entries, segs, SegmentPointDraws) {
				continue
			}
			c.m.at = at
			r.marks[ep.Name+"/"+c.seg] = c.m
		}
	}
	// Forget what deleted endpoints and segments left behind.
	for k := range r.marks {
		if !live[k] {
			delete(r.marks, k)
		}
	}
	for k := range r.decisions {
		if !live[k] {
			delete(r.decisions, k)
		}
	}
	for k := range r.last {
		if !live[k] {
			delete(r.last, k)
		}
	}
	if len(recs) == 0 {
		return
	}
	n, err := r.series.AddHistoryBatch(ctx, recs)
	if err != nil {
		r.log.Error("recording history", "points", len(recs), "err", err)
	}
	for i, rec := range recs {
		key := rec.Endpoint + "/" + rec.Segment
		if err == nil && n == len(recs) {
			r.last[key] = points[i]
		} else {
			// Some point of the batch was not stored (another replica
			// recorded that time first, or the write failed): which one is
			// unknown, so the next point of each re-reads its series.
			delete(r.last, key)
		}
	}
}

// lastPoint returns the newest point of a series before at (nil if it has
// none), from memory when this recorder stored it, else from the store:
// first the last 61 intervals (points are thinned to one per 60 intervals
// beyond the recent ones), then, for a series with none there, all of it.
func (r *Recorder) lastPoint(ctx context.Context, endpoint, segment string, at, sec int64) (*Point, error) {
	key := endpoint + "/" + segment
	if p, ok := r.last[key]; ok {
		return p, nil
	}
	recs, err := r.series.History(ctx, endpoint, segment, at-61*sec, at)
	if err == nil && len(recs) == 0 {
		recs, err = r.series.History(ctx, endpoint, segment, 0, at)
	}
	if err != nil {
		return nil, err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		var p Point
		if p.UnmarshalBinary(recs[i].Value) == nil {
			r.last[key] = &p
			return &p, nil
		}
	}
	return nil, nil
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

// PointOf is the history point of a report that starts a series: its regret
// is the report's, every trial valued at the current posterior. It is
// PointAfter(nil, rep, at).
func PointOf(rep *Report, at time.Time) Point { return PointAfter(nil, rep, at) }

// PointAfter is the history point of rep at time at that follows prev, the
// series' previous point (nil for its first). Its cumulative expected regret
// adds to prev's the regret of the trials served since, valued at rep's
// posterior:
//
//	R_k = R_{k−1} + Σ_a max(0, n_a,k − n_a,k−1) · gap_a,k
//
// n_a,k the arm's trials in point k (0 in a missing previous point) and
// gap_a,k = E[max_j θ_j] − E[θ_a] ≥ 0 under point k's posterior (see
// bandit.RegretGaps, exact and never negative). Every term is ≥ 0, so a
// series built point after point never decreases, whatever later evidence
// says about the arms; with no new trials it stays put. The first point's
// regret, Σ_a n_a · gap_a, is the report's own regret.expected_cumulative.
// Trials spent between two points are valued at the later posterior, which
// knows the most; a shorter interval values them earlier.
func PointAfter(prev *Point, rep *Report, at time.Time) Point {
	p := Point{T: at.UTC().Format(time.RFC3339)}
	var before map[string]uint64
	if prev != nil {
		p.RegretExpectedCumulative = prev.RegretExpectedCumulative
		before = make(map[string]uint64, len(prev.Arms))
		for _, a := range prev.Arms {
			before[a.Arm] = a.Trials
		}
	}
	for _, a := range rep.Arms {
		if a.Trials > before[a.Arm] {
			p.RegretExpectedCumulative += float64(a.Trials-before[a.Arm]) * a.RegretGap
		}
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
		if p.UnmarshalBinary(rec.Value) == nil {
			h.Points = append(h.Points, p)
		}
	}
	return h, nil
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
