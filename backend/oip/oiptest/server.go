// Package oiptest is an in-process fake of an Open Inference Protocol v2
// server (Triton, KServe, MLServer) for tests: the gRPC service
// inference.GRPCInferenceService (ServerLive, ModelReady, ModelMetadata,
// ModelInfer) and the HTTP/REST API (/v2/health/live, /v2/models/{name}
// [/versions/{v}], …/ready, …/infer), each on a real loopback listener.
//
// It validates inference requests as such a server does (model, version,
// readiness, input names, datatypes, shapes and element counts, in typed
// contents, raw_input_contents or JSON data, and the requested outputs),
// scores deterministically, records the requests and their metadata or
// headers, and injects faults.
//
// A model's inputs are batches, as a Triton model's with a batch dimension
// are: their leading dimension is the number of rows, which the model
// scores one by one, and its outputs have a row for each (shape [B, N]).
package oiptest

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/proto/inference"
)

// Tensor is an input or output of a model's metadata. -1 in Shape is a
// dimension of any size.
type Tensor struct {
	Name     string
	Datatype string
	Shape    []int64
}

// Model is one model the server serves. A Model must not be changed once
// passed to the server; use Server.SetModel to replace it.
type Model struct {
	Name string
	// Versions are the versions served; a request without a version gets
	// the last. Empty means the single version "1".
	Versions []string
	// NotReady makes ModelReady answer false and ModelInfer fail
	// UNAVAILABLE (HTTP 503).
	NotReady bool
	// Platform is ModelMetadata's platform.
	Platform string
	// Inputs and Outputs are the model's metadata; requests must carry
	// exactly the inputs, and may ask only for the outputs.
	Inputs, Outputs []Tensor

	// CandidatesInput, in scores-only mode (Catalogue empty), is the name
	// of a BYTES input of candidates; the scores output then holds one
	// score per candidate, in order.
	CandidatesInput string
	// Catalogue, when non-empty, selects ids+scores mode: every item is
	// scored and the TopN best (all when 0) are returned, best first.
	Catalogue []string
	TopN      int
	// ScoresOutput and IDsOutput are the output names written; "scores"
	// and "ids" when "".
	ScoresOutput, IDsOutput string
	// ScoresDatatype is FP32 (when "") or FP64.
	ScoresDatatype string
	// Score is the score of item under version; DefaultScore when nil.
	Score func(version, item string) float64
	// Flat makes outputs shape [N] instead of [1, N] (for a request of one
	// row; a batch's outputs have shape [B, N]).
	Flat bool
	// KeyInput, when set, names an input whose values in a row (a user id,
	// say) make that row's scores: Score is then given key + "/" + item,
	// key being the row's values of the input, formatted and joined by
	// ",". Rows that differ in it score differently.
	KeyInput string
}

// DefaultScore is a deterministic score in [0, 1) from an FNV-1a hash of
// the version and the item.
func DefaultScore(version, item string) float64 {
	return backendtest.Score([]byte(version), []byte{0}, []byte(item))
}

// BadOutput makes ModelInfer answer with outputs the gateway must reject.
type BadOutput int

// The bad outputs.
const (
	GoodOutput    BadOutput = iota
	WrongDatatype           // scores as INT64
	WrongShape              // scores' shape claims one element more than it holds
	MissingScores           // no scores output at all
	NaNScore                // the first score is NaN (gRPC only: JSON has no NaN)
	Malformed               // raw contents cut short (gRPC), a body that is not JSON (HTTP)
)

// Fault is injected into every ModelInfer: a Delay first (cut short by the
// call's deadline), then, if Fail is not codes.OK, an error with that code
// (over HTTP, the status a server gives it: 400, 404, 429, 503, 504 or
// 500), else the response spoiled as BadOutput says.
type Fault struct {
	Delay time.Duration
	Fail  codes.Code
	// Message is the failure's message; "injected failure" when "".
	Message   string
	BadOutput BadOutput
}

