// Package tfservingtest is an in-process fake of TensorFlow Serving's gRPC
// API for tests: tensorflow.serving.PredictionService (Predict,
// GetModelMetadata) and tensorflow.serving.ModelService (GetModelStatus),
// on a real loopback listener.
//
// It validates requests as TF Serving does (model, version or label,
// signature, input names, dtypes, shapes, value counts, output filter), scores
// deterministically, records the Predict requests it receives, injects faults,
// and can be stopped and restarted on the same address.
//
// A model's inputs are batches, as a SavedModel's usually are: their
// leading dimension is the number of rows, which the model scores one by
// one, and its outputs have a row for each (shape [B, N]).
package tfservingtest

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/modelgate/modelgate/backend/backendtest"
	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	tfpb "github.com/modelgate/modelgate/proto/tensorflow/core/protobuf"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/util"
)

// State is a version's state as GetModelStatus reports it.
type State = apis.ModelVersionStatus_State

// The states a version can be in.
const (
	StateStart     State = apis.ModelVersionStatus_START
	StateLoading   State = apis.ModelVersionStatus_LOADING
	StateAvailable State = apis.ModelVersionStatus_AVAILABLE
	StateUnloading State = apis.ModelVersionStatus_UNLOADING
	StateEnd       State = apis.ModelVersionStatus_END
)

// Spec is a tensor's dtype and shape in a signature. A nil Shape is an
// unknown rank; -1 is an unknown dimension.
type Spec struct {
	DType framework.DataType
	Shape []int64
}

// Signature builds a SignatureDef with the given inputs and outputs and the
// predict method name.
func Signature(inputs, outputs map[string]Spec) *tfpb.SignatureDef {
	info := func(m map[string]Spec) map[string]*tfpb.TensorInfo {
		out := make(map[string]*tfpb.TensorInfo, len(m))
		for name, s := range m {
			ti := &tfpb.TensorInfo{Encoding: &tfpb.TensorInfo_Name{Name: name + ":0"}, Dtype: s.DType,
				TensorShape: &framework.TensorShapeProto{UnknownRank: s.Shape == nil}}
			for _, d := range s.Shape {
				ti.TensorShape.Dim = append(ti.TensorShape.Dim, &framework.TensorShapeProto_Dim{Size: d})
			}
			out[name] = ti
		}
		return out
	}
	return &tfpb.SignatureDef{Inputs: info(inputs), Outputs: info(outputs), MethodName: "tensorflow/serving/predict"}
}

// Model is one servable. A Model must not be changed once passed to the
// server; use Server.SetModel to replace it.
type Model struct {
	Name string
	// Versions maps each version to its state; only AVAILABLE versions
	// answer Predict and GetModelMetadata.
	Versions map[int64]State
	// Labels maps version labels to versions.
	Labels map[string]int64
	// Signatures by name ("serving_default", …), the same for every version.
	Signatures map[string]*tfpb.SignatureDef

	// CandidatesInput, in scores-only mode (Catalogue empty), is the input
	// alias of a DT_STRING tensor of candidates; ScoresOutput then holds
	// one score per candidate, in order.
	CandidatesInput string
	// Catalogue, when non-empty, selects ids+scores mode: every item is
	// scored and the TopN best (all when 0) are returned, best first, in
	// IDsOutput and ScoresOutput.
	Catalogue []string
	TopN      int
	// ScoresOutput and IDsOutput are the output aliases written; "scores"
	// and "ids" when "".
	ScoresOutput, IDsOutput string
	// ScoresDType is DT_FLOAT (the default) or DT_DOUBLE.
	ScoresDType framework.DataType
	// Score is the score of item under version; DefaultScore when nil.
	Score func(version int64, item string) float64
	// TensorContent makes outputs use tensor_content instead of the typed
	// fields (float_val, double_val, string_val) TF Serving uses.
	TensorContent bool
	// Flat makes outputs shape [N] instead of [1, N] (for a request of one
	// row; a batch's outputs have shape [B, N]).
	Flat bool
	// KeyInput, when set, names an input whose values in a row (a user id,
	// say) make that row's scores: Score is then given key + "/" + item,
	// key being the row's values of the input, formatted and joined by
	// ",". Rows that differ in it score differently.
	KeyInput string
}

