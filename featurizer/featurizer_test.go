package featurizer

import (
	"errors"
	"math"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func mustParse(t testing.TB, spec string) *Plan {
	t.Helper()
	p, err := Parse([]byte(spec))
	if err != nil {
		t.Fatalf("Parse(%s): %v", spec, err)
	}
	return p
}

// one wraps a single input named x in a spec.
func one(input string) string { return `{"inputs": {"x": ` + input + `}}` }

func TestHashBucketMatchesTensorFlow(t *testing.T) {
	// tf.strings.to_hash_bucket_fast(["Hello", "TensorFlow", "2.x"], 3) == [0, 2, 2]
	for _, c := range []struct {
		in   string
		want int64
	}{{"Hello", 0}, {"TensorFlow", 2}, {"2.x", 2}} {
		t.Run(c.in, func(t *testing.T) {
			if got := HashBucket(c.in, 3); got != c.want {
				t.Errorf("HashBucket(%q, 3) = %d, want %d", c.in, got, c.want)
			}
		})
	}
}

func TestCrossMatchesKerasHashedCrossing(t *testing.T) {
	// Keras's HashedCrossing(num_bins=10) test: ("A", 101) → 1, ("B", 101) → 4,
	// ("A", 102) → 3, ("B", 102) → 6; num_bins=5: ("B", 102) → 1.
	cases := []struct {
		a       string
		b       float64
		buckets int
		want    int64
	}{
		{"A", 101, 10, 1}, {"B", 101, 10, 4}, {"A", 102, 10, 3}, {"B", 102, 10, 6},
		{"A", 101, 5, 1}, {"B", 101, 5, 4}, {"B", 102, 5, 1}, {"A", 102, 5, 3},
	}
	for _, c := range cases {
		spec := one(`{"from": ["context.a", "features.b"], "transform": "cross", "buckets": ` +
			itoa(c.buckets) + `, "dtype": "int64"}`)
		p := mustParse(t, spec)
		out, err := p.Build(&Request{Context: map[string]string{"a": c.a}, Features: map[string]any{"b": c.b}})
		if err != nil {
			t.Fatal(err)
		}
		if got := out[0].Int64[0]; got != c.want {
			t.Errorf("cross(%q, %v) into %d = %d, want %d", c.a, c.b, c.buckets, got, c.want)
		}
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestBuildTransforms(t *testing.T) {
	req := &Request{
		UserID:     "Hello",
		Context:    map[string]string{"surface": "music", "n": "42", "big": "9007199254740993", "f": "2.5", "b": "true", "other": "video"},
		Features:   map[string]any{"age": 47.0, "ages": []any{23.0, 47.0}, "n": 3.0, "t": true, "words": []any{"Hello", "TensorFlow", "2.x"}, "country": "GB", "id": 20.0, "s": "a"},
		Candidates: []string{"i1", "i2"},
	}
	cases := []struct {
		name  string
		input string
		shape []int64
		want  any
	}{
		{"float32 from feature", `{"from": "features.age", "dtype": "float32"}`, []int64{1}, []float32{47}},
		{"float64 parsed from context", `{"from": "context.f", "dtype": "float64"}`, []int64{1}, []float64{2.5}},
		{"int64 from feature", `{"from": "features.n", "dtype": "int64"}`, []int64{1}, []int64{3}},
		{"int32 parsed from context", `{"from": "context.n", "dtype": "int32"}`, []int64{1}, []int32{42}},
		{"int64 parsed exactly", `{"from": "context.big", "dtype": "int64"}`, []int64{1}, []int64{9007199254740993}},
		{"string of an integer", `{"from": "features.n", "dtype": "string"}`, []int64{1}, []string{"3"}},
		{"string of a bool", `{"from": "features.t", "dtype": "string"}`, []int64{1}, []string{"true"}},
		{"bool", `{"from": "features.t", "dtype": "bool"}`, []int64{1}, []bool{true}},
		{"bool parsed from context", `{"from": "context.b", "dtype": "bool"}`, []int64{1}, []bool{true}},
		{"none is passthrough", `{"from": "user_id", "transform": "none", "dtype": "string"}`, []int64{1}, []string{"Hello"}},

		{"hash_bucket", `{"from": "user_id", "transform": "hash_bucket", "buckets": 3, "dtype": "int64"}`, []int64{1}, []int64{0}},
		{"hash_bucket int32", `{"from": "user_id", "transform": "hash_bucket", "buckets": 3, "dtype": "int32"}`, []int64{1}, []int32{0}},
		{"hash_bucket element-wise", `{"from": "features.words", "transform": "hash_bucket", "buckets": 3, "dtype": "int64"}`, []int64{1, 3}, []int64{0, 2, 2}},
		{"hash_bucket of an integer hashes its decimal form", `{"from": "features.n", "transform": "hash_bucket", "buckets": 1000, "dtype": "int64"}`, []int64{1}, []int64{HashBucket("3", 1000)}},
		{"hash_bucket with length pads before hashing", `{"from": "features.words", "transform": "hash_bucket", "buckets": 3, "length": 5, "pad": "Hello", "dtype": "int64"}`, []int64{1, 5}, []int64{0, 2, 2, 0, 0}},

		{"vocab hit", `{"from": "context.surface", "transform": "vocab", "vocab": ["home", "music"], "dtype": "int64"}`, []int64{1}, []int64{1}},
		{"vocab miss takes oov 0", `{"from": "context.other", "transform": "vocab", "vocab": ["home", "music"], "dtype": "int64"}`, []int64{1}, []int64{0}},
		{"vocab miss takes oov", `{"from": "context.other", "transform": "vocab", "vocab": ["home", "music"], "oov": 2, "dtype": "int32"}`, []int64{1}, []int32{2}},
		{"vocab of integers", `{"from": "features.id", "transform": "vocab", "vocab": [10, 20, 30], "oov": -1, "dtype": "int64"}`, []int64{1}, []int64{1}},
		{"vocab of integers parses context", `{"from": "context.n", "transform": "vocab", "vocab": [10, 42], "oov": -1, "dtype": "int64"}`, []int64{1}, []int64{1}},
		{"vocab element-wise", `{"from": "features.words", "transform": "vocab", "vocab": ["2.x", "Hello"], "oov": 9, "dtype": "int64"}`, []int64{1, 3}, []int64{1, 9, 0}},

		{"zscore", `{"from": "features.age", "transform": "zscore", "mean": 35, "std": 12, "dtype": "float32"}`, []int64{1}, []float32{1}},
		{"zscore float64 element-wise", `{"from": "features.ages", "transform": "zscore", "mean": 35, "std": 12, "dtype": "float64"}`, []int64{1, 2}, []float64{-1, 1}},

		{"bucketize", `{"from": "features.age", "transform": "bucketize", "boundaries": [18, 25, 35, 50], "dtype": "int32"}`, []int64{1}, []int32{3}},
		{"bucketize element-wise", `{"from": "features.ages", "transform": "bucketize", "boundaries": [18, 25, 35, 50], "dtype": "int64"}`, []int64{1, 2}, []int64{1, 3}},

		{"list keeps the request's length", `{"from": "features.words", "transform": "list", "dtype": "string"}`, []int64{1, 3}, []string{"Hello", "TensorFlow", "2.x"}},
		{"list pads", `{"from": "features.words", "transform": "list", "length": 5, "pad": "-", "dtype": "string"}`, []int64{1, 5}, []string{"Hello", "TensorFlow", "2.x", "-", "-"}},
		{"list pads with the zero value", `{"from": "features.words", "transform": "list", "length": 4, "dtype": "string"}`, []int64{1, 4}, []string{"Hello", "TensorFlow", "2.x", ""}},
		{"list truncates", `{"from": "features.words", "transform": "list", "length": 2, "dtype": "string"}`, []int64{1, 2}, []string{"Hello", "TensorFlow"}},
		{"list of length 0", `{"from": "features.words", "transform": "list", "length": 0, "dtype": "string"}`, []int64{1, 0}, []string{}},
		{"list of numbers", `{"from": "features.ages", "transform": "list", "length": 3, "pad": -1, "dtype": "int32"}`, []int64{1, 3}, []int32{23, 47, -1}},
		{"a single value is a list of one", `{"from": "features.s", "transform": "list", "dtype": "string"}`, []int64{1, 1}, []string{"a"}},
		{"candidates", `{"from": "candidates", "transform": "list", "dtype": "string"}`, []int64{1, 2}, []string{"i1", "i2"}},
		{"candidates are a list without transform list", `{"from": "candidates", "transform": "vocab", "vocab": ["i2"], "oov": -1, "dtype": "int64"}`, []int64{1, 2}, []int64{-1, 0}},
		{"length makes a scalar source a list", `{"from": "context.surface", "length": 2, "dtype": "string"}`, []int64{1, 2}, []string{"music", ""}},

		{"cross", `{"from": ["context.surface", "features.country"], "transform": "cross", "buckets": 1000, "dtype": "int64"}`, []int64{1},
			[]int64{int64(fingerprintCat64(fingerprintCat64(crossSeed, fingerprint64("music")), fingerprint64("GB")) % 1000)}},
		{"cross of three", `{"from": ["context.surface", "features.country", "features.n"], "transform": "cross", "buckets": 7, "dtype": "int32"}`, []int64{1},
			[]int32{int32(fingerprintCat64(fingerprintCat64(fingerprintCat64(crossSeed, fingerprint64("music")), fingerprint64("GB")), 3) % 7)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := mustParse(t, one(c.input))
			out, err := p.Build(req)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if len(out) != 1 || out[0].Name != "x" {
				t.Fatalf("Build returned %+v, want one tensor named x", out)
			}
			if !reflect.DeepEqual(out[0].Shape, c.shape) {
				t.Errorf("shape %v, want %v", out[0].Shape, c.shape)
			}
			if got := out[0].Values(); !reflect.DeepEqual(got, c.want) {
				t.Errorf("values %#v, want %#v", got, c.want)
			}
			if out[0].Len() != int(c.shape[len(c.shape)-1]) && len(c.shape) == 2 {
				t.Errorf("Len %d does not match shape %v", out[0].Len(), c.shape)
			}
			info := p.Inputs()[0]
			if info.Rank != 0 && info.Rank != len(c.shape) || info.DType != out[0].DType {
				t.Errorf("Inputs() = %+v, but built shape %v dtype %s", info, c.shape, out[0].DType)
			}
		})
	}
}

func TestCandidatesAsIntegers(t *testing.T) {
	// Candidates are strings on the wire; a model with integer item ids gets them parsed.
	p := mustParse(t, one(`{"from": "candidates", "transform": "list", "dtype": "int64"}`))
	out, err := p.Build(&Request{Candidates: []string{"7", "-8"}})
	if err != nil || !reflect.DeepEqual(out[0].Int64, []int64{7, -8}) {
		t.Errorf("Build = %v, %v; want [7 -8]", out, err)
	}
}

func TestInputRank(t *testing.T) {
	cases := []struct {
		input        string
		rank, length int
	}{
		{`{"from": "features.a", "dtype": "string"}`, 1, 1},
		{`{"from": "features.a", "transform": "list", "dtype": "string"}`, 2, -1},
		{`{"from": "features.a", "length": 4, "dtype": "string"}`, 2, 4},
		{`{"from": "features.a", "transform": "hash_bucket", "buckets": 9, "dtype": "int64"}`, 0, -1},
		{`{"from": "features.a", "transform": "hash_bucket", "buckets": 9, "dtype": "int64", "default": []}`, 2, -1},
		{`{"from": "context.a", "transform": "hash_bucket", "buckets": 9, "dtype": "int64"}`, 1, 1},
		{`{"from": "user_id", "transform": "list", "dtype": "string"}`, 2, -1},
		{`{"from": "candidates", "transform": "hash_bucket", "buckets": 9, "dtype": "int64"}`, 2, -1},
		{`{"from": ["features.a", "features.b"], "transform": "cross", "buckets": 9, "dtype": "int64"}`, 1, 1},
	}
	for _, c := range cases {
		t.Run(c.input, func(t *testing.T) {
			info := mustParse(t, one(c.input)).Inputs()[0]
			if info.Rank != c.rank || info.Length != c.length {
				t.Errorf("Rank, Length = %d, %d; want %d, %d", info.Rank, info.Length, c.rank, c.length)
			}
		})
	}
}

func TestBucketizeBoundaries(t *testing.T) {
	// TensorFlow's Bucketize: a value equal to a boundary goes to the next bucket.
	p := mustParse(t, one(`{"from": "features.v", "transform": "bucketize", "boundaries": [18, 25, 35, 50], "dtype": "int64"}`))
	for _, c := range []struct {
		v    float64
		want int64
	}{{-1e9, 0}, {17.9, 0}, {18, 1}, {24.99, 1}, {25, 2}, {34, 2}, {35, 3}, {49, 3}, {50, 4}, {1e9, 4}} {
		out, err := p.Build(&Request{Features: map[string]any{"v": c.v}})
		if err != nil {
			t.Fatal(err)
		}
		if got := out[0].Int64[0]; got != c.want {
			t.Errorf("bucketize(%v) = %d, want %d", c.v, got, c.want)
		}
	}
}

func TestCrossValueKinds(t *testing.T) {
	p := mustParse(t, one(`{"from": ["features.a", "features.b"], "transform": "cross", "buckets": 1000000, "dtype": "int64", "default": "unknown"}`))
	cross := func(a, b any) int64 {
		t.Helper()
		f := map[string]any{}
		if a != nil {
			f["a"] = a
		}
		if b != nil {
			f["b"] = b
		}
		out, err := p.Build(&Request{Features: f})
		if err != nil {
			t.Fatal(err)
		}
		return out[0].Int64[0]
	}
	if cross("x", true) != cross("x", 1.0) {
		t.Error("true should cross like the integer 1, as TensorFlow casts bools to int64")
	}
	if cross("x", "7") == cross("x", 7.0) {
		t.Error(`the string "7" and the number 7 should cross differently`)
	}
	if cross("x", "y") == cross("y", "x") {
		t.Error("cross should depend on the order of its sources")
	}
	if cross("x", nil) != cross("x", "unknown") {
		t.Error("a missing source should take the default")
	}
}

func TestDefaults(t *testing.T) {
	cases := []struct {
		name  string
		input string
		req   *Request
		shape []int64
		want  any
	}{
		{"missing feature", `{"from": "features.age", "transform": "zscore", "mean": 35, "std": 12, "default": 35, "dtype": "float32"}`, &Request{}, []int64{1}, []float32{0}},
		{"null feature", `{"from": "features.age", "dtype": "float64", "default": 1.5}`, &Request{Features: map[string]any{"age": nil}}, []int64{1}, []float64{1.5}},
		{"missing context", `{"from": "context.surface", "transform": "vocab", "vocab": ["home"], "oov": 7, "default": "home", "dtype": "int64"}`, &Request{}, []int64{1}, []int64{0}},
		{"present value wins", `{"from": "features.is_new", "dtype": "bool", "default": false}`, &Request{Features: map[string]any{"is_new": true}}, []int64{1}, []bool{true}},
		{"empty list default", `{"from": "features.recent", "transform": "list", "dtype": "string", "default": []}`, &Request{}, []int64{1, 0}, []string{}},
		{"list default is a list input", `{"from": "features.recent", "transform": "hash_bucket", "buckets": 3, "dtype": "int64", "default": ["Hello", "2.x"]}`, &Request{}, []int64{1, 2}, []int64{0, 2}},
		{"default is padded", `{"from": "features.recent", "transform": "list", "length": 3, "pad": "p", "dtype": "string", "default": ["a"]}`, &Request{}, []int64{1, 3}, []string{"a", "p", "p"}},
		{"nil candidates", `{"from": "candidates", "transform": "list", "dtype": "string", "default": []}`, &Request{}, []int64{1, 0}, []string{}},
		{"empty candidates are present", `{"from": "candidates", "transform": "list", "dtype": "string", "default": ["d"]}`, &Request{Candidates: []string{}}, []int64{1, 0}, []string{}},
		{"empty user_id", `{"from": "user_id", "dtype": "string", "default": "anon"}`, &Request{}, []int64{1}, []string{"anon"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := mustParse(t, one(c.input)).Build(c.req)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if !reflect.DeepEqual(out[0].Shape, c.shape) {
				t.Errorf("shape %v, want %v", out[0].Shape, c.shape)
			}
			if got := out[0].Values(); !reflect.DeepEqual(got, c.want) {
				t.Errorf("values %#v, want %#v", got, c.want)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	cases := []struct {
		name  string
		input string
		req   *Request
		field string
		msg   string
	}{
		{"missing feature", `{"from": "features.age", "dtype": "float32"}`, &Request{}, "features.age", `missing value for input "x"`},
		{"missing context", `{"from": "context.surface", "dtype": "string"}`, &Request{Context: map[string]string{}}, "context.surface", `missing value for input "x"`},
		{"missing user_id", `{"from": "user_id", "dtype": "string"}`, nil, "user_id", `missing value for input "x"`},
		{"missing candidates", `{"from": "candidates", "dtype": "string"}`, &Request{}, "candidates", `missing value for input "x"`},
		{"quoted number in features", `{"from": "features.age", "dtype": "float32"}`, &Request{Features: map[string]any{"age": "31"}}, "features.age", `input "x": want a number, got the string "31"`},
		{"not an integer", `{"from": "features.n", "dtype": "int64"}`, &Request{Features: map[string]any{"n": 2.5}}, "features.n", "want an integer, got 2.5"},
		{"out of int32 range", `{"from": "features.n", "dtype": "int32"}`, &Request{Features: map[string]any{"n": 3e10}}, "features.n", "out of int32 range"},
		{"out of float32 range", `{"from": "features.n", "dtype": "float32"}`, &Request{Features: map[string]any{"n": 1e300}}, "features.n", "out of float32 range"},
		{"context not a number", `{"from": "context.n", "dtype": "float64"}`, &Request{Context: map[string]string{"n": "abc"}}, "context.n", `want a number, got the string "abc"`},
		{"context NaN", `{"from": "context.n", "dtype": "float64"}`, &Request{Context: map[string]string{"n": "NaN"}}, "context.n", "want a number"},
		{"NaN feature", `{"from": "features.age", "dtype": "float64"}`, &Request{Features: map[string]any{"age": math.NaN()}}, "features.age", "want a number, got a number that is not finite"},
		{"+Inf feature", `{"from": "features.age", "dtype": "float32"}`, &Request{Features: map[string]any{"age": math.Inf(1)}}, "features.age", "not finite"},
		{"-Inf for an integer", `{"from": "features.n", "dtype": "int64"}`, &Request{Features: map[string]any{"n": math.Inf(-1)}}, "features.n", "not finite"},
		{"Inf in a list", `{"from": "features.a", "transform": "list", "dtype": "float32"}`, &Request{Features: map[string]any{"a": []any{1.0, math.Inf(1)}}}, "features.a", "element 1: want a number, got a number that is not finite"},
		{"NaN to bucketize", `{"from": "features.a", "transform": "bucketize", "boundaries": [0, 1], "dtype": "int64"}`, &Request{Features: map[string]any{"a": math.NaN()}}, "features.a", "not finite"},
		{"Inf to hash", `{"from": "features.a", "transform": "hash_bucket", "buckets": 5, "dtype": "int64"}`, &Request{Features: map[string]any{"a": float32(math.Inf(1))}}, "features.a", "not finite"},
		{"number for bool", `{"from": "features.b", "dtype": "bool"}`, &Request{Features: map[string]any{"b": 1.0}}, "features.b", "want a bool, got a number"},
		{"list for a scalar input", `{"from": "features.a", "dtype": "float32"}`, &Request{Features: map[string]any{"a": []any{1.0}}}, "features.a", `input "x" takes a single value, got a list`},
		{"object", `{"from": "features.a", "dtype": "string"}`, &Request{Features: map[string]any{"a": map[string]any{}}}, "features.a", "got an object"},
		{"object in a list", `{"from": "features.a", "transform": "list", "dtype": "string"}`, &Request{Features: map[string]any{"a": []any{"ok", map[string]any{}}}}, "features.a", `input "x": element 1: want a string, got an object`},
		{"null in a list", `{"from": "features.a", "transform": "hash_bucket", "buckets": 5, "dtype": "int64", "length": 3}`, &Request{Features: map[string]any{"a": []any{nil}}}, "features.a", "element 0: want a string, got null"},
		{"nested list", `{"from": "features.a", "transform": "list", "dtype": "float32"}`, &Request{Features: map[string]any{"a": []any{[]any{1.0}}}}, "features.a", "element 0: want a number, got a list"},
		{"fraction for hash", `{"from": "features.a", "transform": "hash_bucket", "buckets": 5, "dtype": "int64"}`, &Request{Features: map[string]any{"a": 0.5}}, "features.a", "want a string or an integer, got 0.5"},
		{"fraction for an integer vocab", `{"from": "features.a", "transform": "vocab", "vocab": [1, 2], "dtype": "int64"}`, &Request{Features: map[string]any{"a": 1.5}}, "features.a", "want an integer"},
		{"cross missing source", `{"from": ["context.s", "features.c"], "transform": "cross", "buckets": 5, "dtype": "int64"}`, &Request{Context: map[string]string{"s": "a"}}, "features.c", `missing value for input "x"`},
		{"cross fraction", `{"from": ["context.s", "features.c"], "transform": "cross", "buckets": 5, "dtype": "int64"}`, &Request{Context: map[string]string{"s": "a"}, Features: map[string]any{"c": 0.5}}, "features.c", "want a string or an integer, got 0.5"},
		{"cross list", `{"from": ["context.s", "features.c"], "transform": "cross", "buckets": 5, "dtype": "int64"}`, &Request{Context: map[string]string{"s": "a"}, Features: map[string]any{"c": []any{"a"}}}, "features.c", "got a list"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := mustParse(t, one(c.input)).Build(c.req)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Build = %v, %v; want a *FieldError", out, err)
			}
			if fe.Field != c.field || !strings.Contains(fe.Message, c.msg) {
				t.Errorf("error %q: %q; want field %q, message containing %q", fe.Field, fe.Message, c.field, c.msg)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name  string
		spec  string
		field string
	}{
		{"not JSON", `{"inputs":`, ""},
		{"not an object", `[1]`, ""},
		{"unknown top-level key", `{"input": {}}`, "input"},
		{"inputs not an object", `{"inputs": []}`, "inputs"},
		{"input not an object", `{"inputs": {"x": 1}}`, "inputs.x"},
		{"empty input name", `{"inputs": {"": {"from": "user_id", "dtype": "string"}}}`, "inputs"},
		{"duplicate input", `{"inputs": {"x": {"from": "user_id", "dtype": "string"}, "x": {"from": "user_id", "dtype": "string"}}}`, "inputs.x"},
		{"duplicate key", one(`{"from": "user_id", "dtype": "string", "dtype": "int64"}`), "inputs.x.dtype"},
		{"unknown key", one(`{"from": "user_id", "dtype": "string", "bucket": 3}`), "inputs.x.bucket"},
		{"missing dtype", one(`{"from": "user_id"}`), "inputs.x.dtype"},
		{"unknown dtype", one(`{"from": "user_id", "dtype": "int8"}`), "inputs.x.dtype"},
		{"dtype not a string", one(`{"from": "user_id", "dtype": 3}`), "inputs.x.dtype"},
		{"missing from", one(`{"dtype": "string"}`), "inputs.x.from"},
		{"unknown source", one(`{"from": "session", "dtype": "string"}`), "inputs.x.from"},
		{"empty feature key", one(`{"from": "features.", "dtype": "string"}`), "inputs.x.from"},
		{"bare context", one(`{"from": "context", "dtype": "string"}`), "inputs.x.from"},
		{"list of sources without cross", one(`{"from": ["user_id", "context.a"], "dtype": "string"}`), "inputs.x.from"},
		{"unknown transform", one(`{"from": "user_id", "transform": "hash", "dtype": "int64"}`), "inputs.x.transform"},
		{"parameter of another transform", one(`{"from": "features.a", "transform": "zscore", "mean": 0, "std": 1, "boundaries": [1], "dtype": "float32"}`), "inputs.x.boundaries"},
		{"parameter without transform", one(`{"from": "user_id", "buckets": 3, "dtype": "int64"}`), "inputs.x.buckets"},

		{"hash without buckets", one(`{"from": "user_id", "transform": "hash_bucket", "dtype": "int64"}`), "inputs.x.buckets"},
		{"hash zero buckets", one(`{"from": "user_id", "transform": "hash_bucket", "buckets": 0, "dtype": "int64"}`), "inputs.x.buckets"},
		{"hash fractional buckets", one(`{"from": "user_id", "transform": "hash_bucket", "buckets": 1.5, "dtype": "int64"}`), "inputs.x.buckets"},
		{"hash buckets over int32", one(`{"from": "user_id", "transform": "hash_bucket", "buckets": 2147483649, "dtype": "int32"}`), "inputs.x.buckets"},
		{"hash float dtype", one(`{"from": "user_id", "transform": "hash_bucket", "buckets": 3, "dtype": "float32"}`), "inputs.x.dtype"},

		{"vocab missing", one(`{"from": "context.s", "transform": "vocab", "dtype": "int64"}`), "inputs.x.vocab"},
		{"vocab empty", one(`{"from": "context.s", "transform": "vocab", "vocab": [], "dtype": "int64"}`), "inputs.x.vocab"},
		{"vocab repeats", one(`{"from": "context.s", "transform": "vocab", "vocab": ["a", "b", "a"], "dtype": "int64"}`), "inputs.x.vocab"},
		{"vocab mixed", one(`{"from": "context.s", "transform": "vocab", "vocab": ["a", 1], "dtype": "int64"}`), "inputs.x.vocab"},
		{"vocab fractions", one(`{"from": "context.s", "transform": "vocab", "vocab": [0.5], "dtype": "int64"}`), "inputs.x.vocab"},
		{"vocab not a list", one(`{"from": "context.s", "transform": "vocab", "vocab": "a", "dtype": "int64"}`), "inputs.x.vocab"},
		{"vocab bad oov", one(`{"from": "context.s", "transform": "vocab", "vocab": ["a"], "oov": "a", "dtype": "int64"}`), "inputs.x.oov"},
		{"vocab oov over int32", one(`{"from": "context.s", "transform": "vocab", "vocab": ["a"], "oov": 3000000000, "dtype": "int32"}`), "inputs.x.oov"},
		{"vocab string dtype", one(`{"from": "context.s", "transform": "vocab", "vocab": ["a"], "dtype": "string"}`), "inputs.x.dtype"},

		{"zscore std 0", one(`{"from": "features.a", "transform": "zscore", "mean": 0, "std": 0, "dtype": "float32"}`), "inputs.x.std"},
		{"zscore std negative", one(`{"from": "features.a", "transform": "zscore", "mean": 0, "std": -1, "dtype": "float32"}`), "inputs.x.std"},
		{"zscore without mean", one(`{"from": "features.a", "transform": "zscore", "std": 1, "dtype": "float32"}`), "inputs.x.mean"},
		{"zscore mean not a number", one(`{"from": "features.a", "transform": "zscore", "mean": "0", "std": 1, "dtype": "float32"}`), "inputs.x.mean"},
		{"zscore int dtype", one(`{"from": "features.a", "transform": "zscore", "mean": 0, "std": 1, "dtype": "int64"}`), "inputs.x.dtype"},

		{"bucketize missing", one(`{"from": "features.a", "transform": "bucketize", "dtype": "int32"}`), "inputs.x.boundaries"},
		{"bucketize empty", one(`{"from": "features.a", "transform": "bucketize", "boundaries": [], "dtype": "int32"}`), "inputs.x.boundaries"},
		{"bucketize equal", one(`{"from": "features.a", "transform": "bucketize", "boundaries": [1, 1], "dtype": "int32"}`), "inputs.x.boundaries"},
		{"bucketize decreasing", one(`{"from": "features.a", "transform": "bucketize", "boundaries": [2, 1], "dtype": "int32"}`), "inputs.x.boundaries"},
		{"bucketize strings", one(`{"from": "features.a", "transform": "bucketize", "boundaries": ["a"], "dtype": "int32"}`), "inputs.x.boundaries"},
		{"bucketize float dtype", one(`{"from": "features.a", "transform": "bucketize", "boundaries": [1], "dtype": "float32"}`), "inputs.x.dtype"},

		{"negative length", one(`{"from": "features.a", "transform": "list", "length": -1, "dtype": "string"}`), "inputs.x.length"},
		{"fractional length", one(`{"from": "features.a", "transform": "list", "length": 1.5, "dtype": "string"}`), "inputs.x.length"},
		{"huge length", one(`{"from": "features.a", "transform": "list", "length": 1e12, "dtype": "string"}`), "inputs.x.length"},
		{"pad without length", one(`{"from": "features.a", "transform": "list", "pad": "", "dtype": "string"}`), "inputs.x.pad"},
		{"pad of the wrong type", one(`{"from": "features.a", "transform": "zscore", "mean": 0, "std": 1, "length": 3, "pad": "", "dtype": "float32"}`), "inputs.x.pad"},
		{"pad a list", one(`{"from": "features.a", "transform": "list", "length": 3, "pad": [""], "dtype": "string"}`), "inputs.x.pad"},
		{"pad null", one(`{"from": "features.a", "transform": "list", "length": 3, "pad": null, "dtype": "string"}`), "inputs.x.pad"},

		{"default of the wrong type", one(`{"from": "features.a", "transform": "zscore", "mean": 0, "std": 1, "default": "0", "dtype": "float32"}`), "inputs.x.default"},
		{"default not an integer", one(`{"from": "features.a", "default": 2.5, "dtype": "int64"}`), "inputs.x.default"},
		{"default null", one(`{"from": "features.a", "default": null, "dtype": "int64"}`), "inputs.x.default"},
		{"default object", one(`{"from": "features.a", "default": {}, "dtype": "string"}`), "inputs.x.default"},
		{"default element of the wrong type", one(`{"from": "features.a", "transform": "list", "default": ["a", 1.5], "dtype": "string"}`), "inputs.x.default"},

		{"cross from one string", one(`{"from": "context.a", "transform": "cross", "buckets": 5, "dtype": "int64"}`), "inputs.x.from"},
		{"cross from one source", one(`{"from": ["context.a"], "transform": "cross", "buckets": 5, "dtype": "int64"}`), "inputs.x.from"},
		{"cross candidates", one(`{"from": ["context.a", "candidates"], "transform": "cross", "buckets": 5, "dtype": "int64"}`), "inputs.x.from"},
		{"cross bad source", one(`{"from": ["context.a", 3], "transform": "cross", "buckets": 5, "dtype": "int64"}`), "inputs.x.from"},
		{"cross length", one(`{"from": ["context.a", "context.b"], "transform": "cross", "buckets": 5, "length": 2, "dtype": "int64"}`), "inputs.x.length"},
		{"cross without buckets", one(`{"from": ["context.a", "context.b"], "transform": "cross", "dtype": "int64"}`), "inputs.x.buckets"},
		{"cross list default", one(`{"from": ["context.a", "context.b"], "transform": "cross", "buckets": 5, "default": [], "dtype": "int64"}`), "inputs.x.default"},
		{"cross fractional default", one(`{"from": ["context.a", "context.b"], "transform": "cross", "buckets": 5, "default": 0.5, "dtype": "int64"}`), "inputs.x.default"},
		{"second input is checked too", `{"inputs": {"a": {"from": "user_id", "dtype": "string"}, "b": {"from": "user_id"}}}`, "inputs.b.dtype"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse([]byte(c.spec))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Parse = %v, %v; want a *FieldError", p, err)
			}
			if fe.Field != c.field {
				t.Errorf("Field = %q (%v), want %q", fe.Field, fe, c.field)
			}
			if fe.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	for _, spec := range []string{"", "  ", "null", "{}", `{"inputs": {}}`, `{"inputs": null}`} {
		t.Run(spec, func(t *testing.T) {
			p := mustParse(t, spec)
			if len(p.Inputs()) != 0 {
				t.Errorf("Inputs() = %v, want none", p.Inputs())
			}
			out, err := p.Build(&Request{UserID: "u"})
			if err != nil || len(out) != 0 {
				t.Errorf("Build = %v, %v; want no tensors", out, err)
			}
		})
	}
	var p *Plan
	if out, err := p.Build(nil); err != nil || len(out) != 0 {
		t.Errorf("nil Plan: Build = %v, %v; want no tensors", out, err)
	}
}

func apiExample(t testing.TB) *Plan {
	t.Helper()
	raw, err := os.ReadFile("testdata/api_example.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func fullRequest() *Request {
	return &Request{
		UserID:     "u42",
		Context:    map[string]string{"surface": "music"},
		Features:   map[string]any{"recent_items": []any{"i3", "i9"}, "age": 31.0, "country": "GB"},
		Candidates: []string{"i1", "i2", "i3"},
	}
}

func TestAPIExample(t *testing.T) {
	p := apiExample(t)
	wantInfo := []InputInfo{
		{"age", Float32, 0, -1}, {"age_b", Int32, 0, -1}, {"cands", String, 2, -1}, {"is_new", Bool, 1, 1},
		{"recent", String, 2, 20}, {"surface", Int64, 1, 1}, {"sxc", Int64, 1, 1}, {"user", Int64, 1, 1},
	}
	if got := p.Inputs(); !reflect.DeepEqual(got, wantInfo) {
		t.Errorf("Inputs() = %+v\nwant %+v", got, wantInfo)
	}

	out, err := p.Build(fullRequest())
	if err != nil {
		t.Fatal(err)
	}
	recent := make([]string, 20)
	recent[0], recent[1] = "i3", "i9"
	want := []struct {
		shape []int64
		vals  any
	}{
		{[]int64{1}, []float32{float32((31.0 - 35) / 12)}},
		{[]int64{1}, []int32{2}},
		{[]int64{1, 3}, []string{"i1", "i2", "i3"}},
		{[]int64{1}, []bool{false}},
		{[]int64{1, 20}, recent},
		{[]int64{1}, []int64{1}},
		{[]int64{1}, []int64{int64(fingerprintCat64(fingerprintCat64(crossSeed, fingerprint64("music")), fingerprint64("GB")) % 1000)}},
		{[]int64{1}, []int64{HashBucket("u42", 100000)}},
	}
	if len(out) != len(want) {
		t.Fatalf("got %d tensors, want %d", len(out), len(want))
	}
	for i, w := range want {
		got := &out[i]
		if got.Name != wantInfo[i].Name || got.DType != wantInfo[i].DType {
			t.Errorf("tensor %d is %s %s, want %s %s", i, got.Name, got.DType, wantInfo[i].Name, wantInfo[i].DType)
		}
		if !reflect.DeepEqual(got.Shape, w.shape) || !reflect.DeepEqual(got.Values(), w.vals) {
			t.Errorf("%s: shape %v values %v; want %v %v", got.Name, got.Shape, got.Values(), w.shape, w.vals)
		}
	}

	// Without features.age, age takes its default but age_b has none.
	req := fullRequest()
	delete(req.Features, "age")
	_, err = p.Build(req)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "features.age" || fe.Message != `missing value for input "age_b"` {
		t.Errorf("Build without age = %v, want features.age: missing value for input \"age_b\"", err)
	}
}

func TestEmbeddedDefaultSpec(t *testing.T) {
	// The spec the registry gives embedding/v1 versions registered without one.
	p := mustParse(t, `{"inputs": {
  "user_id": {"from": "user_id", "dtype": "string"},
  "recent_items": {"from": "features.recent_items", "transform": "list", "dtype": "string", "default": []}}}`)
	out, err := p.Build(&Request{UserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Name != "recent_items" || len(out[0].String) != 0 || out[1].String[0] != "u1" {
		t.Errorf("Build = %+v", out)
	}
}

func TestBuildTensorsDoNotAlias(t *testing.T) {
	p := mustParse(t, `{"inputs": {
		"a": {"from": "features.a", "transform": "list", "dtype": "string"},
		"b": {"from": "features.b", "transform": "list", "dtype": "string"}}}`)
	out, err := p.Build(&Request{Features: map[string]any{"a": []any{"a1"}, "b": []any{"b1"}}})
	if err != nil {
		t.Fatal(err)
	}
	_ = append(out[0].String, "oops")
	_ = append(out[0].Shape, 99)
	if out[1].String[0] != "b1" || len(out[1].Shape) != 2 || out[1].Shape[0] != 1 {
		t.Errorf("appending to one tensor changed another: %+v", out[1])
	}
}

func TestPlanRaw(t *testing.T) {
	spec := one(`{"from": "user_id", "dtype": "string"}`)
	p := mustParse(t, spec)
	raw := p.Raw()
	if string(raw) != spec {
		t.Errorf("Raw() = %s", raw)
	}
	raw[0] = 'X'
	if string(p.Raw()) != spec {
		t.Error("Raw() exposes the plan's own bytes")
	}
}

func TestBuildConcurrently(t *testing.T) {
	p := apiExample(t)
	want, err := p.Build(fullRequest())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				got, err := p.Build(fullRequest())
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("concurrent Build = %v, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestFieldErrorWithoutField(t *testing.T) {
	_, err := Parse([]byte(`[`))
	if err == nil || strings.HasPrefix(err.Error(), ":") {
		t.Errorf("Parse([) error = %v", err)
	}
}

func TestHashBucketPanicsOnNoBuckets(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("HashBucket(s, 0) did not panic")
		}
	}()
	HashBucket("a", 0)
}
