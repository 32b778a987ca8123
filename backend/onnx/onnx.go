// Package onnx runs onnx/v1 models in-process with ONNX Runtime (API.md,
// "Embedded model format onnx/v1"): a directory with model.onnx and, for a
// model that scores a fixed catalogue, items.txt. The feature spec's tensors
// feed the graph's inputs by name; the outputs are read as Config.Outputs
// says.
//
// The runtime is the shared library of the npm package onnxruntime-node,
// loaded with dlopen on the first Load (see LibraryPath); without it Load
// fails with ErrRuntimeMissing and nothing else is affected.
package onnx

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelgate/modelgate/featurizer"
)

// The files of a model directory.
const (
	ModelFile   = "model.onnx"
	ItemIDsFile = "items.txt"
)

// Outputs maps the roles to graph output names: Scores alone, or IDs and
// Scores.
type Outputs struct {
	Scores string `json:"scores"`
	IDs    string `json:"ids,omitempty"`
}

// Batching joins concurrent requests into one run.
type Batching struct {
	// MaxBatchSize is the most requests per run (≥ 1).
	MaxBatchSize int
	// BatchTimeout is how long the first request of a batch waits for it to
	// fill.
	BatchTimeout time.Duration
}

// Config is how to run one model version.
type Config struct {
	// LibraryPath is the ONNX Runtime shared library; "" means LibraryPath's
	// default search.
	LibraryPath string
	Outputs     Outputs
	// Inputs is what the feature spec builds (Plan.Inputs).
	Inputs []featurizer.InputInfo
	// Timeout bounds each Predict (0: only the caller's context).
	Timeout time.Duration
	// IntraOpThreads is ONNX Runtime's intra-op thread count (0: its default).
	IntraOpThreads int
	// Batching, when set, runs concurrent requests as one batch.
	Batching *Batching
}

