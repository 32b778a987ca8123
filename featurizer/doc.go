// Package featurizer turns a recommend request into the named, typed tensors
// a model version consumes, as the version's feature spec says (API.md,
// "Feature spec"). Parse compiles a spec once, at registration, into an
// immutable Plan; Plan.Build runs on every request, without reflection and
// with a fixed handful of allocations.
//
// A spec is {"inputs": {NAME: INPUT, ...}}, where INPUT has "from", "dtype"
// and optionally "transform", "default", "length", "pad" and the transform's
// own parameters. Build returns one Tensor per input, sorted by name. Where
// API.md is silent, this package decides as follows.
//
// # Sources
//
// "from" is "user_id" (missing when empty), "candidates" (missing when nil; an
// empty list is present), "context.KEY" (missing when the key is absent) or
// "features.KEY" (missing when absent or null). KEY is everything after the
// first dot, looked up as is: "features.a.b" reads the feature named "a.b".
//
// # Conversions
//
// Features are JSON-typed, so they are taken as they come: a string where a
// number or a bool is needed is an error. user_id, context values and
// candidates can only be strings, so where a number is needed they are parsed
// (strconv.ParseInt, else strconv.ParseFloat; finite values only) and where a
// bool is needed, strconv.ParseBool.
//
//   - float32, float64 take numbers (float32 only within its range).
//   - int32, int64 take integral numbers within the dtype's range: 2.5 is an
//     error, never 2.
//   - bool takes bools; a number is an error.
//   - Where a string is needed (dtype string, hash_bucket, a vocab of strings)
//     the value's string form is used: a string as is, an integral number in
//     decimal ("42", as tf.strings.as_string writes an int64), a bool as "true"
//     or "false". A non-integral number is an error.
//   - An object is always an error; so are null and a list inside a list.
//
// Numbers in a spec's "default" and "pad" are read as float64, exactly as
// request features are, so a default behaves like the same value sent in a
// request.
//
// # Rank and length
//
// An input's rank is fixed by its spec where the spec says enough, so that it
// can be checked against a model's signature before any request
// (Plan.Inputs):
//
//   - a list, shape [1, L], when its transform is "list", when it has
//     "length", when it reads "candidates", or when its default is a list;
//   - else a scalar, shape [1], when it has no transform or is a cross, or
//     reads user_id or a context value (always single strings);
//   - else, for hash_bucket, vocab, zscore and bucketize of a feature, the
//     rank follows the value, as TensorFlow's element-wise ops keep their
//     input's shape: a single value gives [1], a list [1, L] (InputInfo.Rank
//     0). Give it a "length", or a list default, to make it always a list.
//
// A list sent for a scalar input is an error; a single value sent for a list
// input is a list of one. hash_bucket, vocab, zscore and bucketize apply to
// each element of a list.
//
// "length" (0 to MaxLength) truncates the list, or pads it with "pad" before
// the transform; without "length", L is the length of the value. "pad" needs
// "length" and must be a value the transform accepts; without it the pad is
// the zero value of what the transform reads: "" for a string (dtype string,
// hash_bucket, a vocab of strings), 0 for a number, false for a bool.
//
// # Transforms
//
//   - none: "transform" absent, "" or "none": the value converted to dtype.
//   - list: the same, as a list input.
//   - hash_bucket: HashBucket of the string form, modulo "buckets" (> 0; at
//     most 2^31 for int32). dtype int32 or int64.
//   - vocab: the index of the value in "vocab", else "oov" (an integer,
//     default 0). "vocab" is a non-empty list, all strings or all integers,
//     without repeats; an integer vocab needs integral values. Note that with
//     the default oov an unknown value shares index 0 with the first entry:
//     put a placeholder first, or set "oov" to len(vocab). dtype int32 or int64.
//   - zscore: (x - mean) / std, computed in float64. "mean" and "std" are
//     required, std > 0. dtype float32 or float64.
//   - bucketize: the index of the first of "boundaries" greater than the
//     value, or len(boundaries) if none is; a value equal to a boundary goes to
//     the bucket above it, as in TensorFlow's Bucketize. "boundaries" is a
//     non-empty, strictly increasing list of numbers. dtype int32 or int64.
//   - cross: see below. dtype int32 or int64.
//
// Parameters a transform does not use are errors (so a misspelt transform is
// caught), as are unknown keys and duplicate keys.
//
// # Cross
//
// "from" is a list of two or more sources, each a single value (so not
// "candidates"); the result is a scalar. The values are hashed exactly as
// TensorFlow's tf.sparse.cross_hashed does with its default hash key, which
// is what Keras's HashedCrossing layer and tf.feature_column.crossed_column
// (default hash_key) use, so a model trained with them sees the same ids:
//
//	h := uint64(0xDECAFCAFFE)
//	for each value v, in "from" order:
//		h = FingerprintCat64(h, k(v))
//	id := h % buckets
//
// where k(v) is FarmHash Fingerprint64 of a string (user_id and context values
// are always strings), the value itself of an integral number (as a
// two's-complement uint64, int64 → uint64), and 0 or 1 for false or true, as
// TensorFlow casts non-string inputs to int64; a non-integral number is an
// error. FingerprintCat64 is TensorFlow's (tensorflow/core/platform/
// fingerprint.h): with mul = 0xc6a4a7935bd1e995 and m(x) = x ^ (x >> 47),
//
//	r := fp1 ^ mul
//	r ^= m(fp2*mul) * mul
//	r *= mul
//	r = m(m(r) * mul)
//
// For example "A" crossed with 101 into 10 buckets is 1, as in Keras's own
// test. The JSON type matters: a feature "7" and a feature 7 cross
// differently, as tf.string and tf.int64 inputs would. A cross's "default" is
// one single value, used for each source that is missing.
//
// # Defaults and errors
//
// "default" is a raw value, used when the value is missing and transformed
// like a present one. Parse runs it through the transform, so a default that
// could not build is a spec error; null is not a default (leave it out). A
// missing value without a default is a *FieldError naming the request field,
// e.g. Field "features.age", Message `missing value for input "age"`. Every
// Build error is a *FieldError whose Field is the request field and whose
// Message names the input (and the element, for a list); Build reports the
// first error it finds.
package featurizer
