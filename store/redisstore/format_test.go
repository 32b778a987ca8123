package redisstore

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/store/storetest"
)

// dumpEntry is one key of testdata/dump-v1.json: its type and contents
// (binary values base64-encoded by encoding/json).
type dumpEntry struct {
	Key    string             `json:"key"`
	Type   string             `json:"type"`
	String []byte             `json:"string,omitempty"`
	Hash   map[string][]byte  `json:"hash,omitempty"`
	Set    [][]byte           `json:"set,omitempty"`
	List   [][]byte           `json:"list,omitempty"`
	ZSet   map[string]float64 `json:"zset,omitempty"`
	TTL    bool               `json:"ttl,omitempty"` // the key expires: restored with an hour to live
}

// restoreDump writes the keys of a dump into Redis.
func restoreDump(t *testing.T, c *redis.Client, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dump []dumpEntry
	if err := json.Unmarshal(raw, &dump); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, e := range dump {
		var err error
		switch e.Type {
		case "string":
			err = c.Set(ctx, e.Key, e.String, 0).Err()
		case "hash":
			for f, v := range e.Hash {
				if err = c.HSet(ctx, e.Key, f, v).Err(); err != nil {
					break
				}
			}
		case "set":
			for _, v := range e.Set {
				if err = c.SAdd(ctx, e.Key, v).Err(); err != nil {
					break
				}
			}
		case "list":
			for _, v := range e.List {
				if err = c.RPush(ctx, e.Key, v).Err(); err != nil {
					break
				}
			}
		case "zset":
			for m, s := range e.ZSet {
				if err = c.ZAdd(ctx, e.Key, redis.Z{Score: s, Member: m}).Err(); err != nil {
					break
				}
			}
		default:
			t.Fatalf("dump key %q: unknown type %q", e.Key, e.Type)
		}
		if err == nil && e.TTL {
			err = c.Expire(ctx, e.Key, time.Hour).Err()
		}
		if err != nil {
			t.Fatalf("restore %q: %v", e.Key, err)
		}
	}
}

// TestReadsDumpV1 loads a Redis database written by an earlier version of
// the store (testdata/dump-v1.json, replica id "replica-a"; see
// storetest.CheckFixtureV1): the value encodings must not change, and
// what the first key layout holds is moved to the per-endpoint keys at
// Open (layout.go), so nothing is lost on upgrade.
func TestReadsDumpV1(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	restoreDump(t, rawClient(t, srv), filepath.Join("testdata", "dump-v1.json"))
	opt := onlineOpts()
	opt.ReplicaID = "replica-a"
	storetest.CheckFixtureV1(t, openStore(t, srv.URL(), opt))
}
