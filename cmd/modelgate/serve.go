package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/lifecycle"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/predlog"
	"github.com/modelgate/modelgate/predtoken"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/router"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/telemetry"
)

type serveFlags struct {
	config   string
	httpAddr string
	grpcAddr string
	dataDir  string
	redisURL string
	insecure bool
	logLevel string
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
	fs.StringVar(&f.redisURL, "redis-url", envOr("MODELGATE_REDIS_URL", ""), "redis://HOST:PORT/DB to share state between replicas (env MODELGATE_REDIS_URL)")
	fs.BoolVar(&f.insecure, "insecure", false, "allow listening on a non-loopback address without API keys")
	fs.StringVar(&f.logLevel, "log-level", envOr("MODELGATE_LOG_LEVEL", "info"), "debug, info, warn or error (env MODELGATE_LOG_LEVEL)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: modelgate serve [--config FILE] [--http-addr HOST:PORT] [--grpc-addr HOST:PORT] [--data-dir DIR] [--redis-url URL] [--insecure]")
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
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(stderr, "serve: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})))
	telemetry.LogErrors(log)
	if err := serve(f, log, stdout); err != nil {
		log.Error("serve failed", "err", err)
		fmt.Fprintf(stderr, "modelgate serve: %v\n", err)
		return 1
	}
	return 0
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
	ltls, err := newListenerTLS(cfg.TLS, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := newApp(ctx, cfg, f.dataDir, log)
	if err != nil {
		return err
	}
	defer a.close()
	srv, reg := a.srv, a.reg

	hl, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	gl, err := net.Listen("tcp", f.grpcAddr)
	if err != nil {
		hl.Close()
		return fmt.Errorf("grpc listen: %w", err)
	}
	hl = ltls.wrapHTTP(hl)
	hs := &http.Server{Handler: srv.Handler(), ReadTimeout: cfg.Limits.ReadTimeout, WriteTimeout: cfg.Limits.WriteTimeout,
		ReadHeaderTimeout: cfg.Limits.ReadTimeout, MaxHeaderBytes: 64 << 10}
	gs := grpc.NewServer(ltls.grpcOptions(srv.GRPCServerOptions())...)
	srv.RegisterGRPC(gs)

	fbCtx, fbStop := context.WithCancel(context.Background())
	fbDone := make(chan struct{})
	go func() { a.run(fbCtx); close(fbDone) }()

	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(hl) }()
	go func() { errc <- gs.Serve(gl) }()
	log.Info("modelgate serving", "http", hl.Addr().String(), "grpc", gl.Addr().String(), "data_dir", f.dataDir,
		"models", len(reg.Snapshot().Versions), "endpoints", len(reg.Snapshot().Endpoints))
	log.Info("telemetry", "exporters", a.tel.Exporters(), "tracing", a.tel.Tracing())
	fmt.Fprintf(stdout, "modelgate: HTTP on %s://%s, gRPC on %s, data in %s\n", ltls.scheme(), hl.Addr(), gl.Addr(), f.dataDir)

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.ShutdownTimeout)
	defer cancel()
	_ = hs.Shutdown(sctx)
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		gs.Stop()
		<-done // GracefulStop returns once Stop has closed everything
	}
	fbStop()
	<-fbDone
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// app is the gateway's core, wired, without listeners.
type app struct {
	db    stateStore
	cfg   *config.Config
	reg   *registry.Registry
	table *counters.Table
	fb    *feedback.Service
	rt    *router.Router
	srv   *api.Server
	watch *lifecycle.Watcher
	pool  *tfserving.Pool
	plog  *predlog.Log
	log   *slog.Logger
	tel   *telemetry.Telemetry
	offp  *offpolicy.Table
	rec   *report.Recorder
	keys  *auth.Keys // API keys; nil when the store keeps none
	// gauges are the traffic_share and p_best gauges, computed off the
	// scrape path.
	gauges *armGauges
	// admin is the admin socket in the data dir (embedded store only),
	// served by run; nil when there is none.
	admin net.Listener

	retention time.Duration
}

// serveAdmin serves the admin socket until ctx ends, then removes it.
func (a *app) serveAdmin(ctx context.Context) {
	if a.admin == nil {
		return
	}
	if err := a.srv.ServeAdmin(ctx, a.admin); err != nil {
		a.log.Error("admin socket", "err", err)
	}
}

