package kubernetes

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/modelgate/modelgate/config"
)

// What the gateway's container needs of its pod, whatever the overlay.
const (
	container    = "modelgate"
	configPath   = "/run/modelgate/config.yaml" // the file the init container writes
	demoModels   = "/opt/modelgate/demo/models" // where the Dockerfile puts examples/demo/models
	signingKeys  = "modelgate-signing-keys"     // the Secret README tells operators to create
	redisSecret  = "modelgate-redis"
	serviceName  = "modelgate"
	httpPort     = 8080
	grpcPort     = 9090
	healthzPath  = "/healthz"
	readyzPath   = "/readyz"
	metricsPath  = "/metrics"
	imageRepo    = "registry.example.com/modelgate"
	configKey    = "config.yaml"
	dataDirEnv   = "MODELGATE_DATA_DIR"
	redisURLEnv  = "MODELGATE_REDIS_URL"
	overlaysDir  = "overlays"
	monitorsComp = "components/servicemonitor"
)

// manifests are the objects one kustomization builds, each decoded
// strictly into its Kubernetes API type.
type manifests struct {
	kinds           []string // "apps/v1/Deployment", in build order
	configMaps      []corev1.ConfigMap
	secrets         []corev1.Secret
	services        []corev1.Service
	deployments     []appsv1.Deployment
	statefulSets    []appsv1.StatefulSet
	hpas            []autoscalingv2.HorizontalPodAutoscaler
	pdbs            []policyv1.PodDisruptionBudget
	serviceMonitors []monitoringv1.ServiceMonitor
}

// into returns a decoder that decodes JSON into a T as the API server
// would refuse it (an unknown or duplicate field, or a field of the wrong
// case, is an error) and appends it to dst.
func into[T any](dst *[]T) func([]byte) error {
	return func(raw []byte) error {
		var v T
		strictErrs, err := k8sjson.UnmarshalStrict(raw, &v)
		if err != nil {
			return err
		}
		if len(strictErrs) > 0 {
			return fmt.Errorf("%v", strictErrs)
		}
		*dst = append(*dst, v)
		return nil
	}
}

// build runs kustomize on dir in-process, as `kubectl kustomize dir` would.
func build(t *testing.T, dir string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifests{}
	decoders := map[string]func([]byte) error{
		"v1/ConfigMap":                            into(&m.configMaps),
		"v1/Secret":                               into(&m.secrets),
		"v1/Service":                              into(&m.services),
		"apps/v1/Deployment":                      into(&m.deployments),
		"apps/v1/StatefulSet":                     into(&m.statefulSets),
		"autoscaling/v2/HorizontalPodAutoscaler":  into(&m.hpas),
		"policy/v1/PodDisruptionBudget":           into(&m.pdbs),
		"monitoring.coreos.com/v1/ServiceMonitor": into(&m.serviceMonitors),
	}
	for _, r := range rm.Resources() {
		gvk := r.GetGvk()
		kind := gvk.ApiVersion() + "/" + gvk.Kind
		raw, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s %s: %v", kind, r.GetName(), err)
		}
		decode, ok := decoders[kind]
		if !ok {
			t.Fatalf("%s %s: a kind these tests do not check", kind, r.GetName())
		}
		if err := decode(raw); err != nil {
			t.Fatalf("%s %s: not a valid object of its API type: %v", kind, r.GetName(), err)
		}
		m.kinds = append(m.kinds, kind)
	}
	return m
}

// workload is the pod template and its owner, whichever kind that is.
type workload struct {
	kind     string
	name     string
	selector *metav1.LabelSelector
	template corev1.PodTemplateSpec
}

func (m *manifests) workloads() []workload {
	var w []workload
	for _, d := range m.deployments {
		w = append(w, workload{"Deployment", d.Name, d.Spec.Selector, d.Spec.Template})
	}
	for _, s := range m.statefulSets {
		w = append(w, workload{"StatefulSet", s.Name, s.Spec.Selector, s.Spec.Template})
	}
	return w
}

