package embedded

import (
	"context"
	"errors"
	"math"
	"slices"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/featurizer"
)

// The input tensors Predict reads, by name.
const (
	// InputUserID is a string tensor of shape [1]: the request's user_id.
	InputUserID = "user_id"
	// InputRecentItems is a string tensor of shape [1, L]: the request's
	// features.recent_items. It may be absent or empty.
	InputRecentItems = "recent_items"
)

// ErrBadInput is wrapped by Predict's errors about the request itself: an
// input tensor of the wrong dtype or shape, or K < 1. Such a request fails
// the same way on every embedded model, so it is not the arm's fault: the
// errors are *backend.InputError and match backend.ErrRejectedInput.
var ErrBadInput = errors.New("embedded: bad input")

// checkEvery is how many items are scored between two looks at the
// context: about 0.1 ms of work at 64 dimensions, so cancellation is prompt
// and costs nothing measurable.
const checkEvery = 4096

// Predict returns the req.K best items for the request, best first, with
// exact scores (no approximate search). It is safe for concurrent use.
//
// The query vector is, in order of preference:
//
//  1. the row of users.npy for the "user_id" input, when the user is known;
//  2. else the mean of the rows of the "recent_items" input's items that
//     are in the catalogue (unknown ids and "" padding are ignored);
//  3. else, cold start: the mean of all item vectors, computed at load.
//     Items are then ranked by their similarity to the catalogue's centre
//     (for dot scoring, the mean score the item would get from a user equal
//     to any catalogue item's vector), which favours "typical" items and is
//     the same list for every cold user.
//
// Under cosine scoring every vector, the query included, is normalised
// first; a zero vector scores 0 against every item. Scores are the raw dot
// product or the cosine, as float64.
//
// Ranking is by score descending, ties broken by item id ascending (byte
// order), so equal inputs always give the same list. When req.Candidates is
// non-nil only those candidates are scored; candidates the model does not
// know are skipped (it has no vector to score them with), so fewer than K
// items may come back. Items in req.Exclude are never returned. When fewer
// than K items qualify, all of them are returned.
//
// Predict returns the context's error if ctx is done before it finishes,
// and an error wrapping ErrBadInput for malformed inputs or K < 1.
func (m *Model) Predict(ctx context.Context, req *backend.Request) ([]backend.Item, error) {
	if req.K < 1 {
		return nil, backend.RejectInput(ErrBadInput, "k = %d, want at least 1", req.K)
	}
	done := ctx.Done()
	if done != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	s := m.pool.Get().(*scratch)
	defer m.put(s)

	q, err := m.query(req, s)
	if err != nil {
		return nil, err
	}
	s.top.reset(min(req.K, len(m.itemIDs)))
	if req.Candidates != nil {
		err = m.scoreCandidates(done, q, req, s)
	} else {
		err = m.scoreAll(done, q, req, s)
	}
	if err != nil {
		// done fired: report why.
		return nil, ctx.Err()
	}
	return s.top.items(m.itemIDs), nil
}

// errDone signals that the context's Done channel fired mid-scan.
var errDone = errors.New("context done")

// query returns the query vector for the request. The slice may be a row of
// the model (read only) or s.q.
func (m *Model) query(req *backend.Request, s *scratch) ([]float32, error) {
	if t := req.Input(InputUserID); t != nil {
		if t.DType != featurizer.String || len(t.String) != 1 {
			return nil, backend.RejectInput(ErrBadInput, "input %q must be a string tensor of shape [1], got %s with %d values",
				InputUserID, t.DType, t.Len())
		}
		if u, ok := m.userIndex[t.String[0]]; ok {
			off := int(u) * m.dim
			return m.users[off : off+m.dim : off+m.dim], nil
		}
	}
	if t := req.Input(InputRecentItems); t != nil {
		if t.DType != featurizer.String {
			return nil, backend.RejectInput(ErrBadInput, "input %q must be a string tensor, got %s", InputRecentItems, t.DType)
		}
		// Summed in float64: float32 sums of large vectors could overflow.
		if cap(s.sum) < m.dim {
			s.sum = make([]float64, m.dim)
			s.q = make([]float32, m.dim)
		}
		sum := s.sum[:m.dim]
		clear(sum)
		n := 0
		for _, id := range t.String {
			i, ok := m.itemIndex[id]
			if !ok {
				continue
			}
			n++
			off := int(i) * m.dim
			for j, v := range m.items[off : off+m.dim] {
				sum[j] += float64(v)
			}
		}
		if n > 0 {
			q := s.q[:m.dim]
			for j, v := range sum {
				q[j] = float32(v / float64(n))
			}
			if m.scoring == Cosine {
				normalizeRows(q, m.dim)
			}
			return q, nil
		}
	}
	return m.cold, nil
}

// scoreAll scans the whole catalogue, skipping excluded items.
func (m *Model) scoreAll(done <-chan struct{}, q []float32, req *backend.Request, s *scratch) error {
	m.startScan(req, s)
	n := len(m.itemIDs)
	for lo := 0; lo < n; lo += checkEvery {
		if done != nil {
			select {
			case <-done:
				return errDone
			default:
			}
		}
		m.scan(q, s, lo, min(lo+checkEvery, n))
	}
	return nil
}

// startScan readies s for scans of the whole catalogue in ascending row
// order: the request's excluded items become sorted row numbers, so that
// the scan skips them with one integer comparison per item instead of a
// map lookup.
func (m *Model) startScan(req *backend.Request, s *scratch) {
	excl := s.idx[:0]
	for id := range req.Exclude {
		if i, ok := m.itemIndex[id]; ok {
			excl = append(excl, i)
		}
	}
	slices.Sort(excl)
	s.idx = excl
	s.p = 0
	s.next = len(m.itemIDs)
	if len(excl) > 0 {
		s.next = int(excl[0])
	}
}

