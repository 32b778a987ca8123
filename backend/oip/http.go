package oip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/featurizer"
)

// maxErrorBody bounds what is read of an error response's body.
const maxErrorBody = 64 << 10

// httpTransport calls the protocol's REST API with one HTTP client, which
// keeps its own keep-alive connections.
type httpTransport struct {
	client *http.Client
	cfg    *Config
	// base is the model's URL, …/v2/models/{name}[/versions/{v}]; liveURL is
	// the server's liveness URL.
	base, liveURL string
	outputs       []jsonRequestedOutput
}

func newHTTPTransport(cfg Config) (*httpTransport, error) {
	tr := &http.Transport{
		Proxy:               nil, // a model server is called directly
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
	}
	scheme := "http"
	if cfg.TLS != nil {
		tc, err := cfg.TLS.ClientConfig()
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig, tr.ForceAttemptHTTP2 = tc, true
		scheme = "https"
	}
	u := &url.URL{Scheme: scheme, Host: cfg.Target}
	if _, err := url.Parse(u.String()); err != nil {
		return nil, invalid("backend.target", "%q is not host:port: %v", cfg.Target, err)
	}
	path := "/v2/models/" + url.PathEscape(cfg.ModelName)
	if cfg.ModelVersion != "" {
		path += "/versions/" + url.PathEscape(cfg.ModelVersion)
	}
	h := &httpTransport{client: &http.Client{Transport: tr}, cfg: &cfg,
		base: u.String() + path, liveURL: u.String() + "/v2/health/live"}
	for _, name := range cfg.outputNames() {
		h.outputs = append(h.outputs, jsonRequestedOutput{Name: name})
	}
	return h, nil
}

func (h *httpTransport) close() error {
	h.client.CloseIdleConnections()
	return nil
}

// op names a call in messages: "POST /v2/models/ranker/infer".
func (h *httpTransport) op(method, rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return method + " " + u.EscapedPath()
	}
	return method + " " + rawURL
}

// do sends a request and returns the response when its status is 200, else
// a *callError. The caller closes the body.
func (h *httpTransport) do(ctx context.Context, method, rawURL string, body []byte) (*http.Response, error) {
	op := h.op(method, rawURL)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return nil, &callError{op: op, msg: err.Error()}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	traceHeaders(ctx, req.Header.Set)
	resp, err := h.client.Do(req)
	if err != nil {
		e := &callError{op: op, kind: failUnreachable, msg: err.Error()}
		if k, done := contextFailure(ctx); done {
			e.kind = k
		}
		return nil, e
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, statusError(ctx, op, resp)
}

// statusError classifies a response whose status is not 200, with the
// server's message: the "error" member of a JSON body, else the body's
// text.
func statusError(ctx context.Context, op string, resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	msg := strings.TrimSpace(string(raw))
	var body struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		msg = body.Error
	}
	e := &callError{op: op, msg: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, msg)}
	if k, done := contextFailure(ctx); done {
		e.kind = k
		return e
	}
	switch resp.StatusCode {
	case http.StatusBadRequest:
		e.kind, e.msg = failRejected, msg
	case http.StatusNotFound:
		e.kind = failNotFound
	case http.StatusTooManyRequests:
		e.kind = failBusy
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		e.kind = failUnreachable
	case http.StatusGatewayTimeout:
		e.kind = failDeadline
	case http.StatusNotImplemented, http.StatusMethodNotAllowed:
		e.kind = failUnimplemented
	}
	return e
}

// readBody reads a 200 response's body, at most MaxResponseBytes.
func readBody(op string, resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, &callError{op: op, kind: failUnreachable, msg: "reading the response: " + err.Error()}
	}
	if len(raw) > MaxResponseBytes {
		return nil, badOutput("%s: the response is larger than %d bytes", op, MaxResponseBytes)
	}
	return raw, nil
}