// Request is one inference request as the server read it, over either
// protocol: the gRPC request, or the HTTP request turned into one (typed
// contents). Header is the call's gRPC metadata or HTTP headers, with
// lower-case keys.
type Request struct {
	Protocol string // "grpc" or "http"
	Infer    *inference.ModelInferRequest
	Header   map[string][]string
}

// Server is the fake server. It is safe for concurrent use.
type Server struct {
	tls                *tls.Config
	grpcAddr, httpAddr string
	gs                 *grpc.Server
	hs                 *http.Server
	wg                 sync.WaitGroup // the two Serve goroutines

	mu       sync.Mutex
	models   map[string]*Model
	fault    Fault
	raw      bool
	ready200 bool // SetReadyBody
	requests []Request
	calls    map[string]int
	stopOnce sync.Once
}

// keep is how many requests the server records.
const keep = 16

// Start serves models over gRPC and HTTP on 127.0.0.1, each at a free port.
func Start(models ...*Model) (*Server, error) { return StartTLS(nil, models...) }

// StartTLS is Start with TLS on both listeners (cfg holds the server
// certificate, and client CAs for mTLS) when cfg is non-nil.
func StartTLS(cfg *tls.Config, models ...*Model) (*Server, error) {
	s := &Server{tls: cfg, models: map[string]*Model{}, calls: map[string]int{}}
	for _, m := range models {
		s.models[m.Name] = m
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		gl.Close()
		return nil, err
	}
	s.grpcAddr, s.httpAddr = gl.Addr().String(), hl.Addr().String()
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(64 << 20),
	}
	if cfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
		hl = tls.NewListener(hl, cfg)
	}
	s.gs = grpc.NewServer(opts...)
	inference.RegisterGRPCInferenceServiceServer(s.gs, service{s: s})
	s.hs = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // refused handshakes are what TLS tests want
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = s.gs.Serve(gl) }()
	go func() { defer s.wg.Done(); _ = s.hs.Serve(hl) }()
	return s, nil
}

// GRPCAddr is the gRPC listener's address, host:port.
func (s *Server) GRPCAddr() string { return s.grpcAddr }

// HTTPAddr is the HTTP listener's address, host:port.
func (s *Server) HTTPAddr() string { return s.httpAddr }

// Stop closes both listeners and every connection at once, failing the
// calls in flight as a crashed server would, and waits for the serving
// goroutines. It is safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.gs.Stop()
		s.hs.Close()
		s.wg.Wait()
	})
}

// SetModel adds or replaces a model.
func (s *Server) SetModel(m *Model) {
	s.mu.Lock()
	s.models[m.Name] = m
	s.mu.Unlock()
}

// SetReady makes a model ready or not.
func (s *Server) SetReady(name string, ready bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.models[name]; m != nil {
		c := *m
		c.NotReady = !ready
		s.models[name] = &c
	}
}

// SetReadyBody makes the HTTP API answer readiness with 200 and a JSON
// body that says whether the model is ready ({"ready": false}), as some
// servers do, instead of Triton's status code (400 when not ready).
func (s *Server) SetReadyBody(on bool) {
	s.mu.Lock()
	s.ready200 = on
	s.mu.Unlock()
}

// SetFault sets the fault injected into every later ModelInfer (Fault{}
// for none).
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// SetRawOutput makes gRPC responses carry the outputs' elements in
// raw_output_contents (as Triton does) instead of typed contents.
func (s *Server) SetRawOutput(raw bool) {
	s.mu.Lock()
	s.raw = raw
	s.mu.Unlock()
}

// Requests returns copies of the last inference requests received (up to
// 16), oldest first, whether they succeeded or not.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = Request{Protocol: r.Protocol, Infer: proto.Clone(r.Infer).(*inference.ModelInferRequest), Header: copyHeader(r.Header)}
	}
	return out
}

// LastRequest returns a copy of the last inference request received, and
// false when there was none.
func (s *Server) LastRequest() (Request, bool) {
	rs := s.Requests()
	if len(rs) == 0 {
		return Request{}, false
	}
	return rs[len(rs)-1], true
}