// scan scores the rows lo to hi-1 against q into s.top, skipping excluded
// rows. Successive calls must cover ascending, adjacent ranges from 0.
func (m *Model) scan(q []float32, s *scratch, lo, hi int) {
	n, d := len(m.itemIDs), m.dim
	items, rank := m.items, m.itemRank
	top := &s.top
	excl, next, p := s.idx, s.next, s.p
	for i := lo; i < hi; i++ {
		if i == next {
			// Duplicates cannot occur: Exclude is a set.
			p++
			next = n
			if p < len(excl) {
				next = int(excl[p])
			}
			continue
		}
		off := i * d
		sc := score(q, items[off:off+d:off+d])
		if sc < top.min {
			continue
		}
		top.push(sc, rank[i], int32(i))
	}
	s.next, s.p = next, p
}

// scoreCandidates scores only the known, non-excluded candidates, each once.
func (m *Model) scoreCandidates(done <-chan struct{}, q []float32, req *backend.Request, s *scratch) error {
	idx := s.idx[:0]
	for _, id := range req.Candidates {
		if _, ex := req.Exclude[id]; ex {
			continue
		}
		if i, ok := m.itemIndex[id]; ok {
			idx = append(idx, i)
		}
	}
	// Sorted for a cache-friendly scan and to drop duplicates.
	slices.Sort(idx)
	idx = slices.Compact(idx)
	s.idx = idx

	d := m.dim
	top := &s.top
	for j, i := range idx {
		if done != nil && j%checkEvery == checkEvery-1 {
			select {
			case <-done:
				return errDone
			default:
			}
		}
		off := int(i) * d
		sc := score(q, m.items[off:off+d:off+d])
		if sc < top.min {
			continue
		}
		top.push(sc, m.itemRank[i], i)
	}
	return nil
}

// score is the dot product of q and row. It is computed in float32; when
// that overflows (only possible with huge dot-scored vectors) it is
// recomputed in float64, where finite float32 inputs cannot overflow.
func score(q, row []float32) float64 {
	s := dot(q, row)
	if s-s != 0 { // ±Inf or NaN
		return dot64(q, row)
	}
	return float64(s)
}

// dot is unrolled by eight with four accumulators, which keeps the
// floating-point adders busy without a dependency chain on one sum.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		x := a[i : i+8 : i+8]
		y := b[i : i+8 : i+8]
		s0 += x[0]*y[0] + x[4]*y[4]
		s1 += x[1]*y[1] + x[5]*y[5]
		s2 += x[2]*y[2] + x[6]*y[6]
		s3 += x[3]*y[3] + x[7]*y[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func dot64(a, b []float32) float64 {
	var s float64
	for i, v := range a {
		s += float64(v) * float64(b[i])
	}
	return s
}

// scratch is the per-request working memory, pooled so that a request
// allocates only its result.
type scratch struct {
	top topK
	q   []float32
	sum []float64
	idx []int32
	// The exclusion cursor of a scan: the next excluded row (or the
	// number of items when none is left) and its position in idx.
	next, p int
}

// maxPooledIdx bounds the index buffer kept between requests, so that one
// request with a huge exclude or candidate list does not pin its memory.
const maxPooledIdx = 1 << 16

func (m *Model) put(s *scratch) {
	if cap(s.idx) > maxPooledIdx {
		s.idx = nil
	}
	m.pool.Put(s)
}

// entry is one kept item: its score, the rank of its id in ascending id
// order (the tie-breaker) and its row.
type entry struct {
	score float64
	rank  int32
	row   int32
}

// worse reports whether a ranks below b: lower score, or the same score
// and a later id.
func worse(a, b *entry) bool {
	return a.score < b.score || (a.score == b.score && a.rank > b.rank)
}

// topK keeps the k best entries seen in a min-heap whose root is the worst
// kept. min is the root's score once the heap is full (-Inf before), so
// that most items are rejected with one comparison.
type topK struct {
	k   int
	h   []entry
	min float64
}

func (t *topK) reset(k int) {
	t.k = k
	t.h = t.h[:0]
	if cap(t.h) < k {
		t.h = make([]entry, 0, k)
	}
	t.min = math.Inf(-1)
	if k == 0 {
		t.min = math.Inf(1)
	}
}

func (t *topK) push(score float64, rank, row int32) {
	e := entry{score, rank, row}
	h := t.h
	if len(h) < t.k {
		h = append(h, e)
		// Sift up.
		for i := len(h) - 1; i > 0; {
			p := (i - 1) / 2
			if !worse(&h[i], &h[p]) {
				break
			}
			h[i], h[p] = h[p], h[i]
			i = p
		}
		t.h = h
		if len(h) == t.k {
			t.min = h[0].score
		}
		return
	}
	if !worse(&h[0], &e) {
		return // same score as the root, but a later id
	}
	// Replace the root and sift down.
	i := 0
	for {
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if r := c + 1; r < len(h) && worse(&h[r], &h[c]) {
			c = r
		}
		if !worse(&h[c], &e) {
			break
		}
		h[i] = h[c]
		i = c
	}
	h[i] = e
	t.min = h[0].score
}

// items returns the kept entries best first, as the result of a request.
func (t *topK) items(ids []string) []backend.Item {
	slices.SortFunc(t.h, func(a, b entry) int {
		switch {
		case worse(&b, &a):
			return -1
		case worse(&a, &b):
			return 1
		}
		return 0
	})
	out := make([]backend.Item, len(t.h))
	for i, e := range t.h {
		out[i] = backend.Item{ID: ids[e.row], Score: e.score}
	}
	return out
}
