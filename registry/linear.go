package registry

import (
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/featurizer"
)

// The linear-thompson policy's model of a request: its context vector x,
// one value per dimension, built from the request's context and features
// as the policy's context_features say. The first dimension is always the
// constant 1 (the arm's base rate); each feature adds:
//
//   - {"context": K, "values": [v1, …]}: one dimension per listed value,
//     1 when context.K is that value (another value, or none, leaves them
//     all 0: the base rate);
//   - {"context": K, "buckets": B}: B dimensions, 1 at FarmHash
//     Fingerprint64(context.K) mod B (package featurizer's hash_bucket), for
//     a key whose values are not known in advance; an absent key sets none;
//   - {"feature": F, "mean": M, "std": S}: one dimension, features.F (a
//     number, or a bool as 0/1) standardised as (value − M)/S and clamped to
//     ±MaxLinearZ; absent or not a number, 0 (the mean);
//   - a bare string N: the input N of an arm's feature spec when it is one
//     a request gives directly — a zscore or plain number of features.F
//     ({"feature": F, "mean": M, "std": S} with the spec's numbers), a vocab
//     of context.K ({"context": K, "values": its vocab}) — looked up in the
//     arms' specs in arm order when the endpoint is stored; otherwise the
//     context key N, {"context": N, "buckets": DefaultLinearBuckets}.
//
// Together at most bandit.MaxLinearDims dimensions, the constant included.

// Linear-thompson defaults and limits.
const (
	DefaultLinearBuckets = 8
	DefaultLinearLambda  = 1.0
	DefaultLinearNoise   = 0.5
	// MaxLinearZ bounds a standardised numeric feature, so one wild value
	// cannot swamp the sums.
	MaxLinearZ = 10.0
	// MaxLinearValues bounds the values of one one-hot context feature.
	MaxLinearValues = bandit.MaxLinearDims - 1
)

// ContextFeature is one entry of a linear-thompson policy's
// context_features, in its explicit form (a bare string is stored as the
// object it stands for). Exactly one of Context and Feature is set.
type ContextFeature struct {
	// Context is the context key of a one-hot feature: over Values, or
	// over Buckets hashed buckets.
	Context string   `json:"context,omitempty"`
	Values  []string `json:"values,omitempty"`
	Buckets int      `json:"buckets,omitempty"`
	// Feature is the numeric request feature of one dimension,
	// standardised by Mean and Std (Std 0 means 1).
	Feature string  `json:"feature,omitempty"`
	Mean    float64 `json:"mean,omitzero"`
	Std     float64 `json:"std,omitzero"`

	// bare marks an entry written as a bare string: PUT resolves it
	// against the arms' feature specs (resolveContextFeatures).
	bare bool
}

// dims is the number of dimensions f adds.
func (f *ContextFeature) dims() int {
	switch {
	case f.Feature != "":
		return 1
	case len(f.Values) > 0:
		return len(f.Values)
	}
	return f.Buckets
}

// LinearModel is a linear-thompson policy's context vector layout, ready
// for the request path: built once when the endpoint is decoded
// (Policy.LinearModel), immutable, safe for concurrent use.
type LinearModel struct {
	features []ContextFeature
	names    []string
	index    []map[string]int // per one-hot-over-values feature, value -> offset
	layout   uint32
}

// Dims is the length of the context vector, the constant included.
func (m *LinearModel) Dims() int { return len(m.names) }

// Names names each dimension: "1" for the constant, "K=v" for a listed
// value, "K#b" for a hashed bucket, F for a numeric feature.
func (m *LinearModel) Names() []string { return m.names }

// Layout identifies the layout: a hash of the dimensions' names and
// numeric scales. Sums and prediction tokens carry it, so evidence
// gathered under one layout never mixes with another's.
func (m *LinearModel) Layout() uint32 { return m.layout }

