// Package config reads the YAML config file once into validated structs.
// Model and endpoint entries are kept as JSON bodies, identical to what the
// HTTP API takes, so both go through the registry's one parser.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/modelgate/modelgate/duration"
)

// Model is one model version entry: its name, version and API body.
type Model struct {
	Name    string
	Version string
	Body    []byte
}

// Endpoint is one endpoint entry: its name and API body.
type Endpoint struct {
	Name string
	Body []byte
}

// Report configures the analysts' history.
type Report struct {
	Interval  time.Duration
	Retention time.Duration
}

// Limits bounds what a client may ask of the server.
type Limits struct {
	MaxBodyBytes    int64
	MaxConcurrent   int
	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	ShutdownTimeout time.Duration
	// ShadowWorkers is the gateway's budget of shadow calls in flight at
	// once (1..1024, default 4): a shadowed prediction that finds them all
	// busy is not scored by its shadows (counted as dropped).
	ShadowWorkers int
}

// DefaultShadowWorkers is limits.shadow_workers when the file does not set
// it.
const DefaultShadowWorkers = 4

// Config is the parsed config file. The zero value is not valid; use
// Default or Load.
type Config struct {
	Models      []Model
	Endpoints   []Endpoint
	Report      Report
	Limits      Limits
	SigningKeys [][]byte
	Redis       Redis
	TLS         TLS
	Auth        Auth
	Registry    Registry
	// Path is the file the config was loaded from ("" when parsed from
	// bytes or defaulted): with registry.managed config it is watched.
	Path string
	// Digest is the SHA-256 of the file's bytes Load parsed: a watcher
	// re-reads the file only when it differs.
	Digest [sha256.Size]byte
	// ONNXRuntime locates the ONNX Runtime library for onnx versions.
	ONNXRuntime ONNXRuntime
	// RedisURL comes from --redis-url / MODELGATE_REDIS_URL, not the file:
	// with it, replicas share their state through Redis.
	RedisURL string
}

// TLS makes the listeners serve HTTPS and gRPC over TLS (when CertFile is
// set). With ClientCAFile, clients must present a certificate signed by one
// of its CAs (mTLS). Paths are resolved against the config file's directory.
type TLS struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
}

// Enabled reports whether the listeners serve TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// ONNXRuntime locates libonnxruntime.so.1; an empty Library uses
// $MODELGATE_ONNXRUNTIME_LIB, else .cache/onnxruntime/ in the working
// directory or a parent.
type ONNXRuntime struct {
	Library string
	// IntraOpThreads per session; 0 = 1 (latency first on a small machine).
	IntraOpThreads int
}

// Redis tunes the shared store used with --redis-url.
type Redis struct {
	RefreshInterval time.Duration // how often the local posteriors are refreshed from Redis
	FlushInterval   time.Duration // how often pending trial counts are sent
	Timeout         time.Duration // deadline of each hot-path Redis call before the WAL takes over
	PoolSize        int           // connections per replica; 0 = go-redis's default
	WALMaxBytes     int64         // bound of the local write-ahead log
}

// Auth modes.
const (
	AuthNone = "none" // no keys: allowed only on loopback listeners (or with --insecure)
	AuthKeys = "keys" // every call but /healthz, /readyz, /metrics needs an API key
)

// Auth configures API keys.
type Auth struct {
	Mode string // AuthNone (default) or AuthKeys
}

// Who owns the registry entries a config file names (registry.managed).
const (
	// ManagedAPI: the config seeds each entry once in the life of a store;
	// from then on the store, changed through the API, wins.
	ManagedAPI = "api"
	// ManagedConfig: the config's entries are reapplied at every start and
	// whenever the file changes, and the API may not change them (pause
	// and resume excepted).
	ManagedConfig = "config"
)

// Registry says who owns the config's models and endpoints.
type Registry struct {
	Managed string // ManagedAPI (default) or ManagedConfig
}

// Default returns the configuration used without a config file.
func Default() *Config {
	return &Config{
		Registry: Registry{Managed: ManagedAPI},
		Report:   Report{Interval: time.Minute, Retention: 720 * time.Hour},
		Limits: Limits{MaxBodyBytes: 1 << 20, ReadTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second,
			ShutdownTimeout: 10 * time.Second, ShadowWorkers: DefaultShadowWorkers},
		Auth: Auth{Mode: AuthNone},
		Redis: Redis{RefreshInterval: 250 * time.Millisecond, FlushInterval: 100 * time.Millisecond,
			Timeout: 100 * time.Millisecond, WALMaxBytes: 256 << 20},
	}
}

type fileLimits struct {
	MaxBodyBytes    *int64  `yaml:"max_body_bytes"`
	MaxConcurrent   *int    `yaml:"max_concurrent"`
	ReadTimeout     *string `yaml:"read_timeout"`
	WriteTimeout    *string `yaml:"write_timeout"`
	ShutdownTimeout *string `yaml:"shutdown_timeout"`
	ShadowWorkers   *int    `yaml:"shadow_workers"`
}