// DefaultScore is a deterministic score in [0, 1) from an FNV-1a hash of the
// version and the item.
func DefaultScore(version int64, item string) float64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(version))
	return backendtest.Score(b[:], []byte(item))
}

// BadOutput makes Predict answer with outputs the gateway must reject.
type BadOutput int

// The bad outputs.
const (
	GoodOutput   BadOutput = iota
	WrongDType             // scores as DT_INT64
	WrongShape             // scores with one element too many
	MissingScore           // no scores output at all
)

// Fault is injected into every Predict: a Delay first (cut short by the
// call's deadline), then, if Fail is not codes.OK, an error with that code,
// else the response spoiled as BadOutput says.
type Fault struct {
	Delay time.Duration
	Fail  codes.Code
	// Message is the failure's status message; "injected failure" when "".
	Message   string
	BadOutput BadOutput
}

// Server is the fake TF Serving. It is safe for concurrent use.
type Server struct {
	addr string
	tls  *tls.Config

	mu       sync.Mutex
	models   map[string]*Model
	fault    Fault
	gs       *grpc.Server
	requests []*apis.PredictRequest
	mds      []metadata.MD // the metadata of the requests, in step
	keep     int
	calls    map[string]int
}

// Start serves models on 127.0.0.1 at a free port.
func Start(models ...*Model) (*Server, error) { return StartTLS(nil, models...) }

// StartTLS is Start with TLS (cfg holds the server certificate, and client
// CAs for mTLS) when cfg is non-nil.
func StartTLS(cfg *tls.Config, models ...*Model) (*Server, error) {
	s := &Server{tls: cfg, models: map[string]*Model{}, keep: 16, calls: map[string]int{}}
	for _, m := range models {
		s.models[m.Name] = m
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.addr = lis.Addr().String()
	s.serve(lis)
	return s, nil
}

// Addr is the server's address, host:port, the same across restarts.
func (s *Server) Addr() string { return s.addr }

func (s *Server) serve(lis net.Listener) {
	opts := []grpc.ServerOption{
		// Accept the gateway's keepalive pings whatever their rate.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(64 << 20),
	}
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	gs := grpc.NewServer(opts...)
	apis.RegisterPredictionServiceServer(gs, predictionService{s: s})
	apis.RegisterModelServiceServer(gs, modelService{s: s})
	s.mu.Lock()
	s.gs = gs
	s.mu.Unlock()
	go gs.Serve(lis) // returns when stopped
}

// Stop closes the listener and every connection at once, failing the calls
// in flight, as a crashed server would. It is a no-op on a stopped server.
func (s *Server) Stop() {
	s.mu.Lock()
	gs := s.gs
	s.gs = nil
	s.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
}

// Restart serves again on the same address after Stop.
func (s *Server) Restart() error {
	s.mu.Lock()
	running := s.gs != nil
	s.mu.Unlock()
	if running {
		return errors.New("tfservingtest: server is running")
	}
	var lis net.Listener
	var err error
	// The port is free once Stop returns, but retry briefly in case the
	// kernel is slow to release it.
	for range 50 {
		if lis, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	s.serve(lis)
	return nil
}

// SetModel adds or replaces a model.
func (s *Server) SetModel(m *Model) {
	s.mu.Lock()
	s.models[m.Name] = m
	s.mu.Unlock()
}

// SetVersionState changes the state of one version of a model.
func (s *Server) SetVersionState(model string, version int64, st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models[model]
	if m == nil {
		return
	}
	c := *m
	c.Versions = make(map[int64]State, len(m.Versions)+1)
	for v, vs := range m.Versions {
		c.Versions[v] = vs
	}
	c.Versions[version] = st
	s.models[model] = &c
}

// SetFault sets the fault injected into every later Predict (Fault{} for
// none).
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Requests returns copies of the last Predict requests received (up to 16),
// oldest first, whether they succeeded or not.
func (s *Server) Requests() []*apis.PredictRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*apis.PredictRequest, len(s.requests))
	for i, r := range s.requests {
		out[i] = proto.Clone(r).(*apis.PredictRequest)
	}
	return out
}

