package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/fault"
)

// routeScopes is the one table of what each call needs: "METHOD route"
// (the gin route pattern) -> scope. A registered route missing here needs
// admin; /healthz, /readyz and /metrics are open (openRoutes); an unknown
// path needs any valid key (and then answers 404).
var routeScopes = map[string]string{
	"POST /v1/endpoints/:endpoint/recommend":       auth.ScopeClient,
	"POST /v1/endpoints/:endpoint/recommend/batch": auth.ScopeClient,
	"POST /v1/feedback":                            auth.ScopeClient,

	"GET /v1/models": auth.ScopeML,
	"PUT /v1/models/:model/versions/:version":           auth.ScopeML,
	"GET /v1/models/:model/versions/:version":           auth.ScopeML,
	"DELETE /v1/models/:model/versions/:version":        auth.ScopeML,
	"GET /v1/endpoints":                                 auth.ScopeML,
	"PUT /v1/endpoints/:endpoint":                       auth.ScopeML,
	"GET /v1/endpoints/:endpoint":                       auth.ScopeML,
	"DELETE /v1/endpoints/:endpoint":                    auth.ScopeML,
	"POST /v1/endpoints/:endpoint/arms":                 auth.ScopeML,
	"PATCH /v1/endpoints/:endpoint/arms/:arm":           auth.ScopeML,
	"POST /v1/endpoints/:endpoint/shadows/:arm/promote": auth.ScopeML,

	"GET /v1/endpoints/:endpoint/report":         auth.ScopeAnalyst,
	"GET /v1/endpoints/:endpoint/report/history": auth.ScopeAnalyst,
	"GET /ui":                     auth.ScopeAnalyst,
	"GET /ui/":                    auth.ScopeAnalyst,
	"GET /ui/endpoints/:endpoint": auth.ScopeAnalyst,
	"GET /ui/static/*filepath":    auth.ScopeAnalyst,
	"HEAD /ui/static/*filepath":   auth.ScopeAnalyst,

	"POST /v1/keys":         auth.ScopeAdmin,
	"GET /v1/keys":          auth.ScopeAdmin,
	"DELETE /v1/keys/:name": auth.ScopeAdmin,
	"GET /v1/audit":         auth.ScopeAdmin,
}

// grpcScopes is routeScopes for gRPC: full method -> scope. Other unary
// methods need admin; streams (server reflection) need any valid key.
var grpcScopes = map[string]string{
	"/modelgate.v1.Gateway/Recommend":      auth.ScopeClient,
	"/modelgate.v1.Gateway/RecommendBatch": auth.ScopeClient,
	"/modelgate.v1.Gateway/Feedback":       auth.ScopeClient,
}

// pinRoutes are the calls that take PinHeader: with it, they need scope ml
// (or admin) instead of client.
var pinRoutes = map[string]bool{
	"POST /v1/endpoints/:endpoint/recommend":       true,
	"POST /v1/endpoints/:endpoint/recommend/batch": true,
	"/modelgate.v1.Gateway/Recommend":              true,
	"/modelgate.v1.Gateway/RecommendBatch":         true,
}

// openRoutes need no key.
var openRoutes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// RouteScope returns the scope a call needs by method and gin route
// pattern; "" for open routes and unknown paths (route "").
func RouteScope(method, route string) string {
	if route == "" || openRoutes[route] {
		return ""
	}
	if s, ok := routeScopes[method+" "+route]; ok {
		return s
	}
	return auth.ScopeAdmin
}

// Auth is the API keys a server serves and checks (Config.Auth).
type Auth struct {
	// Keys are served under /v1/keys and checked when Enforce is set.
	Keys *auth.Keys
	// Limiter applies the keys' rate limits; nil limits per process
	// (auth.NewLocalLimiter).
	Limiter auth.Limiter
	// Enforce makes every call but /healthz, /readyz and /metrics need a
	// key with the right scope.
	Enforce bool
}

