package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/auth"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/router"
	"github.com/modelgate/modelgate/telemetry"
	"github.com/modelgate/modelgate/topk"
	"github.com/modelgate/modelgate/ui"
)

// DefaultMaxBody is the request body limit when Config.MaxBodyBytes is 0.
const DefaultMaxBody = 1 << 20

// Config holds the transports' settings. The zero value is usable.
type Config struct {
	MaxBodyBytes  int64 // 0 = DefaultMaxBody
	MaxConcurrent int   // in-flight requests before 503 overloaded; 0 = unlimited
	// Telemetry, when set, serves GET /metrics and, when it traces, wraps
	// requests in server spans; nil serves no /metrics.
	Telemetry *telemetry.Telemetry
	// Analytics are the analysts' data sources; zero fields turn their
	// features off.
	Analytics Analytics
	// StoreHealth, when set, makes /readyz report the shared store's state:
	// it returns whether the server can take writes and a detail object
	// shown under "store". Nil reports no store.
	StoreHealth func() (ok bool, detail any)
	// Audit, when set, serves GET /v1/audit and records the key changes
	// made through the server; nil serves an empty log.
	Audit *audit.Log
	// Auth, when set, gives the server its API keys (served under /v1/keys)
	// and their rate limiter; nil serves no keys and enforces none.
	Auth *Auth
}

// Server holds the core services behind both transports. Safe for
// concurrent use once built.
type Server struct {
	cfg      Config
	reg      *registry.Registry
	router   *router.Router
	feedback *feedback.Service
	table    *counters.Table
	log      *slog.Logger
	now      func() time.Time
	slots    chan struct{}

	analytics   Analytics
	storeHealth func() (ok bool, detail any)
	auditLog    *audit.Log
	tpl         *ui.Templates
	authz       *authState
}

// New returns a server over the core services. log may be nil.
func New(cfg Config, reg *registry.Registry, rt *router.Router, fb *feedback.Service, table *counters.Table, log *slog.Logger) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBody
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, reg: reg, router: rt, feedback: fb, table: table, log: log, now: time.Now,
		analytics: cfg.Analytics, storeHealth: cfg.StoreHealth, auditLog: cfg.Audit}
	if a := cfg.Auth; a != nil {
		lim := a.Limiter
		if lim == nil {
			lim = auth.NewLocalLimiter()
		}
		s.authz = &authState{keys: a.Keys, limiter: lim, enforce: a.Enforce}
	}
	if cfg.MaxConcurrent > 0 {
		s.slots = make(chan struct{}, cfg.MaxConcurrent)
	}
	return s
}

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	s.useTelemetry(e)
	e.Use(s.recover, s.limit)
	s.useAuth(e)
	e.NoRoute(func(c *gin.Context) {
		s.writeError(c, fault.New(fault.NotFound, "not_found", "no such path: %s", c.Request.URL.Path))
	})
	e.NoMethod(func(c *gin.Context) {
		c.AbortWithStatusJSON(http.StatusMethodNotAllowed, ErrorBody{Error: ErrorDetail{Code: "method_not_allowed",
			Message: c.Request.Method + " is not allowed on " + c.Request.URL.Path}})
	})
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", s.readyz)
	s.metricsRoute(e)
	v1 := e.Group("/v1", s.actor)
	v1.POST("/endpoints/:endpoint/recommend", s.recommend)
	v1.POST("/endpoints/:endpoint/recommend/batch", s.recommendBatch)
	v1.POST("/feedback", s.postFeedback)
	v1.GET("/models", s.listModels)
	v1.PUT("/models/:model/versions/:version", s.putVersion)
	v1.GET("/models/:model/versions/:version", s.getVersion)
	v1.DELETE("/models/:model/versions/:version", s.deleteVersion)
	v1.GET("/endpoints", s.listEndpoints)
	v1.PUT("/endpoints/:endpoint", s.putEndpoint)
	v1.GET("/endpoints/:endpoint", s.getEndpoint)
	v1.DELETE("/endpoints/:endpoint", s.deleteEndpoint)
	v1.POST("/endpoints/:endpoint/arms", s.addArm)
	v1.PATCH("/endpoints/:endpoint/arms/:arm", s.patchArm)
	v1.POST("/endpoints/:endpoint/shadows/:arm/promote", s.promoteShadow)
	s.analystRoutes(e, v1)
	s.keyRoutes(v1)
	v1.GET("/audit", s.getAudit)
	return e
}

