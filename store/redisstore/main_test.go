package redisstore

import (
	"context"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

// TestMain silences go-redis's own logger, which reports every refused
// dial while the fault tests keep Redis down. Set REDISSTORE_TEST_LOG=1 to
// see it.
func TestMain(m *testing.M) {
	if os.Getenv("REDISSTORE_TEST_LOG") == "" {
		redis.SetLogger(quietRedisLog{})
	}
	os.Exit(m.Run())
}