// PredictMetadata returns copies of the incoming metadata (headers such as
// traceparent) of the last Predict calls received (up to 16), oldest first.
func (s *Server) PredictMetadata() []metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]metadata.MD, len(s.mds))
	for i, md := range s.mds {
		out[i] = md.Copy()
	}
	return out
}

// LastRequest returns a copy of the last Predict request received, or nil.
func (s *Server) LastRequest() *apis.PredictRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return nil
	}
	return proto.Clone(s.requests[len(s.requests)-1]).(*apis.PredictRequest)
}

// Calls returns how many calls of a method ("Predict", "GetModelMetadata",
// "GetModelStatus") the server has received.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// begin counts a call and returns the model it names (nil if unknown) and
// the current fault.
func (s *Server) begin(method, model string) (*Model, Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method]++
	return s.models[model], s.fault
}

func (s *Server) record(req *apis.PredictRequest) {
	c := proto.Clone(req).(*apis.PredictRequest)
	s.mu.Lock()
	if len(s.requests) == s.keep {
		s.requests = slices.Delete(s.requests, 0, 1)
	}
	s.requests = append(s.requests, c)
	s.mu.Unlock()
}

func (s *Server) recordMetadata(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	if len(s.mds) == s.keep {
		s.mds = slices.Delete(s.mds, 0, 1)
	}
	s.mds = append(s.mds, md.Copy())
	s.mu.Unlock()
}

// resolve picks the version a ModelSpec asks for, as TF Serving does: the
// version, the label's version, or the latest AVAILABLE one.
func (m *Model) resolve(spec *apis.ModelSpec) (int64, error) {
	switch c := spec.GetVersionChoice().(type) {
	case *apis.ModelSpec_Version:
		v := c.Version.GetValue()
		if m.Versions[v] != StateAvailable {
			return 0, status.Errorf(codes.NotFound, "Servable not found for request: Specific(%s, %d)", m.Name, v)
		}
		return v, nil
	case *apis.ModelSpec_VersionLabel:
		v, ok := m.Labels[c.VersionLabel]
		if !ok {
			return 0, status.Errorf(codes.InvalidArgument, "Unrecognized servable version label: %s", c.VersionLabel)
		}
		if m.Versions[v] != StateAvailable {
			return 0, status.Errorf(codes.NotFound, "Servable not found for request: Specific(%s, %d)", m.Name, v)
		}
		return v, nil
	}
	best := int64(-1)
	for v, st := range m.Versions {
		if st == StateAvailable && v > best {
			best = v
		}
	}
	if best < 0 {
		return 0, status.Errorf(codes.NotFound, "Servable not found for request: Latest(%s)", m.Name)
	}
	return best, nil
}

type predictionService struct {
	apis.UnimplementedPredictionServiceServer
	s *Server
}

func (p predictionService) GetModelMetadata(_ context.Context, req *apis.GetModelMetadataRequest) (*apis.GetModelMetadataResponse, error) {
	m, _ := p.s.begin("GetModelMetadata", req.GetModelSpec().GetName())
	if m == nil {
		return nil, status.Errorf(codes.NotFound, "Servable not found for request: Latest(%s)", req.GetModelSpec().GetName())
	}
	if len(req.GetMetadataField()) != 1 || req.GetMetadataField()[0] != "signature_def" {
		return nil, status.Errorf(codes.InvalidArgument, "Metadata field %v is not supported", req.GetMetadataField())
	}
	v, err := m.resolve(req.GetModelSpec())
	if err != nil {
		return nil, err
	}
	sigs, err := anypb.New(&apis.SignatureDefMap{SignatureDef: m.Signatures})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &apis.GetModelMetadataResponse{
		ModelSpec: &apis.ModelSpec{Name: m.Name, VersionChoice: &apis.ModelSpec_Version{Version: wrapperspb.Int64(v)}},
		Metadata:  map[string]*anypb.Any{"signature_def": sigs},
	}, nil
}

