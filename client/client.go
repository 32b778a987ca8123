// Package client is a typed Go client of the gateway's HTTP API, the one
// the modelgate command line and demo-traffic use. Its request and answer
// types are the API's own (api, registry, router, feedback, report, audit):
// a wire type is declared once, by the package that serves it.
//
// Every method takes a context; a call ends at the context's deadline or
// after Options.Timeout, whichever comes first. An answer other than 2xx is
// a *Error carrying the HTTP status and the API's error code, message and
// field; callers branch on it with errors.As:
//
//	var e *client.Error
//	if errors.As(err, &e) && e.Status == http.StatusPreconditionFailed {
//		// someone changed the endpoint since we read it: read it again
//	}
//
// A transport failure is returned as net/http's *url.Error, which names the
// method and URL.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/modelgate/modelgate/api"
	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/feedback"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/router"
)

// DefaultTimeout bounds one call when Options.Timeout is 0. It is long
// because registering a version makes the server load and check its files.
const DefaultTimeout = 60 * time.Second

// DefaultUserAgent is the User-Agent header when Options.UserAgent is "".
const DefaultUserAgent = "modelgate-client"

// maxAnswer bounds the answer body read, so that a broken server cannot
// make the client buffer without end.
const maxAnswer = 64 << 20

// Options configure a Client. The zero value talks to the gateway without a
// key, over http.DefaultTransport, with DefaultTimeout per call.
type Options struct {
	// APIKey is sent as "Authorization: Bearer KEY"; "" sends none (a
	// gateway with auth.mode none).
	APIKey string
	// HTTPClient sends the requests; nil uses a client over
	// http.DefaultTransport. Give one with a TLS config for HTTPS with a
	// private CA or client certificates (mTLS).
	HTTPClient *http.Client
	// UserAgent is sent as User-Agent; "" sends DefaultUserAgent.
	UserAgent string
	// Timeout bounds each call on top of its context's deadline; 0 means
	// DefaultTimeout, a negative value no bound of the client's own.
	Timeout time.Duration
}

// Client talks to one gateway. It is safe for concurrent use; build it
// with New.
type Client struct {
	base    string // scheme://host[:port][/prefix], no trailing slash
	key     string
	ua      string
	http    *http.Client
	timeout time.Duration
}

