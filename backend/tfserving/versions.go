package tfserving

import (
	"context"
	"sort"
	"time"

	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

// AvailableVersions asks target's GetModelStatus for every version of
// modelName and returns those AVAILABLE, in ascending order. It is what an
// endpoint's auto_arms watcher polls. ctx bounds the call.
func (p *Pool) AvailableVersions(ctx context.Context, target, modelName string, t *TLS) ([]int64, error) {
	cc, release, err := p.acquire(target, t)
	if err != nil {
		return nil, err
	}
	defer release()
	budget := time.Duration(0)
	if dl, ok := ctx.Deadline(); ok {
		budget = time.Until(dl)
	}
	resp, err := apis.NewModelServiceClient(cc).GetModelStatus(ctx, &apis.GetModelStatusRequest{
		ModelSpec: &apis.ModelSpec{Name: modelName}})
	if err != nil {
		return nil, callError(ctx, "GetModelStatus", budget, err)
	}
	var out []int64
	for _, s := range resp.GetModelVersionStatus() {
		if s.GetState() == apis.ModelVersionStatus_AVAILABLE {
			out = append(out, s.GetVersion())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}
