package gateway

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelgate/modelgate/predlog"
)

// Every served prediction is a line of the prediction log in the data dir,
// with the propensity its token carries.
func TestPredictionLog(t *testing.T) {
	dir := t.TempDir()
	url, stop := runOn(t, demoConfig(t, ""), dir)
	ids := map[string]bool{}
	for i := 0; i < 5; i++ {
		var rec recResp
		call(t, "POST", url+"/v1/endpoints/home/recommend", map[string]any{"user_id": "u1", "k": 3}, &rec)
		ids[rec.PredictionID] = true
	}
	stop()
	f, err := os.Open(filepath.Join(dir, predlog.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); n++ {
		var r predlog.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		if !ids[r.PredictionID] || r.Endpoint != "home" || r.Segment != "all" || len(r.Items) != 3 ||
			r.Propensity <= 0 || r.Propensity > 1 || r.Time.IsZero() {
			t.Fatalf("line %d: %+v", n, r)
		}
	}
	if n != 5 {
		t.Fatalf("%d lines, want 5", n)
	}
}