func (m *manifests) configMap(name string) (corev1.ConfigMap, bool) {
	for _, c := range m.configMaps {
		if c.Name == name {
			return c, true
		}
	}
	return corev1.ConfigMap{}, false
}

func (m *manifests) secret(name string) (corev1.Secret, bool) {
	for _, s := range m.secrets {
		if s.Name == name {
			return s, true
		}
	}
	return corev1.Secret{}, false
}

func (m *manifests) service(t *testing.T) corev1.Service {
	t.Helper()
	if len(m.services) != 1 || m.services[0].Name != serviceName {
		t.Fatalf("want one Service %q, got %d", serviceName, len(m.services))
	}
	return m.services[0]
}

// The overlays and what each must (and must not) hold.
var overlays = []struct {
	name  string
	kinds []string // exactly these, in any order
	check func(t *testing.T, m *manifests, pod corev1.PodSpec)
}{
	{
		name:  "single",
		kinds: []string{"v1/ConfigMap", "v1/Service", "apps/v1/StatefulSet"},
		check: func(t *testing.T, m *manifests, pod corev1.PodSpec) {
			s := m.statefulSets[0]
			if s.Spec.Replicas == nil || *s.Spec.Replicas != 1 {
				t.Errorf("StatefulSet replicas = %v, want 1: the embedded store allows one process per data dir", s.Spec.Replicas)
			}
			if s.Spec.ServiceName != serviceName {
				t.Errorf("StatefulSet serviceName = %q, want %q", s.Spec.ServiceName, serviceName)
			}
			// The data dir is a PersistentVolumeClaim from the template.
			var claim *corev1.PersistentVolumeClaim
			for i, c := range s.Spec.VolumeClaimTemplates {
				if c.Name == dataVolume(t, pod) {
					claim = &s.Spec.VolumeClaimTemplates[i]
				}
			}
			if claim == nil {
				t.Fatalf("no volumeClaimTemplate for the data dir's volume %q", dataVolume(t, pod))
			}
			if q := claim.Spec.Resources.Requests[corev1.ResourceStorage]; q.IsZero() {
				t.Error("the data dir's claim requests no storage")
			}
			if !slices.Equal(claim.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
				t.Errorf("the data dir's claim access modes = %v, want [ReadWriteOnce]", claim.Spec.AccessModes)
			}
			if p := s.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
				t.Errorf("claim retention policy = %+v, want the data kept when the StatefulSet is deleted", p)
			}
			if env(t, pod, redisURLEnv) != nil {
				t.Errorf("%s is set: the single overlay keeps its state in the data dir", redisURLEnv)
			}
		},
	},
	{
		name: "replicas",
		kinds: []string{"v1/ConfigMap", "v1/Secret", "v1/Service", "apps/v1/Deployment",
			"autoscaling/v2/HorizontalPodAutoscaler", "policy/v1/PodDisruptionBudget"},
		check: func(t *testing.T, m *manifests, pod corev1.PodSpec) {
			d := m.deployments[0]
			// The HPA owns the count: a replicas field would reset it at
			// every kubectl apply.
			if d.Spec.Replicas != nil {
				t.Errorf("Deployment replicas = %d, want none (the HPA's minReplicas governs)", *d.Spec.Replicas)
			}
			// Every replica reads the same Redis URL from the Secret.
			e := env(t, pod, redisURLEnv)
			if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Fatalf("%s is not taken from a Secret: %+v", redisURLEnv, e)
			}
			ref := e.ValueFrom.SecretKeyRef
			s, ok := m.secret(ref.Name)
			if !ok || !strings.HasPrefix(ref.Name, redisSecret) {
				t.Fatalf("%s names Secret %q, which the overlay does not hold", redisURLEnv, ref.Name)
			}
			if url := s.Data[ref.Key]; !strings.HasPrefix(string(url), "redis://") {
				t.Errorf("Secret %s key %q = %q, want a redis:// URL", ref.Name, ref.Key, url)
			}
			// Each replica's own data dir (write-ahead log, prediction log).
			if v := volume(pod, dataVolume(t, pod)); v == nil || v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil {
				t.Errorf("the data dir's volume = %+v, want an emptyDir with a size limit", v)
			}

			if len(m.hpas) != 1 {
				t.Fatalf("want one HorizontalPodAutoscaler, got %d", len(m.hpas))
			}
			h := m.hpas[0].Spec
			if h.ScaleTargetRef.Kind != "Deployment" || h.ScaleTargetRef.Name != d.Name || h.ScaleTargetRef.APIVersion != "apps/v1" {
				t.Errorf("HPA scales %+v, want the Deployment %q", h.ScaleTargetRef, d.Name)
			}
			if h.MinReplicas == nil || *h.MinReplicas != 3 || h.MaxReplicas < *h.MinReplicas {
				t.Errorf("HPA replicas %v..%d, want from 3 up", h.MinReplicas, h.MaxReplicas)
			}
			if len(h.Metrics) == 0 {
				t.Error("HPA has no metric")
			}
			for _, mt := range h.Metrics {
				// Utilization is relative to the requests: they must be set.
				if mt.Resource != nil && mt.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
					if _, ok := container1(t, pod).Resources.Requests[mt.Resource.Name]; !ok {
						t.Errorf("HPA scales on %s utilization, but the container requests no %s", mt.Resource.Name, mt.Resource.Name)
					}
				}
			}

			if len(m.pdbs) != 1 {
				t.Fatalf("want one PodDisruptionBudget, got %d", len(m.pdbs))
			}
			p := m.pdbs[0].Spec
			if (p.MaxUnavailable == nil) == (p.MinAvailable == nil) {
				t.Errorf("PDB sets minAvailable %v and maxUnavailable %v; want exactly one", p.MinAvailable, p.MaxUnavailable)
			}
			if p.MaxUnavailable != nil && *p.MaxUnavailable != intstr.FromInt32(1) {
				t.Errorf("PDB maxUnavailable = %v, want 1", p.MaxUnavailable)
			}
			selects(t, "PodDisruptionBudget", p.Selector, d.Spec.Template.Labels)
		},
	},
}