func (p predictionService) Predict(ctx context.Context, req *apis.PredictRequest) (*apis.PredictResponse, error) {
	p.s.record(req)
	p.s.recordMetadata(ctx)
	m, f := p.s.begin("Predict", req.GetModelSpec().GetName())
	if err := backendtest.Inject(ctx, f.Delay, f.Fail, f.Message); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, status.Errorf(codes.NotFound, "Servable not found for request: Latest(%s)", req.GetModelSpec().GetName())
	}
	v, err := m.resolve(req.GetModelSpec())
	if err != nil {
		return nil, err
	}
	sigName := req.GetModelSpec().GetSignatureName()
	if sigName == "" {
		sigName = "serving_default"
	}
	sig := m.Signatures[sigName]
	if sig == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "Serving signature key %q not found.", sigName)
	}
	if err := checkInputs(sig, req.GetInputs()); err != nil {
		return nil, err
	}
	for _, alias := range req.GetOutputFilter() {
		if sig.GetOutputs()[alias] == nil {
			return nil, status.Errorf(codes.InvalidArgument, "output tensor alias not found in signature: %s Outputs expected to be in the set {%s}.", alias, keys(sig.GetOutputs()))
		}
	}
	out, err := m.outputs(v, req)
	if err != nil {
		return nil, err
	}
	spoil(out, m.scoresAlias(), f.BadOutput)
	return &apis.PredictResponse{
		ModelSpec: &apis.ModelSpec{Name: m.Name, VersionChoice: &apis.ModelSpec_Version{Version: wrapperspb.Int64(v)}, SignatureName: sigName},
		Outputs:   out,
	}, nil
}

func (m *Model) scoresAlias() string {
	if m.ScoresOutput == "" {
		return "scores"
	}
	return m.ScoresOutput
}

func (m *Model) idsAlias() string {
	if m.IDsOutput == "" {
		return "ids"
	}
	return m.IDsOutput
}

// outputs computes the model's outputs for version v, row by row.
func (m *Model) outputs(v int64, req *apis.PredictRequest) (map[string]*framework.TensorProto, error) {
	rows, err := m.rows(req.GetInputs())
	if err != nil {
		return nil, err
	}
	keys, err := m.keys(req.GetInputs(), rows)
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
	if len(m.Catalogue) == 0 {
		cands, err := decodeStrings(req.GetInputs()[m.CandidatesInput])
		if err != nil {
			return nil, err
		}
		per := len(cands)
		if dims := req.GetInputs()[m.CandidatesInput].GetTensorShape().GetDim(); len(dims) == 2 {
			per = int(dims[1].GetSize())
		}
		if len(cands) != rows*per {
			return nil, status.Errorf(codes.InvalidArgument, "candidates input %q: %d values for %d rows of %d", m.CandidatesInput, len(cands), rows, per)
		}
		scores := make([]float64, len(cands))
		for i, c := range cands {
			scores[i] = scoreRow(i/per, string(c))
		}
		return map[string]*framework.TensorProto{m.scoresAlias(): m.scoreTensor(scores, m.shape(rows, per))}, nil
	}
	var ids [][]byte
	var scores []float64
	per := 0
	for r := range rows {
		rowIDs, rowScores := backendtest.TopN(m.Catalogue, func(id string) float64 { return scoreRow(r, id) }, m.TopN)
		ids, scores, per = append(ids, rowIDs...), append(scores, rowScores...), len(rowIDs)
	}
	idt := &framework.TensorProto{Dtype: framework.DataType_DT_STRING, TensorShape: m.shape(rows, per)}
	if m.TensorContent {
		idt.TensorContent = encodeStrings(ids)
	} else {
		idt.StringVal = ids
	}
	return map[string]*framework.TensorProto{m.scoresAlias(): m.scoreTensor(scores, m.shape(rows, per)), m.idsAlias(): idt}, nil
}

// rows returns the number of rows of the request: the leading dimension
// the inputs share. A candidates input of rank 1 is one row of candidates.
func (m *Model) rows(in map[string]*framework.TensorProto) (int, error) {
	if len(m.Catalogue) == 0 {
		t := in[m.CandidatesInput]
		if t == nil {
			return 0, status.Errorf(codes.InvalidArgument, "candidates input %q missing", m.CandidatesInput)
		}
		if len(t.GetTensorShape().GetDim()) < 2 {
			return 1, nil
		}
	}
	rows := int64(-1)
	for name, t := range in {
		dims := t.GetTensorShape().GetDim()
		if len(dims) == 0 || (name == m.CandidatesInput && len(dims) < 2) {
			continue
		}
		if d := dims[0].GetSize(); rows < 0 {
			rows = d
		} else if d != rows {
			return 0, status.Errorf(codes.InvalidArgument, "input %s has %d rows, other inputs %d", name, d, rows)
		}
	}
	if rows == 0 {
		return 0, status.Error(codes.InvalidArgument, "a batch of no rows")
	}
	return int(max(rows, 1)), nil
}