// recover turns a panic into a logged 500 in the error shape, never a stack
// trace on the wire.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving request", "path", c.Request.URL.Path, "panic", fmt.Sprint(p))
			c.AbortWithStatusJSON(http.StatusInternalServerError, ErrorBody{Error: ErrorDetail{Code: "internal", Message: "internal error"}})
		}
	}()
	c.Next()
}

// body reads the request body under the size limit.
func (s *Server) body(c *gin.Context) ([]byte, error) {
	r := http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	b, err := io.ReadAll(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fault.New(fault.TooLarge, "body_too_large", "request body is larger than %d bytes", s.cfg.MaxBodyBytes)
		}
		return nil, fault.New(fault.Invalid, "invalid_body", "reading the request body: %v", err)
	}
	return b, nil
}

// decode reads and strictly decodes the JSON body into v.
func (s *Server) decode(c *gin.Context, v any) bool {
	b, err := s.body(c)
	if err == nil {
		err = fault.DecodeJSON(b, v)
	}
	if err != nil {
		s.writeError(c, err)
		return false
	}
	return true
}

// RecommendRequest is the body of POST /v1/endpoints/{endpoint}/recommend.
// UserID and K are pointers so that a missing value is told apart from a
// given one: a missing k means the default, while k: 0 is a 400. Clients
// build it with new: RecommendRequest{UserID: new("u42"), K: new(10)}.
type RecommendRequest struct {
	UserID     *string           `json:"user_id"`
	Context    map[string]string `json:"context,omitempty"`
	Features   map[string]any    `json:"features,omitempty"`
	Candidates []string          `json:"candidates,omitempty"`
	Exclude    []string          `json:"exclude,omitempty"`
	K          *int              `json:"k,omitempty"`
}

