package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/client"
	"github.com/modelgate/modelgate/gateway"
)

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
--redis-url URL (env MODELGATE_REDIS_URL) and works on the store directly,
or, when a server runs on the data dir, through its admin socket
DIR/admin.sock (no restart needed). Changes are in the audit log, actor cli.
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
	redisURL := fs.String("redis-url", envOr("MODELGATE_REDIS_URL", ""), "redis://HOST:PORT/DB, or redis+sentinel://H1:26379,H2:26379/MASTER[/DB], of the shared store (env MODELGATE_REDIS_URL)")
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
	if sub == "create" && (name == "" || len(scopes) == 0) {
		fmt.Fprintf(stderr, "modelgate keys create: --name and at least one --scope are required\n\n%s\n", keysUsage)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := api.AdminRequest{Op: api.AdminListKeys}
	switch sub {
	case "create":
		req = api.AdminRequest{Op: api.AdminCreateKey, Key: &api.KeyRequest{Name: name, Scopes: scopes, Rate: rate, Burst: burst}}
	case "revoke":
		req = api.AdminRequest{Op: api.AdminRevokeKey, Name: pos[0]}
	}
	resp, err := gateway.ApplyKeys(ctx, *dataDir, *redisURL, req)
	var ae *client.Error
	if errors.As(err, &ae) {
		msg := ae.Message
		if ae.Field != "" {
			msg = ae.Field + ": " + msg
		}
		err = errors.New(msg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "modelgate keys %s: %v\n", sub, err)
		return 1
	}
	switch sub {
	case "create":
		k := resp.Key
		if k == nil || k.Key == "" {
			fmt.Fprintln(stderr, "modelgate keys create: the answer holds no key")
			return 1
		}
		fmt.Fprintln(stdout, k.Key)
		fmt.Fprintf(stderr, "created key %q with scopes %s%s; it is shown only this once\n", k.Name, strings.Join(k.Scopes, ","), limitText(k.Rate, k.Burst))
	case "list":
		sort.Slice(resp.Keys, func(i, j int) bool { return resp.Keys[i].Name < resp.Keys[j].Name })
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSCOPES\tRATE\tBURST\tCREATED\tLAST USED")
		for _, k := range resp.Keys {
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
		fmt.Fprintf(stderr, "revoked key %q\n", pos[0])
	}
	return 0
}

func limitText(rate float64, burst int) string {
	if rate <= 0 {
		return ""
	}
	return fmt.Sprintf(", limited to %g/s (burst %d)", rate, burst)
}
