package registry

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/store"
)

// IfMatch is a change's precondition on the stored revision of the record
// it changes (an HTTP If-Match header). The zero value sets none: the
// change applies to whatever is stored.
type IfMatch struct {
	// Given says there is a precondition; the fields below are read only
	// then.
	Given bool
	// Any ("*") holds when the record exists.
	Any bool
	// Revisions holds when the stored revision is one of them. Given with
	// neither Any nor Revisions never holds.
	Revisions []uint64
}

// check tests the precondition against a stored record's revision.
func (m IfMatch) check(what string, rev uint64) error {
	if !m.Given || m.Any || slices.Contains(m.Revisions, rev) {
		return nil
	}
	return fault.New(fault.Precondition, "precondition_failed",
		"%s is at revision %d, not the one If-Match names: it changed since you read it; read it again and retry", what, rev)
}

// checkAbsent fails a precondition on a record that does not exist: no
// If-Match holds for it, "*" included.
func (m IfMatch) checkAbsent(what string) error {
	if !m.Given {
		return nil
	}
	return fault.New(fault.Precondition, "precondition_failed", "%s does not exist, and If-Match needs it to", what)
}

// storeTimeout bounds one change's round trips to the store, retries
// included.
const storeTimeout = 10 * time.Second

// errUnchanged, returned by a change's mutation, ends the change without
// writing: the stored record already says what the change would.
var errUnchanged = errors.New("registry: record already as wanted")

// update changes one stored record with the store's compare-and-set: f gets
// the latest stored value (nil when there is none) and returns the value to
// store (nil deletes it). f may run more than once, on newer values, when
// another writer (another replica) changes the record meanwhile, so it must
// only compute its result (and remember it). Errors f returns come back as
// they are; store failures as a store_unavailable fault.
func (r *Registry) update(ctx context.Context, b store.Bucket, key string, f func(cur []byte) ([]byte, error)) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	raw, err := r.db.Update(ctx, b, key, f)
	if err == nil || errors.Is(err, errUnchanged) {
		// What the caller publishes now is newer than what a Reload that
		// listed the store before may be about to publish.
		r.writes.Add(1)
		return raw, err
	}
	if fault.As(err) != nil {
		return nil, err
	}
	return nil, storeError(err)
}

// unreadable is the error for a stored record that does not decode.
func unreadable(what string, err error) error {
	return &fault.Error{Kind: fault.Unavailable, Code: "store_unreadable", Message: "the stored " + what + " is unreadable", Err: err}
}

// decodeEndpoint reads a stored endpoint record.
func decodeEndpoint(raw []byte) (*Endpoint, error) {
	var ep Endpoint
	if err := json.Unmarshal(raw, &ep); err != nil {
		return nil, err
	}
	if ep.Revision == 0 { // stored before revisions existed
		ep.Revision = 1
	}
	if ep.ArmStates == nil {
		ep.ArmStates = map[string]ArmState{}
	}
	if ep.Policy.Type == PolicyLinearThompson {
		ep.Policy.linear = newLinearModel(ep.Policy.ContextFeatures)
	}
	return &ep, nil
}

// decodeVersion reads a stored model version record.
func decodeVersion(raw []byte) (*ModelVersion, error) {
	var mv ModelVersion
	if err := json.Unmarshal(raw, &mv); err != nil {
		return nil, err
	}
	if mv.Revision == 0 { // stored before revisions existed
		mv.Revision = 1
	}
	return &mv, nil
}