// ValidationError is a model version the backend refuses: Field names the
// part of the version body at fault ("backend.path", "backend.outputs.scores",
// "features.inputs.age", "backend.batching", …) and Msg says why. Err is set
// for a missing runtime (ErrRuntimeMissing).
type ValidationError struct {
	Field string
	Msg   string
	Err   error
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Unwrap returns the cause, e.g. ErrRuntimeMissing.
func (e *ValidationError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// mode is how outputs turn into items.
type mode int

const (
	modeAligned   mode = iota // scores aligned with the request's candidates
	modeCatalogue             // scores over items.txt
	modeIDs                   // ids + scores
)

// Model is a loaded onnx/v1 model version, safe for concurrent use.
type Model struct {
	cfg        Config
	mode       mode
	session    *ort.DynamicAdvancedSession
	inputs     []graphInput // in session input order
	outNames   []string     // session outputs: scores, or ids then scores
	items      []string     // catalogue, modeCatalogue
	itemIndex  map[string]int
	batchRanks bool // every input and output has a leading batch dimension
	batcher    *batcher
	runs       atomic.Int64 // session runs, for tests

	closeOnce sync.Once
	mu        sync.RWMutex // held for reading by runs, for writing by Close
	closed    bool
}

type graphInput struct {
	name  string
	dtype featurizer.DType
	dims  []int64
}

var dtypes = map[ort.TensorElementDataType]featurizer.DType{
	ort.TensorElementDataTypeFloat:  featurizer.Float32,
	ort.TensorElementDataTypeDouble: featurizer.Float64,
	ort.TensorElementDataTypeInt32:  featurizer.Int32,
	ort.TensorElementDataTypeInt64:  featurizer.Int64,
	ort.TensorElementDataTypeString: featurizer.String,
	ort.TensorElementDataTypeBool:   featurizer.Bool,
}

// Load opens the model in dir and checks it against cfg: every spec input is
// a graph input with the same dtype and a compatible rank, every graph input
// is fed, and the outputs exist with usable dtypes and ranks. Errors are
// *ValidationError; a missing runtime wraps ErrRuntimeMissing.
func Load(dir string, cfg Config) (*Model, error) {
	if cfg.Outputs.Scores == "" {
		return nil, invalid("backend.outputs.scores", "required (the graph output with the scores)")
	}
	if b := cfg.Batching; b != nil {
		if b.MaxBatchSize < 1 {
			return nil, invalid("backend.batching.max_batch_size", "must be at least 1")
		}
		if b.BatchTimeout < 0 {
			return nil, invalid("backend.batching.batch_timeout_us", "must not be negative")
		}
	}
	if cfg.IntraOpThreads < 0 {
		return nil, invalid("backend.intra_op_threads", "must not be negative")
	}
	path := filepath.Join(dir, ModelFile)
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		if err == nil {
			err = errors.New("is a directory")
		}
		return nil, &ValidationError{Field: "backend.path", Msg: fmt.Sprintf("%s: %v", ModelFile, err), Err: err}
	}
	if err := initRuntime(cfg.LibraryPath); err != nil {
		return nil, &ValidationError{Field: "backend", Msg: err.Error(), Err: err}
	}
	ins, outs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return nil, invalid("backend.path", "%s: not a model ONNX Runtime can load: %v", ModelFile, err)
	}
	m := &Model{cfg: cfg, batchRanks: true}

	// Inputs.
	spec := make(map[string]featurizer.InputInfo, len(cfg.Inputs))
	for _, in := range cfg.Inputs {
		spec[in.Name] = in
	}
	graph := make(map[string]ort.InputOutputInfo, len(ins))
	for _, gi := range ins {
		graph[gi.Name] = gi
		if _, ok := spec[gi.Name]; !ok {
			return nil, invalid("features.inputs."+gi.Name, "the model's input %q (%s) is not fed: add it to the feature spec", gi.Name, describe(gi))
		}
	}
	names := make([]string, 0, len(cfg.Inputs))
	for _, in := range cfg.Inputs {
		names = append(names, in.Name)
	}
	slices.Sort(names)
	for _, name := range names {
		in := spec[name]
		field := "features.inputs." + name
		gi, ok := graph[name]
		if !ok {
			return nil, invalid(field, "the model has no input %q (its inputs: %s)", name, strings.Join(infoNames(ins), ", "))
		}
		if gi.OrtValueType != ort.ONNXTypeTensor {
			return nil, invalid(field, "the model's input %q is a %s, not a tensor", name, gi.OrtValueType)
		}
		dt, ok := dtypes[gi.DataType]
		if !ok || dt != in.DType {
			return nil, invalid(field, "dtype %s, but the model's input %q is %s", in.DType, name, gi.DataType)
		}
		dims := []int64(gi.Dimensions)
		rank := len(dims)
		switch {
		case in.Rank == 0 && rank != 1 && rank != 2,
			in.Rank == 1 && rank != 1,
			in.Rank == 2 && rank != 2:
			return nil, invalid(field, "shape %s, but the model's input %q has shape %s", specShape(in), name, gi.Dimensions)
		}
		if rank >= 1 && dims[0] >= 0 && dims[0] != 1 {
			return nil, invalid(field, "the model's input %q has a leading dimension of %d; inputs have a batch dimension of 1 (or a dynamic one)", name, dims[0])
		}
		if rank >= 1 && dims[0] == 1 {
			m.batchRanks = false
		}
		if rank == 2 && in.Length >= 0 && dims[1] >= 0 && dims[1] != int64(in.Length) {
			return nil, invalid(field, "length %d, but the model's input %q has shape %s", in.Length, name, gi.Dimensions)
		}
		m.inputs = append(m.inputs, graphInput{name: name, dtype: in.DType, dims: dims})
	}

	// Outputs.
	gouts := make(map[string]ort.InputOutputInfo, len(outs))
	for _, o := range outs {
		gouts[o.Name] = o
	}
	checkOut := func(field, name string, want ...ort.TensorElementDataType) error {
		o, ok := gouts[name]
		if !ok {
			return invalid(field, "the model has no output %q (its outputs: %s)", name, strings.Join(infoNames(outs), ", "))
		}
		if o.OrtValueType != ort.ONNXTypeTensor || !slices.Contains(want, o.DataType) {
			return invalid(field, "the model's output %q is %s; want a %s tensor", name, describe(o), want[0])
		}
		if n := len(o.Dimensions); n != 1 && n != 2 {
			return invalid(field, "the model's output %q has shape %s; want [N] or [1, N]", name, o.Dimensions)
		}
		if len(o.Dimensions) != 2 || o.Dimensions[0] == 1 {
			m.batchRanks = false
		}
		return nil
	}
	if err := checkOut("backend.outputs.scores", cfg.Outputs.Scores, ort.TensorElementDataTypeFloat, ort.TensorElementDataTypeDouble); err != nil {
		return nil, err
	}
	if cfg.Outputs.IDs != "" {
		if err := checkOut("backend.outputs.ids", cfg.Outputs.IDs, ort.TensorElementDataTypeString); err != nil {
			return nil, err
		}
		m.mode = modeIDs
		m.outNames = []string{cfg.Outputs.IDs, cfg.Outputs.Scores}
	} else {
		m.outNames = []string{cfg.Outputs.Scores}
		items, err := readIDs(filepath.Join(dir, ItemIDsFile))
		switch {
		case errors.Is(err, os.ErrNotExist):
			m.mode = modeAligned
		case err != nil:
			return nil, invalid("backend.path", "%s: %v", ItemIDsFile, err)
		default:
			m.mode = modeCatalogue
			m.items = items
			m.itemIndex = make(map[string]int, len(items))
			for i, id := range items {
				m.itemIndex[id] = i
			}
			dims := gouts[cfg.Outputs.Scores].Dimensions
			if n := dims[len(dims)-1]; n >= 0 && n != int64(len(items)) {
				return nil, invalid("backend.outputs.scores", "the model's output %q has %d scores but %s has %d items", cfg.Outputs.Scores, n, ItemIDsFile, len(items))
			}
		}
	}
	if cfg.Batching != nil && cfg.Batching.MaxBatchSize > 1 && !m.batchRanks {
		return nil, invalid("backend.batching", "batching needs a dynamic leading (batch) dimension on every input and output, and outputs of rank 2")
	}

	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, invalid("backend", "ONNX Runtime session options: %v", err)
	}
	defer opts.Destroy()
	if cfg.IntraOpThreads > 0 {
		if err := opts.SetIntraOpNumThreads(cfg.IntraOpThreads); err != nil {
			return nil, invalid("backend.intra_op_threads", "%v", err)
		}
	}
	inNames := make([]string, len(m.inputs))
	for i, in := range m.inputs {
		inNames[i] = in.name
	}
	m.session, err = ort.NewDynamicAdvancedSession(path, inNames, m.outNames, opts)
	if err != nil {
		return nil, invalid("backend.path", "%s: ONNX Runtime cannot create a session: %v", ModelFile, err)
	}
	if b := cfg.Batching; b != nil && b.MaxBatchSize > 1 {
		m.batcher = newBatcher(m, b.MaxBatchSize, b.BatchTimeout)
	}
	return m, nil
}

