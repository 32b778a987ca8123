package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/store/redisstore"
)

var (
	_ auth.Store = (*store.DB)(nil)
	_ auth.Store = (*redisstore.Store)(nil)
	_ auth.Taker = (*redisstore.Store)(nil)
)

// checkListeners refuses non-loopback listeners without API keys unless
// --insecure is given, and warns when it is.
func checkListeners(f serveFlags, cfg *config.Config, log *slog.Logger) error {
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

// wireAuth gives the server its API keys and rate limiter (shared through
// Redis when the store is Redis); with auth.mode keys they are enforced.
func wireAuth(ctx context.Context, cfg *config.Config, db stateStore, srv *api.Server, log *slog.Logger) (*auth.Keys, error) {
	st, ok := db.(auth.Store)
	if !ok {
		if cfg.Auth.Mode == config.AuthKeys {
			return nil, errors.New("auth.mode keys: this store keeps no API keys")
		}
		return nil, nil
	}
	keys, err := auth.NewKeys(ctx, st, log)
	if err != nil {
		return nil, fmt.Errorf("load API keys: %w", err)
	}
	var lim auth.Limiter = auth.NewLocalLimiter()
	if t, ok := db.(auth.Taker); ok {
		sl := auth.NewSharedLimiter(t)
		sl.OnError = func(err error) { log.Debug("shared rate limit unavailable; limiting per process", "err", err) }
		lim = sl
	}
	enforce := cfg.Auth.Mode == config.AuthKeys
	srv.SetAuth(keys, lim, enforce)
	if enforce && keys.Len() == 0 {
		log.Warn("auth mode is keys but no API key exists: every call but /healthz, /readyz and /metrics is refused; " +
			"create one with: modelgate keys create --name root --scope admin (with the server stopped, or with --redis-url)")
	}
	return keys, nil
}

// runKeys keeps the key cache fresh until ctx ends (see auth.Keys.Run).
func (a *app) runKeys(ctx context.Context) {
	if a.keys == nil {
		return
	}
	var changes <-chan struct{}
	if sh, ok := a.db.(sharedStore); ok {
		changes = sh.Subscribe(ctx)
	}
	a.keys.Run(ctx, changes)
}

// scopeList is the repeatable --scope flag.
type scopeList []string

func (l *scopeList) String() string { return strings.Join(*l, ",") }
func (l *scopeList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

const keysUsage = `usage: modelgate keys <create|list|revoke> [flags]

  create --name NAME --scope SCOPE [--scope SCOPE2] [--rate R --burst B]
         prints the new key once on standard output
  list   the keys' names, scopes, limits and times (never the keys)
  revoke NAME

Every subcommand takes --data-dir DIR (env MODELGATE_DATA_DIR) or
--redis-url URL (env MODELGATE_REDIS_URL) and works on the store directly.
Scopes: client, ml, analyst, admin.`

func runKeys(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, keysUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := args[0]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", envOr("MODELGATE_DATA_DIR", "./data"), "directory of the embedded store (env MODELGATE_DATA_DIR)")
	redisURL := fs.String("redis-url", envOr("MODELGATE_REDIS_URL", ""), "redis://HOST:PORT/DB of the shared store (env MODELGATE_REDIS_URL)")
	var (
		name   string
		scopes scopeList
		rate   float64
		burst  int
	)
	if sub == "create" {
		fs.StringVar(&name, "name", "", "the key's name (required)")
		fs.Var(&scopes, "scope", "a scope: client, ml, analyst or admin (repeatable)")
		fs.Float64Var(&rate, "rate", 0, "requests per second (0 = not limited)")
		fs.IntVar(&burst, "burst", 0, "bucket size (default: the rate)")
	}
	switch sub {
	case "create", "list", "revoke":
	default:
		fmt.Fprintf(stderr, "modelgate keys: unknown subcommand %q\n\n%s\n", sub, keysUsage)
		return 2
	}
	// Flags may follow the name of revoke.
	rest := args[1:]
	var pos []string
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if (sub == "revoke") != (len(pos) == 1) || len(pos) > 1 {
		fmt.Fprintf(stderr, "modelgate keys %s: unexpected arguments %q\n\n%s\n", sub, pos, keysUsage)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, closeStore, err := openKeyStore(ctx, *dataDir, *redisURL)
	if err != nil {
		fmt.Fprintf(stderr, "modelgate keys: %v\n", err)
		return 1
	}
	defer closeStore()
	switch sub {
	case "create":
		if name == "" || len(scopes) == 0 {
			fmt.Fprintf(stderr, "modelgate keys create: --name and at least one --scope are required\n\n%s\n", keysUsage)
			return 2
		}
		plain, k, err := auth.Create(ctx, st, auth.Key{Name: name, Scopes: scopes, Rate: rate, Burst: burst}, time.Now())
		if err != nil {
			if errors.Is(err, auth.ErrExists) {
				err = fmt.Errorf("a key named %q exists; revoke it first or pick another name", name)
			}
			fmt.Fprintf(stderr, "modelgate keys create: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, plain)
		fmt.Fprintf(stderr, "created key %q with scopes %s%s; it is shown only this once\n", k.Name, strings.Join(k.Scopes, ","), limitText(k))
	case "list":
		all, err := st.ListKeys(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "modelgate keys list: %v\n", err)
			return 1
		}
		sortKeys(all)
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSCOPES\tRATE\tBURST\tCREATED\tLAST USED")
		for _, k := range all {
			r, b, used := "-", "-", "never"
			if k.Rate > 0 {
				r, b = strconv.FormatFloat(k.Rate, 'g', -1, 64), strconv.Itoa(k.Burst)
			}
			if !k.LastUsed.IsZero() {
				used = k.LastUsed.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, strings.Join(k.Scopes, ","), r, b, k.CreatedAt.UTC().Format(time.RFC3339), used)
		}
		tw.Flush()
	case "revoke":
		ok, err := st.DeleteKey(ctx, pos[0])
		if err != nil {
			fmt.Fprintf(stderr, "modelgate keys revoke: %v\n", err)
			return 1
		}
		if !ok {
			fmt.Fprintf(stderr, "modelgate keys revoke: no key named %q\n", pos[0])
			return 1
		}
		fmt.Fprintf(stderr, "revoked key %q\n", pos[0])
	}
	return 0
}

func limitText(k auth.Key) string {
	if k.Rate <= 0 {
		return ""
	}
	return fmt.Sprintf(", limited to %g/s (burst %d)", k.Rate, k.Burst)
}

func sortKeys(all []auth.Key) {
	for i := 1; i < len(all); i++ {
		for j := i; j > 0 && all[j].Name < all[j-1].Name; j-- {
			all[j], all[j-1] = all[j-1], all[j]
		}
	}
}

// openKeyStore opens the store the keys live in: Redis with a URL, else the
// data dir's embedded store (locked while a server runs on it).
func openKeyStore(ctx context.Context, dataDir, redisURL string) (auth.Store, func(), error) {
	if redisURL != "" {
		// The CLI writes no counters: its write-ahead log stays empty.
		wal, err := os.MkdirTemp("", "modelgate-keys-wal-")
		if err != nil {
			return nil, nil, err
		}
		rs, err := redisstore.Open(ctx, redisURL, redisstore.Options{WALDir: wal})
		if err != nil {
			os.RemoveAll(wal)
			return nil, nil, fmt.Errorf("redis: %w", err)
		}
		return rs, func() { rs.Close(); os.RemoveAll(wal) }, nil
	}
	db, err := store.Open(dataDir)
	if err != nil {
		if strings.Contains(err.Error(), "another process holds") {
			return nil, nil, fmt.Errorf("%w\n  a server is running on this data dir: stop it, or manage keys through its HTTP API with an admin key "+
				"(POST/GET /v1/keys, DELETE /v1/keys/NAME)", err)
		}
		return nil, nil, err
	}
	return db, func() { db.Close() }, nil
}
