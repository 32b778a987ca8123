package featurizer

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
)

var fuzzSpecs = []string{
	"",
	"null",
	`{"inputs": {}}`,
	one(`{"from": "features.a", "transform": "hash_bucket", "buckets": 1000, "length": 4, "pad": "", "dtype": "int64"}`),
	one(`{"from": "features.a", "transform": "vocab", "vocab": [1, 2, 3], "oov": -1, "dtype": "int32", "default": [2]}`),
	one(`{"from": "features.a", "transform": "zscore", "mean": 1, "std": 2, "dtype": "float64"}`),
	one(`{"from": "candidates", "transform": "bucketize", "boundaries": [0, 1.5], "dtype": "int32"}`),
	one(`{"from": ["context.surface", "features.a", "user_id"], "transform": "cross", "buckets": 7, "dtype": "int32", "default": 3}`),
	one(`{"from": "context.n", "dtype": "bool", "default": true}`),
	one(`{"from": "features.a", "transform": "list", "length": 2, "pad": 0, "dtype": "float32", "default": 1}`),
	one(`{"from": "features.a", "transform": "vocab", "vocab": ["x", "y"], "oov": 2, "dtype": "int64", "length": 3}`),
	one(`{"from": "features.a", "transform": "bucketize", "boundaries": [-1, 0, 1e3], "dtype": "int64", "default": [1, 2]}`),
	one(`{"from": "features.a", "dtype": "string", "default": 7}`),
	one(`{"from": "user_id", "transform": "list", "length": 0, "dtype": "int32"}`),
	`{"inputs": {"a": {"from": "features.a", "transform": "hash_bucket", "buckets": 2147483648, "dtype": "int32"},
		"b": {"from": ["features.a", "context.n"], "transform": "cross", "buckets": 9223372036854775807, "dtype": "int64"}}}`,
}

// checkBuild builds req and checks the invariants every Build result keeps.
func checkBuild(t *testing.T, p *Plan, req *Request) {
	out, err := p.Build(req)
	if err != nil {
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field == "" {
			t.Fatalf("Build error %v is not a *FieldError naming a field", err)
		}
		return
	}
	info := p.Inputs()
	if len(out) != len(info) {
		t.Fatalf("Build gave %d tensors for %d inputs", len(out), len(info))
	}
	for i := range out {
		tn, in := &out[i], info[i]
		if tn.Name != in.Name || tn.DType != in.DType {
			t.Fatalf("tensor %d is %s %s, Inputs says %s %s", i, tn.Name, tn.DType, in.Name, in.DType)
		}
		if len(tn.Shape) < 1 || len(tn.Shape) > 2 || tn.Shape[0] != 1 {
			t.Fatalf("%s: bad shape %v", tn.Name, tn.Shape)
		}
		if in.Rank != 0 && len(tn.Shape) != in.Rank {
			t.Fatalf("%s: shape %v, Inputs says rank %d", tn.Name, tn.Shape, in.Rank)
		}
		n := int64(1)
		if len(tn.Shape) == 2 {
			n = tn.Shape[1]
			if in.Length >= 0 && n != int64(in.Length) {
				t.Fatalf("%s: shape %v, Inputs says length %d", tn.Name, tn.Shape, in.Length)
			}
		}
		if int64(tn.Len()) != n {
			t.Fatalf("%s: %d values for shape %v", tn.Name, tn.Len(), tn.Shape)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSpecs {
		f.Add([]byte(s))
	}
	if raw, err := os.ReadFile("testdata/api_example.json"); err == nil {
		f.Add(raw)
	}
	full := fullRequest()
	full.Context["n"] = "1"
	full.Features["a"] = []any{1.0, "x", true}
	f.Fuzz(func(t *testing.T, spec []byte) {
		p, err := Parse(spec)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Message == "" {
				t.Fatalf("Parse error %v is not a *FieldError", err)
			}
			return
		}
		checkBuild(t, p, nil)
		checkBuild(t, p, &Request{})
		checkBuild(t, p, full)
	})
}

// FuzzBuild runs specs covering every transform over fuzzed requests.
func FuzzBuild(f *testing.F) {
	raw, err := os.ReadFile("testdata/api_example.json")
	if err != nil {
		f.Fatal(err)
	}
	plans := []*Plan{mustParse(f, string(raw))}
	for _, s := range fuzzSpecs {
		plans = append(plans, mustParse(f, s))
	}
	f.Add("u42", "music", "1", []byte(`{"recent_items": ["i3", "i9"], "age": 31, "country": "GB", "a": [1, "x"]}`), "i1,i2")
	f.Add("", "", "x", []byte(`{"age": "31", "is_new": 1, "recent_items": "i3", "a": {"b": 1}}`), "")
	f.Add("u", "home", "1e400", []byte(`{"age": 1e308, "a": [null, [1], 2.5], "country": 7}`), ",")
	f.Fuzz(func(t *testing.T, userID, surface, n string, features []byte, candidates string) {
		req := &Request{UserID: userID, Context: map[string]string{"surface": surface, "n": n}}
		if json.Unmarshal(features, &req.Features) != nil {
			req.Features = nil
		}
		if candidates != "" {
			req.Candidates = splitComma(candidates)
		}
		for _, p := range plans {
			checkBuild(t, p, req)
		}
	})
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}
