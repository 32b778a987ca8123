package feedback

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/predtoken"
	"github.com/modelgate/modelgate/store"
)

func newService(t *testing.T, now func() time.Time) (*Service, *predtoken.Signer) {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	signer, _ := predtoken.NewSigner(key(1))
	s := NewService(signer, db, &counters.Table{}, func(string, string) (float64, bool) { return 0, true }, nil, Options{})
	if now != nil {
		s.now = now
	}
	return s, signer
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// fixture is a service on a fresh embedded store, with its counters,
// off-policy sums and signer.
type fixture struct {
	s      *Service
	db     *store.DB
	signer *predtoken.Signer
	table  *counters.Table
	offp   *offpolicy.Table
}

func newFixture(t *testing.T, lookup Lookup) fixture {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := fixture{db: db, table: &counters.Table{}, offp: &offpolicy.Table{}}
	f.signer, _ = predtoken.NewSigner(key(1))
	f.s = NewService(f.signer, db, f.table, lookup, nil, Options{OffPolicy: f.offp})
	return f
}

// outcome says what a call of one event did: "accepted", "duplicate", or
// its rejection code.
func outcome(res *Result) string {
	switch {
	case len(res.Rejected) == 1:
		return res.Rejected[0].Code
	case res.Duplicates == 1:
		return "duplicate"
	case res.Accepted != 1:
		return fmt.Sprintf("%+v", res)
	}
	return "accepted"
}

// v3Token was signed with key(1) by the token format before the item count
// (version 3); predtoken's tests hold the same golden token.
const v3Token = "A3LNboQAAAGatpfoe2FiY2RlZmdoaWprbD8AAAAAAVGAAARob21lBG1mQDENc3VyZmFjZT1tdXNpY6RtIlPbY9GsfwPqC2z_mo0"

func sign(s *predtoken.Signer, items int, at time.Time) string {
	return s.Sign(&predtoken.Token{Endpoint: "home", Arm: "mf@1", Segment: "all", Time: at, Window: 24 * time.Hour, Items: items, ID: predtoken.NewID()})
}

// A prediction accepts events for at most as many distinct item_ids as it
// returned items (at least one); events without an item_id are not
// counted against that, and a repeat of an accepted event is a duplicate.
func TestTooManyEvents(t *testing.T) {
	type step struct {
		typ  EventType
		item string
		want string // "accepted", "duplicate", or a rejection code
	}
	tests := []struct {
		name  string
		items int
		steps []step
	}{
		{"3 served", 3, []step{
			{Click, "a", "accepted"}, {Click, "b", "accepted"}, {Impression, "", "accepted"},
			{Click, "c", "accepted"}, {Click, "d", CodeTooManyEvents}, {Click, "a", "duplicate"},
			{Impression, "c", "accepted"}, {Impression, "e", CodeTooManyEvents}, {Click, "d", CodeTooManyEvents},
		}},
		{"0 served: one item still accepted", 0, []step{
			{Impression, "", "accepted"}, {Click, "a", "accepted"}, {Click, "b", CodeTooManyEvents}, {Click, "a", "duplicate"},
		}},
		{"1 served", 1, []step{
			{Click, "a", "accepted"}, {Impression, "a", "accepted"}, {Click, "b", CodeTooManyEvents},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, signer := newService(t, nil)
			tok := sign(signer, tc.items, time.Now())
			for i, st := range tc.steps {
				res, err := s.Record(context.Background(), []Event{{PredictionID: tok, Type: st.typ, ItemID: st.item}})
				if err != nil {
					t.Fatal(err)
				}
				if got := outcome(res); got != st.want {
					t.Errorf("step %d (%s %q): %s, want %s", i, st.typ, st.item, outcome(res), st.want)
				}
			}
		})
	}
}

// In one call, the rejections name the right events, in order.
func TestTooManyEventsInOneCall(t *testing.T) {
	s, signer := newService(t, nil)
	tok := sign(signer, 2, time.Now())
	res, err := s.Record(context.Background(), []Event{
		{PredictionID: tok, Type: Click, ItemID: "a"},
		{PredictionID: "junk", Type: Click, ItemID: "a"},
		{PredictionID: tok, Type: Click, ItemID: "b"},
		{PredictionID: tok, Type: Click, ItemID: "c"},
		{PredictionID: tok, Type: "bogus", ItemID: "a"},
		{PredictionID: tok, Type: Impression, ItemID: "d"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Rejection{{1, CodeInvalidToken}, {3, CodeTooManyEvents}, {4, CodeUnknownType}, {5, CodeTooManyEvents}}
	if res.Accepted != 2 || fmt.Sprint(res.Rejected) != fmt.Sprint(want) {
		t.Fatalf("got %+v, want 2 accepted and rejections %v", res, want)
	}
}

// A token signed before tokens carried the count accepts up to
// predtoken.LegacyItems distinct items.
func TestVersion3TokenItemLimit(t *testing.T) {
	s, _ := newService(t, func() time.Time { return time.UnixMilli(1764000000123).Add(time.Hour) })
	evs := make([]Event, predtoken.LegacyItems)
	for i := range evs {
		evs[i] = Event{PredictionID: v3Token, Type: Impression, ItemID: fmt.Sprintf("i%d", i)}
	}
	res, err := s.Record(context.Background(), evs)
	if err != nil || res.Accepted != predtoken.LegacyItems {
		t.Fatalf("%d distinct items on a v3 token: %+v, %v", predtoken.LegacyItems, res, err)
	}
	res, err = s.Record(context.Background(), []Event{{PredictionID: v3Token, Type: Click, ItemID: "one-more"}})
	if err != nil || len(res.Rejected) != 1 || res.Rejected[0].Code != CodeTooManyEvents {
		t.Fatalf("item %d on a v3 token: %+v, %v", predtoken.LegacyItems+1, res, err)
	}
}

// The window check and the store's dedupe use one clock reading: a repeat
// of a click checked at the window's last instant is a duplicate, although
// the store's own clock has passed the window by the time it runs.
func TestDedupeAtWindowEdge(t *testing.T) {
	served := time.UnixMilli(time.Now().Add(-24 * time.Hour).UnixMilli())
	end := served.Add(24 * time.Hour) // ≤ the store's clock (time.Now) from here on
	var clock time.Time
	s, signer := newService(t, func() time.Time { return clock })
	tok := sign(signer, 5, served)
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{end.Add(-time.Hour), "accepted"},
		{end, "duplicate"}, // the window's last instant: still inside it
		{end.Add(time.Millisecond), CodeExpired},
	} {
		clock = tc.at
		res, err := s.Record(context.Background(), []Event{{PredictionID: tok, Type: Click, ItemID: "a"}})
		if err != nil {
			t.Fatal(err)
		}
		got := "accepted"
		if len(res.Rejected) == 1 {
			got = res.Rejected[0].Code
		} else if res.Duplicates == 1 {
			got = "duplicate"
		}
		if got != tc.want {
			t.Fatalf("click at window end %+v: %s (%+v), want %s", tc.at.Sub(end), got, res, tc.want)
		}
	}
	c := s.table.Lookup(counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"})
	if _, su := c.Counts(); su != 1 {
		t.Fatalf("%g successes counted for one prediction's click, want 1", su)
	}
}

// Event types are the API's words, case and all, and travel as JSON strings.
func TestEventType(t *testing.T) {
	tests := []struct {
		json  string
		typ   EventType
		valid bool
	}{
		{`{"type":"click"}`, Click, true},
		{`{"type":"impression"}`, Impression, true},
		{`{"type":"Click"}`, "Click", false},
		{`{"type":"view"}`, "view", false},
		{`{"type":""}`, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.json, func(t *testing.T) {
			var ev Event
			if err := json.Unmarshal([]byte(tc.json), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Type != tc.typ || ev.Type.Valid() != tc.valid {
				t.Errorf("type %q valid %v, want %q valid %v", ev.Type, ev.Type.Valid(), tc.typ, tc.valid)
			}
			out, err := json.Marshal(Event{Type: tc.typ})
			if err != nil {
				t.Fatal(err)
			}
			if want := `"type":` + strconv.Quote(string(tc.typ)); !strings.Contains(string(out), want) {
				t.Errorf("marshalled %s, want it to hold %s", out, want)
			}
		})
	}
}

// Feedback on a pinned prediction (a QA call) is accepted and changes
// nothing: no count, no dedupe state; a bad token is still refused.
func TestPinnedFeedbackIgnored(t *testing.T) {
	s, signer := newService(t, nil)
	pinned := signer.Sign(&predtoken.Token{Endpoint: "home", Arm: "mf@1", Segment: "all", Time: time.Now(), Window: time.Hour,
		Items: 3, Pinned: true, ID: predtoken.NewID()})
	evs := []Event{{PredictionID: pinned, Type: Click, ItemID: "a"}, {PredictionID: pinned, Type: Click, ItemID: "a"},
		{PredictionID: pinned, Type: Impression}, {PredictionID: "bogus", Type: Click}}
	res, err := s.Record(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 3 || res.Duplicates != 0 || len(res.Rejected) != 1 || res.Rejected[0].Index != 3 {
		t.Fatalf("result %+v; want 3 accepted, the bogus one rejected", res)
	}
	if c := s.table.Lookup(counters.Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}); c != nil {
		if tr, su := c.Counts(); tr != 0 || su != 0 {
			t.Fatalf("counts %d/%g after a pinned prediction's feedback; want none", tr, su)
		}
	}
}

// A token carrying a context vector: its impression adds the trial x xᵀ
// (trials on impressions), its click the reward x, once each however often
// they are sent, and a flush makes them durable in the store.
func TestLinearSumsFromFeedback(t *testing.T) {
	s, signer := newService(t, nil)
	x := []float64{1, 0, 0.5}
	tok := signer.Sign(&predtoken.Token{Endpoint: "home", Arm: "mf@1", Segment: "all", Time: time.Now(), Window: time.Hour,
		Items: 1, OnImpression: true, ID: predtoken.NewID(), X: x, Layout: 7})
	for range 2 {
		if _, err := s.Record(context.Background(), []Event{{PredictionID: tok, Type: Impression}, {PredictionID: tok, Type: Click, ItemID: "a"}}); err != nil {
			t.Fatal(err)
		}
	}
	k := counters.LinKey{Endpoint: "home", Arm: "mf@1", Layout: 7}
	want := []float64{1, 1, 1, 0, 0.5, 1, 0, 0.5, 0, 0, 0.25}
	if got := s.table.Linear(k, 3).Sums(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sums %v, want %v", got, want)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	stored, err := s.db.(interface {
		LoadLinear(context.Context) (map[counters.LinKey][]float64, error)
	}).LoadLinear(context.Background())
	if err != nil || fmt.Sprint(stored[k]) != fmt.Sprint(want) {
		t.Fatalf("stored %v, %v; want %v", stored[k], err, want)
	}
}
