package gateway

import (
	"io"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"
)

// An idle keep-alive connection outlives limits.read_timeout: the server
// must not close it before the client does, or the client's next request
// on it races the close and fails.
func TestIdleKeepAliveOutlivesTheReadTimeout(t *testing.T) {
	cfg := demoConfig(t, "")
	cfg.Limits.ReadTimeout = 200 * time.Millisecond
	a := startApp(t, cfg)
	client := &http.Client{Transport: &http.Transport{IdleConnTimeout: time.Minute}}
	defer client.CloseIdleConnections()
	get := func() (reused bool) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, a.url+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz: %d", resp.StatusCode)
		}
		return reused
	}
	get()
	time.Sleep(4 * cfg.Limits.ReadTimeout)
	if !get() {
		t.Fatalf("the connection was closed after %v idle; want it kept for IdleTimeout (%v)", 4*cfg.Limits.ReadTimeout, IdleTimeout)
	}
}