func (s *Server) recommend(c *gin.Context) {
	var in RecommendRequest
	if !s.decode(c, &in) {
		return
	}
	req, err := in.routerRequest(c.Param("endpoint"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	req.Pin = c.GetHeader(PinHeader) // who may pin: pinRoutes
	resp, err := s.router.Recommend(c.Request.Context(), req)
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.noteArm(c, resp.Arm)
	c.JSON(http.StatusOK, resp)
}

// routerRequest is in as the router takes it; a given k must be 1..1000.
func (in *RecommendRequest) routerRequest(endpoint string) (*router.Request, error) {
	req := &router.Request{Endpoint: endpoint, Context: in.Context, Features: in.Features,
		Candidates: in.Candidates, Exclude: in.Exclude}
	if in.UserID != nil {
		req.UserID = *in.UserID
	}
	if in.K != nil {
		if err := topk.Check(*in.K, false); err != nil {
			return nil, err
		}
		req.K = *in.K
	}
	return req, nil
}

// RecommendBatchRequest is the body of POST
// /v1/endpoints/{endpoint}/recommend/batch: 1..256 recommend bodies.
type RecommendBatchRequest struct {
	Requests []RecommendRequest `json:"requests"`
}

// RecommendBatchResponse answers a batch: one entry per request, in order.
type RecommendBatchResponse struct {
	Responses []BatchEntry `json:"responses"`
}

// BatchEntry is one request's answer in a batch: its recommend response,
// or its error alone.
type BatchEntry struct {
	*router.Response
	Error *ErrorDetail `json:"error,omitempty"`
}

func (s *Server) recommendBatch(c *gin.Context) {
	var in RecommendBatchRequest
	if !s.decode(c, &in) {
		return
	}
	ctx, endpoint := c.Request.Context(), c.Param("endpoint")
	err := router.CheckBatchSize(len(in.Requests))
	pin := c.GetHeader(PinHeader) // who may pin: pinRoutes
	if err == nil {
		err = s.chargeBatch(ctx, len(in.Requests))
	}
	out := RecommendBatchResponse{Responses: make([]BatchEntry, len(in.Requests))}
	if err == nil {
		err = s.serveBatch(ctx, endpoint, pin, len(in.Requests),
			func(i int) (*router.Request, error) { return in.Requests[i].routerRequest(endpoint) },
			func(i int, resp *router.Response, err error) {
				if err != nil {
					_, d := classify(err)
					out.Responses[i].Error = &d
					return
				}
				out.Responses[i].Response = resp
			})
	}
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}

// serveBatch serves a batch call's n entries, for either transport: req
// turns entry i into its router request (or that entry's own error), and
// answer gets each entry's response or error. Every entry pins pin. The
// error returned is the whole call's: an unknown endpoint (also when every
// entry was refused), or the client gone.
func (s *Server) serveBatch(ctx context.Context, endpoint, pin string, n int,
	req func(i int) (*router.Request, error), answer func(i int, resp *router.Response, err error)) error {
	reqs := make([]*router.Request, 0, n)
	idx := make([]int, 0, n) // the entry of each request
	for i := range n {
		r, err := req(i)
		if err != nil {
			answer(i, nil, err)
			continue
		}
		r.Pin = pin
		reqs, idx = append(reqs, r), append(idx, i)
	}
	if len(reqs) == 0 {
		_, err := s.reg.Endpoint(endpoint)
		return err
	}
	resps, errs, err := s.router.RecommendBatch(ctx, endpoint, reqs)
	if err == nil {
		err = ctx.Err() // the client went away: no entry's answer matters
	}
	if err != nil {
		return err
	}
	for j, i := range idx {
		answer(i, resps[j], errs[j])
	}
	return nil
}

// FeedbackRequest is the body of POST /v1/feedback: 1..1000 events.
type FeedbackRequest struct {
	Events []feedback.Event `json:"events"`
}

func (s *Server) postFeedback(c *gin.Context) {
	var in FeedbackRequest
	if !s.decode(c, &in) {
		return
	}
	res, err := s.feedback.Record(c.Request.Context(), in.Events)
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, res)
}

// ModelList is the answer of GET /v1/models: every model with its versions.
type ModelList struct {
	Models []registry.ModelInfo `json:"models"`
}

func (s *Server) listModels(c *gin.Context) {
	c.JSON(http.StatusOK, ModelList{Models: s.reg.Models()})
}

func (s *Server) putVersion(c *gin.Context) {
	b, err := s.body(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	cond, err := ifMatch(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 30*time.Second)
	defer cancel()
	mv, created, err := s.reg.PutVersionIf(ctx, c.Param("model"), c.Param("version"), b, cond)
	if err != nil {
		s.writeError(c, err)
		return
	}
	st := http.StatusOK
	if created {
		st = http.StatusCreated
	}
	setETag(c, mv.Revision)
	c.JSON(st, mv)
}

func (s *Server) getVersion(c *gin.Context) {
	mv, err := s.reg.Version(c.Param("model"), c.Param("version"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	setETag(c, mv.Revision)
	c.JSON(http.StatusOK, mv)
}

func (s *Server) deleteVersion(c *gin.Context) {
	cond, err := ifMatch(c)
	if err == nil {
		err = s.reg.DeleteVersionIf(c.Request.Context(), c.Param("model"), c.Param("version"), cond)
	}
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// EndpointList is the answer of GET /v1/endpoints.
type EndpointList struct {
	Endpoints []*registry.Endpoint `json:"endpoints"`
}

func (s *Server) listEndpoints(c *gin.Context) {
	c.JSON(http.StatusOK, EndpointList{Endpoints: s.reg.Endpoints()})
}

func (s *Server) putEndpoint(c *gin.Context) {
	b, err := s.body(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	cond, err := ifMatch(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	ep, created, err := s.reg.PutEndpointIf(c.Request.Context(), c.Param("endpoint"), b, cond)
	if err != nil {
		s.writeError(c, err)
		return
	}
	st := http.StatusOK
	if created {
		st = http.StatusCreated
	}
	setETag(c, ep.Revision)
	c.JSON(st, ep)
}

func (s *Server) getEndpoint(c *gin.Context) {
	ep, err := s.reg.Endpoint(c.Param("endpoint"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	setETag(c, ep.Revision)
	c.JSON(http.StatusOK, ep)
}

func (s *Server) deleteEndpoint(c *gin.Context) {
	cond, err := ifMatch(c)
	if err == nil {
		err = s.reg.DeleteEndpointIf(c.Request.Context(), c.Param("endpoint"), cond)
	}
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// AddArmRequest is the body of POST /v1/endpoints/{endpoint}/arms.
type AddArmRequest struct {
	Arm string `json:"arm"` // a registered version, e.g. "mf@3"
}

func (s *Server) addArm(c *gin.Context) {
	var in AddArmRequest
	if !s.decode(c, &in) {
		return
	}
	if in.Arm == "" {
		s.writeError(c, fault.Field("arm", "missing_field", "required, e.g. \"mf@3\""))
		return
	}
	cond, err := ifMatch(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	ep, err := s.reg.AddArmIf(c.Request.Context(), c.Param("endpoint"), in.Arm, cond)
	if err != nil {
		s.writeError(c, err)
		return
	}
	setETag(c, ep.Revision)
	c.JSON(http.StatusCreated, ep)
}

// promoteShadow makes a shadow an active arm of its endpoint (no body): 200
// with the endpoint as changed.
func (s *Server) promoteShadow(c *gin.Context) {
	cond, err := ifMatch(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	ep, err := s.reg.PromoteShadow(c.Request.Context(), c.Param("endpoint"), c.Param("arm"), cond)
	if err != nil {
		s.writeError(c, err)
		return
	}
	setETag(c, ep.Revision)
	c.JSON(http.StatusOK, ep)
}

// ArmStateRequest is the body of PATCH /v1/endpoints/{endpoint}/arms/{arm}:
// registry.Active or registry.Paused (the kill switch).
type ArmStateRequest struct {
	State registry.ArmState `json:"state"`
}

func (s *Server) patchArm(c *gin.Context) {
	var in ArmStateRequest
	if !s.decode(c, &in) {
		return
	}
	cond, err := ifMatch(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	ep, err := s.reg.SetArmStateIf(c.Request.Context(), c.Param("endpoint"), c.Param("arm"), in.State, cond)
	if err != nil {
		s.writeError(c, err)
		return
	}
	setETag(c, ep.Revision)
	c.JSON(http.StatusOK, ep)
}

func (s *Server) readyz(c *gin.Context) {
	snap := s.reg.Snapshot()
	var bad []string
	for _, ep := range snap.Endpoints {
		for _, arm := range ep.Arms {
			if ep.ArmStates[arm] == registry.Paused {
				continue
			}
			if !router.Available(snap.Versions[arm]) {
				bad = append(bad, ep.Name+"/"+arm)
			}
		}
	}
	out := gin.H{"status": "ready"}
	storeOK := true
	if s.storeHealth != nil {
		var detail any
		storeOK, detail = s.storeHealth()
		out["store"] = detail
	}
	if len(bad) > 0 || !storeOK {
		sort.Strings(bad)
		msg := fmt.Sprintf("arms not loaded or unhealthy: %v", bad)
		if !storeOK {
			msg = "the shared store's write-ahead log is nearly full; " + msg
		}
		out["status"], out["unavailable_arms"] = "not_ready", bad
		out["error"] = ErrorDetail{Code: "not_ready", Message: msg}
		c.Header("Retry-After", "1") // like every 503
		c.JSON(http.StatusServiceUnavailable, out)
		return
	}
	c.JSON(http.StatusOK, out)
}
