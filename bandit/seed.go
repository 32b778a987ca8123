package bandit

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// SeededBy returns a random source seeded by what a Monte Carlo estimate
// over arms depends on: key (e.g. endpoint and segment), the prior, the
// floor and every arm's counts, pseudo-counts and state. The same inputs
// always give the same draws (common random numbers), so an estimate of an
// unchanged posterior does not wobble from one look to the next.
func SeededBy(key string, prior Prior, minShare float64, arms []Arm) *rand.Rand {
	h := fnv.New128a()
	var b [8]byte
	word := func(x uint64) {
		binary.LittleEndian.PutUint64(b[:], x)
		h.Write(b[:])
	}
	h.Write([]byte(key))
	word(math.Float64bits(prior.Alpha))
	word(math.Float64bits(prior.Beta))
	word(math.Float64bits(minShare))
	for _, a := range arms {
		word(a.Trials)
		// Whole counts hash as they always have, so a click endpoint's
		// draws are unchanged; fractional ones by their bits.
		if a.Successes == math.Trunc(a.Successes) && a.Successes >= 0 && a.Successes < 1<<63 {
			word(uint64(a.Successes))
		} else {
			word(math.Float64bits(a.Successes))
		}
		word(math.Float64bits(a.PseudoSuccesses))
		word(math.Float64bits(a.PseudoFailures))
		if a.Active {
			word(1)
		} else {
			word(0)
		}
	}
	sum := h.Sum(nil)
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(sum[:8]), binary.LittleEndian.Uint64(sum[8:])))
}
