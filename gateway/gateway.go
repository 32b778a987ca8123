// Package gateway is modelgate's composition root: New builds every
// component of the gateway complete — store, registry, router, feedback,
// reports, telemetry, API keys, the HTTP, gRPC and admin listeners — and Run
// runs every goroutine they need in one group until its context ends, then
// shuts them down in order within limits.shutdown_timeout and releases
// what New opened. cmd/modelgate parses flags and calls it; the end-to-end
// tests start the same thing.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
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
	"github.com/modelgate/modelgate/shadow"
	"github.com/modelgate/modelgate/telemetry"
)

// Options are what a Gateway needs besides its config file. The zero value
// is not enough: New needs a listener or an address for HTTP and for gRPC,
// and refuses to pick one itself. Otherwise a zero field keeps its data in
// the working directory, discards the logs and reads the telemetry setup
// from the environment.
type Options struct {
	// DataDir holds the embedded store, the prediction log, the replica id
	// and the admin socket.
	DataDir string
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
	// HTTPListener and GRPCListener, when set, are served as they are (TLS
	// is added when the config asks for it); the gateway closes them. Else
	// New listens on HTTPAddr and GRPCAddr ("127.0.0.1:0" picks a port).
	// Each protocol needs one or the other.
	HTTPListener, GRPCListener net.Listener
	HTTPAddr, GRPCAddr         string
	// Telemetry, when set, is used instead of one built from the OTEL_*
	// environment (tests with their own exporters); the gateway shuts it
	// down either way.
	Telemetry *telemetry.Telemetry
	// Version is the service version the telemetry reports.
	Version string
	// PprofAddr, when set, serves Go's runtime profiles (net/http/pprof,
	// under /debug/pprof/) on that address, apart from the API and
	// without authentication: for profiling under load. Empty: off.
	PprofAddr string
	// ConfigPoll is how often a config file with registry.managed: config
	// is read for changes; 0 means DefaultConfigPoll.
	ConfigPoll time.Duration
	// Seed, when not 0, makes the router's choices a function of the
	// requests' order alone (a seeded source, shares refreshed in the
	// request: router.Options.SyncRefresh), for tests that check what the
	// bandit does; a server leaves it 0.
	Seed uint64
}

// Gateway is the whole application, built and listening. Run it once; its
// accessors are safe for concurrent use.
type Gateway struct {
	db    openedStore
	cfg   *config.Config
	reg   *registry.Registry
	table *counters.Table
	fb    *feedback.Service
	rt    *router.Router
	srv   *api.Server
	watch *lifecycle.Watcher
	// cfgWatch re-applies a managed config file when it changes; nil
	// unless registry.managed is config and the config came from a file.
	cfgWatch *configWatch
	pool     *tfserving.Pool
	plog     *predlog.Log
	log      *slog.Logger
	tel      *telemetry.Telemetry
	offp     *offpolicy.Table
	rec      *report.Recorder
	shadows  *shadow.Recorder
	keys     *auth.Keys // API keys
	// gauges are the traffic_share and p_best gauges, computed off the
	// scrape path.
	gauges *armGauges
	// admin is the admin socket in the data dir (embedded store only);
	// nil when there is none.
	admin net.Listener

	ltls   *listenerTLS
	hl, gl net.Listener // nil until New listens; Run serves them
	hs     *http.Server
	gs     *grpc.Server
	// pl and ps serve the runtime profiles (Options.PprofAddr); nil when off.
	pl net.Listener
	ps *http.Server

	retention time.Duration
	// stop is the shutdown's deadline, shared by its last steps.
	stop      *shutdownClock
	closeOnce sync.Once
}

// errNoListener is New's answer to Options that name no HTTP or gRPC
// listener: listening on "" would take a random port on every interface.
var errNoListener = errors.New("gateway: no listener or address")

