package gateway

import (
	"fmt"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/report"
)

// Past max_segments new segment values are served in "other" and the
// report says so; the cap and the kept segments survive a restart, and so
// do a segment's off-policy sums (stored per segment and day).
func TestSegmentsCappedEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfg := demoConfig(t, "")
	url, stop := runOn(t, cfg, dir)
	if st := call(t, "PUT", url+"/v1/endpoints/seg", `{"arms": ["mf@1", "mf@2"],
		"policy": {"segment_by": ["surface"], "max_segments": 3}}`, nil); st != 201 {
		t.Fatalf("create endpoint: %d", st)
	}
	segmentOf := func(url, surface string) string {
		var rec recResp
		if st := call(t, "POST", url+"/v1/endpoints/seg/recommend",
			map[string]any{"user_id": "u1", "k": 3, "context": map[string]string{"surface": surface}}, &rec); st != 200 {
			t.Fatalf("recommend %s: %d", surface, st)
		}
		return rec.Segment
	}
	for i := 0; i < 10; i++ {
		want := fmt.Sprintf("surface=s%d", i)
		if i >= 3 {
			want = "other"
		}
		if got := segmentOf(url, fmt.Sprintf("s%d", i)); got != want {
			t.Fatalf("request %d served in %q, want %q", i, got, want)
		}
	}
	traffic(t, url, "seg", 30, "s0", "s1") // with clicks, for the off-policy sums
	var rep report.Report
	call(t, "GET", url+"/v1/endpoints/seg/report", nil, &rep)
	if strings.Join(rep.Segments, " ") != "other surface=s0 surface=s1 surface=s2" {
		t.Fatalf("segments %v", rep.Segments)
	}
	if !strings.Contains(strings.Join(rep.Health.Warnings, "|"), "segments_capped: 7 requests") {
		t.Fatalf("warnings %v", rep.Health.Warnings)
	}
	if st := call(t, "GET", url+"/v1/endpoints/seg/report?segment=other", nil, nil); st != 200 {
		t.Fatalf("report of other: %d", st)
	}
	stop()

	url, stop = runOn(t, cfg, dir)
	defer stop()
	if got := segmentOf(url, "s9"); got != "other" {
		t.Fatalf("after a restart a new value is served in %q, want other", got)
	}
	if got := segmentOf(url, "s2"); got != "surface=s2" {
		t.Fatalf("after a restart a kept segment is served in %q", got)
	}
	var seg report.Report
	call(t, "GET", url+"/v1/endpoints/seg/report?segment=surface%3Ds0", nil, &seg)
	n := 0
	for _, a := range seg.Arms {
		if a.OffPolicy != nil {
			n = a.OffPolicy.N
		}
	}
	if n != 16 { // s0: 1 + 15 of the 30 requests, before the restart
		t.Fatalf("surface=s0's off-policy n after a restart: %d, want 16", n)
	}
}
