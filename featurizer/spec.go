package featurizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// MaxLength is the largest fixed list length a spec may ask for. A longer
// `length` is almost certainly a typo, and it would allocate that many elements
// on every request.
const MaxLength = 1 << 20

// Plan is a parsed, validated feature spec, ready to build tensors from
// requests. A Plan is immutable and safe for concurrent use; the zero value
// (and a nil *Plan) has no inputs and builds an empty list.
type Plan struct {
	raw    []byte
	inputs []*input // sorted by name
}

// InputInfo describes one tensor a Plan builds, for checking it against a
// model's signature before any request arrives.
type InputInfo struct {
	Name  string
	DType DType
	// Rank is 1 for a scalar input (shape [1]), 2 for a list input (shape
	// [1, L]), and 0 for an input whose rank follows the request: an
	// element-wise transform (hash_bucket, vocab, zscore, bucketize) of a
	// feature, with nothing in the spec that makes it a list.
	Rank int
	// Length is the number of elements: 1 for a scalar, the fixed list length
	// L, or -1 when it follows the request.
	Length int
}

// Inputs describes the plan's inputs in the order Build returns them (sorted by
// name). The slice is the caller's to keep.
func (p *Plan) Inputs() []InputInfo {
	if p == nil {
		return nil
	}
	out := make([]InputInfo, len(p.inputs))
	for i, in := range p.inputs {
		out[i] = InputInfo{Name: in.name, DType: in.dtype, Rank: in.rank, Length: in.length}
		if in.rank == 1 {
			out[i].Length = 1
		}
	}
	return out
}

// Raw returns a copy of the spec bytes the plan was parsed from.
func (p *Plan) Raw() []byte {
	if p == nil {
		return nil
	}
	return bytes.Clone(p.raw)
}

type transform uint8

const (
	tPass transform = iota
	tList
	tHash
	tVocab
	tZscore
	tBucketize
	tCross
)

var transformNames = [...]string{tPass: "none", tList: "list", tHash: "hash_bucket", tVocab: "vocab",
	tZscore: "zscore", tBucketize: "bucketize", tCross: "cross"}

func (t transform) String() string { return transformNames[t] }

func parseTransform(s string) (transform, bool) {
	if s == "" {
		return tPass, true
	}
	for t, name := range transformNames {
		if name == s {
			return transform(t), true
		}
	}
	return 0, false
}

type srcKind uint8

const (
	srcUserID srcKind = iota + 1
	srcCandidates
	srcContext
	srcFeatures
)

// source is where an input's raw value comes from. field is the request
// field it names in errors, e.g. "features.age".
type source struct {
	kind  srcKind
	key   string
	field string
}

// input is one compiled entry of the spec.
type input struct {
	name   string
	dtype  DType
	tr     transform
	srcs   []source // one, or two or more for cross
	rank   int      // 1 scalar, 2 list, 0 as the value comes
	length int      // fixed list length, or -1 to follow the request; only for rank 2
	pad    elem     // pads a list shorter than length

	hasDef bool
	def    val // raw default, JSON-typed

	buckets uint64           // hash_bucket, cross
	vocabS  map[string]int64 // vocab of strings
	vocabI  map[int64]int64  // vocab of integers
	oov     int64
	mean    float64
	std     float64
	bounds  []float64
}

// keys an input may have, and which transform uses the optional ones.
var (
	commonKeys = map[string]bool{"from": true, "transform": true, "dtype": true, "default": true,
		"length": true, "pad": true}
	paramKeys = map[string]transform{"buckets": tHash, "vocab": tVocab, "oov": tVocab,
		"mean": tZscore, "std": tZscore, "boundaries": tBucketize}
)