func TestOverlays(t *testing.T) {
	for _, o := range overlays {
		t.Run(o.name, func(t *testing.T) {
			m := build(t, filepath.Join(overlaysDir, o.name))
			if !sameSet(m.kinds, o.kinds) {
				t.Fatalf("objects %v, want exactly %v", m.kinds, o.kinds)
			}
			ws := m.workloads()
			if len(ws) != 1 {
				t.Fatalf("want one workload, got %d", len(ws))
			}
			w := ws[0]
			if w.name != "modelgate" {
				t.Errorf("%s is named %q, want modelgate", w.kind, w.name)
			}
			selects(t, w.kind, w.selector, w.template.Labels)
			pod := w.template.Spec
			checkPodSecurity(t, pod)
			checkResources(t, pod)
			checkGateway(t, pod)
			checkService(t, m.service(t), w.template.Labels)
			checkConfig(t, m, pod)
			o.check(t, m, pod)
		})
	}
}

// TestServiceMonitorComponent adds the optional ServiceMonitor component to
// each overlay, as README tells operators to, and checks it scrapes the
// gateway's /metrics through the Service. (Without it, TestOverlays finds
// none: the CRD may not be installed.)
func TestServiceMonitorComponent(t *testing.T) {
	for _, o := range overlays {
		t.Run(o.name, func(t *testing.T) {
			dir := t.TempDir()
			// kustomize takes relative paths only.
			rel := func(p string) string {
				a, err := filepath.Abs(p)
				if err != nil {
					t.Fatal(err)
				}
				r, err := filepath.Rel(dir, a)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			k := fmt.Sprintf("resources:\n  - %s\ncomponents:\n  - %s\n",
				rel(filepath.Join(overlaysDir, o.name)), rel(monitorsComp))
			if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
				t.Fatal(err)
			}
			m := build(t, dir)
			if !sameSet(m.kinds, append(slices.Clone(o.kinds), "monitoring.coreos.com/v1/ServiceMonitor")) {
				t.Fatalf("objects %v, want the overlay's and one ServiceMonitor", m.kinds)
			}
			svc := m.service(t)
			sm := m.serviceMonitors[0]
			selects(t, "ServiceMonitor", &sm.Spec.Selector, svc.Labels)
			if len(sm.Spec.Endpoints) != 1 {
				t.Fatalf("ServiceMonitor endpoints = %d, want 1", len(sm.Spec.Endpoints))
			}
			ep := sm.Spec.Endpoints[0]
			if ep.Port != "http" || ep.Path != metricsPath {
				t.Errorf("ServiceMonitor scrapes port %q path %q, want port http path %s", ep.Port, ep.Path, metricsPath)
			}
		})
	}
}

