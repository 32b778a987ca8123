package gateway

import (
	"net/http"
	"net/http/pprof"
)

// pprofHandler serves net/http/pprof's handlers on a mux of its own (the
// package's init registers them on http.DefaultServeMux, which the gateway
// does not serve).
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
