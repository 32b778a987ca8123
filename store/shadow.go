package store

import (
	"context"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ShadowKey names the sums of one shadow of an endpoint.
type ShadowKey struct{ Endpoint, Arm string }

var (
	bShadow      = []byte("shadow")       // endpoint NUL arm -> JSON object of sums
	bShadowLists = []byte("shadow_lists") // 8-byte expiry + endpoint NUL prediction -> lists
)

func shadowKey(k ShadowKey) []byte { return []byte(k.Endpoint + "\x00" + k.Arm) }

// AddShadowSums durably adds deltas to the named sums of each shadow, in
// one transaction.
func (d *DB) AddShadowSums(_ context.Context, deltas map[ShadowKey]map[string]int64) error {
	if len(deltas) == 0 {
		return nil
	}
	return d.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bShadow) // made by Open, as every bucket
		for k, add := range deltas {
			sums := map[string]int64{}
			if v := b.Get(shadowKey(k)); v != nil {
				_ = json.Unmarshal(v, &sums) // a malformed record starts again
			}
			for f, n := range add {
				sums[f] += n
			}
			v, err := json.Marshal(sums)
			if err != nil {
				return err
			}
			if err := b.Put(shadowKey(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// ShadowSums returns the sums of the endpoint's shadows arms, by arm; an
// arm with none is missing.
func (d *DB) ShadowSums(_ context.Context, endpoint string, arms []string) (map[string]map[string]int64, error) {
	out := map[string]map[string]int64{}
	err := d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bShadow)
		for _, arm := range arms {
			v := b.Get(shadowKey(ShadowKey{endpoint, arm}))
			if v == nil {
				continue
			}
			sums := map[string]int64{}
			if json.Unmarshal(v, &sums) == nil {
				out[arm] = sums
			}
		}
		return nil
	})
	return out, err
}

func shadowListsKey(endpoint, prediction string, expires time.Time) []byte {
	return recordKey(expires, endpoint+"\x00"+prediction)
}

// ShadowList is what a shadowed prediction's shadows answered (Value),
// kept until Expires, the end of its attribution window.
type ShadowList struct {
	Endpoint, Prediction string
	Expires              time.Time
	Value                []byte
}

// PutShadowLists keeps shadowed predictions' lists, in one transaction;
// the sweep of expired feedback state removes each after its expiry.
func (d *DB) PutShadowLists(_ context.Context, lists []ShadowList) error {
	if len(lists) == 0 {
		return nil
	}
	return d.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bShadowLists)
		for _, l := range lists {
			if err := b.Put(shadowListsKey(l.Endpoint, l.Prediction, l.Expires), l.Value); err != nil {
				return err
			}
		}
		return nil
	})
}

// ShadowLists returns what PutShadowLists kept for the prediction with the
// same expiry, or nil when nothing is kept or it expired.
func (d *DB) ShadowLists(_ context.Context, endpoint, prediction string, expires time.Time) ([]byte, error) {
	if d.now().After(expires.Add(ExpiryGrace)) {
		return nil, nil
	}
	var out []byte
	err := d.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bShadowLists).Get(shadowListsKey(endpoint, prediction, expires)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}