// Parse parses a feature spec, the JSON object {"inputs": {NAME: {...}, ...}},
// into a Plan. Empty input, null, {} and {"inputs": {}} give a plan with no
// inputs. Errors are *FieldError whose Field is the JSON path of the fault from
// the spec root, e.g. "inputs.age.boundaries", or "" when the spec as a whole is
// not a JSON object. Unknown keys, and keys the input's transform does not use,
// are errors.
func Parse(raw []byte) (*Plan, error) {
	p := &Plan{raw: bytes.Clone(raw)}
	body := bytes.TrimSpace(raw)
	if len(body) == 0 || string(body) == "null" {
		return p, nil
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return nil, &FieldError{Field: "", Message: "not valid JSON: " + errText(err)}
	}
	root, err := readObject(body, "")
	if err != nil {
		return nil, err
	}
	var inputsRaw json.RawMessage
	for _, m := range root {
		if m.key != "inputs" {
			return nil, &FieldError{Field: m.key, Message: `unknown key (a feature spec has only "inputs")`}
		}
		inputsRaw = m.raw
	}
	if inputsRaw == nil || string(inputsRaw) == "null" {
		return p, nil
	}
	members, err := readObject(inputsRaw, "inputs")
	if err != nil {
		return nil, err
	}
	sort.Slice(members, func(i, j int) bool { return members[i].key < members[j].key })
	p.inputs = make([]*input, 0, len(members))
	for _, m := range members {
		in, err := parseInput(m.key, m.raw)
		if err != nil {
			return nil, err
		}
		p.inputs = append(p.inputs, in)
	}
	return p, nil
}

func errText(err error) string {
	if err == nil {
		return "malformed"
	}
	return err.Error()
}

type member struct {
	key string
	raw json.RawMessage
}

// readObject splits a JSON object into its members, in document order, and
// rejects duplicate keys, which encoding/json would silently resolve to the
// last one. raw must be valid JSON. path names raw in errors.
func readObject(raw []byte, path string) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if d, ok := tok.(json.Delim); err != nil || !ok || d != '{' {
		return nil, &FieldError{Field: path, Message: "must be a JSON object, got " + jsonKind(raw)}
	}
	var out []member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, &FieldError{Field: path, Message: "not valid JSON: " + err.Error()}
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, &FieldError{Field: join(path, key), Message: "not valid JSON: " + err.Error()}
		}
		if seen[key] {
			return nil, &FieldError{Field: join(path, key), Message: "duplicate key"}
		}
		seen[key] = true
		out = append(out, member{key, v})
	}
	return out, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonKind names the kind of a valid JSON value for messages.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a bool"
	case 'n':
		return "null"
	}
	return "a number"
}