// keys returns the KeyInput's values of each row, or nil without KeyInput.
func (m *Model) keys(in map[string]*framework.TensorProto, rows int) ([]string, error) {
	if m.KeyInput == "" {
		return nil, nil
	}
	t := in[m.KeyInput]
	if t == nil {
		return nil, status.Errorf(codes.InvalidArgument, "key input %q missing", m.KeyInput)
	}
	vals, err := elements(t)
	if err != nil {
		return nil, err
	}
	keys, ok := backendtest.RowKeys(vals, rows)
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "key input %q: %d values for %d rows", m.KeyInput, len(vals), rows)
	}
	return keys, nil
}

// elements returns a tensor's values, formatted, as many as its shape
// holds (a typed field shorter than that is padded with its last value,
// as TensorFlow does).
func elements(t *framework.TensorProto) ([]string, error) {
	n := int64(1)
	for _, d := range t.GetTensorShape().GetDim() {
		n *= d.GetSize()
	}
	if t.GetDtype() == framework.DataType_DT_STRING {
		ss, err := decodeStrings(t)
		if err != nil {
			return nil, err
		}
		return pad(len(ss), n, func(i int) string { return string(ss[i]) }), nil
	}
	c := t.GetTensorContent()
	switch t.GetDtype() {
	case framework.DataType_DT_FLOAT:
		if len(c) > 0 {
			return pad(len(c)/4, n, func(i int) string { return fmt.Sprint(math.Float32frombits(binary.LittleEndian.Uint32(c[4*i:]))) }), nil
		}
		return pad(len(t.GetFloatVal()), n, func(i int) string { return fmt.Sprint(t.GetFloatVal()[i]) }), nil
	case framework.DataType_DT_DOUBLE:
		if len(c) > 0 {
			return pad(len(c)/8, n, func(i int) string { return fmt.Sprint(math.Float64frombits(binary.LittleEndian.Uint64(c[8*i:]))) }), nil
		}
		return pad(len(t.GetDoubleVal()), n, func(i int) string { return fmt.Sprint(t.GetDoubleVal()[i]) }), nil
	case framework.DataType_DT_INT32:
		if len(c) > 0 {
			return pad(len(c)/4, n, func(i int) string { return fmt.Sprint(int32(binary.LittleEndian.Uint32(c[4*i:]))) }), nil
		}
		return pad(len(t.GetIntVal()), n, func(i int) string { return fmt.Sprint(t.GetIntVal()[i]) }), nil
	case framework.DataType_DT_INT64:
		if len(c) > 0 {
			return pad(len(c)/8, n, func(i int) string { return fmt.Sprint(int64(binary.LittleEndian.Uint64(c[8*i:]))) }), nil
		}
		return pad(len(t.GetInt64Val()), n, func(i int) string { return fmt.Sprint(t.GetInt64Val()[i]) }), nil
	case framework.DataType_DT_BOOL:
		if len(c) > 0 {
			return pad(len(c), n, func(i int) string { return fmt.Sprint(c[i] != 0) }), nil
		}
		return pad(len(t.GetBoolVal()), n, func(i int) string { return fmt.Sprint(t.GetBoolVal()[i]) }), nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "unsupported dtype %s", t.GetDtype())
}

// pad returns the n values of a tensor that holds have of them, value(i)
// the i-th, the last repeated ("" when it holds none).
func pad(have int, n int64, value func(i int) string) []string {
	out := make([]string, n)
	for i := range out {
		if have > 0 {
			out[i] = value(min(i, have-1))
		}
	}
	return out
}

// shape is the shape of an output of rows rows of n values: [n] or [1, n]
// for one row, as Flat says, [rows, n] for more.
func (m *Model) shape(rows, n int) *framework.TensorShapeProto {
	if m.Flat && rows == 1 {
		return &framework.TensorShapeProto{Dim: []*framework.TensorShapeProto_Dim{{Size: int64(n)}}}
	}
	return &framework.TensorShapeProto{Dim: []*framework.TensorShapeProto_Dim{{Size: int64(rows)}, {Size: int64(n)}}}
}