type file struct {
	Models    []yaml.Node      `yaml:"models"`
	Endpoints []map[string]any `yaml:"endpoints"`
	Report    *struct {
		Interval  *string `yaml:"interval"`
		Retention *string `yaml:"retention"`
	} `yaml:"report"`
	Limits      *fileLimits `yaml:"limits"`
	ONNXRuntime *struct {
		Library        string `yaml:"library"`
		IntraOpThreads int    `yaml:"intra_op_threads"`
	} `yaml:"onnxruntime"`
	Redis *struct {
		RefreshInterval *string `yaml:"refresh_interval"`
		FlushInterval   *string `yaml:"flush_interval"`
		Timeout         *string `yaml:"timeout"`
		PoolSize        *int    `yaml:"pool_size"`
		WALMaxBytes     *int64  `yaml:"wal_max_bytes"`
	} `yaml:"redis"`
	SigningKeys []string `yaml:"signing_keys"`
	TLS         *struct {
		CertFile     string `yaml:"cert_file"`
		KeyFile      string `yaml:"key_file"`
		ClientCAFile string `yaml:"client_ca_file"`
	} `yaml:"tls"`
	Auth *struct {
		Mode *string `yaml:"mode"`
	} `yaml:"auth"`
	Registry *struct {
		Managed *string `yaml:"managed"`
	} `yaml:"registry"`
}

// Load reads and validates the config file at path. Relative backend paths
// are resolved against the file's directory.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(raw, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.Path, c.Digest = path, sha256.Sum256(raw)
	return c, nil
}