func parseInput(name string, raw json.RawMessage) (*input, error) {
	path := "inputs." + name
	if name == "" {
		return nil, &FieldError{Field: "inputs", Message: "an input name must not be empty"}
	}
	members, err := readObject(raw, path)
	if err != nil {
		return nil, err
	}
	fields := make(map[string]json.RawMessage, len(members))
	for _, m := range members {
		if !commonKeys[m.key] {
			if _, ok := paramKeys[m.key]; !ok {
				return nil, &FieldError{Field: join(path, m.key), Message: "unknown key (an input has from, transform, dtype, default, length, pad and its transform's parameters)"}
			}
		}
		fields[m.key] = m.raw
	}
	in := &input{name: name, length: -1}
	fe := func(key, format string, args ...any) error {
		return &FieldError{Field: join(path, key), Message: fmt.Sprintf(format, args...)}
	}

	// transform first: it decides which other keys belong.
	if r, ok := fields["transform"]; ok {
		s, err := strParam(r)
		if err != nil {
			return nil, fe("transform", "%v", err)
		}
		t, ok := parseTransform(s)
		if !ok {
			return nil, fe("transform", "unknown transform %q (want none, list, hash_bucket, vocab, zscore, bucketize or cross)", s)
		}
		in.tr = t
	}
	for _, m := range members {
		if t, ok := paramKeys[m.key]; ok && t != in.tr && !(m.key == "buckets" && in.tr == tCross) {
			return nil, fe(m.key, "%q is not used by transform %q", m.key, in.tr)
		}
	}

	// dtype
	r, ok := fields["dtype"]
	if !ok {
		return nil, fe("dtype", "required (float32, float64, int32, int64, string or bool)")
	}
	s, err := strParam(r)
	if err != nil {
		return nil, fe("dtype", "%v", err)
	}
	if in.dtype, err = ParseDType(s); err != nil {
		return nil, fe("dtype", "%v", err)
	}
	isInt := in.dtype == Int32 || in.dtype == Int64
	switch in.tr {
	case tHash, tVocab, tBucketize, tCross:
		if !isInt {
			return nil, fe("dtype", "transform %s gives indices: dtype must be int32 or int64, not %s", in.tr, in.dtype)
		}
	case tZscore:
		if in.dtype != Float32 && in.dtype != Float64 {
			return nil, fe("dtype", "transform zscore gives real numbers: dtype must be float32 or float64, not %s", in.dtype)
		}
	}

	// from
	r, ok = fields["from"]
	if !ok {
		return nil, fe("from", "required (user_id, candidates, context.KEY or features.KEY)")
	}
	if in.srcs, err = parseFrom(r, in.tr == tCross); err != nil {
		return nil, fe("from", "%v", err)
	}

	// transform parameters
	maxIndex := int64(math.MaxInt64)
	if in.dtype == Int32 {
		maxIndex = math.MaxInt32
	}
	switch in.tr {
	case tHash, tCross:
		r, ok := fields["buckets"]
		if !ok {
			return nil, fe("buckets", "required for transform %s: a positive integer", in.tr)
		}
		n, err := intParam(r)
		if err == nil && n <= 0 {
			err = errors.New("must be a positive integer")
		}
		if err == nil && n-1 > maxIndex {
			err = fmt.Errorf("%d buckets do not fit dtype %s", n, in.dtype)
		}
		if err != nil {
			return nil, fe("buckets", "%v", err)
		}
		in.buckets = uint64(n)
	case tVocab:
		if err := in.parseVocab(fields, maxIndex, fe); err != nil {
			return nil, err
		}
	case tZscore:
		for _, k := range []string{"mean", "std"} {
			r, ok := fields[k]
			if !ok {
				return nil, fe(k, "required for transform zscore")
			}
			x, err := numParam(r)
			if err == nil && k == "std" && !(x > 0) {
				err = errors.New("must be greater than 0")
			}
			if err != nil {
				return nil, fe(k, "%v", err)
			}
			if k == "mean" {
				in.mean = x
			} else {
				in.std = x
			}
		}
	case tBucketize:
		r, ok := fields["boundaries"]
		if !ok {
			return nil, fe("boundaries", "required for transform bucketize: a non-empty list of increasing numbers")
		}
		var list []json.RawMessage
		if err := json.Unmarshal(r, &list); err != nil || list == nil {
			return nil, fe("boundaries", "must be a list of numbers, got %s", jsonKind(r))
		}
		if len(list) == 0 {
			return nil, fe("boundaries", "must not be empty")
		}
		in.bounds = make([]float64, len(list))
		for i, e := range list {
			x, err := numParam(e)
			if err != nil {
				return nil, fe("boundaries", "boundary %d: %v", i, err)
			}
			if i > 0 && !(x > in.bounds[i-1]) {
				return nil, fe("boundaries", "must be strictly increasing: boundary %d (%v) is not greater than boundary %d (%v)", i, x, i-1, in.bounds[i-1])
			}
			in.bounds[i] = x
		}
	}

	// rank and length
	_, hasLength := fields["length"]
	_, hasPad := fields["pad"]
	var def any
	r, in.hasDef = fields["default"]
	if in.hasDef {
		if def, err = anyParam(r); err != nil {
			return nil, fe("default", "%v", err)
		}
		if def == nil {
			return nil, fe("default", "must not be null (leave it out for no default)")
		}
	}
	_, defIsList := def.([]any)
	in.rank = 1
	if in.tr == tCross {
		if hasLength || hasPad {
			k := "length"
			if !hasLength {
				k = "pad"
			}
			return nil, fe(k, "transform cross makes one value; %q does not apply", k)
		}
		if defIsList {
			return nil, fe("default", "transform cross needs a single value, not a list")
		}
	} else {
		in.rank = inputRank(in.tr, in.srcs[0].kind, hasLength || defIsList)
	}
	if hasLength {
		n, err := intParam(fields["length"])
		if err == nil && (n < 0 || n > MaxLength) {
			err = fmt.Errorf("must be between 0 and %d", MaxLength)
		}
		if err != nil {
			return nil, fe("length", "%v", err)
		}
		in.length = int(n)
	}
	in.pad = in.zeroPad()
	if hasPad {
		if !hasLength {
			return nil, fe("pad", "needs \"length\": without one a list keeps the request's length")
		}
		v, err := anyParam(fields["pad"])
		if err != nil {
			return nil, fe("pad", "%v", err)
		}
		pad := elemOf(v, true)
		if err := in.check(pad); err != nil {
			return nil, fe("pad", "%s", err.(*convError).msg)
		}
		in.pad = pad
	}
	if in.hasDef {
		in.def = val{kind: vAny, a: def}
		if err := in.checkDefault(); err != nil {
			return nil, fe("default", "%s", err.(*convError).msg)
		}
	}
	return in, nil
}