// New opens the data dir (or Redis), seeds the registry from cfg, builds
// every component and opens the listeners. Nothing runs until Run. On an
// error New closes what it opened: the data dir can be opened again at once.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Gateway, error) {
	return newGateway(ctx, cfg, opts, openedStore{})
}

// newGateway is New on db when it holds a store (tests with a store of
// their own); the gateway closes db, also on an error.
func newGateway(ctx context.Context, cfg *config.Config, opts Options, db openedStore) (g *Gateway, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	closeListener := func(l net.Listener) func() { return func() { _ = l.Close() } }
	for _, l := range []net.Listener{opts.HTTPListener, opts.GRPCListener} {
		if l != nil {
			undo = append(undo, closeListener(l))
		}
	}
	if db.stateStore != nil {
		undo = append(undo, func() { db.Close() })
	}
	if opts.HTTPListener == nil && opts.HTTPAddr == "" {
		return nil, fmt.Errorf("%w for HTTP: set Options.HTTPListener or HTTPAddr", errNoListener)
	}
	if opts.GRPCListener == nil && opts.GRPCAddr == "" {
		return nil, fmt.Errorf("%w for gRPC: set Options.GRPCListener or GRPCAddr", errNoListener)
	}
	ltls, err := newListenerTLS(cfg.TLS, log)
	if err != nil {
		return nil, err
	}
	tel := opts.Telemetry
	if tel == nil {
		if tel, err = telemetry.New(ctx, telemetry.Config{ServiceVersion: opts.Version}); err != nil {
			return nil, err
		}
	}
	stop := newShutdownClock(cfg.Limits.ShutdownTimeout)
	undo = append(undo, func() { _ = tel.Shutdown(stop.stopping()); stop.release() })
	if db.stateStore == nil {
		if db, err = openStore(ctx, cfg, opts.DataDir, log); err != nil {
			return nil, err
		}
		undo = append(undo, func() { db.Close() })
	}
	plog, err := predlog.Open(opts.DataDir, cfg.Report.Retention, log)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { _ = plog.Close() })
	g, err = wire(ctx, cfg, db, plog, log, tel, stop, opts)
	if err != nil {
		return nil, err
	}
	reg, pool := g.reg, g.pool // g is nil when New fails
	undo = append(undo, func() { reg.Close(); pool.Close() })
	g.tel, g.ltls = tel, ltls
	if db.embedded != nil {
		// The command line hands key changes to this server through the
		// socket, as it cannot open the locked store itself.
		if g.admin, err = listenAdmin(opts.DataDir); err != nil {
			log.Warn("modelgate keys cannot reach this server; manage keys through the HTTP API", "err", err)
			g.admin, err = nil, nil
		} else {
			undo = append(undo, closeListener(g.admin))
		}
	}
	if g.hl = opts.HTTPListener; g.hl == nil {
		if g.hl, err = net.Listen("tcp", opts.HTTPAddr); err != nil {
			return nil, fmt.Errorf("http listen: %w", err)
		}
		undo = append(undo, closeListener(g.hl))
	}
	if g.gl = opts.GRPCListener; g.gl == nil {
		if g.gl, err = net.Listen("tcp", opts.GRPCAddr); err != nil {
			return nil, fmt.Errorf("grpc listen: %w", err)
		}
		undo = append(undo, closeListener(g.gl))
	}
	if opts.PprofAddr != "" {
		if g.pl, err = net.Listen("tcp", opts.PprofAddr); err != nil {
			return nil, fmt.Errorf("pprof listen: %w", err)
		}
		undo = append(undo, closeListener(g.pl))
		g.ps = &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: cfg.Limits.ReadTimeout}
	}
	g.hl = ltls.wrapHTTP(g.hl)
	g.hs = &http.Server{Handler: g.srv.Handler(), ReadTimeout: cfg.Limits.ReadTimeout, WriteTimeout: cfg.Limits.WriteTimeout,
		ReadHeaderTimeout: cfg.Limits.ReadTimeout, IdleTimeout: IdleTimeout, MaxHeaderBytes: 64 << 10}
	g.gs = grpc.NewServer(ltls.grpcOptions(g.srv.GRPCServerOptions())...)
	g.srv.RegisterGRPC(g.gs)
	return g, nil
}