// close releases the app's resources; call it after the listeners stopped.
func (a *app) close() {
	if a.admin != nil {
		_ = a.admin.Close() // removes the socket file; already closed when run ran
	}
	if err := a.tel.Shutdown(context.Background()); err != nil {
		a.log.Error("flushing telemetry", "err", err)
	}
	a.reg.Close()
	a.pool.Close()
	if err := a.plog.Close(); err != nil {
		a.log.Error("closing the prediction log", "err", err)
	}
	a.db.Close()
}

// run runs the background work (trial flushes, dedupe sweeps, auto_arms
// watchers) until ctx ends; the final flush is done when it returns.
func (a *app) run(ctx context.Context) {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.watch.Run(wctx); close(done) }()
	discDone := make(chan struct{})
	go func() { a.saveDiscounted(wctx); close(discDone) }()
	recDone := make(chan struct{})
	go func() { a.rec.Run(wctx); close(recDone) }()
	opDone := make(chan struct{})
	go func() { a.saveOffPolicy(wctx); close(opDone) }()
	sharedDone := make(chan struct{})
	go func() { a.runShared(wctx); close(sharedDone) }()
	keysDone := make(chan struct{})
	go func() { a.runKeys(wctx); close(keysDone) }()
	rtDone := make(chan struct{})
	go func() { a.rt.Run(wctx); close(rtDone) }()
	gaugesDone := make(chan struct{})
	go func() { a.gauges.run(wctx); close(gaugesDone) }()
	guardDone := make(chan struct{})
	go func() { a.rt.RunGuardrails(wctx); close(guardDone) }()
	adminDone := make(chan struct{})
	go func() { a.serveAdmin(wctx); close(adminDone) }()
	a.fb.Run(ctx)
	cancel()
	<-rtDone
	<-sharedDone
	<-keysDone
	<-gaugesDone
	<-adminDone
	<-guardDone
	<-done
	<-discDone
	<-recDone
	<-opDone
}