func (in *input) parseVocab(fields map[string]json.RawMessage, maxIndex int64, fe func(string, string, ...any) error) error {
	r, ok := fields["vocab"]
	if !ok {
		return fe("vocab", "required for transform vocab: a non-empty list of strings or integers")
	}
	var list []json.RawMessage
	if err := json.Unmarshal(r, &list); err != nil || list == nil {
		return fe("vocab", "must be a list of strings or integers, got %s", jsonKind(r))
	}
	if len(list) == 0 {
		return fe("vocab", "must not be empty")
	}
	if int64(len(list))-1 > maxIndex {
		return fe("vocab", "too many entries for dtype %s", in.dtype)
	}
	if jsonKind(list[0]) == "a string" {
		in.vocabS = make(map[string]int64, len(list))
		for i, e := range list {
			s, err := strParam(e)
			if err != nil {
				return fe("vocab", "entry %d: %v (entries must all be strings or all integers)", i, err)
			}
			if j, dup := in.vocabS[s]; dup {
				return fe("vocab", "entry %d (%q) repeats entry %d", i, s, j)
			}
			in.vocabS[s] = int64(i)
		}
	} else {
		in.vocabI = make(map[int64]int64, len(list))
		for i, e := range list {
			n, err := intParam(e)
			if err != nil {
				return fe("vocab", "entry %d: %v (entries must all be strings or all integers)", i, err)
			}
			if j, dup := in.vocabI[n]; dup {
				return fe("vocab", "entry %d (%d) repeats entry %d", i, n, j)
			}
			in.vocabI[n] = int64(i)
		}
	}
	if r, ok := fields["oov"]; ok {
		n, err := intParam(r)
		if err == nil && (n < -maxIndex-1 || n > maxIndex) {
			err = fmt.Errorf("%d does not fit dtype %s", n, in.dtype)
		}
		if err != nil {
			return fe("oov", "%v", err)
		}
		in.oov = n
	}
	return nil
}

// zeroPad is the pad used when a spec gives length but no pad: the zero value
// of what the transform reads.
func (in *input) zeroPad() elem {
	switch {
	case in.tr == tHash || in.vocabS != nil:
		return elem{k: kString}
	case in.tr == tVocab, in.tr == tZscore, in.tr == tBucketize:
		return elem{k: kNumber}
	}
	switch in.dtype {
	case String:
		return elem{k: kString}
	case Bool:
		return elem{k: kBool}
	}
	return elem{k: kNumber}
}

// checkDefault runs the default through the transform, so that a default that
// could never build fails at registration rather than on a request.
func (in *input) checkDefault() error {
	if in.tr == tCross {
		e := elemOf(in.def.a, true)
		_, err := e.crossKey()
		return err
	}
	n, list, err := in.def.shape()
	if err != nil {
		return err
	}
	if list && in.rank == 1 {
		return &convError{msg: "want a single value, got a list"}
	}
	for j := range n {
		if err := in.check(in.def.elem(j, list)); err != nil {
			if list {
				return &convError{msg: fmt.Sprintf("element %d: %s", j, err.(*convError).msg)}
			}
			return err
		}
	}
	return nil
}

// inputRank decides an input's rank from its spec alone, where it can: see
// InputInfo.Rank.
func inputRank(tr transform, src srcKind, listed bool) int {
	switch {
	case tr == tList, listed, src == srcCandidates:
		return 2
	case tr == tPass, src != srcFeatures:
		// user_id and context values are single strings.
		return 1
	}
	return 0
}