func checkPodSecurity(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	sc := pod.SecurityContext
	if sc == nil {
		t.Fatal("the pod has no securityContext")
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("pod: runAsNonRoot is not true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("pod: runAsUser = %v, want a non-root UID", sc.RunAsUser)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod: seccompProfile = %+v, want RuntimeDefault", sc.SeccompProfile)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("pod: the service account token is mounted; the gateway does not call the API server")
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("pod: enableServiceLinks is not false: the Service's MODELGATE_* variables would mix with the gateway's")
	}
	for _, c := range allContainers(pod) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s: no securityContext", c.Name)
			continue
		}
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("container %s: runAsNonRoot is not true", c.Name)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("container %s: runs as root", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s: privileged", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("container %s: capabilities = %+v, want drop [ALL] and none added", c.Name, sc.Capabilities)
		}
		if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s: seccompProfile = %+v, want RuntimeDefault", c.Name, sc.SeccompProfile)
		}
		// A pinned image: a tag that is not latest (or a digest).
		ref := c.Image
		if i := strings.LastIndex(ref, "/"); i >= 0 {
			ref = ref[i+1:]
		}
		if !strings.Contains(c.Image, "@sha256:") && (!strings.Contains(ref, ":") || strings.HasSuffix(ref, ":latest")) {
			t.Errorf("container %s: image %q is not pinned to a tag", c.Name, c.Image)
		}
		if c.ImagePullPolicy == corev1.PullAlways || c.ImagePullPolicy == "" {
			t.Errorf("container %s: imagePullPolicy %q, want IfNotPresent (set, so it does not depend on the tag)", c.Name, c.ImagePullPolicy)
		}
	}
}

func checkResources(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	for _, c := range allContainers(pod) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[r]
			lim, okLim := c.Resources.Limits[r]
			if !okReq || !okLim || req.IsZero() || lim.IsZero() {
				t.Errorf("container %s: %s request %v limit %v, want both set", c.Name, r, req.String(), lim.String())
				continue
			}
			if req.Cmp(lim) > 0 {
				t.Errorf("container %s: %s request %s above its limit %s", c.Name, r, req.String(), lim.String())
			}
		}
	}
	// Go's soft memory limit, when set, must leave the heap room below the
	// container's hard one.
	c := container1(t, pod)
	if e := env(t, pod, "GOMEMLIMIT"); e != nil {
		q, err := resource.ParseQuantity(strings.TrimSuffix(e.Value, "B"))
		if err != nil {
			t.Fatalf("GOMEMLIMIT %q: %v", e.Value, err)
		}
		lim := c.Resources.Limits[corev1.ResourceMemory]
		if q.Cmp(lim) >= 0 {
			t.Errorf("GOMEMLIMIT %s is not below the memory limit %s", e.Value, lim.String())
		}
	}
}

