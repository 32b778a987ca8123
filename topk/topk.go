// Package topk holds the one rule for k, the number of items a
// recommendation returns: its bounds, its default and its check. The HTTP
// and gRPC transports, the router and the command-line tools use it, so the
// limit is declared once.
package topk

import "github.com/modelgate/modelgate/fault"

// Bounds of k.
const (
	// Min is the smallest k: a recommendation returns at least one item.
	Min = 1
	// Max is the largest k. Every item returned must fit in the prediction
	// token's item count (predtoken.MaxItems), so feedback can accept an
	// event for each of them.
	Max = 1000
	// Default is the k of a request that gives none.
	Default = 10
)

// Code is the fault code of a k out of range.
const Code = "invalid_k"

// Check is the one check of a requested k: it returns the invalid_k fault,
// on field "k", unless k is Min to Max. With zeroIsDefault, 0 is accepted
// too and asks for Default, and the message says so: gRPC's k, where an
// absent k cannot be told from 0, and the router's decoded request. Over
// HTTP an explicit k of 0 is refused.
func Check(k int, zeroIsDefault bool) error {
	switch {
	case k >= Min && k <= Max, zeroIsDefault && k == 0:
		return nil
	case zeroIsDefault:
		return fault.Field("k", Code, "must be between %d and %d (0 means the default, %d)", Min, Max, Default)
	default:
		return fault.Field("k", Code, "must be between %d and %d", Min, Max)
	}
}

// OrDefault returns k, or Default for 0 (a request that gives no k).
func OrDefault(k int) int {
	if k == 0 {
		return Default
	}
	return k
}
