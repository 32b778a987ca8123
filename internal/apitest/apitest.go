// Package apitest holds what the gateway's and the command line's tests
// both need to run a gateway and talk to it: its Run until the test ends,
// JSON requests over HTTP and the parsed demo config. It must not import package gateway, whose internal
// tests use it.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/modelgate/modelgate/config"
)

// Run calls run (a gateway's Run) in a goroutine until stop or the end of
// the test. stop cancels run's context, as SIGTERM does, and waits until
// run returned, which must be without an error; it may be called more
// than once, and the test's cleanup calls it too.
func Run(t testing.TB, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Response is an HTTP answer read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Call sends a JSON request and decodes the JSON answer into out (when not
// nil and the answer has a body), returning the status. body is sent as is
// when it is a string or []byte, and JSON-encoded otherwise (nil sends no
// body).
func Call(t testing.TB, method, url string, body, out any) int {
	t.Helper()
	r := send(t, method, url, body, nil)
	if out != nil && len(r.Body) > 0 {
		if err := json.Unmarshal(r.Body, out); err != nil {
			t.Fatalf("%s %s: %d %s: not JSON: %v", method, url, r.Status, r.Body, err)
		}
	}
	return r.Status
}

// Do sends a request as Call does, with key as a Bearer token unless it is
// "", and returns the answer undecoded.
func Do(t testing.TB, method, url, key string, body any) Response {
	t.Helper()
	return send(t, method, url, body, func(req *http.Request) {
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
	})
}

// DoBasic is Do with key as the password of HTTP Basic auth (any user
// name), as a browser sends it.
func DoBasic(t testing.TB, method, url, key string, body any) Response {
	t.Helper()
	return send(t, method, url, body, func(req *http.Request) {
		if key != "" {
			req.SetBasicAuth("anyone", key)
		}
	})
}

// send is the request both Call and Do make; authorize, when not nil, adds
// the credentials.
func send(t testing.TB, method, url string, body any, authorize func(*http.Request)) Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if authorize != nil {
		authorize(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// ParseConfig is the config file at path with extra appended, parsed with
// dir as the base of its relative paths (the file's directory, for the
// bundled demo).
func ParseConfig(t testing.TB, path, dir, extra string) *config.Config {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(append(raw, []byte(extra)...), dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