func (m *Model) scoreTensor(scores []float64, shape *framework.TensorShapeProto) *framework.TensorProto {
	t := &framework.TensorProto{Dtype: framework.DataType_DT_FLOAT, TensorShape: shape}
	if m.ScoresDType == framework.DataType_DT_DOUBLE {
		t.Dtype = framework.DataType_DT_DOUBLE
	}
	for _, s := range scores {
		switch {
		case t.Dtype == framework.DataType_DT_DOUBLE && m.TensorContent:
			t.TensorContent = binary.LittleEndian.AppendUint64(t.TensorContent, math.Float64bits(s))
		case t.Dtype == framework.DataType_DT_DOUBLE:
			t.DoubleVal = append(t.DoubleVal, s)
		case m.TensorContent:
			t.TensorContent = binary.LittleEndian.AppendUint32(t.TensorContent, math.Float32bits(float32(s)))
		default:
			t.FloatVal = append(t.FloatVal, float32(s))
		}
	}
	return t
}

// spoil makes the scores output bad as b says.
func spoil(out map[string]*framework.TensorProto, scores string, b BadOutput) {
	t := out[scores]
	switch b {
	case WrongDType:
		n := len(t.FloatVal) + len(t.DoubleVal) + len(t.TensorContent)/4
		*t = framework.TensorProto{Dtype: framework.DataType_DT_INT64, TensorShape: t.TensorShape, Int64Val: make([]int64, n)}
	case WrongShape:
		dims := t.TensorShape.Dim
		dims[len(dims)-1].Size++
		t.FloatVal = append(t.FloatVal, 0)
		t.DoubleVal = nil
		t.TensorContent = nil
		t.Dtype = framework.DataType_DT_FLOAT
	case MissingScore:
		delete(out, scores)
	}
}

// checkInputs validates the inputs against the signature as TF Serving
// does: exactly the signature's inputs, each with its dtype, a compatible
// shape and as many values as the shape holds.
func checkInputs(sig *tfpb.SignatureDef, in map[string]*framework.TensorProto) error {
	for name := range in {
		if sig.GetInputs()[name] == nil {
			return status.Errorf(codes.InvalidArgument, "input tensor alias not found in signature: %s. Inputs expected to be in the set {%s}.", name, keys(sig.GetInputs()))
		}
	}
	if len(in) != len(sig.GetInputs()) {
		return status.Errorf(codes.InvalidArgument, "input size does not match signature: %d!=%d len({%s}) != len({%s})", len(in), len(sig.GetInputs()), keys(in), keys(sig.GetInputs()))
	}
	for name, t := range in {
		ti := sig.GetInputs()[name]
		if t.GetDtype() != ti.GetDtype() {
			return status.Errorf(codes.InvalidArgument, "Expects arg %s to be %s but %s is provided", name, ti.GetDtype(), t.GetDtype())
		}
		n := int64(1)
		dims := t.GetTensorShape().GetDim()
		for _, d := range dims {
			n *= d.GetSize()
		}
		if want := ti.GetTensorShape(); !want.GetUnknownRank() {
			ok := len(want.GetDim()) == len(dims)
			for i := 0; ok && i < len(dims); i++ {
				if w := want.GetDim()[i].GetSize(); w != -1 && w != dims[i].GetSize() {
					ok = false
				}
			}
			if !ok {
				return status.Errorf(codes.InvalidArgument, "input %s: shape %v is incompatible with the signature's %v", name, dims, want.GetDim())
			}
		}
		if err := checkValues(name, t, n); err != nil {
			return err
		}
	}
	return nil
}

