package redisstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// auditMax bounds the audit list kept in Redis.
const auditMax = 100000

func (s *Store) auditKey() string { return strings.TrimSuffix(s.kMeta, "meta") + "audit" }

// AppendAudit appends an audit entry (newest first), keeping the last
// 100,000.
func (s *Store) AppendAudit(ctx context.Context, entry []byte) error {
	_, err := s.admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, s.auditKey(), entry)
		p.LTrim(ctx, s.auditKey(), 0, auditMax-1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis audit: %w", err)
	}
	return nil
}

// ListAudit returns up to limit audit entries, newest first.
func (s *Store) ListAudit(ctx context.Context, limit int) ([][]byte, error) {
	vals, err := s.admin.LRange(ctx, s.auditKey(), 0, int64(limit)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("redis audit: %w", err)
	}
	out := make([][]byte, len(vals))
	for i, v := range vals {
		out[i] = []byte(v)
	}
	return out, nil
}