// IdleTimeout is how long the HTTP server keeps an idle keep-alive
// connection. It is longer than clients keep theirs (Go's default is 90 s,
// nginx's upstream keepalive_timeout 60 s), so that the client, not the
// server, closes an idle connection: a server that closes it first races
// the client's next request on it, which then fails (a POST is not
// retried). Without it the server would close idle connections after
// limits.read_timeout (net/http's fallback).
const IdleTimeout = 2 * time.Minute

// HTTPAddr is the address the HTTP API listens on.
func (g *Gateway) HTTPAddr() net.Addr { return g.hl.Addr() }

// GRPCAddr is the address the gRPC API listens on.
func (g *Gateway) GRPCAddr() net.Addr { return g.gl.Addr() }

// PprofAddr is the address the runtime profiles are served on
// (Options.PprofAddr); nil when they are not.
func (g *Gateway) PprofAddr() net.Addr {
	if g.pl == nil {
		return nil
	}
	return g.pl.Addr()
}

// Scheme is the HTTP API's URL scheme: "https" with a tls section, else
// "http".
func (g *Gateway) Scheme() string { return g.ltls.scheme() }

// URL is the HTTP API's base URL, such as http://127.0.0.1:8080.
func (g *Gateway) URL() string { return g.Scheme() + "://" + g.hl.Addr().String() }

// Exporters names the telemetry exporters in use, and Tracing whether spans
// are exported (for the start-up log).
func (g *Gateway) Exporters() []string { return g.tel.Exporters() }

// Tracing reports whether the gateway exports spans.
func (g *Gateway) Tracing() bool { return g.tel.Tracing() }

// Registered counts the model versions and endpoints in the registry.
func (g *Gateway) Registered() (versions, endpoints int) {
	snap := g.reg.Snapshot()
	return len(snap.Versions), len(snap.Endpoints)
}

// Run serves the HTTP, gRPC and admin listeners and runs the background
// work — trial flushes and dedupe sweeps, router share refresh, guardrails,
// report history, off-policy and discounted-count saves, shared-store
// refresh, API key refresh, gauges, auto_arms watchers — until ctx ends or
// one of them fails. Then it shuts down within limits.shutdown_timeout, one
// deadline for every step: the listeners stop first (in-flight calls get at
// most listenerShare of the timeout, then are cut), then the background
// work, which flushes and saves once more, and last Close flushes the
// telemetry and releases everything New opened; those last steps share
// what is left until the deadline. It returns the first failure, nil after
// a clean shutdown. Call it once.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.Close()
	grp, gctx := errgroup.WithContext(ctx)
	// The background work outlives the listeners so that it takes in the
	// last calls' trials and clicks: it ends only when they stopped.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAdmin()

	grp.Go(func() error {
		if err := g.hs.Serve(g.hl); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	grp.Go(func() error {
		if err := g.gs.Serve(g.gl); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc: %w", err)
		}
		return nil
	})
	if g.ps != nil {
		grp.Go(func() error {
			if err := g.ps.Serve(g.pl); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("pprof: %w", err)
			}
			return nil
		})
	}
	if g.admin != nil {
		grp.Go(func() error {
			if err := g.srv.ServeAdmin(adminCtx, g.admin); err != nil {
				g.log.Error("admin socket", "err", err)
			}
			return nil
		})
	}
	grp.Go(func() error {
		<-gctx.Done()
		if ctx.Err() != nil {
			g.log.Info("shutting down")
		}
		g.stop.start()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), listenerShare(g.cfg.Limits.ShutdownTimeout))
		defer cancel()
		g.shutdownListeners(lctx)
		stopAdmin()
		stopBG()
		return nil
	})
	for _, loop := range []func(context.Context){
		g.fb.Run, g.rt.Run, g.rt.RunGuardrails, g.rec.Run, g.watch.Run, g.gauges.run,
		g.saveOffPolicy, g.saveDiscounted, g.runShared, g.runKeys, g.runShadows,
	} {
		grp.Go(func() error { loop(bg); return nil })
	}
	if g.cfgWatch != nil {
		grp.Go(func() error { g.cfgWatch.run(bg); return nil })
	}
	return grp.Wait()
}