func (h *httpTransport) live(ctx context.Context) error {
	resp, err := h.do(ctx, http.MethodGet, h.liveURL, nil)
	if err != nil {
		var ce *callError
		if errors.As(err, &ce) && ce.kind == failNotFound {
			ce.kind = failUnimplemented // no /v2/health/live: not the protocol's port
		}
		return err
	}
	if !statusFlag(resp, "live") {
		return &callError{op: h.op(http.MethodGet, h.liveURL), kind: failUnreachable, msg: `the server answered "live": false`}
	}
	return nil
}

// statusFlag reads the boolean member name ("live", "ready") of a 200
// answer's JSON body, closing it. A body without it, or not JSON (Triton
// answers with an empty body), counts as true: the status said so.
func statusFlag(resp *http.Response, name string) bool {
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body map[string]json.RawMessage
	if json.Unmarshal(raw, &body) != nil {
		return true
	}
	return string(body[name]) != "false"
}

func (h *httpTransport) ready(ctx context.Context) (bool, string, error) {
	resp, err := h.do(ctx, http.MethodGet, h.base+"/ready", nil)
	if err != nil {
		var ce *callError
		if errors.As(err, &ce) && (ce.kind == failRejected || ce.kind == failNotFound || ce.kind == failUnreachable && strings.HasPrefix(ce.msg, "HTTP")) {
			// A server that answers ready with an error status
			// (Triton 400, KServe 404 or 503) says "not ready".
			return false, ce.msg, nil
		}
		return false, "", err
	}
	if !statusFlag(resp, "ready") {
		return false, `the server answered "ready": false`, nil
	}
	return true, "", nil
}

func (h *httpTransport) metadata(ctx context.Context) (*modelMetadata, error) {
	resp, err := h.do(ctx, http.MethodGet, h.base, nil)
	if err != nil {
		return nil, err
	}
	op := h.op(http.MethodGet, h.base)
	raw, err := readBody(op, resp)
	if err != nil {
		return nil, err
	}
	var md modelMetadata
	if err := json.Unmarshal(raw, &md); err != nil {
		return nil, &callError{op: op, msg: "the model metadata is not the protocol's JSON: " + err.Error()}
	}
	return &md, nil
}

// jsonInput is one input tensor of an inference request.
type jsonInput struct {
	Name     string  `json:"name"`
	Shape    []int64 `json:"shape"`
	Datatype string  `json:"datatype"`
	Data     any     `json:"data"`
}

// jsonRequestedOutput names an output wanted in the response.
type jsonRequestedOutput struct {
	Name string `json:"name"`
}

// jsonRequest is an inference request.
type jsonRequest struct {
	Inputs  []jsonInput           `json:"inputs"`
	Outputs []jsonRequestedOutput `json:"outputs"`
}

func (h *httpTransport) infer(ctx context.Context, in []featurizer.Tensor) (answer, error) {
	body, err := h.request(in)
	if err != nil {
		return answer{}, err
	}
	resp, err := h.do(ctx, http.MethodPost, h.base+"/infer", body)
	if err != nil {
		return answer{}, err
	}
	op := h.op(http.MethodPost, h.base+"/infer")
	raw, err := readBody(op, resp)
	if err != nil {
		return answer{}, err
	}
	ans, err := decodeJSONAnswer(raw, &h.cfg.Outputs)
	if err != nil {
		return answer{}, badOutput("%s: %v", op, err)
	}
	return ans, nil
}

// request encodes the inference request of the inputs: each input's
// elements in its "data", BYTES as JSON strings.
func (h *httpTransport) request(in []featurizer.Tensor) ([]byte, error) {
	req := jsonRequest{Inputs: make([]jsonInput, len(in)), Outputs: h.outputs}
	for i := range in {
		t := &in[i]
		dt, err := checkInput(t)
		if err != nil {
			return nil, err
		}
		req.Inputs[i] = jsonInput{Name: t.Name, Shape: t.Shape, Datatype: dt, Data: t.Values()}
	}
	body, err := json.Marshal(&req)
	if err != nil {
		return nil, badInput("encoding the request: %v", err) // a NaN or infinite input
	}
	return body, nil
}