// authState is the server's keys and limiter (see Config.Auth).
type authState struct {
	keys    *auth.Keys
	limiter auth.Limiter
	enforce bool
}

func (s *Server) useAuth(e *gin.Engine) {
	if s.authz != nil && s.authz.enforce {
		e.Use(s.authenticate)
	}
}

// presentedKey is the key of an Authorization header: Bearer, or, when
// basic is allowed (the /ui/ pages), HTTP Basic with the key as password.
func presentedKey(r *http.Request, basic bool) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	if basic {
		if _, pw, ok := r.BasicAuth(); ok {
			return pw
		}
	}
	return ""
}

// retrySeconds is a Retry-After value: seconds, rounded up, at least 1.
func retrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// check authenticates a presented key for a call needing scope need ("" =
// any valid key) and applies its rate limit.
func (s *Server) check(ctx context.Context, presented, need, what string) (*auth.Key, error) {
	if presented == "" {
		return nil, fault.New(fault.Unauthenticated, "unauthenticated", "an API key is required (Authorization: Bearer KEY)")
	}
	k := s.authz.keys.Lookup(presented)
	if k == nil {
		return nil, fault.New(fault.Unauthenticated, "unauthenticated", "unknown or revoked API key")
	}
	if need != "" && !auth.Allowed(k.Scopes, need) {
		or := ""
		if g := auth.Grantors(need); len(g) > 1 {
			or = " (or " + strings.Join(g[1:], ", ") + ")"
		}
		return nil, fault.New(fault.Forbidden, "forbidden", "%s needs scope %s%s; key %q has %s",
			what, need, or, k.Name, strings.Join(k.Scopes, ", "))
	}
	if ok, retry := s.authz.limiter.AllowN(ctx, k, 1); !ok {
		return nil, rateLimited(k, retry)
	}
	return k, nil
}

func rateLimited(k *auth.Key, retry time.Duration) error {
	return &fault.Error{Kind: fault.RateLimited, Code: "rate_limited",
		Message: fmt.Sprintf("key %q is over its rate limit of %g per second (burst %d); retry after %d s", k.Name, k.Rate, k.Burst, retrySeconds(retry)),
		Err:     retryAfter(retry)}
}

// chargeBatch takes, from the rate limit of the key of ctx, the entries of
// a batch call beyond the first, which the call's own check took: a batch
// of n entries is n requests. Refused, it takes nothing more (the call's
// own token stays taken, as for any call). Nothing is taken when keys are
// not enforced.
func (s *Server) chargeBatch(ctx context.Context, n int) error {
	if s.authz == nil || !s.authz.enforce || n <= 1 {
		return nil
	}
	k := auth.FromContext(ctx)
	if k == nil {
		return nil
	}
	// At most the burst in all: a batch larger than the burst passes on a
	// full bucket, as the call's own token plus burst − 1 more.
	more := min(n-1, max(k.Burst, 1)-1)
	if k.Rate <= 0 || more <= 0 {
		return nil
	}
	if ok, retry := s.authz.limiter.AllowN(ctx, k, more); !ok {
		return rateLimited(k, retry)
	}
	return nil
}

// retryAfter carries a wait inside a rate_limited fault.
type retryAfter time.Duration

func (r retryAfter) Error() string { return "" }

func retryOf(err error) (time.Duration, bool) {
	var r retryAfter
	if errors.As(err, &r) {
		return time.Duration(r), true
	}
	return 0, false
}