// runShadows runs the router's shadow workers and flushes the shadows'
// sums and lists until ctx ends; the last flush, within the shutdown's
// deadline, waits for the workers to finish the calls under way.
func (g *Gateway) runShadows(ctx context.Context) {
	workers := make(chan struct{})
	go func() { g.rt.RunShadows(ctx); close(workers) }()
	g.shadows.Run(ctx, func() context.Context {
		<-workers
		return g.stop.stopping()
	})
}

// listenerShare is how much of the shutdown timeout the listeners get to
// finish in-flight calls: three quarters, so that at least a quarter is
// left for the final flushes and saves, which make those calls' trials and
// clicks durable and must not be starved by a slow client.
func listenerShare(timeout time.Duration) time.Duration { return timeout * 3 / 4 }

// shutdownClock is the one deadline of a shutdown: start fixes it at
// limits.shutdown_timeout from then, and every step that may still run
// then — the final flushes and saves and any save under way, guardrail
// pauses still queued, the telemetry flush — runs under its context, so
// that together they end by the deadline. Make it with newShutdownClock;
// safe for concurrent use.
type shutdownClock struct {
	ctx     context.Context // ends at the deadline, never before start
	cancel  context.CancelFunc
	timeout time.Duration

	mu    sync.Mutex
	timer *time.Timer // nil until start
}

// newShutdownClock returns a clock whose deadline is timeout after start.
func newShutdownClock(timeout time.Duration) *shutdownClock {
	ctx, cancel := context.WithCancel(context.Background())
	return &shutdownClock{ctx: ctx, cancel: cancel, timeout: timeout}
}

// start begins the shutdown, the first time: the context ends timeout
// from now.
func (c *shutdownClock) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer == nil {
		c.timer = time.AfterFunc(c.timeout, c.cancel)
	}
}

// context is the context of the steps the shutdown must bound: it ends at
// the deadline, and never before start.
func (c *shutdownClock) context() context.Context { return c.ctx }

// stopping is the shutdown's context, beginning the shutdown if it has not
// begun: for the last steps, which run only once it has.
func (c *shutdownClock) stopping() context.Context {
	c.start()
	return c.ctx
}

// release ends the context and its timer once the shutdown is over.
func (c *shutdownClock) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.cancel()
}

// shutdownListeners stops the HTTP and gRPC servers, gracefully until ctx
// ends, then by closing what is still open.
func (g *Gateway) shutdownListeners(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := g.hs.Shutdown(ctx); err != nil {
			g.log.Warn("HTTP calls cut at the shutdown timeout", "err", err)
			_ = g.hs.Close()
		}
	}()
	done := make(chan struct{})
	go func() { g.gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		g.gs.Stop()
		<-done // GracefulStop returns once Stop has closed everything
	}
	if g.ps != nil {
		_ = g.ps.Close() // a profile under way is cut: it is not a call
	}
	wg.Wait()
}

// Close releases what New opened: listeners, admin socket, TF Serving
// connections, models, prediction log, telemetry (flushed, within the
// shutdown deadline: limits.shutdown_timeout from the start of Run's
// shutdown, or from this call without Run) and the store. Run calls it
// when it returns; call it yourself only when Run is not called. It is
// safe to call more than once.
func (g *Gateway) Close() {
	g.closeOnce.Do(func() {
		_ = g.hl.Close() // already closed when Run served it
		_ = g.gl.Close()
		if g.pl != nil {
			_ = g.pl.Close()
		}
		if g.admin != nil {
			_ = g.admin.Close() // removes the socket file
		}
		if err := g.tel.Shutdown(g.stop.stopping()); err != nil {
			g.log.Error("flushing telemetry", "err", err)
		}
		g.reg.Close()
		g.pool.Close()
		if err := g.plog.Close(); err != nil {
			g.log.Error("closing the prediction log", "err", err)
		}
		g.db.Close()
		g.stop.release()
	})
}