// newLinearModel compiles features.
func newLinearModel(features []ContextFeature) *LinearModel {
	m := &LinearModel{features: features, names: []string{"1"}, index: make([]map[string]int, len(features))}
	h := fnv.New32a()
	h.Write([]byte("1"))
	for i, f := range features {
		switch {
		case f.Feature != "":
			m.names = append(m.names, f.Feature)
			fmt.Fprintf(h, "\x00f%s\x00%g\x00%g", f.Feature, f.Mean, f.Std)
		case len(f.Values) > 0:
			m.index[i] = make(map[string]int, len(f.Values))
			for j, v := range f.Values {
				m.index[i][v] = j
				m.names = append(m.names, f.Context+"="+v)
				fmt.Fprintf(h, "\x00v%s\x00%s", f.Context, v)
			}
		default:
			for b := range f.Buckets {
				m.names = append(m.names, f.Context+"#"+strconv.Itoa(b))
			}
			fmt.Fprintf(h, "\x00h%s\x00%d", f.Context, f.Buckets)
		}
	}
	m.layout = h.Sum32()
	return m
}

// Vector writes the request's context vector into x (len(x) ≥ Dims) and
// returns x[:Dims]. It allocates nothing; values are rounded to float32,
// the precision a prediction token carries them in, so the trial counted
// at serve and the reward counted at a click see the same x.
func (m *LinearModel) Vector(ctx map[string]string, features map[string]any, x []float64) []float64 {
	x = x[:len(m.names)]
	clear(x)
	x[0] = 1
	off := 1
	for i := range m.features {
		f := &m.features[i]
		switch {
		case f.Feature != "":
			if v, ok := number(features[f.Feature]); ok {
				std := f.Std
				if std == 0 {
					std = 1
				}
				x[off] = float64(float32(max(-MaxLinearZ, min(MaxLinearZ, (v-f.Mean)/std))))
			}
		case m.index[i] != nil:
			if v, ok := ctx[f.Context]; ok {
				if j, ok := m.index[i][v]; ok {
					x[off+j] = 1
				}
			}
		default:
			if v, ok := ctx[f.Context]; ok {
				x[off+int(featurizer.HashBucket(v, int64(f.Buckets)))] = 1
			}
		}
		off += f.dims()
	}
	return x
}

