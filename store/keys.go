package store

import (
	"context"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/modelgate/modelgate/auth"
)

// bKeys holds the API keys: name -> JSON of auth.Key (its hash, never the key).
var bKeys = []byte("keys")

// ListKeys returns every stored API key.
func (d *DB) ListKeys(_ context.Context) ([]auth.Key, error) {
	var out []auth.Key
	err := d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bKeys)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var k auth.Key
			if err := json.Unmarshal(v, &k); err != nil {
				return err
			}
			out = append(out, k)
			return nil
		})
	})
	return out, err
}

// PutKey stores a new API key; auth.ErrExists when the name is taken.
func (d *DB) PutKey(_ context.Context, k auth.Key) error {
	raw, err := json.Marshal(k)
	if err != nil {
		return err
	}
	return d.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bKeys)
		if err != nil {
			return err
		}
		if b.Get([]byte(k.Name)) != nil {
			return auth.ErrExists
		}
		return b.Put([]byte(k.Name), raw)
	})
}

// DeleteKey removes the named API key, reporting whether it existed.
func (d *DB) DeleteKey(_ context.Context, name string) (bool, error) {
	var found bool
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bKeys)
		if b == nil || b.Get([]byte(name)) == nil {
			return nil
		}
		found = true
		return b.Delete([]byte(name))
	})
	return found, err
}

// TouchKeys records the API keys' last-use times in one transaction.
func (d *DB) TouchKeys(_ context.Context, used map[string]time.Time) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bKeys)
		if b == nil {
			return nil
		}
		for name, t := range used {
			v := b.Get([]byte(name))
			if v == nil {
				continue
			}
			var k auth.Key
			if err := json.Unmarshal(v, &k); err != nil {
				return err
			}
			if !t.After(k.LastUsed) {
				continue
			}
			k.LastUsed = t.UTC()
			raw, err := json.Marshal(k)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(name), raw); err != nil {
				return err
			}
		}
		return nil
	})
}