// checkGateway checks the gateway's container: its ports, its probes, its
// writable directories and how it is stopped.
func checkGateway(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	c := container1(t, pod)
	// The overlay's images: names the image the operator pushed.
	if !strings.HasPrefix(c.Image, imageRepo+":") {
		t.Errorf("the gateway's image is %q, want the overlay's %s:TAG", c.Image, imageRepo)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if len(ports) != 2 || ports["http"] != httpPort || ports["grpc"] != grpcPort {
		t.Errorf("container ports %v, want http %d and grpc %d", ports, httpPort, grpcPort)
	}
	// The gateway listens where the ports say.
	for name, want := range map[string]int32{"MODELGATE_HTTP_ADDR": httpPort, "MODELGATE_GRPC_ADDR": grpcPort} {
		e := env(t, pod, name)
		if e == nil {
			t.Errorf("%s is not set: the gateway would listen on 127.0.0.1 only", name)
			continue
		}
		host, port, err := net.SplitHostPort(e.Value)
		if err != nil || port != fmt.Sprint(want) || (host != "" && host != "0.0.0.0" && host != "::") {
			t.Errorf("%s = %q, want all addresses on port %d", name, e.Value, want)
		}
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"startupProbe", c.StartupProbe, healthzPath}, {"livenessProbe", c.LivenessProbe, healthzPath},
		{"readinessProbe", c.ReadinessProbe, readyzPath}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an HTTP GET of %s", p.name, p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || g.Port != intstr.FromString("http") {
			t.Errorf("%s: GET %s on port %v, want %s on port http", p.name, g.Path, g.Port.String(), p.path)
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s: scheme %s, want HTTP (the config has no tls)", p.name, g.Scheme)
		}
	}
	// The root filesystem is read-only: the data dir and /tmp are volumes.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
		if m.ReadOnly {
			continue
		}
		if m.MountPath != "/tmp" && volume(pod, m.Name) == nil && m.Name != dataVolume(t, pod) {
			t.Errorf("mount %s: volume %q is not in the pod", m.MountPath, m.Name)
		}
	}
	if _, ok := mounts["/tmp"]; !ok {
		t.Error("/tmp is not a volume; the root filesystem is read-only")
	}
	dataVolume(t, pod)
}

// dataVolume is the name of the volume mounted at the gateway's data dir.
func dataVolume(t *testing.T, pod corev1.PodSpec) string {
	t.Helper()
	e := env(t, pod, dataDirEnv)
	if e == nil || e.Value == "" {
		t.Fatalf("%s is not set", dataDirEnv)
	}
	for _, m := range container1(t, pod).VolumeMounts {
		if m.MountPath == e.Value && !m.ReadOnly {
			return m.Name
		}
	}
	t.Fatalf("the data dir %s is not a writable volume", e.Value)
	return ""
}

func checkService(t *testing.T, svc corev1.Service, podLabels map[string]string) {
	t.Helper()
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(podLabels)) || len(svc.Spec.Selector) == 0 {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, podLabels)
	}
	want := map[string]int32{"http": httpPort, "grpc": grpcPort}
	if len(svc.Spec.Ports) != len(want) {
		t.Errorf("Service ports %d, want %d", len(svc.Spec.Ports), len(want))
	}
	for _, p := range svc.Spec.Ports {
		if want[p.Name] != p.Port {
			t.Errorf("Service port %q is %d, want http %d and grpc %d", p.Name, p.Port, httpPort, grpcPort)
		}
		if p.TargetPort != intstr.FromString(p.Name) {
			t.Errorf("Service port %s targets %s, want the container port named %s", p.Name, p.TargetPort.String(), p.Name)
		}
		if p.AppProtocol == nil || *p.AppProtocol == "" {
			t.Errorf("Service port %s has no appProtocol", p.Name)
		}
	}
}

