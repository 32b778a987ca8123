package backendtest

import (
	"cmp"
	"context"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Inject applies a fake model server's injected fault to one call: it
// waits delay (cut short by ctx, when the call ends with ctx's status),
// then, unless code is codes.OK, fails with code and msg ("injected
// failure" when "").
func Inject(ctx context.Context, delay time.Duration, code codes.Code, msg string) error {
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if code != codes.OK {
		return status.Error(code, cmp.Or(msg, "injected failure"))
	}
	return nil
}

// TopN is what a fake model that ranks its own catalogue answers: the
// items by score descending (ties in catalogue order), the n best (all
// when n is 0), with their scores.
func TopN(catalogue []string, score func(id string) float64, n int) (ids [][]byte, scores []float64) {
	type scored struct {
		id    string
		score float64
	}
	all := make([]scored, len(catalogue))
	for i, id := range catalogue {
		all[i] = scored{id, score(id)}
	}
	slices.SortStableFunc(all, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
	if n > 0 && n < len(all) {
		all = all[:n]
	}
	ids = make([][]byte, len(all))
	scores = make([]float64, len(all))
	for i, s := range all {
		ids[i], scores[i] = []byte(s.id), s.score
	}
	return ids, scores
}

// Score is a fake model's deterministic score in [0, 1): the FNV-1a hash
// of parts, in order.
func Score(parts ...[]byte) float64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write(p)
	}
	return float64(h.Sum64()>>11) / (1 << 53)
}

// RowKeys is what makes each row's scores in a fake model that scores a
// batch row by row: the values of a key input (a user id, say), formatted,
// split into rows equal parts and each part joined by ",". It reports
// false when the values do not split into rows.
func RowKeys(vals []string, rows int) ([]string, bool) {
	if rows < 1 || len(vals)%rows != 0 {
		return nil, false
	}
	per := len(vals) / rows
	keys := make([]string, rows)
	for r := range keys {
		keys[r] = strings.Join(vals[r*per:(r+1)*per], ",")
	}
	return keys, true
}

// RowScore is a fake model's score of item in the row whose key is key
// (keys nil: rows score alike): score of key + "/" + item.
func RowScore(keys []string, r int, item string, score func(item string) float64) float64 {
	if keys != nil {
		item = keys[r] + "/" + item
	}
	return score(item)
}
