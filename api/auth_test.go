package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/fault"
)

func TestRouteScope(t *testing.T) {
	for _, c := range []struct{ method, route, want string }{
		{"POST", "/v1/endpoints/:endpoint/recommend", auth.ScopeClient},
		{"GET", "/v1/models", auth.ScopeML},
		{"GET", "/v1/endpoints/:endpoint/report", auth.ScopeAnalyst},
		{"GET", "/ui/", auth.ScopeAnalyst},
		{"DELETE", "/v1/keys/:name", auth.ScopeAdmin},
		{"GET", "/v1/something/new", auth.ScopeAdmin}, // a route missing from the table: admin
		{"GET", "/healthz", ""},
		{"GET", "/metrics", ""},
		{"GET", "", ""}, // unknown path: any key, then 404
	} {
		if got := RouteScope(c.method, c.route); got != c.want {
			t.Errorf("RouteScope(%s %s) = %q, want %q", c.method, c.route, got, c.want)
		}
	}
	for _, s := range routeScopes {
		if !auth.Allowed([]string{s}, s) {
			t.Errorf("scope %s in the table is not a scope", s)
		}
	}
}

func TestAuthFaults(t *testing.T) {
	for k, want := range map[fault.Kind]struct {
		st   int
		code codes.Code
	}{fault.Unauthenticated: {401, codes.Unauthenticated}, fault.Forbidden: {403, codes.PermissionDenied},
		fault.RateLimited: {429, codes.ResourceExhausted}} {
		if kindStatus(k) != want.st || kindCode(k) != want.code {
			t.Errorf("kind %d: %d %v", k, kindStatus(k), kindCode(k))
		}
	}
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2} {
		if got := retrySeconds(d); got != want {
			t.Errorf("retrySeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestPresentedKey(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/ui/", nil)
	r.Header.Set("Authorization", "bearer  mg_abc ")
	if presentedKey(r, false) != "mg_abc" {
		t.Error("bearer")
	}
	r = httptest.NewRequest(http.MethodGet, "/ui/", nil)
	r.SetBasicAuth("me", "mg_pw")
	if presentedKey(r, false) != "" || presentedKey(r, true) != "mg_pw" {
		t.Error("basic")
	}
}