func parseFrom(raw json.RawMessage, cross bool) ([]source, error) {
	if !cross {
		s, err := strParam(raw)
		if err != nil {
			if jsonKind(raw) == "a list" {
				return nil, errors.New("a list of sources is only for transform cross")
			}
			return nil, err
		}
		src, err := parseSource(s)
		if err != nil {
			return nil, err
		}
		return []source{src}, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil || list == nil {
		return nil, fmt.Errorf("transform cross needs a list of 2 or more sources, got %s", jsonKind(raw))
	}
	if len(list) < 2 {
		return nil, fmt.Errorf("transform cross needs 2 or more sources, got %d", len(list))
	}
	srcs := make([]source, len(list))
	for i, r := range list {
		s, err := strParam(r)
		if err == nil {
			srcs[i], err = parseSource(s)
		}
		if err == nil && srcs[i].kind == srcCandidates {
			err = errors.New("candidates is a list; cross reads single values")
		}
		if err != nil {
			return nil, fmt.Errorf("source %d: %v", i, err)
		}
	}
	return srcs, nil
}

func parseSource(s string) (source, error) {
	switch s {
	case "user_id":
		return source{kind: srcUserID, field: s}, nil
	case "candidates":
		return source{kind: srcCandidates, field: s}, nil
	}
	prefix, key, ok := strings.Cut(s, ".")
	if ok && key != "" {
		switch prefix {
		case "context":
			return source{kind: srcContext, key: key, field: s}, nil
		case "features":
			return source{kind: srcFeatures, key: key, field: s}, nil
		}
	}
	return source{}, fmt.Errorf("unknown source %q (want user_id, candidates, context.KEY or features.KEY)", s)
}

// strParam reads a JSON string.
func strParam(raw json.RawMessage) (string, error) {
	var s string
	if jsonKind(raw) != "a string" || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf("must be a string, got %s", jsonKind(raw))
	}
	return s, nil
}

// intParam reads a JSON number that is an integer (1e3 counts).
func intParam(raw json.RawMessage) (int64, error) {
	if jsonKind(raw) != "a number" {
		return 0, fmt.Errorf("must be an integer, got %s", jsonKind(raw))
	}
	s := string(bytes.TrimSpace(raw))
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) {
		return 0, fmt.Errorf("must be an integer, got %s", s)
	}
	if f < -(1<<63) || f >= 1<<63 {
		return 0, fmt.Errorf("%s is out of range", s)
	}
	return int64(f), nil
}

// numParam reads a finite JSON number.
func numParam(raw json.RawMessage) (float64, error) {
	if jsonKind(raw) != "a number" {
		return 0, fmt.Errorf("must be a number, got %s", jsonKind(raw))
	}
	s := string(bytes.TrimSpace(raw))
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%s is out of range", s)
	}
	return f, nil
}

// anyParam decodes a raw value the way request features are decoded: numbers
// become float64, so a default behaves exactly like a value sent in a request.
func anyParam(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	return canon(v)
}

func canon(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s is out of range", x)
		}
		return f, nil
	case []any:
		for i := range x {
			c, err := canon(x[i])
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
	}
	return v, nil
}

// ContextInput describes a scalar input of a plan as a contextual policy
// can read it from a request (registry's linear-thompson context_features):
// a number from features.Key (Numeric: a zscore input, standardised by
// Mean and Std, or a passthrough number or bool, Std 0), or a context key's
// value among Values (a vocab input of context.Key, its vocabulary in index
// order).
type ContextInput struct {
	Key       string
	Numeric   bool
	Mean, Std float64
	Values    []string
}

// ContextInput returns the input called name when it is one a contextual
// policy can read (see ContextInput); false otherwise.
func (p *Plan) ContextInput(name string) (ContextInput, bool) {
	if p == nil {
		return ContextInput{}, false
	}
	i, ok := sortSearch(p.inputs, name)
	if !ok {
		return ContextInput{}, false
	}
	in := p.inputs[i]
	if len(in.srcs) != 1 || in.rank == 2 {
		return ContextInput{}, false
	}
	src := in.srcs[0]
	switch {
	case src.kind == srcFeatures && in.tr == tZscore:
		return ContextInput{Key: src.key, Numeric: true, Mean: in.mean, Std: in.std}, true
	case src.kind == srcFeatures && in.tr == tPass && in.dtype != String:
		return ContextInput{Key: src.key, Numeric: true}, true
	case src.kind == srcContext && in.tr == tVocab && len(in.vocabS) > 0:
		vals := make([]string, 0, len(in.vocabS))
		for v := range in.vocabS {
			vals = append(vals, v)
		}
		sort.Slice(vals, func(a, b int) bool { return in.vocabS[vals[a]] < in.vocabS[vals[b]] })
		return ContextInput{Key: src.key, Values: vals}, true
	}
	return ContextInput{}, false
}

// sortSearch finds the input called name in inputs, sorted by name.
func sortSearch(inputs []*input, name string) (int, bool) {
	i := sort.Search(len(inputs), func(i int) bool { return inputs[i].name >= name })
	return i, i < len(inputs) && inputs[i].name == name
}
