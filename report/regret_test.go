package report

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/store/redisstore"
)

func TestPointAfter(t *testing.T) {
	rep := &Report{Arms: []Arm{
		{Arm: "a", Trials: 100, RegretGap: 0.01},
		{Arm: "b", Trials: 50, RegretGap: 0.2},
	}}
	at := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name string
		prev *Point
		want float64
	}{
		{"first point: every trial at the current gap", nil, 100*0.01 + 50*0.2},
		{"adds only the trials since the previous point", &Point{RegretExpectedCumulative: 7,
			Arms: []PointArm{{Arm: "a", Trials: 90}, {Arm: "b", Trials: 50}}}, 7 + 10*0.01},
		{"no new trials: unchanged", &Point{RegretExpectedCumulative: 7,
			Arms: []PointArm{{Arm: "a", Trials: 100}, {Arm: "b", Trials: 50}}}, 7},
		{"an arm new since the previous point counts all its trials", &Point{RegretExpectedCumulative: 3,
			Arms: []PointArm{{Arm: "a", Trials: 100}}}, 3 + 50*0.2},
		{"counts that went down add nothing", &Point{RegretExpectedCumulative: 20,
			Arms: []PointArm{{Arm: "a", Trials: 500}, {Arm: "b", Trials: 60}}}, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PointAfter(tt.prev, rep, at)
			if math.Abs(p.RegretExpectedCumulative-tt.want) > 1e-9 {
				t.Errorf("regret %v, want %v", p.RegretExpectedCumulative, tt.want)
			}
			if p.T != "2027-01-15T08:00:00Z" || len(p.Arms) != 2 || p.Arms[1].Trials != 50 {
				t.Errorf("point %+v", p)
			}
		})
	}
}

// counts are the two arms' (trials, successes) at successive points: arm 2
// first looks far worse, then catches up, so the snapshot regret
// (every trial valued at the latest posterior) falls.
var catchUp = [][2][2]uint64{
	{{100, 20}, {100, 2}},
	{{100, 20}, {100, 2}}, // no traffic
	{{100, 20}, {200, 40}},
	{{150, 30}, {400, 80}},
	{{150, 30}, {400, 80}},
}

func setCounts(tb *counters.Table, c [2][2]uint64) {
	for i, arm := range []string{"mf@1", "mf@2"} {
		cell := tb.Cell(counters.Key{Endpoint: "home", Segment: "all", Arm: arm})
		tr, su, _ := cell.Raw()
		cell.AddDurable(c[i][0]-tr, c[i][1]-su, 0)
	}
}

// The history's regret never decreases although the snapshot does, and a
// point without new trials repeats the previous value exactly.
func TestHistoryRegretIsMonotone(t *testing.T) {
	tb := &counters.Table{}
	ep := endpoint()
	var prev *Point
	lastSnap, snapFell := 0.0, false
	for k, c := range catchUp {
		setCounts(tb, c)
		rep := Build(Input{Endpoint: ep, Table: tb, Now: time.Now()})
		p := PointAfter(prev, rep, time.Unix(int64(k), 0))
		if prev != nil {
			if p.RegretExpectedCumulative < prev.RegretExpectedCumulative {
				t.Fatalf("point %d: regret %v after %v", k, p.RegretExpectedCumulative, prev.RegretExpectedCumulative)
			}
			if c == catchUp[k-1] && p.RegretExpectedCumulative != prev.RegretExpectedCumulative {
				t.Fatalf("point %d: no traffic, yet regret %v after %v", k, p.RegretExpectedCumulative, prev.RegretExpectedCumulative)
			}
		}
		snap := rep.Regret.ExpectedCumulative
		snapFell = snapFell || snap < lastSnap
		lastSnap = snap
		prev = &p
	}
	if !snapFell {
		t.Fatal("the scenario should make the snapshot regret fall; it tests nothing otherwise")
	}
}

func regrets(t *testing.T, s Series) []float64 {
	t.Helper()
	recs, err := s.History(context.Background(), "home", "all", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, r := range recs {
		var p Point
		if err := json.Unmarshal(r.Value, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p.RegretExpectedCumulative)
	}
	return out
}

func nonDecreasing(xs []float64) bool {
	for i := 1; i < len(xs); i++ {
		if xs[i] < xs[i-1] {
			return false
		}
	}
	return true
}

// Replicas sharing Redis take turns writing the one series; a restarted
// recorder continues the stored series. Either way each point builds on
// the stored previous one, so the series never decreases.
func TestRecordedRegretIsMonotone(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rs, err := redisstore.Open(context.Background(), srv.URL(), redisstore.Options{WALDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	t0 := time.Unix(1_800_000_000, 0)
	ep := endpoint()
	for _, tc := range []struct {
		name   string
		series Series
		// recorder k writes point k first; the others try the same time.
		recorders func(tb *counters.Table, s Series, k int) []*Recorder
	}{
		{"two replicas on Redis", rs, func() func(*counters.Table, Series, int) []*Recorder {
			var recs []*Recorder
			return func(tb *counters.Table, s Series, k int) []*Recorder {
				if recs == nil {
					recs = []*Recorder{newTestRecorder(tb, s, ep), newTestRecorder(tb, s, ep)}
				}
				return []*Recorder{recs[k%2], recs[(k+1)%2]}
			}
		}()},
		{"a restart on the embedded store", db, func(tb *counters.Table, s Series, _ int) []*Recorder {
			return []*Recorder{newTestRecorder(tb, s, ep)} // a new process every time
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := &counters.Table{}
			for k, c := range catchUp {
				setCounts(tb, c)
				for _, r := range tc.recorders(tb, tc.series, k) {
					r.RecordAll(context.Background(), t0.Add(time.Duration(k)*time.Minute))
				}
			}
			got := regrets(t, tc.series)
			if len(got) != len(catchUp) || !nonDecreasing(got) {
				t.Fatalf("stored regret %v: want %d points, never decreasing", got, len(catchUp))
			}
		})
	}
}

func newTestRecorder(tb *counters.Table, s Series, ep *registry.Endpoint) *Recorder {
	build := func(in Input) *Report {
		in.Table = tb
		return Build(in)
	}
	return NewRecorder(endpoints{ep}, tb, s, build, time.Minute, time.Hour, RecorderOptions{})
}
