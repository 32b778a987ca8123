package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/modelgate/modelgate/internal/cli"
)

// cliStep is one run of the modelgate command line and what it must print.
type cliStep struct {
	name     string
	args     []string
	code     int
	stdout   []string // substrings of stdout
	stderr   []string // substrings of stderr
	noStdout []string // must not be in stdout
}

// runCLI runs the binary's entry point in-process.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func runSteps(t *testing.T, steps []cliStep) {
	t.Helper()
	for _, s := range steps {
		ok := t.Run(s.name, func(t *testing.T) {
			code, out, errOut := runCLI(s.args...)
			if code != s.code {
				t.Errorf("modelgate %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(s.args, " "), code, s.code, out, errOut)
			}
			for _, want := range s.stdout {
				if !strings.Contains(out, want) {
					t.Errorf("modelgate %s: stdout lacks %q:\n%s", strings.Join(s.args, " "), want, out)
				}
			}
			for _, want := range s.stderr {
				if !strings.Contains(errOut, want) {
					t.Errorf("modelgate %s: stderr lacks %q:\n%s", strings.Join(s.args, " "), want, errOut)
				}
			}
			for _, bad := range s.noStdout {
				if strings.Contains(out, bad) {
					t.Errorf("modelgate %s: stdout has %q:\n%s", strings.Join(s.args, " "), bad, out)
				}
			}
		})
		if !ok {
			t.FailNow() // later steps depend on this one's effect
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// deadServer is a URL nothing listens on.
func deadServer(t *testing.T) string {
	t.Helper()
	ts := httptest.NewServer(http.NotFoundHandler())
	ts.Close()
	return ts.URL
}

// TestCLIUsage covers help at every level and usage errors, which never
// reach a server.
func TestCLIUsage(t *testing.T) {
	t.Setenv(cliServerEnv, deadServer(t))
	steps := []cliStep{
		{name: "top help lists the clients", args: []string{"help"}, code: 0, stdout: []string{"models", "endpoints"}},
		{name: "models without command", args: []string{"models"}, code: 2, stderr: []string{"usage: modelgate models <command>"}},
		{name: "models --help", args: []string{"models", "--help"}, code: 0, stdout: []string{"usage: modelgate models <command>", "register", "Exit status"}},
		{name: "endpoints -h", args: []string{"endpoints", "-h"}, code: 0, stdout: []string{"add-arm NAME ARM", "promote NAME ARM", "pause NAME ARM", "MODELGATE_SERVER"}},
		{name: "models help register", args: []string{"models", "help", "register"}, code: 0,
			stdout: []string{"usage: modelgate models register MODEL VERSION", "its own working directory", "--embedded PATH"}},
		{name: "unknown models command", args: []string{"models", "frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`}},
		{name: "unknown endpoints command", args: []string{"endpoints", "help", "nope"}, code: 2, stderr: []string{`unknown command "nope"`}},
		{name: "show without args", args: []string{"models", "show"}, code: 2, stderr: []string{"missing arguments: want MODEL VERSION"}},
		{name: "show with model only", args: []string{"models", "show", "mf"}, code: 2, stderr: []string{"missing VERSION"}},
		{name: "show with an extra arg", args: []string{"models", "show", "mf", "1", "x"}, code: 2, stderr: []string{`unexpected argument "x"`}},
		{name: "delete without args", args: []string{"models", "delete"}, code: 2, stderr: []string{"usage: modelgate models delete"}},
		{name: "list with an arg", args: []string{"models", "list", "mf"}, code: 2, stderr: []string{`unexpected argument "mf"`}},
		{name: "unknown flag", args: []string{"models", "list", "--bogus"}, code: 2, stderr: []string{"modelgate models list: flag provided but not defined: -bogus"}},
		{name: "bad --server", args: []string{"models", "list", "--server", "ftp://x"}, code: 2, stderr: []string{"want a base URL"}},
		{name: "pause with one arg", args: []string{"endpoints", "pause", "home"}, code: 2, stderr: []string{"missing arguments: want NAME ARM"}},
		{name: "resume without args", args: []string{"endpoints", "resume"}, code: 2, stderr: []string{"want NAME ARM"}},
		{name: "add-arm with one arg", args: []string{"endpoints", "add-arm", "home"}, code: 2, stderr: []string{"want NAME ARM"}},
		{name: "show endpoint without name", args: []string{"endpoints", "show"}, code: 2, stderr: []string{"want NAME"}},
		{name: "apply without --file", args: []string{"endpoints", "apply", "home"}, code: 2, stderr: []string{"--file is required"}},
		{name: "apply with a missing file", args: []string{"endpoints", "apply", "home", "--file", "/no/such/file.json"}, code: 2, stderr: []string{"no such file"}},
		{name: "apply with a non-JSON file", args: []string{"endpoints", "apply", "home", "--file", writeFile(t, "bad.json", "{\"arms\": [")}, code: 2, stderr: []string{"not JSON"}},
		{name: "apply with a repeated key", args: []string{"endpoints", "apply", "home", "--file", writeFile(t, "dup.json", `{"arms": ["mf@1"], "arms": ["mf@2"]}`)}, code: 2, stderr: []string{"dup.json: not JSON: arms: repeated key"}},
		{name: "register --file with a repeated key", args: []string{"models", "register", "mf", "3", "--file", writeFile(t, "dupv.json", `{"backend": {"type": "embedded", "path": "/a"}, "backend": {"type": "embedded", "path": "/b"}}`)}, code: 2, stderr: []string{"dupv.json: not JSON: backend: repeated key"}},
		{name: "register --features with a repeated key", args: []string{"models", "register", "mf", "3", "--embedded", "x", "--features", writeFile(t, "dups.json", `{"inputs": {"u": {"from": "user_id"}, "u": {"from": "user_id"}}}`)}, code: 2, stderr: []string{"--features", "inputs.u: repeated key"}},
		{name: "register without backend", args: []string{"models", "register", "mf", "3"}, code: 2, stderr: []string{"exactly one of --file, --embedded or --tfserving"}},
		{name: "register with two backends", args: []string{"models", "register", "mf", "3", "--embedded", "x", "--tfserving", "h:1", "--model-name", "m"}, code: 2, stderr: []string{"exactly one of"}},
		{name: "register tf flag without --tfserving", args: []string{"models", "register", "mf", "3", "--embedded", "x", "--signature", "s"}, code: 2, stderr: []string{"--signature goes with --tfserving"}},
		{name: "register tfserving without model name", args: []string{"models", "register", "mf", "3", "--tfserving", "h:1"}, code: 2, stderr: []string{"needs --model-name"}},
		{name: "register tf version and label", args: []string{"models", "register", "mf", "3", "--tfserving", "h:1", "--model-name", "m", "--tf-version", "2", "--version-label", "canary"}, code: 2, stderr: []string{"not both"}},
		{name: "register ids without scores", args: []string{"models", "register", "mf", "3", "--tfserving", "h:1", "--model-name", "m", "--ids-output", "ids"}, code: 2, stderr: []string{"--ids-output needs --scores-output"}},
		{name: "register bad metadata", args: []string{"models", "register", "mf", "3", "--embedded", "x", "--metadata", "novalue"}, code: 2, stderr: []string{"KEY=VALUE"}},
		{name: "register bad typed metadata", args: []string{"models", "register", "mf", "3", "--embedded", "x", "--metadata", "r:=oops"}, code: 2, stderr: []string{"not a JSON value"}},
		{name: "register non-JSON features", args: []string{"models", "register", "mf", "3", "--embedded", "x", "--features", writeFile(t, "spec.json", "inputs:")}, code: 2, stderr: []string{"--features", "not JSON"}},
		{name: "register --file with --timeout-ms", args: []string{"models", "register", "mf", "3", "--file", writeFile(t, "b.json", "{}"), "--timeout-ms", "5"}, code: 2, stderr: []string{"--timeout-ms cannot be combined with --file"}},
		{name: "register --file not an object", args: []string{"models", "register", "mf", "3", "--file", writeFile(t, "b.json", "[1]")}, code: 2, stderr: []string{"must be a JSON object"}},
		{name: "unreachable server", args: []string{"models", "list"}, code: 1, stderr: []string{"modelgate: ", "is the gateway running"}},
	}
	// Every command of both groups has --help, on stdout, naming the common flags.
	for _, g := range []cli.Group{modelsGroup, endpointsGroup} {
		for _, s := range g.Subs {
			steps = append(steps, cliStep{name: g.Name + " " + s.Name + " --help", args: []string{g.Name, s.Name, "--help"}, code: 0,
				stdout: []string{"usage: modelgate " + g.Name + " " + s.Name, "--server URL", "--json", "Exit status"}})
		}
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) { runSteps(t, []cliStep{s}) })
	}
}

// TestCLILifecycle runs the ML team's workflow against a real gateway over
// the bundled demo (mf@1, mf@2 behind the endpoint home).
func TestCLILifecycle(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	srv := []string{"--server", a.url}
	cmd := func(args ...string) []string { return append(args, srv...) }
	rel := filepath.Join(demoDir, "models", "mf", "2")
	abs, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	homeBody := writeFile(t, "home.json", `{"arms": ["mf@1", "mf@2"], "policy": {"min_share": 0.05}, "fallback": "mf@2"}`)
	shopBody := writeFile(t, "shop.json", `{"arms": ["mf@1"], "policy": {"segment_by": ["surface"]}}`)
	badArm := writeFile(t, "bad.json", `{"arms": ["mf@1", "mf@9"]}`)
	shadowBody := writeFile(t, "shadow.json", `{"arms": ["mf@1"], "policy": {"segment_by": ["surface"]}, "shadows": [{"arm": "mf@2", "share": 0.1}]}`)

	runSteps(t, []cliStep{
		{name: "list", args: cmd("models", "list"), code: 0,
			stdout: []string{"MODEL  VERSION  BACKEND   PATH/TARGET", "CREATED", "METADATA", "embedded", "note=close to the ground truth"}},
		{name: "show mf 2", args: cmd("models", "show", "mf", "2"), code: 0,
			stdout: []string{"arm:      mf@2", "type:  embedded", "metadata:\n  note:  close to the ground truth", "features: none"}},
		{name: "show mf@1, flags first", args: []string{"models", "show", "--server", a.url, "mf@1"}, code: 0, stdout: []string{"version:  1", "noisy factors"}},
		{name: "show unknown model", args: cmd("models", "show", "nope", "1"), code: 1, stderr: []string{"modelgate: 404 model_not_found: model nope is not registered"}},
		{name: "show unknown version", args: cmd("models", "show", "mf", "9"), code: 1, stderr: []string{"modelgate: 404 version_not_found"}},
		{name: "register mf@3 from a relative path", code: 0,
			args:   cmd("models", "register", "mf", "3", "--embedded", rel, "--metadata", "note=copy of mf@2", "--metadata", "offline_recall_at_10:=0.21"),
			stdout: []string{"registered mf@3 (embedded " + abs + ")"}},
		{name: "show mf@3", args: cmd("models", "show", "mf", "3"), code: 0,
			stdout: []string{"path:  " + abs, "note:                  copy of mf@2", "offline_recall_at_10:  0.21"}},
		{name: "list has mf@3", args: cmd("models", "list"), code: 0, stdout: []string{"note=copy of mf@2, offline_recall_at_10=0.21"}},
		{name: "register mf@3 again replaces it", args: cmd("models", "register", "mf", "3", "--embedded", rel, "--metadata", "note=copy"), code: 0,
			stdout: []string{"replaced mf@3"}},
		{name: "register a bad feature spec", code: 1,
			args:   cmd("models", "register", "mf", "4", "--embedded", rel, "--features", writeFile(t, "spec.json", `{"inputs": {"a": {"from": "nowhere", "dtype": "int64"}}}`)),
			stderr: []string{"modelgate: 400 invalid_feature_spec:", "features.inputs.a"}},
		{name: "register missing model files", args: cmd("models", "register", "mf", "4", "--embedded", t.TempDir()), code: 1, stderr: []string{"modelgate: 400 invalid_model"}},
		{name: "add-arm", args: cmd("endpoints", "add-arm", "home", "mf@3"), code: 0, stdout: []string{"added mf@3 to home; arms: mf@1, mf@2, mf@3"}},
		{name: "add-arm twice", args: cmd("endpoints", "add-arm", "home", "mf@3"), code: 1, stderr: []string{"modelgate: 409 arm_exists"}},
		{name: "add-arm unknown version", args: cmd("endpoints", "add-arm", "home", "mf@9"), code: 1, stderr: []string{"modelgate: 400"}},
		{name: "replace while used", args: cmd("models", "register", "mf", "3", "--embedded", rel), code: 1,
			stderr: []string{"modelgate: 409 version_in_use: mf@3 is used by endpoint(s) [home]"}},
		{name: "pause", args: cmd("endpoints", "pause", "home", "mf@3"), code: 0, stdout: []string{"paused mf@3 on home; active arms: mf@1, mf@2\n"}},
		{name: "pause unknown arm", args: cmd("endpoints", "pause", "home", "mf@9"), code: 1, stderr: []string{"modelgate: 404 arm_not_found"}},
		{name: "list endpoints", args: cmd("endpoints", "list"), code: 0,
			stdout: []string{"ENDPOINT  ARMS", "home      mf@1, mf@2, mf@3 (paused)  thompson, one segment (all), min_share 0.02  mf@1"}},
		{name: "show endpoint", args: cmd("endpoints", "show", "home"), code: 0,
			stdout: []string{"endpoint:   home", "fallback:   mf@1", "min_share 0.02", "stop rule:", "1000 trials",
				"ARM   STATE   TRIALS  SUCCESSES  RATE    P_BEST  SHARE", "mf@3  paused  0       0          0.5000  0.000   0.000", "decision: keep_running", "warnings: low_traffic"}},
		{name: "delete while used", args: cmd("models", "delete", "mf", "3"), code: 1,
			stderr: []string{"modelgate: 409 version_in_use: mf@3 is used by endpoint(s) [home]"}},
		{name: "resume", args: cmd("endpoints", "resume", "home", "mf@3"), code: 0, stdout: []string{"resumed mf@3 on home; active arms: mf@1, mf@2, mf@3"}},
		{name: "show endpoint after resume", args: cmd("endpoints", "show", "home"), code: 0, stdout: []string{"mf@3  active"}, noStdout: []string{"paused"}},
		{name: "show unknown endpoint", args: cmd("endpoints", "show", "nope"), code: 1, stderr: []string{"modelgate: 404 endpoint_not_found"}},
		{name: "apply with an unknown arm", args: cmd("endpoints", "apply", "home", "--file", badArm), code: 1, stderr: []string{"modelgate: 400", "arms[1]"}},
		{name: "apply drops mf@3", args: cmd("endpoints", "apply", "home", "--file", homeBody), code: 0,
			stdout: []string{"replaced endpoint home: arms mf@1, mf@2; thompson, one segment (all), min_share 0.05; fallback mf@2"}},
		{name: "apply creates shop", args: cmd("endpoints", "apply", "shop", "--file", shopBody), code: 0, stdout: []string{"created endpoint shop: arms mf@1; thompson, by surface"}},
		{name: "promote what is no shadow", args: cmd("endpoints", "promote", "shop", "mf@2"), code: 1, stderr: []string{"modelgate: 404 shadow_not_found"}},
		{name: "apply a shadow", args: cmd("endpoints", "apply", "shop", "--file", shadowBody), code: 0, stdout: []string{"replaced endpoint shop: arms mf@1"}},
		{name: "promote", args: cmd("endpoints", "promote", "shop", "mf@2"), code: 0, stdout: []string{"promoted mf@2 to shop; arms: mf@1, mf@2"}},
		{name: "promote twice", args: cmd("endpoints", "promote", "shop", "mf@2"), code: 1, stderr: []string{"modelgate: 409 arm_exists"}},
		{name: "delete", args: cmd("models", "delete", "mf@3"), code: 0, stdout: []string{"deleted mf@3"}},
		{name: "delete again", args: cmd("models", "delete", "mf", "3"), code: 1, stderr: []string{"modelgate: 404 version_not_found"}},
		{name: "list without mf@3", args: cmd("models", "list"), code: 0, noStdout: []string{"copy of mf@2"}},
	})
}

// TestCLIJSON checks that --json prints the server's JSON.
func TestCLIJSON(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	t.Setenv(cliServerEnv, a.url) // the default --server
	cases := []struct {
		args  []string
		check func(t *testing.T, v map[string]any)
	}{
		{[]string{"models", "list", "--json"}, func(t *testing.T, v map[string]any) {
			ms := v["models"].([]any)
			if len(ms) != 1 || ms[0].(map[string]any)["name"] != "mf" || len(ms[0].(map[string]any)["versions"].([]any)) != 2 {
				t.Errorf("models: %v", v)
			}
		}},
		{[]string{"models", "show", "--json", "mf", "2"}, func(t *testing.T, v map[string]any) {
			if v["arm"] != "mf@2" || v["backend"].(map[string]any)["type"] != "embedded" {
				t.Errorf("version: %v", v)
			}
		}},
		{[]string{"models", "register", "mf", "7", "--json", "--embedded", filepath.Join(demoDir, "models", "mf", "1"), "--metadata", "r:=0.5", "--metadata", "s=0.5"}, func(t *testing.T, v map[string]any) {
			md := v["metadata"].(map[string]any)
			if v["arm"] != "mf@7" || md["r"] != 0.5 || md["s"] != "0.5" {
				t.Errorf("registered: %v", v)
			}
		}},
		{[]string{"endpoints", "list", "--json"}, func(t *testing.T, v map[string]any) {
			if eps := v["endpoints"].([]any); len(eps) != 1 || eps[0].(map[string]any)["name"] != "home" {
				t.Errorf("endpoints: %v", v)
			}
		}},
		{[]string{"endpoints", "add-arm", "home", "mf@7", "--json"}, func(t *testing.T, v map[string]any) {
			if v["arm_states"].(map[string]any)["mf@7"] != "active" {
				t.Errorf("add-arm: %v", v)
			}
		}},
		{[]string{"endpoints", "pause", "home", "mf@7", "--json"}, func(t *testing.T, v map[string]any) {
			if v["arm_states"].(map[string]any)["mf@7"] != "paused" {
				t.Errorf("pause: %v", v)
			}
		}},
		{[]string{"endpoints", "show", "home", "--json"}, func(t *testing.T, v map[string]any) {
			ep, rep := v["endpoint"].(map[string]any), v["report"].(map[string]any)
			if ep["name"] != "home" || rep["endpoint"] != "home" || len(rep["arms"].([]any)) != 3 {
				t.Errorf("show: %v", v)
			}
		}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(c.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			c.check(t, v)
		})
	}
}

// TestCLIRegisterFile registers from a body file, with --features and
// --metadata added to it.
func TestCLIRegisterFile(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	rel := filepath.Join(demoDir, "models", "mf", "2")
	abs, _ := filepath.Abs(rel)
	absBody, _ := json.Marshal(map[string]any{"backend": map[string]any{"type": "embedded", "path": abs, "timeout_ms": 50},
		"metadata": map[string]any{"a": "from file", "b": "from file"}})
	relBody, _ := json.Marshal(map[string]any{"backend": map[string]any{"type": "embedded", "path": rel}})
	spec := writeFile(t, "spec.json", `{"inputs": {
		"user_id": {"from": "user_id", "dtype": "string"},
		"recent_items": {"from": "features.recent_items", "transform": "list", "length": 5, "pad": "", "dtype": "string"}}}`)
	runSteps(t, []cliStep{
		{name: "file with flags", code: 0,
			args:   []string{"models", "register", "mf", "3", "--server", a.url, "--file", writeFile(t, "abs.json", string(absBody)), "--metadata", "b=from flag", "--features", spec},
			stdout: []string{"registered mf@3"}},
		{name: "show it", args: []string{"models", "show", "mf", "3", "--server", a.url}, code: 0,
			stdout: []string{"timeout_ms:  50", "a:  from file", "b:  from flag", "features:\n  {\n    \"inputs\": {", `"length": 5`}},
		{name: "relative path in a file", code: 0,
			args:   []string{"models", "register", "mf", "4", "--server", a.url, "--file", writeFile(t, "rel.json", string(relBody))},
			stdout: []string{"registered mf@4"}, stderr: []string{"note: backend.path", "its own working directory"}},
	})
}

// capture is a fake gateway that records the last request and answers
// with a fixed status and body.
type capture struct {
	mu     sync.Mutex
	method string
	path   string
	body   []byte
	status int
	answer string
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.method, c.path, c.body = r.Method, r.URL.Path, b
	w.WriteHeader(c.status)
	io.WriteString(w, c.answer)
}

// TestCLIRegisterBody checks the PUT bodies built from flags, and how odd
// answers are reported.
func TestCLIRegisterBody(t *testing.T) {
	fake := &capture{status: http.StatusCreated, answer: `{"arm": "mf@3", "backend": {"type": "tfserving", "target": "tf:8500", "model_name": "ranker", "version": 7}}`}
	ts := httptest.NewServer(fake)
	defer ts.Close()
	abs, _ := filepath.Abs("some/dir")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"embedded, relative path made absolute", []string{"--embedded", "some/dir", "--timeout-ms", "50"},
			`{"backend": {"type": "embedded", "path": ` + strconvQuote(abs) + `, "timeout_ms": 50}}`},
		{"tfserving, version and outputs", []string{"--tfserving", "tf:8500", "--model-name", "ranker", "--tf-version", "7", "--signature", "serve",
			"--timeout-ms", "20", "--scores-output", "probs", "--ids-output", "ids", "--metadata", "trained_to=2026-10-31", "--metadata", "recall:=0.21"},
			`{"backend": {"type": "tfserving", "target": "tf:8500", "model_name": "ranker", "version": 7, "signature_name": "serve", "timeout_ms": 20,
			  "outputs": {"scores": "probs", "ids": "ids"}}, "metadata": {"trained_to": "2026-10-31", "recall": 0.21}}`},
		{"tfserving, label and features", []string{"--tfserving", "tf:8500", "--model-name", "ranker", "--version-label", "canary",
			"--features", writeFile(t, "spec.json", `{"inputs": {}}`)},
			`{"backend": {"type": "tfserving", "target": "tf:8500", "model_name": "ranker", "version_label": "canary"}, "features": {"inputs": {}}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(append([]string{"models", "register", "mf", "3", "--server", ts.URL}, c.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if !strings.Contains(out, "registered mf@3 (tfserving tf:8500 ranker@7)") {
				t.Errorf("stdout: %s", out)
			}
			fake.mu.Lock()
			defer fake.mu.Unlock()
			if fake.method != http.MethodPut || fake.path != "/v1/models/mf/versions/3" {
				t.Errorf("sent %s %s", fake.method, fake.path)
			}
			var got, want any
			if err := json.Unmarshal(fake.body, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(c.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("body\n got %s\nwant %s", fake.body, c.want)
			}
		})
	}

	// An answer that is not the documented error shape is still reported.
	fake.mu.Lock()
	fake.status, fake.answer = http.StatusBadGateway, "upstream down"
	fake.mu.Unlock()
	code, _, errOut := runCLI("models", "list", "--server", ts.URL)
	if code != 1 || !strings.Contains(errOut, "modelgate: 502 Bad Gateway: upstream down") {
		t.Errorf("502: exit %d, stderr %q", code, errOut)
	}
	fake.mu.Lock()
	fake.status, fake.answer = http.StatusOK, "<html>"
	fake.mu.Unlock()
	code, _, errOut = runCLI("models", "list", "--server", strings.TrimPrefix(ts.URL, "http://"))
	if code != 1 || !strings.Contains(errOut, "unexpected answer") {
		t.Errorf("non-JSON 200: exit %d, stderr %q", code, errOut)
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestBackendWhere(t *testing.T) {
	tests := []struct {
		b    map[string]any
		want string
	}{
		{map[string]any{"type": "embedded", "path": "/srv/models/mf/2"}, "/srv/models/mf/2"},
		{map[string]any{"type": "tfserving", "target": "tf:8500", "model_name": "ranker", "version": 7.0}, "tf:8500 ranker@7"},
		{map[string]any{"type": "redis", "url": "redis://u:secret@h:6379/0", "key": "recs:{user_id}"}, "recs:{user_id}"},
	}
	for _, tc := range tests {
		if got := backendWhere(tc.b); got != tc.want {
			t.Errorf("backendWhere(%v) = %q, want %q", tc.b, got, tc.want)
		}
	}
}
