package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestPprofServedApartFromTheAPI(t *testing.T) {
	a := startGateway(t, demoConfig(t, ""), Options{PprofAddr: "127.0.0.1:0"}, openedStore{})
	addr := a.PprofAddr()
	if addr == nil {
		t.Fatal("PprofAddr is nil with Options.PprofAddr set")
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, url string
		code      int
		want      string
	}{
		{"index", "http://" + addr.String() + "/debug/pprof/", 200, "allocs"},
		{"heap", "http://" + addr.String() + "/debug/pprof/heap?debug=1", 200, "heap profile"},
		{"goroutines", "http://" + addr.String() + "/debug/pprof/goroutine?debug=1", 200, "goroutine profile"},
		{"cpu", "http://" + addr.String() + "/debug/pprof/profile?seconds=1", 200, ""},
		{"not on the API", a.url + "/debug/pprof/", 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(tc.url)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("GET %s: %d %.200q", tc.url, code, body)
			}
		})
	}
	a.stop()
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Fatalf("pprof still listens on %s after the shutdown", addr)
	}
}

func TestNoPprofByDefault(t *testing.T) {
	a := startApp(t, demoConfig(t, ""))
	if addr := a.PprofAddr(); addr != nil {
		t.Fatalf("PprofAddr = %v without Options.PprofAddr", addr)
	}
}