// Calls returns how many calls of a method ("ServerLive", "ModelReady",
// "ModelMetadata", "ModelInfer") the server has received over both
// protocols.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

func copyHeader(h map[string][]string) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[k] = slices.Clone(v)
	}
	return out
}

// begin counts a call and returns the model it names (nil if unknown), the
// current fault and whether outputs are raw.
func (s *Server) begin(method, model string) (*Model, Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method]++
	return s.models[model], s.fault, s.raw
}

func (s *Server) record(r Request) {
	r.Infer = proto.Clone(r.Infer).(*inference.ModelInferRequest)
	s.mu.Lock()
	if len(s.requests) == keep {
		s.requests = slices.Delete(s.requests, 0, 1)
	}
	s.requests = append(s.requests, r)
	s.mu.Unlock()
}

// errorf is a failure with its gRPC code, which the HTTP API turns into a
// status.
func errorf(code codes.Code, format string, args ...any) error {
	return status.Errorf(code, format, args...)
}

// version resolves the version a request names: v itself when served, the
// last version when "".
func (m *Model) version(v string) (string, error) {
	vs := m.Versions
	if len(vs) == 0 {
		vs = []string{"1"}
	}
	if v == "" {
		return vs[len(vs)-1], nil
	}
	if !slices.Contains(vs, v) {
		return "", errorf(codes.NotFound, "Request for unknown model: '%s' version %s is not found", m.Name, v)
	}
	return v, nil
}

// lookup finds a model and version, as ModelMetadata and ModelInfer do.
func lookup(m *Model, name, version string) (string, error) {
	if m == nil {
		return "", errorf(codes.NotFound, "Request for unknown model: '%s' is not found", name)
	}
	return m.version(version)
}

