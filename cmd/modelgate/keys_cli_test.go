package main

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/store"
)

func runKeysCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(append([]string{"keys"}, args...), &o, &e)
	return code, o.String(), e.String()
}

func TestKeysCLI(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runKeysCLI("create", "--data-dir", dir, "--name", "root", "--scope", "admin")
	plain := strings.TrimSpace(out)
	if code != 0 || !auth.WellFormed(plain) {
		t.Fatalf("create: %d %q %q", code, out, errOut)
	}
	code, out, errOut = runKeysCLI("create", "--data-dir", dir, "--name", "app1", "--scope", "client", "--scope", "analyst", "--rate", "100", "--burst", "200")
	if code != 0 || !auth.WellFormed(strings.TrimSpace(out)) {
		t.Fatalf("create app1: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runKeysCLI("create", "--data-dir", dir, "--name", "app1", "--scope", "client"); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("duplicate: %d %q", code, errOut)
	}
	if code, _, errOut := runKeysCLI("create", "--data-dir", dir, "--name", "x", "--scope", "root"); code != 1 || !strings.Contains(errOut, "unknown scope") {
		t.Fatalf("bad scope: %d %q", code, errOut)
	}
	if code, _, _ := runKeysCLI("create", "--data-dir", dir, "--name", "x"); code != 2 {
		t.Fatalf("no scope: %d", code)
	}
	code, out, _ = runKeysCLI("list", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "root") || !strings.Contains(out, "analyst,client") || !strings.Contains(out, "100") || strings.Contains(out, plain) {
		t.Fatalf("list: %d %q", code, out)
	}
	// Stored as a hash only.
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := db.ListKeys(t.Context())
	if len(all) != 2 {
		t.Fatalf("%d keys stored", len(all))
	}
	for _, k := range all {
		if k.Name == "root" && (k.Hash != auth.Sum(plain) || k.Scopes[0] != "admin") {
			t.Fatalf("root stored as %+v", k)
		}
	}
	// While a process holds the data dir, the CLI says what to do.
	code, _, errOut = runKeysCLI("list", "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, "HTTP API") {
		t.Fatalf("locked: %d %q", code, errOut)
	}
	db.Close()
	if code, _, errOut := runKeysCLI("revoke", "app1", "--data-dir", dir); code != 0 {
		t.Fatalf("revoke: %d %q", code, errOut)
	}
	if code, _, _ := runKeysCLI("revoke", "--data-dir", dir, "app1"); code != 1 {
		t.Fatalf("revoke again: %d", code)
	}
	if code, _, _ := runKeysCLI("bogus"); code != 2 {
		t.Fatalf("unknown subcommand: %d", code)
	}
}

func TestKeysCLIRedisWhileServing(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	a := startAuthApp(t, rs.URL())
	code, out, errOut := runKeysCLI("create", "--redis-url", rs.URL(), "--name", "ops", "--scope", "ml")
	if code != 0 {
		t.Fatalf("create: %d %q", code, errOut)
	}
	key := strings.TrimSpace(out)
	waitFor := func(want int) {
		t.Helper()
		for i := 0; i < 100; i++ {
			if do(t, "GET", a.url+"/v1/models", key, nil).status == want {
				return
			}
			sleepShort()
		}
		t.Fatalf("GET /v1/models never answered %d", want)
	}
	waitFor(200)
	if code, _, errOut := runKeysCLI("revoke", "--redis-url", rs.URL(), "ops"); code != 0 {
		t.Fatalf("revoke: %d %q", code, errOut)
	}
	waitFor(401)
}

func TestListenerCheck(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	open := serveFlags{httpAddr: "0.0.0.0:8080", grpcAddr: "127.0.0.1:9090"}
	cfg := config.Default()
	if err := checkListeners(open, cfg, log); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("mode none on 0.0.0.0: %v", err)
	}
	cfg.Auth.Mode = config.AuthKeys
	if err := checkListeners(open, cfg, log); err != nil {
		t.Fatalf("mode keys on 0.0.0.0: %v", err)
	}
	cfg.Auth.Mode = config.AuthNone
	open.insecure = true
	if err := checkListeners(open, cfg, slog.New(slog.NewTextHandler(io.MultiWriter(&logs), nil))); err != nil || !strings.Contains(logs.String(), "--insecure") {
		t.Fatalf("--insecure: %v %q", err, logs.String())
	}
	for _, tc := range []struct {
		addr string
		ok   bool
	}{{"127.0.0.1:6060", true}, {"localhost:6060", true}, {"[::1]:6060", true}, {"0.0.0.0:6060", false}, {":6060", false}} {
		f := serveFlags{httpAddr: "127.0.0.1:8080", grpcAddr: "127.0.0.1:9090", pprofAddr: tc.addr, insecure: true}
		if err := checkListeners(f, config.Default(), log); (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), "--pprof-addr")) {
			t.Errorf("--pprof-addr %s: %v, want ok %v", tc.addr, err, tc.ok)
		}
	}
	if _, err := config.Parse([]byte("auth: {mode: keys}\n"), "."); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse([]byte("auth: {mode: maybe}\n"), "."); err == nil {
		t.Fatal("auth.mode maybe accepted")
	}
}

func sleepShort() { time.Sleep(10 * time.Millisecond) }

// Bad values of the serve flags added for performance are refused before
// anything starts.
func TestServeRefusesBadTuningFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"negative floor", "", []string{"--gc-floor-mb", "-1"}, "--gc-floor-mb -1"},
		{"floor not a number in the environment", "lots", nil, "MODELGATE_GC_FLOOR_MB"},
		{"pprof on every interface", "", []string{"--pprof-addr", "0.0.0.0:6060", "--data-dir", "DIR"}, "--pprof-addr"},
		{"redis cluster with a database", "", []string{"--redis-url", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/2", "--data-dir", "DIR"}, "a cluster has database 0 only"},
		{"sentinel without a master name", "", []string{"--redis-url", "redis+sentinel://127.0.0.1:26379", "--data-dir", "DIR"}, "no master name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MODELGATE_GC_FLOOR_MB", tc.env)
			args := []string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"}
			for _, a := range tc.args {
				if a == "DIR" {
					a = t.TempDir()
				}
				args = append(args, a)
			}
			var out, errOut bytes.Buffer
			if code := run(args, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("serve %v: exit %d, stderr %q; want a refusal naming %s", tc.args, code, errOut.String(), tc.want)
			}
		})
	}
}