// Parse parses a config document; baseDir resolves relative paths.
func Parse(raw []byte, baseDir string) (*Config, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	c := Default()
	for i := range f.Models {
		mod, err := parseModel(&f.Models[i], baseDir)
		if err != nil {
			return nil, fmt.Errorf("models[%d]: %w", i, err)
		}
		c.Models = append(c.Models, mod)
	}
	for i, e := range f.Endpoints {
		name, _ := e["name"].(string)
		if name == "" {
			return nil, fmt.Errorf("endpoints[%d].name: required", i)
		}
		delete(e, "name")
		body, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d]: %w", i, err)
		}
		c.Endpoints = append(c.Endpoints, Endpoint{Name: name, Body: body})
	}
	if r := f.Report; r != nil {
		if err := parseDuration(&c.Report.Interval, r.Interval, "report.interval", time.Second); err != nil {
			return nil, err
		}
		if err := parseDuration(&c.Report.Retention, r.Retention, "report.retention", time.Minute); err != nil {
			return nil, err
		}
	}
	if l := f.Limits; l != nil {
		if l.MaxBodyBytes != nil {
			if *l.MaxBodyBytes < 1024 || *l.MaxBodyBytes > 1<<30 {
				return nil, fmt.Errorf("limits.max_body_bytes: must be between 1024 and 1073741824")
			}
			c.Limits.MaxBodyBytes = *l.MaxBodyBytes
		}
		if l.MaxConcurrent != nil {
			if *l.MaxConcurrent < 0 {
				return nil, fmt.Errorf("limits.max_concurrent: must be ≥ 0 (0 = 64 per core)")
			}
			c.Limits.MaxConcurrent = *l.MaxConcurrent
		}
		if l.ShadowWorkers != nil {
			if *l.ShadowWorkers < 1 || *l.ShadowWorkers > 1024 {
				return nil, fmt.Errorf("limits.shadow_workers: must be between 1 and 1024")
			}
			c.Limits.ShadowWorkers = *l.ShadowWorkers
		}
		for _, d := range []struct {
			dst  *time.Duration
			src  *string
			name string
		}{{&c.Limits.ReadTimeout, l.ReadTimeout, "limits.read_timeout"},
			{&c.Limits.WriteTimeout, l.WriteTimeout, "limits.write_timeout"},
			{&c.Limits.ShutdownTimeout, l.ShutdownTimeout, "limits.shutdown_timeout"}} {
			if err := parseDuration(d.dst, d.src, d.name, time.Millisecond); err != nil {
				return nil, err
			}
		}
	}
	if o := f.ONNXRuntime; o != nil {
		if o.IntraOpThreads < 0 || o.IntraOpThreads > 256 {
			return nil, fmt.Errorf("onnxruntime.intra_op_threads: must be 0..256")
		}
		c.ONNXRuntime.IntraOpThreads = o.IntraOpThreads
	}
	if o := f.ONNXRuntime; o != nil && o.Library != "" {
		c.ONNXRuntime.Library = o.Library
		if !filepath.IsAbs(o.Library) {
			c.ONNXRuntime.Library = filepath.Join(baseDir, o.Library)
		}
	}
	if r := f.Redis; r != nil {
		for _, d := range []struct {
			dst  *time.Duration
			src  *string
			name string
		}{{&c.Redis.RefreshInterval, r.RefreshInterval, "redis.refresh_interval"},
			{&c.Redis.FlushInterval, r.FlushInterval, "redis.flush_interval"},
			{&c.Redis.Timeout, r.Timeout, "redis.timeout"}} {
			if err := parseDuration(d.dst, d.src, d.name, time.Millisecond); err != nil {
				return nil, err
			}
		}
		if c.Redis.RefreshInterval > 250*time.Millisecond || c.Redis.FlushInterval > 100*time.Millisecond {
			return nil, fmt.Errorf("redis: refresh_interval is at most 250ms and flush_interval at most 100ms (the staleness bound)")
		}
		if r.PoolSize != nil {
			if *r.PoolSize < 0 {
				return nil, fmt.Errorf("redis.pool_size: must be ≥ 0")
			}
			c.Redis.PoolSize = *r.PoolSize
		}
		if r.WALMaxBytes != nil {
			if *r.WALMaxBytes < 1<<20 {
				return nil, fmt.Errorf("redis.wal_max_bytes: at least 1048576")
			}
			c.Redis.WALMaxBytes = *r.WALMaxBytes
		}
	}
	if a := f.Auth; a != nil && a.Mode != nil {
		if *a.Mode != AuthNone && *a.Mode != AuthKeys {
			return nil, fmt.Errorf("auth.mode: %q is not none or keys", *a.Mode)
		}
		c.Auth.Mode = *a.Mode
	}
	if r := f.Registry; r != nil && r.Managed != nil {
		if *r.Managed != ManagedAPI && *r.Managed != ManagedConfig {
			return nil, fmt.Errorf("registry.managed: %q is not api or config", *r.Managed)
		}
		c.Registry.Managed = *r.Managed
	}
	for i, s := range f.SigningKeys {
		k, err := DecodeKey(s)
		if err != nil {
			return nil, fmt.Errorf("signing_keys[%d]: %w", i, err)
		}
		c.SigningKeys = append(c.SigningKeys, k)
	}
	if t := f.TLS; t != nil {
		if err := parseTLS(c, t.CertFile, t.KeyFile, t.ClientCAFile, baseDir); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// parseTLS checks the tls section: cert_file and key_file together,
// client_ca_file only with them, and every file present.
func parseTLS(c *Config, certFile, keyFile, caFile, baseDir string) error {
	if certFile == "" && keyFile == "" && caFile == "" {
		return nil
	}
	if certFile == "" || keyFile == "" {
		return fmt.Errorf("tls: cert_file and key_file are required together")
	}
	for _, f := range []struct {
		dst  *string
		src  string
		name string
	}{{&c.TLS.CertFile, certFile, "tls.cert_file"}, {&c.TLS.KeyFile, keyFile, "tls.key_file"},
		{&c.TLS.ClientCAFile, caFile, "tls.client_ca_file"}} {
		if f.src == "" {
			continue
		}
		p := f.src
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		*f.dst = p
	}
	return nil
}

// parseDuration sets *dst from the text src, when given, refusing what is
// not a duration of at least min.
func parseDuration(dst *time.Duration, src *string, name string, min time.Duration) error {
	if src == nil {
		return nil
	}
	d, err := duration.Parse(*src)
	if err != nil || d.Std() < min {
		return fmt.Errorf("%s: %q is not a duration of at least %s (e.g. \"1m\", \"720h\")", name, *src, min)
	}
	*dst = d.Std()
	return nil
}

// DecodeKey reads a signing key written in hex or base64; it must decode to
// at least 32 bytes.
func DecodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if k, err := hex.DecodeString(s); err == nil && len(k) >= 32 {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) >= 32 {
			return k, nil
		}
	}
	return nil, fmt.Errorf("a signing key is hex or base64 of at least 32 bytes")
}

func parseModel(n *yaml.Node, baseDir string) (Model, error) {
	if n.Kind != yaml.MappingNode {
		return Model{}, fmt.Errorf("a model entry is a mapping with name, version, backend, …")
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		return Model{}, err
	}
	name, _ := m["name"].(string)
	if name == "" {
		return Model{}, fmt.Errorf("name: required")
	}
	// The version is taken as written: an unquoted 1.10 is "1.10", not 1.1.
	var version string
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], n.Content[i+1]; k.Value == "version" {
			if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
				return Model{}, fmt.Errorf("version: must be a string or a number")
			}
			version = v.Value
		}
	}
	if version == "" {
		return Model{}, fmt.Errorf("version: required")
	}
	delete(m, "name")
	delete(m, "version")
	if b, ok := m["backend"].(map[string]any); ok {
		if p, ok := b["path"].(string); ok && p != "" && !filepath.IsAbs(p) {
			b["path"] = filepath.Join(baseDir, p)
		}
	}
	body, err := json.Marshal(m)
	if err != nil {
		return Model{}, err
	}
	return Model{Name: name, Version: version, Body: body}, nil
}