func (s *Server) metadata(name, version string) (*inference.ModelMetadataResponse, error) {
	m, _, _ := s.begin("ModelMetadata", name)
	if _, err := lookup(m, name, version); err != nil {
		return nil, err
	}
	resp := &inference.ModelMetadataResponse{Name: m.Name, Versions: m.Versions, Platform: m.Platform}
	if len(resp.Versions) == 0 {
		resp.Versions = []string{"1"}
	}
	for _, t := range m.Inputs {
		resp.Inputs = append(resp.Inputs, &inference.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	for _, t := range m.Outputs {
		resp.Outputs = append(resp.Outputs, &inference.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	return resp, nil
}

func (s *Server) ready(name, version string) bool {
	m, _, _ := s.begin("ModelReady", name)
	if _, err := lookup(m, name, version); err != nil {
		return false
	}
	return !m.NotReady
}

// tensor is a request's input or a response's output, its elements in the
// slice of its datatype.
type tensor struct {
	name, datatype string
	shape          []int64
	f32            []float32
	f64            []float64
	i32            []int32
	i64            []int64
	b              []bool
	bytes          [][]byte
}

func (t *tensor) count() int {
	return len(t.f32) + len(t.f64) + len(t.i32) + len(t.i64) + len(t.b) + len(t.bytes)
}

// infer runs one inference request, already decoded into tensors.
func (s *Server) infer(ctx context.Context, r Request, in []tensor, wanted []string) (*Model, []tensor, BadOutput, bool, error) {
	s.record(r)
	m, f, raw := s.begin("ModelInfer", r.Infer.GetModelName())
	if err := backendtest.Inject(ctx, f.Delay, f.Fail, f.Message); err != nil {
		return nil, nil, 0, false, err
	}
	v, err := lookup(m, r.Infer.GetModelName(), r.Infer.GetModelVersion())
	if err != nil {
		return nil, nil, 0, false, err
	}
	if m.NotReady {
		return nil, nil, 0, false, errorf(codes.Unavailable, "model '%s' is not ready", m.Name)
	}
	if err := m.checkInputs(in); err != nil {
		return nil, nil, 0, false, err
	}
	for _, w := range wanted {
		if !slices.ContainsFunc(m.Outputs, func(t Tensor) bool { return t.Name == w }) {
			return nil, nil, 0, false, errorf(codes.InvalidArgument, "unexpected inference output '%s' for model '%s'", w, m.Name)
		}
	}
	out, err := m.outputs(v, in)
	if err != nil {
		return nil, nil, 0, false, err
	}
	return m, out, f.BadOutput, raw, nil
}

// checkInputs validates the inputs against the metadata: exactly the
// model's inputs, each with its datatype, a compatible shape and as many
// elements as the shape holds.
func (m *Model) checkInputs(in []tensor) error {
	seen := map[string]bool{}
	for _, t := range in {
		i := slices.IndexFunc(m.Inputs, func(x Tensor) bool { return x.Name == t.name })
		if i < 0 {
			return errorf(codes.InvalidArgument, "unexpected inference input '%s' for model '%s'", t.name, m.Name)
		}
		if seen[t.name] {
			return errorf(codes.InvalidArgument, "input '%s' appears twice", t.name)
		}
		seen[t.name] = true
		want := m.Inputs[i]
		if t.datatype != want.Datatype {
			return errorf(codes.InvalidArgument, "inference input '%s' data-type is '%s', but model '%s' expects '%s'", t.name, t.datatype, m.Name, want.Datatype)
		}
		ok := len(want.Shape) == len(t.shape)
		n := int64(1)
		for j, d := range t.shape {
			n *= d
			if ok && want.Shape[j] != -1 && want.Shape[j] != d {
				ok = false
			}
		}
		if !ok {
			return errorf(codes.InvalidArgument, "unexpected shape for input '%s' for model '%s'. Expected %v, got %v", t.name, m.Name, want.Shape, t.shape)
		}
		if int64(t.count()) != n {
			return errorf(codes.InvalidArgument, "input '%s': %d elements for shape %v", t.name, t.count(), t.shape)
		}
	}
	for _, want := range m.Inputs {
		if !seen[want.Name] {
			return errorf(codes.InvalidArgument, "expected %d inputs but got %d inputs for model '%s'", len(m.Inputs), len(in), m.Name)
		}
	}
	return nil
}

func (m *Model) scoresName() string { return cmp.Or(m.ScoresOutput, "scores") }

func (m *Model) idsName() string { return cmp.Or(m.IDsOutput, "ids") }

// shape is the shape of an output of rows rows of n values: [n] or [1, n]
// for one row, as Flat says, [rows, n] for more.
func (m *Model) shape(rows, n int) []int64 {
	if m.Flat && rows == 1 {
		return []int64{int64(n)}
	}
	return []int64{int64(rows), int64(n)}
}

// outputs computes the model's outputs for version v, row by row.
func (m *Model) outputs(v string, in []tensor) ([]tensor, error) {
	rows, err := m.rows(in)
	if err != nil {
		return nil, err
	}
	keys, err := m.keys(in, rows)
	if err != nil {
		return nil, err
	}
	score := m.Score
	if score == nil {
		score = DefaultScore
	}
	scoreRow := func(r int, item string) float64 {
		return backendtest.RowScore(keys, r, item, func(item string) float64 { return score(v, item) })
	}
	var ids [][]byte
	var scores []float64
	per := 0
	if len(m.Catalogue) == 0 {
		cands := m.candidates(in)
		per = len(cands.bytes)
		if len(cands.shape) == 2 {
			per = int(cands.shape[1])
		}
		if len(cands.bytes) != rows*per {
			return nil, errorf(codes.InvalidArgument, "candidates input '%s': %d elements for %d rows of %d", m.CandidatesInput, len(cands.bytes), rows, per)
		}
		for i, c := range cands.bytes {
			scores = append(scores, scoreRow(i/per, string(c)))
		}
	} else {
		for r := range rows {
			rowIDs, rowScores := backendtest.TopN(m.Catalogue, func(id string) float64 { return scoreRow(r, id) }, m.TopN)
			ids, scores, per = append(ids, rowIDs...), append(scores, rowScores...), len(rowIDs)
		}
	}
	st := tensor{name: m.scoresName(), datatype: "FP32", shape: m.shape(rows, per)}
	if m.ScoresDatatype == "FP64" {
		st.datatype, st.f64 = "FP64", scores
	} else {
		for _, x := range scores {
			st.f32 = append(st.f32, float32(x))
		}
	}
	out := []tensor{st}
	if ids != nil {
		out = append(out, tensor{name: m.idsName(), datatype: "BYTES", shape: m.shape(rows, per), bytes: ids})
	}
	return out, nil
}

// candidates is the candidates input (checked by rows).
func (m *Model) candidates(in []tensor) *tensor {
	i := slices.IndexFunc(in, func(t tensor) bool { return t.name == m.CandidatesInput })
	return &in[i]
}

// rows returns the number of rows of the request: the leading dimension
// the inputs share. A candidates input of rank 1 is one row of candidates.
func (m *Model) rows(in []tensor) (int, error) {
	if len(m.Catalogue) == 0 {
		i := slices.IndexFunc(in, func(t tensor) bool { return t.name == m.CandidatesInput })
		if i < 0 || in[i].datatype != "BYTES" {
			return 0, errorf(codes.InvalidArgument, "candidates input '%s' missing", m.CandidatesInput)
		}
		if len(in[i].shape) < 2 {
			return 1, nil
		}
	}
	rows := int64(-1)
	for _, t := range in {
		if len(t.shape) == 0 || (t.name == m.CandidatesInput && len(t.shape) < 2) {
			continue
		}
		if d := t.shape[0]; rows < 0 {
			rows = d
		} else if d != rows {
			return 0, errorf(codes.InvalidArgument, "input '%s' has %d rows, other inputs %d", t.name, d, rows)
		}
	}
	if rows == 0 {
		return 0, errorf(codes.InvalidArgument, "a batch of no rows")
	}
	return int(max(rows, 1)), nil
}

// keys returns the KeyInput's values of each row, or nil without KeyInput.
func (m *Model) keys(in []tensor, rows int) ([]string, error) {
	if m.KeyInput == "" {
		return nil, nil
	}
	i := slices.IndexFunc(in, func(t tensor) bool { return t.name == m.KeyInput })
	if i < 0 {
		return nil, errorf(codes.InvalidArgument, "key input '%s' missing", m.KeyInput)
	}
	t := &in[i]
	var vals []string // the elements of its datatype, the others' slices empty
	vals = appendFormatted(vals, t.f32)
	vals = appendFormatted(vals, t.f64)
	vals = appendFormatted(vals, t.i32)
	vals = appendFormatted(vals, t.i64)
	vals = appendFormatted(vals, t.b)
	for _, b := range t.bytes {
		vals = append(vals, string(b))
	}
	keys, ok := backendtest.RowKeys(vals, rows)
	if !ok {
		return nil, errorf(codes.InvalidArgument, "key input '%s': %d elements for %d rows", m.KeyInput, len(vals), rows)
	}
	return keys, nil
}

// appendFormatted appends the values, formatted by fmt.Sprint, to out.
func appendFormatted[T any](out []string, vs []T) []string {
	for _, v := range vs {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

// filter keeps the outputs wanted (all when wanted is empty).
func filter(out []tensor, wanted []string) []tensor {
	if len(wanted) == 0 {
		return out
	}
	var kept []tensor
	for _, t := range out {
		if slices.Contains(wanted, t.name) {
			kept = append(kept, t)
		}
	}
	return kept
}

// spoil makes the scores output bad as b says (Malformed is the encoders').
func spoil(out []tensor, scores string, b BadOutput) []tensor {
	i := slices.IndexFunc(out, func(t tensor) bool { return t.name == scores })
	if i < 0 {
		return out
	}
	t := &out[i]
	switch b {
	case WrongDatatype:
		n := t.count()
		*t = tensor{name: t.name, datatype: "INT64", shape: t.shape, i64: make([]int64, n)}
	case WrongShape:
		t.shape = slices.Clone(t.shape)
		t.shape[len(t.shape)-1]++
	case MissingScores:
		return slices.Delete(out, i, i+1)
	case NaNScore:
		if len(t.f32) > 0 {
			t.f32[0] = float32(math.NaN())
		}
		if len(t.f64) > 0 {
			t.f64[0] = math.NaN()
		}
	}
	return out
}

// rawSize is the size of an element of a fixed-width datatype, 0 for BYTES.
func rawSize(dt string) int {
	switch dt {
	case "BOOL", "INT8", "UINT8":
		return 1
	case "INT16", "UINT16", "FP16":
		return 2
	case "INT32", "UINT32", "FP32":
		return 4
	case "INT64", "UINT64", "FP64":
		return 8
	}
	return 0
}

// decodeRaw reads raw contents into t's slice of its datatype, as a server
// reads raw_input_contents: little-endian, BYTES elements each a 4-byte
// little-endian length and the bytes.
func decodeRaw(t *tensor, raw []byte) error {
	if t.datatype == "BYTES" {
		for len(raw) > 0 {
			if len(raw) < 4 {
				return errors.New("BYTES raw contents cut short")
			}
			l := binary.LittleEndian.Uint32(raw)
			if uint64(l) > uint64(len(raw)-4) {
				return errors.New("BYTES raw contents cut short")
			}
			t.bytes = append(t.bytes, raw[4:4+l])
			raw = raw[4+l:]
		}
		return nil
	}
	size := rawSize(t.datatype)
	if size == 0 || len(raw)%size != 0 {
		return fmt.Errorf("%d bytes of raw %s contents", len(raw), t.datatype)
	}
	for i := 0; i < len(raw); i += size {
		switch t.datatype {
		case "BOOL":
			t.b = append(t.b, raw[i] != 0)
		case "INT32":
			t.i32 = append(t.i32, int32(binary.LittleEndian.Uint32(raw[i:])))
		case "INT64":
			t.i64 = append(t.i64, int64(binary.LittleEndian.Uint64(raw[i:])))
		case "FP32":
			t.f32 = append(t.f32, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
		case "FP64":
			t.f64 = append(t.f64, math.Float64frombits(binary.LittleEndian.Uint64(raw[i:])))
		default:
			return fmt.Errorf("datatype %s is not supported by this server", t.datatype)
		}
	}
	return nil
}

// encodeRaw writes t's elements as raw contents: little-endian, BYTES
// elements each a 4-byte little-endian length and the bytes.
func encodeRaw(t *tensor) []byte {
	var b []byte
	for _, x := range t.b {
		if x {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	for _, x := range t.i32 {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	for _, x := range t.i64 {
		b = binary.LittleEndian.AppendUint64(b, uint64(x))
	}
	for _, x := range t.f32 {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	for _, x := range t.f64 {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	for _, x := range t.bytes {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(x)))
		b = append(b, x...)
	}
	return b
}

// EncodeRaw returns values (a []float32, []float64, []int32, []int64,
// []bool or [][]byte) as raw contents, for tests that build responses or
// requests by hand.
func EncodeRaw(values any) []byte {
	var t tensor
	switch v := values.(type) {
	case []float32:
		t.f32 = v
	case []float64:
		t.f64 = v
	case []int32:
		t.i32 = v
	case []int64:
		t.i64 = v
	case []bool:
		t.b = v
	case [][]byte:
		t.bytes = v
	default:
		panic(fmt.Sprintf("oiptest.EncodeRaw: unsupported %T", values))
	}
	return encodeRaw(&t)
}

// lowerKeys copies a header with its keys in lower case.
func lowerKeys(h map[string][]string) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[strings.ToLower(k)] = slices.Clone(v)
	}
	return out
}

// incoming is a gRPC call's metadata.
func incoming(ctx context.Context) map[string][]string {
	md, _ := metadata.FromIncomingContext(ctx)
	return lowerKeys(md)
}