// checkValues checks that a tensor holds n values, the way Tensor::FromProto
// reads them: tensor_content of exactly n elements, or a typed field of at
// most n (a shorter one is padded with its last value).
func checkValues(name string, t *framework.TensorProto, n int64) error {
	size := map[framework.DataType]int64{
		framework.DataType_DT_FLOAT: 4, framework.DataType_DT_DOUBLE: 8, framework.DataType_DT_INT32: 4,
		framework.DataType_DT_INT64: 8, framework.DataType_DT_BOOL: 1,
	}[t.GetDtype()]
	if c := t.GetTensorContent(); len(c) > 0 {
		if t.GetDtype() == framework.DataType_DT_STRING {
			if _, err := decodeStrings(t); err != nil {
				return err
			}
			return nil
		}
		if size == 0 || int64(len(c)) != size*n {
			return status.Errorf(codes.InvalidArgument, "input %s: tensor_content of %d bytes for %d %s values", name, len(c), n, t.GetDtype())
		}
		return nil
	}
	var typed int
	switch t.GetDtype() {
	case framework.DataType_DT_FLOAT:
		typed = len(t.GetFloatVal())
	case framework.DataType_DT_DOUBLE:
		typed = len(t.GetDoubleVal())
	case framework.DataType_DT_INT32:
		typed = len(t.GetIntVal())
	case framework.DataType_DT_INT64:
		typed = len(t.GetInt64Val())
	case framework.DataType_DT_STRING:
		typed = len(t.GetStringVal())
	case framework.DataType_DT_BOOL:
		typed = len(t.GetBoolVal())
	default:
		return status.Errorf(codes.InvalidArgument, "input %s: unsupported dtype %s", name, t.GetDtype())
	}
	if int64(typed) > n {
		return status.Errorf(codes.InvalidArgument, "input %s: %d values for shape of %d elements", name, typed, n)
	}
	return nil
}

// decodeStrings reads a DT_STRING tensor's elements from string_val or
// tensor_content.
func decodeStrings(t *framework.TensorProto) ([][]byte, error) {
	if t.GetDtype() != framework.DataType_DT_STRING {
		return nil, status.Errorf(codes.InvalidArgument, "want a DT_STRING tensor, got %s", t.GetDtype())
	}
	n := int64(1)
	for _, d := range t.GetTensorShape().GetDim() {
		n *= d.GetSize()
	}
	c := t.GetTensorContent()
	if len(c) == 0 {
		return t.GetStringVal(), nil
	}
	lens := make([]uint64, n)
	for i := range lens {
		v, k := binary.Uvarint(c)
		if k <= 0 {
			return nil, status.Error(codes.InvalidArgument, "bad string tensor_content")
		}
		lens[i], c = v, c[k:]
	}
	out := make([][]byte, n)
	for i, l := range lens {
		if l > uint64(len(c)) {
			return nil, status.Error(codes.InvalidArgument, "bad string tensor_content")
		}
		out[i], c = c[:l], c[l:]
	}
	return out, nil
}

// encodeStrings writes strings as TensorFlow's string tensor_content.
func encodeStrings(ss [][]byte) []byte {
	var b []byte
	for _, s := range ss {
		b = binary.AppendUvarint(b, uint64(len(s)))
	}
	for _, s := range ss {
		b = append(b, s...)
	}
	return b
}

func keys[V any](m map[string]V) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return fmt.Sprint(ks)
}

type modelService struct {
	apis.UnimplementedModelServiceServer
	s *Server
}

func (p modelService) GetModelStatus(_ context.Context, req *apis.GetModelStatusRequest) (*apis.GetModelStatusResponse, error) {
	name := req.GetModelSpec().GetName()
	m, _ := p.s.begin("GetModelStatus", name)
	if m == nil || len(m.Versions) == 0 {
		return nil, status.Errorf(codes.NotFound, "Could not find any versions of model %s", name)
	}
	// Like TF Serving, a version label is not resolved here: without a
	// version, every version is reported.
	vs := slices.Sorted(maps.Keys(m.Versions))
	if v := req.GetModelSpec().GetVersion(); v != nil {
		if _, ok := m.Versions[v.GetValue()]; !ok {
			return nil, status.Errorf(codes.NotFound, "Could not find version %d of model %s", v.GetValue(), name)
		}
		vs = []int64{v.GetValue()}
	}
	resp := &apis.GetModelStatusResponse{}
	for _, v := range vs {
		resp.ModelVersionStatus = append(resp.ModelVersionStatus, &apis.ModelVersionStatus{
			Version: v, State: m.Versions[v], Status: &util.StatusProto{},
		})
	}
	return resp, nil
}
