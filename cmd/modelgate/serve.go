package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/gateway"
	"github.com/modelgate/modelgate/internal/gcfloor"
	"github.com/modelgate/modelgate/telemetry"
)

type serveFlags struct {
	config    string
	httpAddr  string
	grpcAddr  string
	dataDir   string
	redisURL  string
	insecure  bool
	logLevel  string
	pprofAddr string
	gcFloorMB int
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func runServe(args []string, stdout, stderr io.Writer) int {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "YAML config file that seeds the registry (optional)")
	fs.StringVar(&f.httpAddr, "http-addr", envOr("MODELGATE_HTTP_ADDR", "127.0.0.1:8080"), "HTTP listen address (env MODELGATE_HTTP_ADDR)")
	fs.StringVar(&f.grpcAddr, "grpc-addr", envOr("MODELGATE_GRPC_ADDR", "127.0.0.1:9090"), "gRPC listen address (env MODELGATE_GRPC_ADDR)")
	fs.StringVar(&f.dataDir, "data-dir", envOr("MODELGATE_DATA_DIR", "./data"), "directory of the embedded store (env MODELGATE_DATA_DIR)")
	fs.StringVar(&f.redisURL, "redis-url", envOr("MODELGATE_REDIS_URL", ""), "redis://HOST:PORT/DB, or redis+sentinel://H1:26379,H2:26379/MASTER[/DB], to share state between replicas (env MODELGATE_REDIS_URL)")
	fs.StringVar(&f.pprofAddr, "pprof-addr", envOr("MODELGATE_PPROF_ADDR", ""), "serve Go's runtime profiles (/debug/pprof/) on this loopback address, for profiling; off when empty (env MODELGATE_PPROF_ADDR)")
	gcFloor := gcfloor.DefaultFloor >> 20
	if v := os.Getenv("MODELGATE_GC_FLOOR_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			fmt.Fprintf(stderr, "serve: MODELGATE_GC_FLOOR_MB=%q is not a number of MiB\n", v)
			return 2
		}
		gcFloor = n
	}
	fs.IntVar(&f.gcFloorMB, "gc-floor-mb", gcFloor, "let the heap grow this many MiB above a small live heap before the GC runs (0: off; off too when GOGC is set) (env MODELGATE_GC_FLOOR_MB)")
	fs.BoolVar(&f.insecure, "insecure", false, "allow listening on a non-loopback address without API keys")
	fs.StringVar(&f.logLevel, "log-level", envOr("MODELGATE_LOG_LEVEL", "info"), "debug, info, warn or error (env MODELGATE_LOG_LEVEL)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: modelgate serve [--config FILE] [--http-addr HOST:PORT] [--grpc-addr HOST:PORT] [--data-dir DIR] [--redis-url URL] [--pprof-addr HOST:PORT] [--insecure]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if f.gcFloorMB < 0 || f.gcFloorMB > 1<<20 {
		fmt.Fprintf(stderr, "serve: --gc-floor-mb %d: want 0 (off) to 1048576\n", f.gcFloorMB)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(stderr, "serve: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})))
	telemetry.LogErrors(log)
	redis.SetLogger(gateway.RedisLogger{Log: log}) // go-redis's logger is per process
	if err := serve(f, log, stdout); err != nil {
		log.Error("serve failed", "err", err)
		fmt.Fprintf(stderr, "modelgate serve: %v\n", err)
		return 1
	}
	return 0
}

// checkListeners refuses non-loopback listeners without API keys unless
// --insecure is given, and warns when it is.
func checkListeners(f serveFlags, cfg *config.Config, log *slog.Logger) error {
	if f.pprofAddr != "" && !loopback(f.pprofAddr) {
		// The profiles have no authentication and show the process's
		// internals: loopback only, whatever --insecure says.
		return fmt.Errorf("--pprof-addr %s: the profiles are served without authentication, so only on a loopback address (127.0.0.1, ::1, localhost)", f.pprofAddr)
	}
	if cfg.Auth.Mode == config.AuthKeys {
		return nil
	}
	for _, a := range []string{f.httpAddr, f.grpcAddr} {
		if loopback(a) {
			continue
		}
		if !f.insecure {
			return fmt.Errorf("refusing to listen on %s without API keys: bind to a loopback address (127.0.0.1, ::1, localhost), set auth: {mode: keys} in the config, or pass --insecure", a)
		}
		log.Warn("--insecure: serving on a non-loopback address without API keys; anyone who can reach it can change the registry", "addr", a)
	}
	return nil
}

// loopback reports whether addr's host is a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serve runs the gateway until SIGINT or SIGTERM.
func serve(f serveFlags, log *slog.Logger, stdout io.Writer) error {
	cfg := config.Default()
	if f.config != "" {
		var err error
		if cfg, err = config.Load(f.config); err != nil {
			return err
		}
	}
	cfg.RedisURL = f.redisURL
	if err := checkListeners(f, cfg, log); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, err := gateway.New(ctx, cfg, gateway.Options{DataDir: f.dataDir, Logger: log, HTTPAddr: f.httpAddr, GRPCAddr: f.grpcAddr,
		Version: readBuildVersion().Version, PprofAddr: f.pprofAddr})
	if err != nil {
		return err
	}
	versions, endpoints := g.Registered()
	log.Info("modelgate serving", "http", g.HTTPAddr().String(), "grpc", g.GRPCAddr().String(), "data_dir", f.dataDir,
		"models", versions, "endpoints", endpoints)
	log.Info("telemetry", "exporters", g.Exporters(), "tracing", g.Tracing())
	fmt.Fprintf(stdout, "modelgate: HTTP on %s, gRPC on %s, data in %s\n", g.URL(), g.GRPCAddr(), f.dataDir)
	if f.pprofAddr != "" {
		// The contention profiles (/debug/pprof/mutex, /block) sample
		// only when asked to: 1 in 100 contended locks, and waits of
		// 10 µs or more. Cheap enough for a profiling run.
		runtime.SetMutexProfileFraction(100)
		runtime.SetBlockProfileRate(int((10 * time.Microsecond).Nanoseconds()))
	}
	if f.gcFloorMB > 0 && os.Getenv("GOGC") == "" {
		gctx, stopGC := context.WithCancel(context.Background())
		tuned := make(chan struct{})
		go func() { // joined below
			defer close(tuned)
			gcfloor.New(uint64(f.gcFloorMB)<<20, time.Second).Run(gctx)
		}()
		defer func() { stopGC(); <-tuned }()
	}
	return g.Run(ctx)
}
