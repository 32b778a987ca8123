package featurizer

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Build turns a request into the plan's tensors, one per input, sorted by
// name; a nil req reads as an empty request. Every tensor has a leading batch
// dimension of 1: shape [1] for a scalar input, [1, L] for a list input. The
// tensors' value slices are freshly allocated for each call (several tensors
// may share one backing array, capped so that appending to one cannot touch
// another); string values may share memory with req.
//
// Errors are *FieldError whose Field is the request field at fault (e.g.
// "features.age") and whose message names the input: a missing value without
// a default, a value of the wrong kind, or one that does not fit the dtype.
// Build is safe for concurrent use.
func (p *Plan) Build(req *Request) ([]Tensor, error) {
	if p == nil || len(p.inputs) == 0 {
		return []Tensor{}, nil
	}
	if req == nil {
		req = &Request{}
	}
	n := len(p.inputs)
	// First pass: find every value and its length, so that the elements of
	// each dtype can come from one allocation.
	var buf [16]slot
	slots := buf[:]
	if n > len(buf) {
		slots = make([]slot, n)
	}
	var count [Bool + 1]int
	var used [Bool + 1]bool
	for i, in := range p.inputs {
		if err := in.resolve(req, &slots[i]); err != nil {
			return nil, err
		}
		count[in.dtype] += slots[i].n
		used[in.dtype] = true
	}
	var (
		f32 []float32
		f64 []float64
		i32 []int32
		i64 []int64
		str []string
		bl  []bool
	)
	if used[Float32] {
		f32 = make([]float32, count[Float32])
	}
	if used[Float64] {
		f64 = make([]float64, count[Float64])
	}
	if used[Int32] {
		i32 = make([]int32, count[Int32])
	}
	if used[Int64] {
		i64 = make([]int64, count[Int64])
	}
	if used[String] {
		str = make([]string, count[String])
	}
	if used[Bool] {
		bl = make([]bool, count[Bool])
	}
	out := make([]Tensor, n)
	shapes := make([]int64, 2*n)
	for i, in := range p.inputs {
		s, t := &slots[i], &out[i]
		t.Name, t.DType = in.name, in.dtype
		shapes[2*i] = 1
		if in.rank == 2 || in.rank == 0 && s.list {
			shapes[2*i+1] = int64(s.n)
			t.Shape = shapes[2*i : 2*i+2 : 2*i+2]
		} else {
			t.Shape = shapes[2*i : 2*i+1 : 2*i+1]
		}
		m := s.n
		switch in.dtype {
		case Float32:
			t.Float32, f32 = f32[:m:m], f32[m:]
		case Float64:
			t.Float64, f64 = f64[:m:m], f64[m:]
		case Int32:
			t.Int32, i32 = i32[:m:m], i32[m:]
		case Int64:
			t.Int64, i64 = i64[:m:m], i64[m:]
		case String:
			t.String, str = str[:m:m], str[m:]
		case Bool:
			t.Bool, bl = bl[:m:m], bl[m:]
		}
		if err := in.fill(req, s, t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// slot is what the first pass of Build learns about one input.
type slot struct {
	v    val
	list bool // v is a list
	have int  // elements v has
	n    int  // elements the tensor gets
	src  *source
}

func (in *input) resolve(req *Request, s *slot) error {
	if in.tr == tCross {
		for i := range in.srcs {
			if _, ok := lookup(req, &in.srcs[i]); !ok && !in.hasDef {
				return in.missing(&in.srcs[i])
			}
		}
		s.n = 1
		return nil
	}
	src := &in.srcs[0]
	v, ok := lookup(req, src)
	if !ok {
		if !in.hasDef {
			return in.missing(src)
		}
		v = in.def
	}
	n, list, err := v.shape()
	if err != nil {
		return in.fieldErr(src, -1, err)
	}
	if list && in.rank == 1 {
		return &FieldError{Field: src.field, Message: fmt.Sprintf(
			"input %q takes a single value, got a list (transform \"list\" or a \"length\" makes a list input)", in.name)}
	}
	s.v, s.list, s.have, s.n, s.src = v, list, n, n, src
	if in.rank == 2 && in.length >= 0 {
		s.n = in.length
	}
	return nil
}

func (in *input) fill(req *Request, s *slot, t *Tensor) error {
	if in.tr == tCross {
		h := crossSeed
		for i := range in.srcs {
			src := &in.srcs[i]
			v, ok := lookup(req, src)
			if !ok {
				v = in.def
			}
			var e elem
			if v.kind == vStr {
				e = elem{k: kString, s: v.s, text: true}
			} else {
				e = elemOf(v.a, false)
			}
			k, err := e.crossKey()
			if err != nil {
				return in.fieldErr(src, -1, err)
			}
			h = fingerprintCat64(h, k)
		}
		in.putInt(t, 0, int64(h%in.buckets))
		return nil
	}
	// Unpack the list once rather than per element.
	var arr []any
	ss, text := s.v.ss, s.v.kind == vStrs
	if s.list && s.v.kind == vAny {
		switch x := s.v.a.(type) {
		case []any:
			arr = x
		case []string:
			ss = x
		}
	}
	for j := range s.n {
		var e elem
		switch {
		case j >= s.have:
			e = in.pad
		case arr != nil:
			e = elemOf(arr[j], false)
		case ss != nil:
			e = elem{k: kString, s: ss[j], text: text}
		default:
			e = s.v.elem(j, s.list)
		}
		if err := in.put(t, j, &e); err != nil {
			idx := -1
			if s.list {
				idx = j
			}
			return in.fieldErr(s.src, idx, err)
		}
	}
	return nil
}

func (in *input) missing(src *source) error {
	return &FieldError{Field: src.field, Message: fmt.Sprintf("missing value for input %q", in.name)}
}

func (in *input) fieldErr(src *source, idx int, err error) error {
	msg := err.Error()
	if idx >= 0 {
		msg = fmt.Sprintf("element %d: %s", idx, msg)
	}
	return &FieldError{Field: src.field, Message: fmt.Sprintf("input %q: %s", in.name, msg)}
}

// put transforms one raw element and stores it as element j of t.
func (in *input) put(t *Tensor, j int, e *elem) error {
	switch in.tr {
	case tPass, tList:
		switch in.dtype {
		case Float32, Float64:
			f, err := e.float()
			if err != nil {
				return err
			}
			return in.putFloat(t, j, f)
		case Int32, Int64:
			n, err := e.int(in.dtype)
			if err != nil {
				return err
			}
			in.putInt(t, j, n)
		case String:
			s, err := e.key()
			if err != nil {
				return err
			}
			t.String[j] = s
		case Bool:
			b, err := e.boolean()
			if err != nil {
				return err
			}
			t.Bool[j] = b
		}
	case tHash:
		s, err := e.key()
		if err != nil {
			return err
		}
		in.putInt(t, j, int64(fingerprint64(s)%in.buckets))
	case tVocab:
		var i int64
		var ok bool
		if in.vocabS != nil {
			s, err := e.key()
			if err != nil {
				return err
			}
			i, ok = in.vocabS[s]
		} else {
			n, err := e.int(Int64)
			if err != nil {
				return err
			}
			i, ok = in.vocabI[n]
		}
		if !ok {
			i = in.oov
		}
		in.putInt(t, j, i)
	case tZscore:
		x, err := e.float()
		if err != nil {
			return err
		}
		return in.putFloat(t, j, (x-in.mean)/in.std)
	case tBucketize:
		x, err := e.float()
		if err != nil {
			return err
		}
		in.putInt(t, j, int64(bucketize(in.bounds, x)))
	}
	return nil
}

// putInt stores an integer that fits the dtype: Parse and elem.int see to that.
func (in *input) putInt(t *Tensor, j int, n int64) {
	if in.dtype == Int32 {
		t.Int32[j] = int32(n)
	} else {
		t.Int64[j] = n
	}
}

func (in *input) putFloat(t *Tensor, j int, f float64) error {
	if in.dtype == Float64 {
		t.Float64[j] = f
		return nil
	}
	if math.Abs(f) > math.MaxFloat32 {
		return convErrorf("%v is out of float32 range", f)
	}
	t.Float32[j] = float32(f)
	return nil
}

// check runs one raw element through the transform, for Parse to vet pads and
// defaults.
func (in *input) check(e elem) error {
	t := Tensor{Float32: make([]float32, 1), Float64: make([]float64, 1), Int32: make([]int32, 1),
		Int64: make([]int64, 1), String: make([]string, 1), Bool: make([]bool, 1)}
	return in.put(&t, 0, &e)
}

// bucketize returns the index of the first boundary greater than x, or
// len(bounds) if there is none: TensorFlow's Bucketize, where a value equal
// to a boundary goes to the bucket above it.
func bucketize(bounds []float64, x float64) int {
	lo, hi := 0, len(bounds)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bounds[m] > x {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// lookup finds a source's raw value in a request. An empty user_id, nil
// candidates, an absent context or features key and a null feature are
// missing.
func lookup(req *Request, src *source) (val, bool) {
	switch src.kind {
	case srcUserID:
		return val{kind: vStr, s: req.UserID}, req.UserID != ""
	case srcCandidates:
		return val{kind: vStrs, ss: req.Candidates}, req.Candidates != nil
	case srcContext:
		s, ok := req.Context[src.key]
		return val{kind: vStr, s: s}, ok
	case srcFeatures:
		a, ok := req.Features[src.key]
		return val{kind: vAny, a: a}, ok && a != nil
	}
	return val{}, false
}

type valKind uint8

const (
	vAny  valKind = iota // JSON-typed: a feature or a default
	vStr                 // user_id or a context value
	vStrs                // candidates
)

// val is a raw value before the transform. Strings from user_id, context and
// candidates are kept apart from JSON-typed values, so that they are not
// boxed into an interface (which allocates) and so that they, and only they,
// may be parsed as numbers.
type val struct {
	kind valKind
	a    any
	s    string
	ss   []string
}

// shape reports how many elements v has and whether it is a list.
func (v *val) shape() (n int, list bool, err error) {
	switch v.kind {
	case vStr:
		return 1, false, nil
	case vStrs:
		return len(v.ss), true, nil
	}
	switch x := v.a.(type) {
	case []any:
		return len(x), true, nil
	case []string:
		return len(x), true, nil
	case map[string]any:
		return 0, false, convErrorf("want a value or a list, got an object")
	}
	return 1, false, nil
}

// elem returns element j of v (v itself when it is not a list).
func (v *val) elem(j int, list bool) elem {
	switch v.kind {
	case vStr:
		return elem{k: kString, s: v.s, text: true}
	case vStrs:
		return elem{k: kString, s: v.ss[j], text: true}
	}
	if list {
		switch x := v.a.(type) {
		case []any:
			return elemOf(x[j], false)
		case []string:
			return elem{k: kString, s: x[j]}
		}
	}
	return elemOf(v.a, false)
}

type elemKind uint8

const (
	kNull elemKind = iota
	kString
	kNumber
	kBool
	kList
	kObject
	kOther
	kNonFinite // NaN or ±Inf: a gRPC Struct can carry them, JSON cannot
)

var kindNames = [...]string{kNull: "null", kString: "a string", kNumber: "a number", kBool: "a bool",
	kList: "a list", kObject: "an object", kOther: "an unsupported value", kNonFinite: "a number that is not finite (NaN or ±Inf)"}

// elem is one raw scalar. text marks a string from a source that can only
// carry strings (user_id, context, candidates): it may be parsed as a number or
// a bool. A string feature is JSON-typed and is not.
type elem struct {
	k    elemKind
	text bool
	s    string
	f    float64
	b    bool
}

// elemOf classifies a JSON-decoded value. Besides what encoding/json produces
// it accepts Go integers and json.Number, for callers that decode otherwise.
func elemOf(a any, text bool) elem {
	switch x := a.(type) {
	case string:
		return elem{k: kString, s: x, text: text}
	case float64:
		if !finite(x) {
			return elem{k: kNonFinite}
		}
		return elem{k: kNumber, f: x}
	case bool:
		return elem{k: kBool, b: x}
	case nil:
		return elem{k: kNull}
	case []any, []string:
		return elem{k: kList}
	case map[string]any:
		return elem{k: kObject}
	case int:
		return elem{k: kNumber, f: float64(x)}
	case int64:
		return elem{k: kNumber, f: float64(x)}
	case int32:
		return elem{k: kNumber, f: float64(x)}
	case float32:
		if !finite(float64(x)) {
			return elem{k: kNonFinite}
		}
		return elem{k: kNumber, f: float64(x)}
	case json.Number:
		if f, err := strconv.ParseFloat(string(x), 64); err == nil && finite(f) {
			return elem{k: kNumber, f: f}
		}
	}
	return elem{k: kOther}
}

func finite(f float64) bool { return !math.IsInf(f, 0) && !math.IsNaN(f) }

// convError is a value that does not convert; Build adds the field and input.
type convError struct{ msg string }

func (e *convError) Error() string { return e.msg }

func convErrorf(format string, args ...any) error {
	return &convError{msg: fmt.Sprintf(format, args...)}
}

func (e *elem) want(what string) error {
	if e.k == kString {
		hint := ""
		if !e.text {
			hint = " (features are JSON-typed: send numbers and bools unquoted)"
		}
		return convErrorf("want %s, got the string %q%s", what, clip(e.s), hint)
	}
	return convErrorf("want %s, got %s", what, kindNames[e.k])
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// float, key and the other conversions check the common case first, in a
// body small enough to inline; Build calls them once per element.
func (e *elem) float() (float64, error) {
	if e.k == kNumber {
		return e.f, nil
	}
	return e.floatSlow()
}

func (e *elem) floatSlow() (float64, error) {
	if e.k == kString && e.text {
		if f, err := strconv.ParseFloat(e.s, 64); err == nil && finite(f) {
			return f, nil
		}
	}
	return 0, e.want("a number")
}

const two63 = 1 << 63

func (e *elem) int(dt DType) (int64, error) {
	var f float64
	switch {
	case e.k == kNumber:
		f = e.f
	case e.k == kString && e.text:
		if n, err := strconv.ParseInt(e.s, 10, 64); err == nil {
			return intRange(n, dt)
		}
		x, err := strconv.ParseFloat(e.s, 64)
		if err != nil || !finite(x) {
			return 0, e.want("an integer")
		}
		f = x
	default:
		return 0, e.want("an integer")
	}
	if f != math.Trunc(f) {
		return 0, convErrorf("want an integer, got %v", f)
	}
	if f < -two63 || f >= two63 {
		return 0, convErrorf("%v is out of %s range", f, dt)
	}
	return intRange(int64(f), dt)
}

func intRange(n int64, dt DType) (int64, error) {
	if dt == Int32 && (n < math.MinInt32 || n > math.MaxInt32) {
		return 0, convErrorf("%d is out of int32 range", n)
	}
	return n, nil
}

// key is the string form of a scalar for string dtypes, hash_bucket and string
// vocabularies: a string as is, an integer in decimal (as tf.strings.as_string
// writes an int64), a bool as "true" or "false".
func (e *elem) key() (string, error) {
	if e.k == kString {
		return e.s, nil
	}
	return e.keySlow()
}

func (e *elem) keySlow() (string, error) {
	switch e.k {
	case kBool:
		if e.b {
			return "true", nil
		}
		return "false", nil
	case kNumber:
		if e.f == math.Trunc(e.f) && e.f >= -two63 && e.f < two63 {
			return strconv.FormatInt(int64(e.f), 10), nil
		}
		return "", convErrorf("want a string or an integer, got %v", e.f)
	}
	return "", e.want("a string")
}

// crossKey is what tf.sparse.cross_hashed feeds FingerprintCat64 for one
// value: Fingerprint64 of a string, the value itself of an integer (a bool
// is cast to 0 or 1 first, as TensorFlow casts non-string inputs to int64).
func (e *elem) crossKey() (uint64, error) {
	switch e.k {
	case kString:
		return fingerprint64(e.s), nil
	case kBool:
		if e.b {
			return 1, nil
		}
		return 0, nil
	case kNumber:
		if e.f == math.Trunc(e.f) && e.f >= -two63 && e.f < two63 {
			return uint64(int64(e.f)), nil
		}
		return 0, convErrorf("want a string or an integer, got %v", e.f)
	}
	return 0, e.want("a string or an integer")
}

func (e *elem) boolean() (bool, error) {
	if e.k == kBool {
		return e.b, nil
	}
	if e.k == kString && e.text {
		if b, err := strconv.ParseBool(e.s); err == nil {
			return b, nil
		}
	}
	return false, e.want("a bool")
}
