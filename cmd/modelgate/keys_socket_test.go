package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/gateway"
	"github.com/modelgate/modelgate/store"
)

// auditEntries is GET /v1/audit, newest first.
func auditEntries(t *testing.T, url, key string) []audit.Entry {
	t.Helper()
	r := do(t, "GET", url+"/v1/audit", key, nil)
	if r.status != 200 {
		t.Fatalf("GET /v1/audit: %d %s", r.status, r.body)
	}
	var out struct {
		Entries []audit.Entry `json:"entries"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	return out.Entries
}

// findAudit is the newest successful entry of action on target.
func findAudit(entries []audit.Entry, action, target string) *audit.Entry {
	for i := range entries {
		if entries[i].Action == action && entries[i].Target == target && entries[i].Result == "ok" {
			return &entries[i]
		}
	}
	return nil
}

// With the embedded store and a server running on the data dir, the
// command line manages keys through the server's admin socket: a key it
// creates works at once, one it revokes is refused at once, and both are
// in the audit log under the actor cli, as changes over HTTP are under the
// calling key's name.
func TestKeysCLIWhileServingEmbedded(t *testing.T) {
	a := startAuthApp(t, "")
	sock := filepath.Join(a.dataDir, gateway.AdminSocketName)
	st, err := os.Stat(sock)
	if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, mode %v; want a socket of mode 0600", err, st.Mode())
	}

	code, out, errOut := runKeysCLI("create", "--data-dir", a.dataDir, "--name", "root", "--scope", "admin")
	root := strings.TrimSpace(out)
	if code != 0 || !auth.WellFormed(root) {
		t.Fatalf("create while serving: %d %q %q", code, out, errOut)
	}
	if r := do(t, "GET", a.url+"/v1/keys", root, nil); r.status != 200 {
		t.Fatalf("the CLI's new admin key: %d %s", r.status, r.body)
	}
	if code, _, errOut := runKeysCLI("create", "--data-dir", a.dataDir, "--name", "root", "--scope", "client"); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("duplicate over the socket: %d %q", code, errOut)
	}
	if code, _, errOut := runKeysCLI("create", "--data-dir", a.dataDir, "--name", "x", "--scope", "root"); code != 1 || !strings.Contains(errOut, "unknown scope") {
		t.Fatalf("bad scope over the socket: %d %q", code, errOut)
	}

	// A key made over HTTP, listed and revoked by the CLI.
	r := do(t, "POST", a.url+"/v1/keys", root, map[string]any{"name": "app1", "scopes": []string{"client"}})
	var made struct {
		Key string `json:"key"`
	}
	if r.status != 201 || json.Unmarshal(r.body, &made) != nil {
		t.Fatalf("POST /v1/keys: %d %s", r.status, r.body)
	}
	code, out, errOut = runKeysCLI("list", "--data-dir", a.dataDir)
	if code != 0 || !strings.Contains(out, "root") || !strings.Contains(out, "app1") || strings.Contains(out, root) {
		t.Fatalf("list while serving: %d %q %q", code, out, errOut)
	}
	if r := do(t, "POST", a.url+"/v1/feedback", made.Key, map[string]any{"events": []any{}}); r.status == 401 {
		t.Fatalf("app1 refused before its revocation: %s", r.body)
	}
	if code, _, errOut := runKeysCLI("revoke", "app1", "--data-dir", a.dataDir); code != 0 {
		t.Fatalf("revoke while serving: %d %q", code, errOut)
	}
	if r := do(t, "POST", a.url+"/v1/feedback", made.Key, map[string]any{"events": []any{}}); r.status != 401 {
		t.Fatalf("a key revoked by the CLI answered %d, want 401 at once", r.status)
	}
	if code, _, errOut := runKeysCLI("revoke", "app1", "--data-dir", a.dataDir); code != 1 || !strings.Contains(errOut, "no key named") {
		t.Fatalf("revoke again: %d %q", code, errOut)
	}
	if r := do(t, "DELETE", a.url+"/v1/keys/root", root, nil); r.status != 204 {
		t.Fatalf("DELETE /v1/keys/root: %d %s", r.status, r.body)
	}
	code, out, _ = runKeysCLI("create", "--data-dir", a.dataDir, "--name", "root2", "--scope", "admin")
	root2 := strings.TrimSpace(out)
	if code != 0 {
		t.Fatalf("create root2: %d", code)
	}

	entries := auditEntries(t, a.url, root2)
	for _, tc := range []struct{ action, target, actor string }{
		{"create_key", "root", "cli"},
		{"create_key", "app1", "root"},
		{"revoke_key", "app1", "cli"},
		{"revoke_key", "root", "root"},
		{"create_key", "root2", "cli"},
	} {
		e := findAudit(entries, tc.action, tc.target)
		if e == nil || e.Actor != tc.actor {
			t.Errorf("audit %s %s: %+v, want actor %s, result ok", tc.action, tc.target, e, tc.actor)
		}
	}
	// A refused change is recorded with its reason.
	var refused bool
	for _, e := range entries {
		refused = refused || (e.Action == "revoke_key" && e.Target == "app1" && e.Actor == "cli" && strings.Contains(e.Result, "no key named"))
	}
	if !refused {
		t.Errorf("the second revocation of app1 is not in the audit log with its reason: %+v", entries)
	}
	raw, _ := json.Marshal(entries)
	for _, secret := range []string{root, root2, made.Key} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("a key's secret is in the audit log: %s", raw)
		}
	}
}

// A socket file left by a server that was killed does not stop the next
// one: it is replaced at start, and removed at shutdown, after which the
// CLI works on the store directly and is audited the same.
func TestAdminSocketStaleAndShutdown(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, gateway.AdminSocketName)
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // as a kill -9 leaves it: a file nobody listens on
	if _, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	}

	cfg := demoConfig(t, "")
	cfg.Auth.Mode = config.AuthKeys
	a := startGateway(t, cfg, gateway.Options{DataDir: dir})
	code, out, errOut := runKeysCLI("create", "--data-dir", dir, "--name", "root", "--scope", "admin")
	if code != 0 {
		a.stop()
		t.Fatalf("create through a fresh socket: %d %q", code, errOut)
	}
	root := strings.TrimSpace(out)
	if r := do(t, "GET", a.url+"/v1/keys", root, nil); r.status != 200 {
		t.Errorf("the running server does not know the CLI's key: %d %s", r.status, r.body)
	}
	a.stop()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("admin socket after shutdown: %v", err)
	}

	if code, _, errOut := runKeysCLI("revoke", "root", "--data-dir", dir); code != 0 {
		t.Fatalf("revoke with the server down: %d %q", code, errOut)
	}
	entries, err := auditLogOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"create_key", "revoke_key"} {
		if e := findAudit(entries, action, "root"); e == nil || e.Actor != "cli" || e.Result != "ok" {
			t.Errorf("audit %s root: %+v, want actor cli", action, e)
		}
	}
}

// auditLogOf reads the audit log of the embedded store in dir (no server
// running on it), newest first.
func auditLogOf(dir string) ([]audit.Entry, error) {
	db, err := store.Open(dir)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return audit.New(db, nil).List(context.Background(), 100)
}
