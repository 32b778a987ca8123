package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/internal/atonce"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/registry"
)

// send makes one JSON request with an optional If-Match and returns the
// status, the ETag and the body. Unlike call, it reports a transport
// failure as an error, so it may run on any goroutine.
func send(method, url, ifMatch, body string) (status int, etag string, raw []byte, err error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("ETag"), raw, err
}

// expect runs send and wants the given status.
func expect(want int, method, url, ifMatch, body string) (etag string, raw []byte, err error) {
	st, etag, raw, err := send(method, url, ifMatch, body)
	if err == nil && st != want {
		err = fmt.Errorf("%s %s: %d %s, want %d", method, url, st, raw, want)
	}
	return etag, raw, err
}

// changePolicy is how a client changes an endpoint's policy safely: read
// it, PUT it back with the new policy and If-Match the revision read, and
// start again when another change got in first (412).
func changePolicy(url, policy string) error {
	for attempt := 0; attempt < 50; attempt++ {
		etag, raw, err := expect(200, "GET", url, "", "")
		if err != nil {
			return err
		}
		var ep registry.Endpoint
		if err := json.Unmarshal(raw, &ep); err != nil {
			return err
		}
		arms, _ := json.Marshal(ep.Arms)
		st, _, raw, err := send("PUT", url, etag, `{"arms": `+string(arms)+`, "policy": `+policy+`}`)
		switch {
		case err != nil:
			return err
		case st == http.StatusOK:
			return nil
		case st != http.StatusPreconditionFailed:
			return fmt.Errorf("PUT %s: %d %s", url, st, raw)
		}
	}
	return fmt.Errorf("PUT %s: still 412 after 50 attempts", url)
}

// Changes to one endpoint made at the same time on three replicas sharing
// Redis — a pause, an added arm, a policy change, a guardrail pause and an
// arm added the way auto_arms adds one — all take effect, round after
// round; none undoes another.
func TestReplicasKeepConcurrentChanges(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	reps := replicas(t, rs.URL(), 3)
	for _, v := range []string{"3", "4", "5"} {
		body := `{"backend": {"type": "embedded", "path": "` + filepath.Join(demoDir, "models", "mf", "1") + `"}}`
		if _, _, err := expect(201, "PUT", reps[0].url+"/v1/models/mf/versions/"+v, "", body); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range reps {
		waitUntil(t, 5*time.Second, func() bool {
			st, _, _, err := send("GET", r.url+"/v1/models/mf/versions/5", "", "")
			return err == nil && st == 200
		})
	}
	opt, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()

	for round := 0; round < 20; round++ {
		name := fmt.Sprint("cas", round)
		path := "/v1/endpoints/" + name
		if _, _, err := expect(201, "PUT", reps[0].url+path, "", `{"arms": ["mf@1", "mf@2", "mf@3"]}`); err != nil {
			t.Fatal(err)
		}
		for _, r := range reps { // every replica has the endpoint: a lost change would be lost, not a 404
			waitUntil(t, 5*time.Second, func() bool { return r.reg.HasEndpoint(name) })
		}
		on := func(i int) *testApp { return reps[(round+i)%3] }
		changes := []func() error{
			func() error {
				_, _, err := expect(200, "PATCH", on(0).url+path+"/arms/mf@1", "", `{"state": "paused"}`)
				return err
			},
			func() error {
				_, _, err := expect(201, "POST", on(1).url+path+"/arms", "", `{"arm": "mf@4"}`)
				return err
			},
			func() error { return changePolicy(on(2).url+path, `{"min_share": 0.05}`) },
			func() error { // what the router's OnGuardrail does
				_, err := on(1).reg.PauseArm(audit.WithActor(ctx, "guardrail"), name, "mf@3", "guardrail: error rate")
				return err
			},
			func() error { // what auto_arms does for a new version
				_, err := on(0).reg.AddArm(ctx, name, "mf@5")
				return err
			},
		}
		if err := atonce.Run(changes...); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}

		raw, err := rdb.HGet(ctx, "modelgate:reg:endpoints", name).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		var ep registry.Endpoint
		if err := json.Unmarshal(raw, &ep); err != nil {
			t.Fatal(err)
		}
		arms := append([]string(nil), ep.Arms...)
		sort.Strings(arms)
		want := map[string]registry.ArmState{"mf@1": "paused", "mf@2": "active", "mf@3": "paused", "mf@4": "active", "mf@5": "active"}
		ok := fmt.Sprint(arms) == "[mf@1 mf@2 mf@3 mf@4 mf@5]" && ep.Policy.MinShare == 0.05 && ep.Revision == 6 &&
			ep.ArmReasons["mf@3"] == "guardrail: error rate"
		for arm, st := range want {
			ok = ok && ep.ArmStates[arm] == st
		}
		if !ok {
			t.Fatalf("round %d: a change was lost; stored: %s", round, raw)
		}
	}

	// Every replica shows the stored endpoint, with its revision as ETag.
	for _, r := range reps {
		waitUntil(t, 5*time.Second, func() bool {
			etag, raw, err := expect(200, "GET", r.url+"/v1/endpoints/cas19", "", "")
			var ep registry.Endpoint
			return err == nil && json.Unmarshal(raw, &ep) == nil && ep.Revision == 6 && etag == `"6"`
		})
	}
	// A change based on an older read is refused everywhere, and changes
	// nothing.
	for _, r := range reps {
		if _, _, err := expect(412, "PATCH", r.url+"/v1/endpoints/cas19/arms/mf@2", `"5"`, `{"state": "paused"}`); err != nil {
			t.Fatal(err)
		}
	}
	if raw, _ := rdb.HGet(ctx, "modelgate:reg:endpoints", "cas19").Bytes(); !strings.Contains(string(raw), `"mf@2":"active"`) {
		t.Fatalf("a refused pause was stored: %s", raw)
	}
}
