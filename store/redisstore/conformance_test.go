package redisstore

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/store/storetest"
)

// TestConformance runs the stores' common contract against Redis, each
// store under its own prefix of one redis-server.
func TestConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) storetest.Store {
		opt := onlineOpts()
		opt.Prefix = fmt.Sprintf("conf%d:", n.Add(1))
		return openStore(t, srv.URL(), opt)
	})
}