// authenticate is the HTTP middleware of SetAuth's enforce.
func (s *Server) authenticate(c *gin.Context) {
	route := c.FullPath()
	if openRoutes[route] {
		c.Next()
		return
	}
	isUI := strings.HasPrefix(c.Request.URL.Path, "/ui")
	need := RouteScope(c.Request.Method, route)
	if pinRoutes[c.Request.Method+" "+route] && c.GetHeader(PinHeader) != "" {
		need = auth.ScopeML // a QA call pinning an arm
	}
	k, err := s.check(c.Request.Context(), presentedKey(c.Request, isUI), need, c.Request.Method+" "+c.Request.URL.Path)
	if err != nil {
		if fault.As(err).Kind == fault.Unauthenticated {
			if isUI {
				c.Header("WWW-Authenticate", `Basic realm="modelgate", charset="UTF-8"`)
			} else {
				c.Header("WWW-Authenticate", `Bearer realm="modelgate"`)
			}
		}
		s.writeError(c, err) // with Retry-After when rate limited
		return
	}
	c.Set(ActorKey, k.Name) // for the audit log
	c.Request = c.Request.WithContext(auth.WithKey(c.Request.Context(), k))
	c.Next()
}

// PinHeader is the HTTP header (in gRPC, the metadata key in lower case)
// that pins the arm a QA caller wants served.
const PinHeader = "X-Modelgate-Arm"

// grpcPin is the arm a gRPC call pins, from its metadata.
func grpcPin(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(strings.ToLower(PinHeader)); len(v) > 0 {
		return v[0]
	}
	return ""
}

// grpcKey is the key in gRPC metadata "authorization: Bearer KEY".
func grpcKey(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, h := range md.Get("authorization") {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
	}
	return ""
}

// grpcRetryAfter sends a rate-limited call's wait as the retry-after
// header; other errors send nothing.
func grpcRetryAfter(ctx context.Context, err error) {
	if d, ok := retryOf(err); ok {
		_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", strconv.Itoa(retrySeconds(d))))
	}
}

func (s *Server) grpcCheck(ctx context.Context, method, need string) (context.Context, error) {
	k, err := s.check(ctx, grpcKey(ctx), need, method)
	if err != nil {
		grpcRetryAfter(ctx, err)
		f := fault.As(err)
		return nil, grpcError(&fault.Error{Kind: f.Kind, Code: f.Code, Message: f.Message})
	}
	return auth.WithKey(ctx, k), nil
}

// grpcAuth is the unary interceptor of SetAuth's enforce.
func (s *Server) grpcAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if s.authz == nil || !s.authz.enforce {
		return h(ctx, req)
	}
	need, ok := grpcScopes[info.FullMethod]
	if !ok {
		need = auth.ScopeAdmin
	}
	if pinRoutes[info.FullMethod] && grpcPin(ctx) != "" {
		need = auth.ScopeML // a QA call pinning an arm
	}
	ctx, err := s.grpcCheck(ctx, info.FullMethod, need)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// grpcAuthStream is the stream interceptor of SetAuth's enforce: any valid
// key (server reflection).
func (s *Server) grpcAuthStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if s.authz == nil || !s.authz.enforce {
		return h(srv, ss)
	}
	if _, err := s.grpcCheck(ss.Context(), info.FullMethod, ""); err != nil {
		return err
	}
	return h(srv, ss)
}

func (s *Server) keyRoutes(v1 *gin.RouterGroup) {
	if s.authz == nil || s.authz.keys == nil {
		return
	}
	v1.POST("/keys", s.createKey)
	v1.GET("/keys", s.listKeys)
	v1.DELETE("/keys/:name", s.revokeKey)
}

// KeyRequest is the body of POST /v1/keys, and of a key created over the
// admin socket.
type KeyRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	Rate   float64  `json:"rate,omitempty"`
	Burst  int      `json:"burst,omitempty"`
}