// checkConfig checks the config the gateway is started with: the init
// container joins the ConfigMap's config and the optional signing-keys
// Secret into it, it parses with the gateway's own parser, it allows the
// listeners the pod asks for, and the pod's grace period outlasts the
// gateway's shutdown.
func checkConfig(t *testing.T, m *manifests, pod corev1.PodSpec) {
	t.Helper()
	c := container1(t, pod)
	if !slices.Equal(c.Args, []string{"serve", "--config", configPath}) || len(c.Command) > 0 {
		t.Fatalf("the gateway runs %v %v, want the image's entrypoint with serve --config %s", c.Command, c.Args, configPath)
	}
	cmVol, secretVol := "", ""
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil {
			cmVol = v.Name
			if _, ok := m.configMap(v.ConfigMap.Name); !ok {
				t.Fatalf("volume %s names ConfigMap %q, which the overlay does not hold", v.Name, v.ConfigMap.Name)
			}
		}
		if v.Secret != nil && v.Secret.SecretName == signingKeys {
			secretVol = v.Name
			if v.Secret.Optional == nil || !*v.Secret.Optional {
				t.Error("the signing keys' Secret is not optional: without it the pod would not start")
			}
		}
	}
	if cmVol == "" || secretVol == "" {
		t.Fatalf("want a ConfigMap volume and the Secret %s as a volume; got %q and %q", signingKeys, cmVol, secretVol)
	}
	cm, _ := m.configMap(volume(pod, cmVol).ConfigMap.Name)
	raw := cm.Data[configKey]

	// Run the init container's script with its mounts moved into a
	// temporary directory, with and without the Secret.
	if len(pod.InitContainers) != 1 {
		t.Fatalf("want one init container, got %d", len(pod.InitContainers))
	}
	ic := pod.InitContainers[0]
	root := t.TempDir()
	moved := map[string]string{} // volume name → directory under root
	script := strings.Join(ic.Args, " ")
	if len(ic.Command) != 2 || ic.Command[0] != "/bin/sh" || ic.Command[1] != "-c" || len(ic.Args) != 1 {
		t.Fatalf("init container runs %v %v, want /bin/sh -c SCRIPT", ic.Command, ic.Args)
	}
	for _, mt := range ic.VolumeMounts {
		dir := filepath.Join(root, mt.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		moved[mt.Name] = dir
		script = strings.ReplaceAll(script, mt.MountPath+"/", dir+"/")
	}
	for _, name := range []string{cmVol, secretVol} {
		if moved[name] == "" {
			t.Fatalf("the init container does not mount volume %s", name)
		}
	}
	// The gateway reads the file the init container writes.
	var runVol string
	for _, mt := range c.VolumeMounts {
		if filepath.Dir(configPath) == mt.MountPath {
			runVol = mt.Name
			if !mt.ReadOnly {
				t.Errorf("the gateway may write its config's volume %s", mt.Name)
			}
		}
	}
	if v := volume(pod, runVol); moved[runVol] == "" || v == nil || v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Fatalf("%s is not on a memory-backed emptyDir shared with the init container (volume %q)", configPath, runVol)
	}
	for k, v := range cm.Data {
		if err := os.WriteFile(filepath.Join(moved[cmVol], k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	key := strings.Repeat("ab", 32)
	cfg := runInit(t, script, filepath.Join(moved[runVol], filepath.Base(configPath)))
	if len(cfg.SigningKeys) != 0 {
		t.Errorf("without the Secret the config has %d signing keys, want none (the gateway makes one)", len(cfg.SigningKeys))
	}
	if err := os.WriteFile(filepath.Join(moved[secretVol], "signing-keys.yaml"),
		[]byte(fmt.Sprintf("signing_keys: [%q]\n", key)), 0o644); err != nil {
		t.Fatal(err)
	}
	withKeys := runInit(t, script, filepath.Join(moved[runVol], filepath.Base(configPath)))
	if len(withKeys.SigningKeys) != 1 || fmt.Sprintf("%x", withKeys.SigningKeys[0]) != key {
		t.Errorf("with the Secret the config's signing keys are %x, want [%s]", withKeys.SigningKeys, key)
	}

	// Not on loopback: the gateway starts only with API keys.
	if cfg.Registry.Managed != config.ManagedConfig {
		t.Errorf("registry.managed %q: a changed ConfigMap must take effect (config as the source of truth)", cfg.Registry.Managed)
	}
	if cfg.Auth.Mode != config.AuthKeys {
		t.Errorf("auth mode %q: the gateway refuses to listen on all addresses without keys", cfg.Auth.Mode)
	}
	// The models the config names are the image's copy of the demo.
	if len(cfg.Models) == 0 || len(cfg.Endpoints) == 0 {
		t.Errorf("the config serves %d models and %d endpoints, want something to serve", len(cfg.Models), len(cfg.Endpoints))
	}
	for _, mod := range cfg.Models {
		var body struct {
			Backend struct{ Type, Path string }
		}
		if err := json.Unmarshal(mod.Body, &body); err != nil {
			t.Fatal(err)
		}
		rel, ok := strings.CutPrefix(body.Backend.Path, demoModels+"/")
		if !ok {
			t.Errorf("model %s@%s: path %q is not in the image's %s", mod.Name, mod.Version, body.Backend.Path, demoModels)
			continue
		}
		if _, err := os.Stat(filepath.Join("../../examples/demo/models", rel)); err != nil {
			t.Errorf("model %s@%s: %v", mod.Name, mod.Version, err)
		}
	}

	// limits.shutdown_timeout is written in the config, not left to the
	// default, and the grace period covers it after the preStop pause.
	var doc struct {
		Limits struct {
			ShutdownTimeout string `yaml:"shutdown_timeout"`
		} `yaml:"limits"`
	}
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Limits.ShutdownTimeout == "" {
		t.Error("limits.shutdown_timeout is not set in the ConfigMap's config")
	}
	var preStop time.Duration
	if l := c.Lifecycle; l != nil && l.PreStop != nil {
		if l.PreStop.Sleep == nil {
			t.Fatalf("preStop %+v: want a sleep (the image has no shell)", l.PreStop)
		}
		preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	if pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("terminationGracePeriodSeconds is not set")
	}
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if grace <= preStop+cfg.Limits.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v is not above the preStop pause %v plus limits.shutdown_timeout %v",
			grace, preStop, cfg.Limits.ShutdownTimeout)
	}
}

// runInit runs the init container's script and parses what it wrote.
func runInit(t *testing.T, script, out string) *config.Config {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = []string{}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("init script: %v\n%s", err, b)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("the init script did not write the config: %v", err)
	}
	cfg, err := config.Parse(raw, filepath.Dir(configPath))
	if err != nil {
		t.Fatalf("the gateway would not start with this config: %v\n%s", err, raw)
	}
	return cfg
}

func selects(t *testing.T, what string, sel *metav1.LabelSelector, podLabels map[string]string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || sel == nil || s.Empty() || !s.Matches(labels.Set(podLabels)) {
		t.Errorf("%s selector %v does not select the pods %v (%v)", what, sel, podLabels, err)
	}
}

func allContainers(pod corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(pod.InitContainers), pod.Containers...)
}

func container1(t *testing.T, pod corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(pod.Containers) != 1 || pod.Containers[0].Name != container {
		t.Fatalf("want one container %q, got %d", container, len(pod.Containers))
	}
	return pod.Containers[0]
}

func env(t *testing.T, pod corev1.PodSpec, name string) *corev1.EnvVar {
	t.Helper()
	c := container1(t, pod)
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func volume(pod corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(a, b)
}