// saveTimeout bounds one save of the off-policy sums or the discounted
// counts, so that a slow store does not hold a loop. A save is not cut
// when the loop's context ends (what it drained would be lost) but at the
// shutdown deadline.
const saveTimeout = 5 * time.Second

// saveOffPolicy writes the changed off-policy minutes every second and
// once more at the end, and forgets minutes past the retention.
func (g *Gateway) saveOffPolicy(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	save := func() {
		sctx, cancel := context.WithTimeout(g.stop.context(), saveTimeout)
		defer cancel()
		if err := g.db.PutOffPolicy(sctx, g.offp.Dirty()); err != nil {
			g.log.Error("saving off-policy sums", "err", err)
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
				g.offp.Forget(now.Add(-g.retention))
			}
		}
	}
}

// saveDiscounted snapshots the discounted counts every few seconds and once
// more at the end, so a restart resumes the decay where it was.
func (g *Gateway) saveDiscounted(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	save := func() {
		sctx, cancel := context.WithTimeout(g.stop.context(), saveTimeout)
		defer cancel()
		if err := g.db.PutDiscounted(sctx, g.table.DiscEntries()); err != nil {
			g.log.Error("saving discounted counts", "err", err)
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

// wire builds the gateway's services on an open store (see Options.Seed
// for rngSeed). On an error it closes the TF Serving pool and the models it
// loaded; the caller closes the rest.
func wire(ctx context.Context, cfg *config.Config, db openedStore, plog *predlog.Log, log *slog.Logger, tel *telemetry.Telemetry,
	stop *shutdownClock, opts Options) (_ *Gateway, err error) {
	rngSeed := opts.Seed
	table := &counters.Table{}
	entries, err := db.LoadCounters(ctx)
	if err != nil {
		return nil, fmt.Errorf("load counters: %w", err)
	}
	table.Refresh(entries) // also sums the endpoint-wide cells segments borrow from
	lin, err := db.LoadLinear(ctx)
	if err != nil {
		return nil, fmt.Errorf("load linear sums: %w", err)
	}
	table.RefreshLinear(lin)
	offp := &offpolicy.Table{}
	saved, err := db.LoadOffPolicy(ctx)
	if err != nil {
		return nil, fmt.Errorf("load off-policy sums: %w", err)
	}
	for k, m := range saved {
		offp.Load(k, m)
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
	defer func() {
		if err != nil {
			pool.Close()
		}
	}()
	auditLog := audit.New(db, log)
	backends := drivers(pool, cfg)
	reg, err := registry.New(ctx, db, backends, log, registry.Options{Audit: auditLog})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			reg.Close() // before the pool: the models' health polls end first
		}
	}()
	var cfgWatch *configWatch
	if cfg.Registry.Managed == config.ManagedConfig {
		n, err := applyConfig(ctx, reg, cfg)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		log.Info("config applied (registry.managed: config)", "models", len(cfg.Models), "endpoints", len(cfg.Endpoints), "changed", n)
		if cfg.Path != "" {
			cfgWatch = newConfigWatch(cfg, opts.ConfigPoll, reg, log)
		}
	} else if err := seed(audit.WithActor(ctx, "config"), reg, db, cfg, log); err != nil {
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
		// A pause still queued at shutdown is applied within its deadline.
		ctx, cancel := context.WithTimeout(audit.WithActor(stop.context(), "guardrail"), 10*time.Second)
		defer cancel()
		if _, err := reg.PauseArm(ctx, endpoint, arm, reason); err != nil {
			log.Error("guardrail could not pause an arm", "endpoint", endpoint, "arm", arm, "err", err)
		}
	}
	shadows := shadow.New(db, log)
	rt := router.New(reg, table, signer, log, router.Options{Observers: []router.Observer{router.NewOffPolicyObserver(offp), router.NewPredictionLogObserver(plog), router.NewTelemetryObserver(tel)}, Tracer: tel, OnGuardrail: pauseArm,
		Seed: rngSeed, SyncRefresh: rngSeed != 0, Shadows: shadows, ShadowWorkers: cfg.Limits.ShadowWorkers, ShadowLog: plog})
	fbOpts := feedback.Options{OffPolicy: offp, Telemetry: tel, FinalContext: stop.stopping, Shadows: shadows}
	apiCfg := api.Config{MaxBodyBytes: cfg.Limits.MaxBodyBytes, MaxConcurrent: cfg.Limits.MaxConcurrent, Telemetry: tel, Audit: auditLog,
		Analytics: api.Analytics{OffPolicy: offp, Series: db, Interval: cfg.Report.Interval, Shadows: shadows}}
	if apiCfg.MaxConcurrent == 0 {
		apiCfg.MaxConcurrent = 64 * runtime.NumCPU()
	}
	if sh := db.shared; sh != nil {
		fbOpts.FlushInterval = cfg.Redis.FlushInterval
		apiCfg.StoreHealth = func() (bool, any) {
			batches, bytes := sh.Backlog()
			return bytes < cfg.Redis.WALMaxBytes*9/10, map[string]any{"type": "redis", "healthy": sh.Healthy(),
				"wal_batches": batches, "wal_bytes": bytes}
		}
	}
	fb := feedback.NewService(signer, db, table, lookup(reg), log, fbOpts)
	apiKeys, apiAuth, err := wireAuth(ctx, cfg, db, log, stop.stopping)
	if err != nil {
		return nil, err
	}
	apiCfg.Auth = apiAuth
	srv := api.New(apiCfg, reg, rt, fb, table, log)
	rec := report.NewRecorder(reg, table, db, srv.PointReport, cfg.Report.Interval, cfg.Report.Retention, report.RecorderOptions{
		Logger: log, OnDecisionChange: func(endpoint string) { tel.DecisionChanged(context.Background(), endpoint) }})
	watch := lifecycle.New(reg, backends, log)
	gauges := newArmGauges(reg, rt, table)
	if err := observeGauges(tel, gauges, table, db, plog); err != nil {
		return nil, err
	}
	return &Gateway{db: db, cfg: cfg, reg: reg, table: table, fb: fb, rt: rt, srv: srv, watch: watch, cfgWatch: cfgWatch, pool: pool, plog: plog, log: log,
		offp: offp, rec: rec, shadows: shadows, keys: apiKeys, gauges: gauges, retention: cfg.Report.Retention, stop: stop}, nil
}

// lookup tells feedback the policy of an endpoint's arm.
func lookup(reg *registry.Registry) feedback.Lookup {
	return func(endpoint, arm string) (float64, bool) {
		ep, ok := reg.Snapshot().Endpoints[endpoint]
		if !ok {
			return 0, false
		}
		_, ok = ep.ArmStates[arm]
		return ep.Policy.Reward.ValueCap(), ok
	}
}

// seed applies the config to the registry. Every entry is validated on
// every start. Each entry is applied once in the life of a data dir: an entry
// the data dir lacks and was never seeded is registered; one it holds already
// is kept as stored (it may have been changed or paused through the API
// since); one seeded earlier and deleted through the API since stays deleted.
func seed(ctx context.Context, reg *registry.Registry, db metaStore, cfg *config.Config, log *slog.Logger) error {
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
			// As at start-up: a model server that is down leaves the arm
			// unavailable, not the gateway down.
			return reg.SeedVersion(ctx, registry.ConfigVersion{Name: m.Name, Version: m.Version, Body: m.Body})
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
