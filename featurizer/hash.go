package featurizer

import (
	"unsafe"

	farm "github.com/dgryski/go-farm"
)

// HashBucket returns FarmHash Fingerprint64(s) modulo buckets: the bucket
// TensorFlow's tf.strings.to_hash_bucket_fast(s, buckets) gives, so a model
// trained with it sees the same ids. buckets must be positive; HashBucket
// panics otherwise, as integer division by zero would. Safe for concurrent use.
func HashBucket(s string, buckets int64) int64 {
	if buckets <= 0 {
		panic("featurizer: HashBucket needs buckets > 0")
	}
	return int64(fingerprint64(s) % uint64(buckets))
}

// fingerprint64 hashes s without copying it: farm only reads its argument,
// and a []byte(s) conversion would allocate, since the assembly version
// cannot promise the slice does not escape.
func fingerprint64(s string) uint64 {
	return farm.Fingerprint64(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// crossSeed is the hash key tf.sparse.cross_hashed uses when none is given
// (_DEFAULT_HASH_KEY in TensorFlow's sparse_ops.py).
const crossSeed uint64 = 0xDECAFCAFFE

// fingerprintCat64 combines two fingerprints exactly as TensorFlow's
// FingerprintCat64 (tensorflow/core/platform/fingerprint.h) does.
func fingerprintCat64(fp1, fp2 uint64) uint64 {
	const mul = 0xc6a4a7935bd1e995
	r := fp1 ^ mul
	r ^= shiftMix(fp2*mul) * mul
	r *= mul
	r = shiftMix(r) * mul
	return shiftMix(r)
}

func shiftMix(v uint64) uint64 { return v ^ (v >> 47) }