// KeyView is a key as GET /v1/keys shows it: never the key nor its hash.
type KeyView struct {
	Name      string    `json:"name"`
	Key       string    `json:"key,omitempty"` // only in the answer to a creation
	Scopes    []string  `json:"scopes"`
	Rate      float64   `json:"rate,omitempty"`
	Burst     int       `json:"burst,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	LastUsed  time.Time `json:"last_used,omitzero"`
}

// viewOf is the view of a stored key, without the key itself.
func viewOf(k auth.Key) KeyView {
	return KeyView{Name: k.Name, Scopes: k.Scopes, Rate: k.Rate, Burst: k.Burst, CreatedAt: k.CreatedAt, LastUsed: k.LastUsed}
}

func storeFault(err error) error {
	return &fault.Error{Kind: fault.Unavailable, Code: "store_unavailable", Message: "the key store did not answer", Err: err}
}

// errNoKeys is a key call on a server that keeps no keys.
var errNoKeys = fault.New(fault.NotFound, "keys_disabled", "this server keeps no API keys")

// CreateKey creates a key, as POST /v1/keys does, and records it in the
// audit log under the actor of ctx (the name of the key, never the key).
// The answer carries the key, shown this once. Errors are faults:
// invalid_key, key_exists, store_unavailable.
func (s *Server) CreateKey(ctx context.Context, in KeyRequest) (KeyView, error) {
	if s.authz == nil || s.authz.keys == nil {
		return KeyView{}, errNoKeys
	}
	plain, k, err := s.authz.keys.Create(ctx, auth.Key{Name: in.Name, Scopes: in.Scopes, Rate: in.Rate, Burst: in.Burst})
	invalid := auth.IsInvalid(err)
	switch {
	case err == nil:
	case invalid:
		err = fault.New(fault.Invalid, "invalid_key", "%v", err)
	case errors.Is(err, auth.ErrExists):
		err = fault.New(fault.Conflict, "key_exists", "a key named %q exists; revoke it first or pick another name", in.Name)
	default:
		err = storeFault(err)
	}
	if !invalid { // nothing changed, and the name may be anything
		s.auditLog.Record(ctx, "create_key", in.Name, err)
	}
	if err != nil {
		return KeyView{}, err
	}
	s.log.Info("API key created", "name", k.Name, "scopes", k.Scopes, "by", audit.Actor(ctx))
	v := viewOf(k)
	v.Key = plain
	return v, nil
}

// ListKeys lists the keys by name, as GET /v1/keys does.
func (s *Server) ListKeys(ctx context.Context) ([]KeyView, error) {
	if s.authz == nil || s.authz.keys == nil {
		return nil, errNoKeys
	}
	all, err := s.authz.keys.List(ctx)
	if err != nil {
		return nil, storeFault(err)
	}
	out := make([]KeyView, len(all))
	for i, k := range all {
		out[i] = viewOf(k)
	}
	return out, nil
}

// RevokeKey deletes the named key, as DELETE /v1/keys/{name} does: this
// process refuses it at once, other replicas within a second. The
// revocation is recorded in the audit log under the actor of ctx. Errors are
// faults: key_not_found, store_unavailable.
func (s *Server) RevokeKey(ctx context.Context, name string) error {
	if s.authz == nil || s.authz.keys == nil {
		return errNoKeys
	}
	ok, err := s.authz.keys.Revoke(ctx, name)
	switch {
	case err != nil:
		err = storeFault(err)
	case !ok:
		err = fault.New(fault.NotFound, "key_not_found", "no key named %q", name)
	}
	s.auditLog.Record(ctx, "revoke_key", name, err)
	if err != nil {
		return err
	}
	s.log.Info("API key revoked", "name", name, "by", audit.Actor(ctx))
	return nil
}

func (s *Server) createKey(c *gin.Context) {
	var in KeyRequest
	if !s.decode(c, &in) {
		return
	}
	v, err := s.CreateKey(c.Request.Context(), in)
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusCreated, v)
}

// KeyList is the answer of GET /v1/keys.
type KeyList struct {
	Keys []KeyView `json:"keys"`
}

func (s *Server) listKeys(c *gin.Context) {
	out, err := s.ListKeys(c.Request.Context())
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, KeyList{Keys: out})
}

func (s *Server) revokeKey(c *gin.Context) {
	if err := s.RevokeKey(c.Request.Context(), c.Param("name")); err != nil {
		s.writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
