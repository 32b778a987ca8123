package gateway

import (
	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/backend/oip"
	"github.com/modelgate/modelgate/backend/onnx"
	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/config"
)

// drivers are the backend types this binary serves: adding a backend is
// its package and one line here.
func drivers(pool *tfserving.Pool, ort config.ONNXRuntime) *backend.Drivers {
	return backend.NewDrivers(
		embedded.Driver{},
		tfserving.NewDriver(pool),
		onnx.NewDriver(ort.Library, ort.IntraOpThreads),
		oip.Driver{},
	)
}
