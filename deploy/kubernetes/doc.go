// Package kubernetes holds the Kubernetes manifests of modelgate as a
// kustomize base (base/), the overlays overlays/single and
// overlays/replicas, and the components components/gateway (the pod
// template every overlay uses) and components/servicemonitor (optional).
//
// It has no Go code of its own: its tests build every overlay in-process
// with kustomize, decode each object strictly into its Kubernetes API type
// and check what the gateway needs of it (probes, ports, security context,
// shutdown timing, a config that parses). They also check the repository's
// Dockerfile against the manifests, and build the binary the way it does
// and run it as the image would.
package kubernetes
