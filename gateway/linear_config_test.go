package gateway

import (
	"fmt"
	"testing"

	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/registry"
)

// A linear-thompson endpoint from the config file: the YAML policy reads
// as the JSON one does, a bare context key stored in its explicit form.
func TestLinearThompsonFromConfig(t *testing.T) {
	cfg, err := config.Parse([]byte(`models:
  - name: mf
    version: 1
    backend: {type: embedded, path: models/mf/1}
  - name: mf
    version: 2
    backend: {type: embedded, path: models/mf/2}
endpoints:
  - name: ctx
    arms: [mf@1, mf@2]
    policy:
      type: linear-thompson
      lambda: 2
      context_features:
        - {context: surface, values: [home, music]}
        - {feature: age, mean: 35, std: 12}
        - device
`), demoDir)
	if err != nil {
		t.Fatal(err)
	}
	a := startGateway(t, cfg, Options{}, openedStore{})
	var ep struct {
		Policy registry.Policy `json:"policy"`
	}
	if st := call(t, "GET", a.url+"/v1/endpoints/ctx", nil, &ep); st != 200 {
		t.Fatalf("GET endpoint: %d", st)
	}
	p := ep.Policy
	want := []registry.ContextFeature{{Context: "surface", Values: []string{"home", "music"}}, {Feature: "age", Mean: 35, Std: 12},
		{Context: "device", Buckets: registry.DefaultLinearBuckets}}
	if p.Type != registry.PolicyLinearThompson || p.Lambda != 2 || p.Noise != registry.DefaultLinearNoise || fmt.Sprint(p.ContextFeatures) != fmt.Sprint(want) {
		t.Fatalf("policy %+v", p)
	}
	if d := p.LinearModel().Dims(); d != 1+2+1+registry.DefaultLinearBuckets {
		t.Fatalf("d = %d", d)
	}
}