// Close stops the batcher and frees the session once no run uses it. It is
// safe to call more than once; Predict fails afterwards.
func (m *Model) Close() error {
	var err error
	m.closeOnce.Do(func() {
		if m.batcher != nil {
			m.batcher.stop()
		}
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		err = m.session.Destroy()
	})
	return err
}

// Items is the catalogue size (0 unless the scores cover items.txt).
func (m *Model) Items() int { return len(m.items) }

func describe(o ort.InputOutputInfo) string {
	if o.OrtValueType != ort.ONNXTypeTensor {
		return o.OrtValueType.String()
	}
	return fmt.Sprintf("%s %s", o.DataType, o.Dimensions)
}

func infoNames(infos []ort.InputOutputInfo) []string {
	out := make([]string, len(infos))
	for i, o := range infos {
		out[i] = o.Name
	}
	return out
}

func specShape(in featurizer.InputInfo) string {
	switch in.Rank {
	case 1:
		return "[1]"
	case 2:
		if in.Length >= 0 {
			return fmt.Sprintf("[1, %d]", in.Length)
		}
		return "[1, L]"
	}
	return "[1] or [1, L]"
}

// readIDs reads items.txt: one non-empty, unique id per line.
func readIDs(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	var ids []string
	seen := map[string]int{}
	for line := 1; sc.Scan(); line++ {
		id := strings.TrimSuffix(sc.Text(), "\r")
		if id == "" {
			return nil, fmt.Errorf("line %d is empty: ids must be non-empty", line)
		}
		if first, dup := seen[id]; dup {
			return nil, fmt.Errorf("line %d: duplicate id %q (first on line %d)", line, id, first)
		}
		seen[id] = line
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, errors.New("no ids")
	}
	return ids, nil
}