// number reads a request feature as a number: a JSON number (as any
// decoder gives it) or a bool as 0/1; anything else, or a non-finite
// number, is not one.
func number(v any) (float64, bool) {
	var f float64
	switch v := v.(type) {
	case float64:
		f = v
	case float32:
		f = float64(v)
	case int:
		f = float64(v)
	case int64:
		f = float64(v)
	case bool:
		if v {
			f = 1
		}
	case interface{ Float64() (float64, error) }: // json.Number
		var err error
		if f, err = v.Float64(); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	return f, !math.IsNaN(f) && !math.IsInf(f, 0)
}

// contextFeatureBody is a context_features entry as a request writes it.
type contextFeatureBody struct {
	Context string   `json:"context"`
	Values  []string `json:"values"`
	Buckets *int     `json:"buckets"`
	Feature string   `json:"feature"`
	Mean    *float64 `json:"mean"`
	Std     *float64 `json:"std"`
}

// parseContextFeatures validates a linear-thompson policy's
// context_features and returns them in explicit form with the total
// dimension (the constant included).
func parseContextFeatures(raw []jsontext.Value) ([]ContextFeature, error) {
	out := make([]ContextFeature, 0, len(raw))
	seen := map[string]bool{}
	d := 1
	for i, v := range raw {
		field := fmt.Sprintf("policy.context_features[%d]", i)
		var f ContextFeature
		if v.Kind() == '"' {
			var k string
			if err := json.Unmarshal(v, &k); err != nil {
				return nil, fault.Field(field, "invalid_policy", "a context key or an object")
			}
			f = ContextFeature{Context: k, Buckets: DefaultLinearBuckets, bare: true}
		} else {
			var b contextFeatureBody
			if err := json.Unmarshal(v, &b, json.RejectUnknownMembers(true)); err != nil {
				return nil, fault.Field(field, "invalid_policy", "a context key, {\"context\": K, \"values\": [...]}, {\"context\": K, \"buckets\": B} or {\"feature\": F, \"mean\": M, \"std\": S}")
			}
			var err error
			if f, err = b.parse(field); err != nil {
				return nil, err
			}
		}
		name := f.Context + "\x00" + f.Feature
		if k := f.Context + f.Feature; k == "" || len(k) > 128 || strings.ContainsAny(k, "\x00") || seen[name] {
			return nil, fault.Field(field, "invalid_policy", "context keys and feature names are 1-128 bytes, each used once")
		}
		seen[name] = true
		d += f.dims()
		if d > bandit.MaxLinearDims {
			return nil, fault.Field("policy.context_features", "invalid_policy", "%d dimensions or more with the constant; at most %d", d, bandit.MaxLinearDims)
		}
		out = append(out, f)
	}
	return out, nil
}

// parse checks one object entry.
func (b *contextFeatureBody) parse(field string) (ContextFeature, error) {
	switch {
	case (b.Context == "") == (b.Feature == ""):
		return ContextFeature{}, fault.Field(field, "invalid_policy", "set exactly one of context and feature")
	case b.Feature != "":
		if b.Values != nil || b.Buckets != nil {
			return ContextFeature{}, fault.Field(field, "invalid_policy", "values and buckets go with context, not feature")
		}
		f := ContextFeature{Feature: b.Feature}
		if b.Mean != nil {
			if math.IsNaN(*b.Mean) || math.Abs(*b.Mean) > 1e12 {
				return f, fault.Field(field+".mean", "invalid_policy", "must be a finite number")
			}
			f.Mean = *b.Mean
		}
		if b.Std != nil {
			if !(*b.Std > 0 && *b.Std <= 1e12) {
				return f, fault.Field(field+".std", "invalid_policy", "must be > 0")
			}
			f.Std = *b.Std
		}
		return f, nil
	case b.Mean != nil || b.Std != nil:
		return ContextFeature{}, fault.Field(field, "invalid_policy", "mean and std go with feature, not context")
	case b.Values != nil && b.Buckets != nil:
		return ContextFeature{}, fault.Field(field, "invalid_policy", "set values or buckets, not both")
	case b.Values != nil:
		if len(b.Values) == 0 || len(b.Values) > MaxLinearValues {
			return ContextFeature{}, fault.Field(field+".values", "invalid_policy", "1 to %d values", MaxLinearValues)
		}
		seen := map[string]bool{}
		for j, v := range b.Values {
			if seen[v] || len(v) > 256 {
				return ContextFeature{}, fault.Field(fmt.Sprintf("%s.values[%d]", field, j), "invalid_policy", "values are unique and at most 256 bytes")
			}
			seen[v] = true
		}
		return ContextFeature{Context: b.Context, Values: b.Values}, nil
	}
	n := DefaultLinearBuckets
	if b.Buckets != nil {
		n = *b.Buckets
	}
	if n < 1 || n > bandit.MaxLinearDims-1 {
		return ContextFeature{}, fault.Field(field+".buckets", "invalid_policy", "1 to %d buckets", bandit.MaxLinearDims-1)
	}
	return ContextFeature{Context: b.Context, Buckets: n}, nil
}

// resolveContextFeatures replaces the bare entries of a linear-thompson
// policy that name an input of an arm's feature spec (the first arm, in
// order, whose spec has it) by what that input reads, checks the dimension
// again and compiles the layout. plans gives an arm's plan (nil for none).
func resolveContextFeatures(p *Policy, arms []string, plans func(arm string) *featurizer.Plan) error {
	if p.Type != PolicyLinearThompson {
		return nil
	}
	d := 1
	for i := range p.ContextFeatures {
		f := &p.ContextFeatures[i]
		if f.bare {
			name := f.Context
		arms:
			for _, arm := range arms {
				in, ok := plans(arm).ContextInput(name)
				if !ok {
					continue
				}
				switch {
				case in.Numeric:
					*f = ContextFeature{Feature: in.Key, Mean: in.Mean, Std: in.Std}
				case len(in.Values) > MaxLinearValues:
					return fault.Field(fmt.Sprintf("policy.context_features[%d]", i), "invalid_policy",
						"%s is a vocab of %d values in %s's feature spec; at most %d: list the values wanted", name, len(in.Values), arm, MaxLinearValues)
				default:
					*f = ContextFeature{Context: in.Key, Values: in.Values}
				}
				break arms
			}
		}
		d += f.dims()
	}
	if d > bandit.MaxLinearDims {
		return fault.Field("policy.context_features", "invalid_policy", "%d dimensions with the constant and the feature specs' inputs; at most %d", d, bandit.MaxLinearDims)
	}
	p.linear = newLinearModel(p.ContextFeatures)
	return nil
}