// jsonOutput is one output tensor of an inference response; Data is read
// only for the mapped outputs.
type jsonOutput struct {
	Name     string         `json:"name"`
	Datatype string         `json:"datatype"`
	Shape    []int64        `json:"shape"`
	Data     jsontext.Value `json:"data"`
}

// decodeJSONAnswer reads the mapped outputs of an inference response body.
func decodeJSONAnswer(raw []byte, names *Outputs) (answer, error) {
	var resp struct {
		Outputs []jsonOutput `json:"outputs"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return answer{}, fmt.Errorf("the response is not the protocol's JSON: %w", err)
	}
	var ans answer
	for i := range resp.Outputs {
		t := &resp.Outputs[i]
		var dst **output
		switch t.Name {
		case names.Scores:
			dst = &ans.scores
		case names.IDs:
			dst = &ans.ids
		default:
			continue
		}
		if *dst != nil {
			return answer{}, fmt.Errorf("output %q appears twice", t.Name)
		}
		o := &output{datatype: t.Datatype, shape: t.Shape}
		if err := decodeJSONData(o, t.Data); err != nil {
			return answer{}, fmt.Errorf("output %q: %w", t.Name, err)
		}
		*dst = o
	}
	return ans, nil
}

// decodeJSONData reads an output's "data": its elements, flat or nested in
// arrays (row-major either way), numbers for FP32 and FP64, strings for
// BYTES. There must be exactly as many as the shape holds; other datatypes
// are left for the caller to refuse.
func decodeJSONData(o *output, data jsontext.Value) error {
	if o.datatype != dtFP32 && o.datatype != dtFP64 && o.datatype != dtBytes {
		return nil
	}
	n, ok := elements(o.shape)
	if !ok {
		return fmt.Errorf("shape %v is not a vector of at most %d rows", o.shape, backend.MaxOutputRows)
	}
	if len(data) == 0 {
		return errors.New("no data")
	}
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	switch o.datatype {
	case dtBytes:
		o.strs = make([][]byte, 0, min(n, len(data)/2))
	case dtFP32:
		o.f32 = make([]float32, 0, min(n, len(data)/2))
	default:
		o.f64 = make([]float64, 0, min(n, len(data)/2))
	}
	depth := 0
	for {
		kind := dec.PeekKind()
		if kind == '[' || kind == ']' {
			if _, err := dec.ReadToken(); err != nil {
				return fmt.Errorf("data: %w", err)
			}
			if kind == '[' {
				depth++
			} else {
				depth--
			}
			continue
		}
		v, err := dec.ReadValue()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("data: %w", err)
		}
		if o.count == n {
			return fmt.Errorf("data has more than the %d elements of shape %v", n, o.shape)
		}
		if err := appendElement(o, v); err != nil {
			return err
		}
		o.count++
	}
	if depth != 0 {
		return errors.New("data: unbalanced arrays")
	}
	if o.count != n {
		return fmt.Errorf("data has %d elements for shape %v", o.count, o.shape)
	}
	return nil
}

// appendElement appends one JSON value of an output's data to its
// elements: a string for BYTES, a number for FP32 (read at 32-bit
// precision, as the server wrote it) and FP64.
func appendElement(o *output, v jsontext.Value) error {
	switch {
	case o.datatype == dtBytes && v.Kind() == '"':
		s, err := jsontext.AppendUnquote(nil, v)
		if err != nil {
			return fmt.Errorf("data: %w", err)
		}
		o.strs = append(o.strs, s)
	case (o.datatype == dtFP32 || o.datatype == dtFP64) && v.Kind() == '0':
		bits := 64
		if o.datatype == dtFP32 {
			bits = 32
		}
		f, err := strconv.ParseFloat(string(v), bits)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("data: %w", err)
		}
		if bits == 32 {
			o.f32 = append(o.f32, float32(f))
		} else {
			o.f64 = append(o.f64, f)
		}
	default:
		return fmt.Errorf("data holds %s where %s elements were expected", v.Kind(), o.datatype)
	}
	return nil
}