// New returns a client of the gateway at baseURL, an http or https URL such
// as http://127.0.0.1:8080 (a path prefix is kept, for a gateway behind a
// reverse proxy).
func New(baseURL string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: base URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http://HOST:PORT or https://HOST:PORT", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: base URL %q: no query or fragment", baseURL)
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), key: opts.APIKey, ua: opts.UserAgent,
		http: opts.HTTPClient, timeout: opts.Timeout}
	if c.ua == "" {
		c.ua = DefaultUserAgent
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// BaseURL is the gateway's base URL as given to New, without a trailing
// slash.
func (c *Client) BaseURL() string { return c.base }

// CallOption changes one call: a precondition, or keeping the answer's
// body.
type CallOption func(*callOpts)

type callOpts struct {
	ifMatch string
	raw     *[]byte
}

// IfMatch makes a change conditional on the record's revision (the number
// in its "revision" field and its ETag): when the stored record has moved
// on, the server changes nothing and the call fails with a *Error of
// status 412 and code precondition_failed. The API takes it on PUT, PATCH,
// POST …/arms and DELETE; elsewhere it is ignored by the server.
func IfMatch(revision uint64) CallOption {
	return func(o *callOpts) { o.ifMatch = `"` + strconv.FormatUint(revision, 10) + `"` }
}

// IfExists makes a change conditional on the record existing (If-Match: *):
// a PUT then replaces and never creates.
func IfExists() CallOption {
	return func(o *callOpts) { o.ifMatch = "*" }
}

// RawBody stores the answer's body in *dst as it came, for a caller that
// prints or forwards the server's JSON; the call still decodes it.
func RawBody(dst *[]byte) CallOption {
	return func(o *callOpts) { o.raw = dst }
}

// Recommend asks an endpoint for a list: POST /v1/endpoints/{endpoint}/recommend.
func (c *Client) Recommend(ctx context.Context, endpoint string, req api.RecommendRequest, opts ...CallOption) (*router.Response, error) {
	var out router.Response
	if _, err := c.do(ctx, http.MethodPost, endpointPath(endpoint)+"/recommend", nil, req, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// RecommendBatch asks for 1 to 256 recommendations of one endpoint in one
// call: POST /v1/endpoints/{endpoint}/recommend/batch. The entries answer
// in order, each with its Response or its own Error; the error returned is
// the whole call's.
func (c *Client) RecommendBatch(ctx context.Context, endpoint string, reqs []api.RecommendRequest, opts ...CallOption) ([]api.BatchEntry, error) {
	var out api.RecommendBatchResponse
	if _, err := c.do(ctx, http.MethodPost, endpointPath(endpoint)+"/recommend/batch", nil, api.RecommendBatchRequest{Requests: reqs}, &out, opts); err != nil {
		return nil, err
	}
	return out.Responses, nil
}

// Feedback sends events about earlier predictions: POST /v1/feedback. A
// nil error means every accepted event is durable; events the server
// rejected one by one are in the result's Rejected, not in the error. A
// failed call may be sent again as it was: identical events are counted
// once.
func (c *Client) Feedback(ctx context.Context, events []feedback.Event, opts ...CallOption) (*feedback.Result, error) {
	var out feedback.Result
	if _, err := c.do(ctx, http.MethodPost, "/v1/feedback", nil, api.FeedbackRequest{Events: events}, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// Models lists every model with its versions: GET /v1/models.
func (c *Client) Models(ctx context.Context, opts ...CallOption) ([]registry.ModelInfo, error) {
	var out api.ModelList
	if _, err := c.do(ctx, http.MethodGet, "/v1/models", nil, nil, &out, opts); err != nil {
		return nil, err
	}
	return out.Models, nil
}

// Version reads one model version: GET /v1/models/{model}/versions/{version}.
func (c *Client) Version(ctx context.Context, model, version string, opts ...CallOption) (*registry.ModelVersion, error) {
	var out registry.ModelVersion
	if _, err := c.do(ctx, http.MethodGet, versionPath(model, version), nil, nil, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutVersion registers a model version, or replaces one no endpoint uses:
// PUT /v1/models/{model}/versions/{version}. created is true when the
// version is new (201).
func (c *Client) PutVersion(ctx context.Context, model, version string, body registry.VersionBody, opts ...CallOption) (mv *registry.ModelVersion, created bool, err error) {
	return c.putVersion(ctx, model, version, body, opts)
}

// PutVersionJSON is PutVersion with the body as JSON, sent as given: for a
// body read from a file, so that the server judges every field of it.
func (c *Client) PutVersionJSON(ctx context.Context, model, version string, body json.RawMessage, opts ...CallOption) (mv *registry.ModelVersion, created bool, err error) {
	return c.putVersion(ctx, model, version, body, opts)
}

func (c *Client) putVersion(ctx context.Context, model, version string, body any, opts []CallOption) (*registry.ModelVersion, bool, error) {
	var out registry.ModelVersion
	st, err := c.do(ctx, http.MethodPut, versionPath(model, version), nil, body, &out, opts)
	if err != nil {
		return nil, false, err
	}
	return &out, st == http.StatusCreated, nil
}

// DeleteVersion deletes a model version no endpoint uses: DELETE
// /v1/models/{model}/versions/{version} (a 409 version_in_use otherwise).
func (c *Client) DeleteVersion(ctx context.Context, model, version string, opts ...CallOption) error {
	_, err := c.do(ctx, http.MethodDelete, versionPath(model, version), nil, nil, nil, opts)
	return err
}

// Endpoints lists every endpoint: GET /v1/endpoints.
func (c *Client) Endpoints(ctx context.Context, opts ...CallOption) ([]*registry.Endpoint, error) {
	var out api.EndpointList
	if _, err := c.do(ctx, http.MethodGet, "/v1/endpoints", nil, nil, &out, opts); err != nil {
		return nil, err
	}
	return out.Endpoints, nil
}

// Endpoint reads one endpoint: GET /v1/endpoints/{name}. Its Revision is
// what IfMatch takes to change it only if nobody else did meanwhile.
func (c *Client) Endpoint(ctx context.Context, name string, opts ...CallOption) (*registry.Endpoint, error) {
	var out registry.Endpoint
	if _, err := c.do(ctx, http.MethodGet, endpointPath(name), nil, nil, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutEndpointJSON creates or replaces an endpoint from the API's endpoint
// body ({"arms": […], "policy": {…}, "fallback": "…"}), sent as given:
// PUT /v1/endpoints/{name}. created is true when the endpoint is new (201).
// The server fills in the policy's defaults; the answer has them.
func (c *Client) PutEndpointJSON(ctx context.Context, name string, body json.RawMessage, opts ...CallOption) (ep *registry.Endpoint, created bool, err error) {
	var out registry.Endpoint
	st, err := c.do(ctx, http.MethodPut, endpointPath(name), nil, body, &out, opts)
	if err != nil {
		return nil, false, err
	}
	return &out, st == http.StatusCreated, nil
}

// DeleteEndpoint deletes an endpoint: DELETE /v1/endpoints/{name}.
func (c *Client) DeleteEndpoint(ctx context.Context, name string, opts ...CallOption) error {
	_, err := c.do(ctx, http.MethodDelete, endpointPath(name), nil, nil, nil, opts)
	return err
}

// AddArm adds a registered version (e.g. "mf@3") to an endpoint as an
// active arm while it serves: POST /v1/endpoints/{endpoint}/arms.
func (c *Client) AddArm(ctx context.Context, endpoint, arm string, opts ...CallOption) (*registry.Endpoint, error) {
	var out registry.Endpoint
	if _, err := c.do(ctx, http.MethodPost, endpointPath(endpoint)+"/arms", nil, api.AddArmRequest{Arm: arm}, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// PromoteShadow makes a shadow of an endpoint (e.g. "mf@3") an active arm
// and ends it as a shadow, in one change: POST
// /v1/endpoints/{endpoint}/shadows/{arm}/promote.
func (c *Client) PromoteShadow(ctx context.Context, endpoint, arm string, opts ...CallOption) (*registry.Endpoint, error) {
	var out registry.Endpoint
	path := endpointPath(endpoint) + "/shadows/" + url.PathEscape(arm) + "/promote"
	if _, err := c.do(ctx, http.MethodPost, path, nil, nil, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetArmState sets an arm's state, registry.Paused (the kill switch) or
// registry.Active: PATCH /v1/endpoints/{endpoint}/arms/{arm}.
func (c *Client) SetArmState(ctx context.Context, endpoint, arm string, state registry.ArmState, opts ...CallOption) (*registry.Endpoint, error) {
	var out registry.Endpoint
	path := endpointPath(endpoint) + "/arms/" + url.PathEscape(arm)
	if _, err := c.do(ctx, http.MethodPatch, path, nil, api.ArmStateRequest{State: state}, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// PauseArm is the kill switch: from the next request on the arm gets no
// traffic. It is SetArmState with registry.Paused.
func (c *Client) PauseArm(ctx context.Context, endpoint, arm string, opts ...CallOption) (*registry.Endpoint, error) {
	return c.SetArmState(ctx, endpoint, arm, registry.Paused, opts...)
}

// ResumeArm makes a paused arm active again, with the counts it had. It is
// SetArmState with registry.Active.
func (c *Client) ResumeArm(ctx context.Context, endpoint, arm string, opts ...CallOption) (*registry.Endpoint, error) {
	return c.SetArmState(ctx, endpoint, arm, registry.Active, opts...)
}

// ReportQuery selects what a report or its history covers. The zero value
// is every segment added up, over all time.
type ReportQuery struct {
	// Segment is one segment, e.g. "surface=music"; "" is every segment
	// added up ("all").
	Segment string
	// From and To bound the off-policy estimates (report) or the points
	// (history), [From, To); zero times are open ends.
	From, To time.Time
}

func (q ReportQuery) values(format string) url.Values {
	v := url.Values{}
	if q.Segment != "" {
		v.Set("segment", q.Segment)
	}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339))
	}
	if format != "" {
		v.Set("format", format)
	}
	return v
}

// Report reads an endpoint's report: GET /v1/endpoints/{endpoint}/report.
func (c *Client) Report(ctx context.Context, endpoint string, q ReportQuery, opts ...CallOption) (*report.Report, error) {
	var out report.Report
	if _, err := c.do(ctx, http.MethodGet, endpointPath(endpoint)+"/report", q.values(""), nil, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// ReportCSV reads an endpoint's report as CSV, one row per arm:
// GET /v1/endpoints/{endpoint}/report?format=csv.
func (c *Client) ReportCSV(ctx context.Context, endpoint string, q ReportQuery, opts ...CallOption) ([]byte, error) {
	var out []byte
	if _, err := c.do(ctx, http.MethodGet, endpointPath(endpoint)+"/report", q.values("csv"), nil, &out, opts); err != nil {
		return nil, err
	}
	return out, nil
}

// History reads an endpoint's report history: GET
// /v1/endpoints/{endpoint}/report/history.
func (c *Client) History(ctx context.Context, endpoint string, q ReportQuery, opts ...CallOption) (*report.History, error) {
	var out report.History
	if _, err := c.do(ctx, http.MethodGet, endpointPath(endpoint)+"/report/history", q.values(""), nil, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// HistoryCSV reads an endpoint's report history as CSV, one row per point
// and arm: GET /v1/endpoints/{endpoint}/report/history?format=csv.
func (c *Client) HistoryCSV(ctx context.Context, endpoint string, q ReportQuery, opts ...CallOption) ([]byte, error) {
	var out []byte
	if _, err := c.do(ctx, http.MethodGet, endpointPath(endpoint)+"/report/history", q.values("csv"), nil, &out, opts); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateKey creates an API key: POST /v1/keys (scope admin). The answer's
// Key is the secret, shown this once.
func (c *Client) CreateKey(ctx context.Context, req api.KeyRequest, opts ...CallOption) (*api.KeyView, error) {
	var out api.KeyView
	if _, err := c.do(ctx, http.MethodPost, "/v1/keys", nil, req, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// Keys lists the API keys, never their secrets: GET /v1/keys (scope admin).
func (c *Client) Keys(ctx context.Context, opts ...CallOption) ([]api.KeyView, error) {
	var out api.KeyList
	if _, err := c.do(ctx, http.MethodGet, "/v1/keys", nil, nil, &out, opts); err != nil {
		return nil, err
	}
	return out.Keys, nil
}

// RevokeKey revokes the named API key: DELETE /v1/keys/{name} (scope admin).
func (c *Client) RevokeKey(ctx context.Context, name string, opts ...CallOption) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/keys/"+url.PathEscape(name), nil, nil, nil, opts)
	return err
}

// Audit reads the newest limit entries of the audit log, newest first:
// GET /v1/audit (scope admin). limit 0 is the server's default (100).
func (c *Client) Audit(ctx context.Context, limit int, opts ...CallOption) ([]audit.Entry, error) {
	var q url.Values
	if limit != 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	var out api.AuditList
	if _, err := c.do(ctx, http.MethodGet, "/v1/audit", q, nil, &out, opts); err != nil {
		return nil, err
	}
	return out.Entries, nil
}

func endpointPath(name string) string { return "/v1/endpoints/" + url.PathEscape(name) }

func versionPath(model, version string) string {
	return "/v1/models/" + url.PathEscape(model) + "/versions/" + url.PathEscape(version)
}

// do sends one request. in is nil (no body), a json.RawMessage (sent as
// is) or a value to encode; out is nil (the answer is dropped), a *[]byte
// (the answer's bytes) or a value the JSON answer is decoded into. An
// answer other than 2xx is a *Error.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any, opts []CallOption) (status int, err error) {
	var o callOpts
	for _, opt := range opts {
		opt(&o)
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var body io.Reader
	switch b := in.(type) {
	case nil:
	case json.RawMessage:
		body = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("%s %s: encoding the body: %w", method, path, err)
		}
		body = bytes.NewReader(raw)
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if o.ifMatch != "" {
		req.Header.Set("If-Match", o.ifMatch)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err // a *url.Error: it names the method and URL
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: reading the answer: %w", method, req.URL, err)
	}
	if o.raw != nil {
		*o.raw = raw
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, newError(resp, raw)
	}
	switch dst := out.(type) {
	case nil:
	case *[]byte:
		*dst = raw
	default:
		dec := json.NewDecoder(bytes.NewReader(raw))
		// Numbers in free-form values (a version's metadata) keep the
		// server's digits instead of becoming float64.
		dec.UseNumber()
		if err := dec.Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("unexpected answer from %s: %w", c.base, err)
		}
	}
	return resp.StatusCode, nil
}

// Error is an answer of the gateway other than 2xx. When the answer has the
// API's error shape, its code, message and field are in the embedded
// api.ErrorDetail; otherwise Code is "" and Body holds the answer's text (a
// proxy's error page, say).
type Error struct {
	// Status is the HTTP status: 400 invalid input, 401/403 auth, 404 not
	// found, 409 conflict, 412 a stale IfMatch, 413, 429, 503, …
	Status int
	api.ErrorDetail
	// Body is the answer's text when it was not the API's error shape.
	Body string
	// RetryAfter is the Retry-After the server sent with a 429 or 503; 0
	// when none.
	RetryAfter time.Duration
}

// Error is "STATUS code: field: message", naming the field once, or
// "STATUS Status Text: body" for an answer without the API's error shape;
// an answer of the admin socket (Status 0) has no "STATUS ".
func (e *Error) Error() string {
	if e.Code == "" {
		body := e.Body
		if len(body) > 300 {
			body = body[:300] + "…"
		}
		msg := fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
		if body != "" {
			msg += ": " + body
		}
		return msg
	}
	msg := e.Code + ": "
	if e.Status != 0 {
		msg = strconv.Itoa(e.Status) + " " + msg
	}
	if e.Field != "" {
		msg += e.Field + ": "
	}
	return msg + e.Message
}

func newError(resp *http.Response, raw []byte) *Error {
	e := &Error{Status: resp.StatusCode}
	var eb api.ErrorBody
	if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" {
		e.ErrorDetail = eb.Error
	} else {
		e.Body = strings.TrimSpace(string(raw))
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// StatusOf is the HTTP status of a *Error in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}
