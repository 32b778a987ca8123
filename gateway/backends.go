package gateway

import (
	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/backend/oip"
	"github.com/modelgate/modelgate/backend/onnx"
	"github.com/modelgate/modelgate/backend/redislist"
	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/config"
)

// drivers are the backend types this binary serves: adding a backend is
// its package and one line here. The redis driver's versions without a
// url read the server's --redis-url (cfg.RedisURL).
func drivers(pool *tfserving.Pool, cfg *config.Config) *backend.Drivers {
	return backend.NewDrivers(
		embedded.Driver{},
		tfserving.NewDriver(pool),
		onnx.NewDriver(cfg.ONNXRuntime.Library, cfg.ONNXRuntime.IntraOpThreads),
		redislist.NewDriver(cfg.RedisURL),
		oip.Driver{},
	)
}