// saveOffPolicy writes the changed off-policy minutes every second and
// once more at the end, and forgets minutes past the retention.
func (a *app) saveOffPolicy(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	save := func() {
		dirty := a.offp.Dirty()
		recs := make([]store.Record, 0, len(dirty))
		for k, m := range dirty {
			raw, _ := json.Marshal(m)
			recs = append(recs, store.Record{Endpoint: k.Endpoint, Segment: k.Segment, Time: k.Minute, Value: raw})
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.db.PutOffPolicy(sctx, recs); err != nil {
			a.log.Error("saving off-policy sums", "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			save()
			return
		case now := <-t.C:
			save()
			if now.Second() == 0 {
				a.offp.Forget(now.Add(-a.retention))
			}
		}
	}
}

// saveDiscounted snapshots the discounted counts every few seconds and once
// more at the end, so a restart resumes the decay where it was.
func (a *app) saveDiscounted(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	save := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.db.PutDiscounted(sctx, a.table.DiscEntries()); err != nil {
			a.log.Error("saving discounted counts", "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			save()
			return
		case <-t.C:
			save()
		}
	}
}

// newApp opens the data dir and wires the core services. The caller closes
// a.db and runs a.fb.Run for the background flushes.
func newApp(ctx context.Context, cfg *config.Config, dataDir string, log *slog.Logger) (*app, error) {
	return newSeededApp(ctx, cfg, dataDir, log, 0)
}

// newSeededApp is newApp with a reproducible router when rngSeed is not 0
// (see wire).
func newSeededApp(ctx context.Context, cfg *config.Config, dataDir string, log *slog.Logger, rngSeed uint64) (*app, error) {
	tel, err := telemetry.New(ctx, telemetry.Config{ServiceVersion: readBuildVersion().Version})
	if err != nil {
		return nil, err
	}
	a, err := newAppWith(ctx, cfg, dataDir, log, tel, rngSeed)
	if err != nil {
		_ = tel.Shutdown(context.Background())
	}
	return a, err
}

// newAppWith is newApp with the given telemetry (OTEL_* settings, test
// exporters); the app shuts it down in close. A non-zero rngSeed makes the
// router reproducible (see wire).
func newAppWith(ctx context.Context, cfg *config.Config, dataDir string, log *slog.Logger, tel *telemetry.Telemetry, rngSeed uint64) (*app, error) {
	db, err := openStore(ctx, cfg, dataDir, log)
	if err != nil {
		return nil, err
	}
	plog, err := predlog.Open(dataDir, cfg.Report.Retention, log)
	if err != nil {
		db.Close()
		return nil, err
	}
	a, err := wire(ctx, cfg, db, plog, log, tel, rngSeed)
	if err != nil {
		plog.Close()
		db.Close()
		return nil, err
	}
	a.tel = tel
	if _, embedded := db.(*store.DB); embedded && a.keys != nil {
		// The command line hands key changes to this server through the
		// socket, as it cannot open the locked store itself.
		if a.admin, err = listenAdmin(dataDir); err != nil {
			log.Warn("modelgate keys cannot reach this server; manage keys through the HTTP API", "err", err)
		}
	}
	return a, nil
}

// wire builds the app's services on an open store. A non-zero rngSeed makes
// the router's choices a function of the requests' order alone (a seeded
// source, shares refreshed in the request: router.Options.SyncRefresh), for
// tests that check what the bandit does; serve passes 0.
func wire(ctx context.Context, cfg *config.Config, db stateStore, plog *predlog.Log, log *slog.Logger, tel *telemetry.Telemetry, rngSeed uint64) (*app, error) {
	table := &counters.Table{}
	entries, err := db.LoadCounters(ctx)
	if err != nil {
		return nil, fmt.Errorf("load counters: %w", err)
	}
	table.Refresh(entries) // also sums the endpoint-wide cells segments borrow from
	offp := &offpolicy.Table{}
	recs, err := db.LoadOffPolicy(ctx)
	if err != nil {
		return nil, fmt.Errorf("load off-policy sums: %w", err)
	}
	for _, r := range recs {
		var m offpolicy.Minute
		if json.Unmarshal(r.Value, &m) == nil {
			offp.Load(offpolicy.Key{Endpoint: r.Endpoint, Segment: r.Segment, Minute: r.Time}, m)
		}
	}
	offp.Dirty() // what was just loaded is already stored
	discs, err := db.LoadDiscounted(ctx)
	if err != nil {
		return nil, fmt.Errorf("load discounted counts: %w", err)
	}
	for _, d := range discs {
		table.Cell(d.Key).RestoreDiscounted(d.Disc)
	}
	pool := tfserving.NewPool(tel.GRPCDialOptions()...)
	auditLog := audit.New(db, log)
	reg, err := registry.New(ctx, db, loaders(pool, cfg.ONNXRuntime), log, registry.Options{Audit: auditLog})
	if err != nil {
		return nil, err
	}
	if err := seed(audit.WithActor(ctx, "config"), reg, db, cfg, log); err != nil {
		pool.Close()
		return nil, err
	}
	keys := cfg.SigningKeys
	if len(keys) == 0 {
		k, err := db.SigningKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		keys = [][]byte{k}
	}
	signer, err := predtoken.NewSigner(keys...)
	if err != nil {
		return nil, err
	}
	pauseArm := func(endpoint, arm, reason string) {
		ctx, cancel := context.WithTimeout(audit.WithActor(context.Background(), "guardrail"), 10*time.Second)
		defer cancel()
		if _, err := reg.PauseArm(ctx, endpoint, arm, reason); err != nil {
			log.Error("guardrail could not pause an arm", "endpoint", endpoint, "arm", arm, "err", err)
		}
	}
	rt := router.New(reg, table, signer, log, router.Options{PredictionLog: plog, OnGuardrail: pauseArm, OffPolicy: offp, Telemetry: tel,
		Seed: rngSeed, SyncRefresh: rngSeed != 0})
	fbOpts := feedback.Options{OffPolicy: offp, Telemetry: tel}
	apiCfg := api.Config{MaxBodyBytes: cfg.Limits.MaxBodyBytes, MaxConcurrent: cfg.Limits.MaxConcurrent, Telemetry: tel, Audit: auditLog,
		Analytics: api.Analytics{OffPolicy: offp, Series: db, Interval: cfg.Report.Interval}}
	if apiCfg.MaxConcurrent == 0 {
		apiCfg.MaxConcurrent = 64 * runtime.NumCPU()
	}
	if sh, ok := db.(sharedStore); ok {
		fbOpts.FlushInterval = cfg.Redis.FlushInterval
		apiCfg.StoreHealth = func() (bool, any) {
			batches, bytes := sh.Backlog()
			return bytes < cfg.Redis.WALMaxBytes*9/10, map[string]any{"type": "redis", "healthy": sh.Healthy(),
				"wal_batches": batches, "wal_bytes": bytes}
		}
	}
	fb := feedback.NewService(signer, db, table, lookup(reg), log, fbOpts)
	apiKeys, apiAuth, err := wireAuth(ctx, cfg, db, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	apiCfg.Auth = apiAuth
	srv := api.New(apiCfg, reg, rt, fb, table, log)
	rec := report.NewRecorder(reg, table, db, srv.PointReport, cfg.Report.Interval, cfg.Report.Retention, log)
	rec.OnDecisionChange(func(endpoint string) { tel.DecisionChanged(context.Background(), endpoint) })
	watch := lifecycle.New(reg, listers(pool), log)
	gauges := newArmGauges(reg, rt, table)
	if err := observeGauges(tel, gauges, table, db, plog); err != nil {
		pool.Close()
		return nil, err
	}
	return &app{db: db, cfg: cfg, reg: reg, table: table, fb: fb, rt: rt, srv: srv, watch: watch, pool: pool, plog: plog, log: log,
		offp: offp, rec: rec, keys: apiKeys, gauges: gauges, retention: cfg.Report.Retention}, nil
}

// lookup tells feedback the policy of an endpoint's arm.
func lookup(reg *registry.Registry) feedback.Lookup {
	return func(endpoint, arm string) bool {
		ep, ok := reg.Snapshot().Endpoints[endpoint]
		if !ok {
			return false
		}
		_, ok = ep.ArmStates[arm]
		return ok
	}
}

// seed applies the config to the registry. Every entry is validated on
// every start. Each entry is applied once in the life of a data dir: an entry
// the data dir lacks and was never seeded is registered; one it holds already
// is kept as stored (it may have been changed or paused through the API
// since); one seeded earlier and deleted through the API since stays deleted.
func seed(ctx context.Context, reg *registry.Registry, db stateStore, cfg *config.Config, log *slog.Logger) error {
	for _, m := range cfg.Models {
		if _, err := reg.ParseVersion(m.Name, m.Version, m.Body); err != nil {
			return fmt.Errorf("config: model %s@%s: %w", m.Name, m.Version, err)
		}
	}
	for _, e := range cfg.Endpoints {
		if err := reg.CheckEndpoint(e.Name, e.Body); err != nil {
			return fmt.Errorf("config: endpoint %s: %w", e.Name, err)
		}
	}
	apply := func(kind, name string, has func() bool, put func() error) error {
		key := "seeded/" + kind + "/" + name
		done, err := db.Meta(ctx, key)
		if err != nil {
			return err
		}
		if done != nil && !has() {
			// Another replica sharing the store may have seeded it after
			// this registry was loaded: look again before calling it deleted.
			if _, err := reg.Reload(ctx); err != nil {
				return err
			}
		}
		switch {
		case has():
			log.Info("config entry already in the data dir; keeping the stored one", kind, name)
		case done != nil:
			log.Info("config entry was deleted through the API; not re-creating it", kind, name)
		default:
			if err := put(); err != nil {
				return fmt.Errorf("config: %s %s: %w", kind, name, err)
			}
		}
		if done == nil {
			return db.SetMeta(ctx, key, []byte("1"))
		}
		return nil
	}
	for _, m := range cfg.Models {
		arm := m.Name + "@" + m.Version
		err := apply("model", arm, func() bool { return reg.HasVersion(arm) }, func() error {
			_, _, err := reg.PutVersion(ctx, m.Name, m.Version, m.Body)
			return err
		})
		if err != nil {
			return err
		}
	}
	for _, e := range cfg.Endpoints {
		err := apply("endpoint", e.Name, func() bool { return reg.HasEndpoint(e.Name) }, func() error {
			_, _, err := reg.PutEndpoint(ctx, e.Name, e.Body)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
