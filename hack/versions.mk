# The one place where every tool version Ferry builds is pinned.
# Library versions live in go.mod; everything the Makefile builds into .tools/bin lives here.
# Changing a line here makes `make tools` rebuild that tool (the stamp file records the version).

REGISTRY_MODULE       := github.com/distribution/distribution/v3
REGISTRY_VERSION      := v3.1.2
MINIO_MODULE          := github.com/minio/minio
MINIO_VERSION         := v0.0.0-20260212201848-7aac2a2c5b7c
ETCD_MODULE           := go.etcd.io/etcd/server/v3
ETCD_VERSION          := v3.6.16
KUBERNETES_MODULE     := k8s.io/kubernetes
KUBERNETES_VERSION    := v1.37.2
KUBERNETES_STAGING    := v0.37.2
CRANE_MODULE          := github.com/google/go-containerregistry
CRANE_VERSION         := v0.22.1
ORAS_MODULE           := oras.land/oras
ORAS_VERSION          := v1.3.6
COSIGN_MODULE         := github.com/sigstore/cosign/v3
COSIGN_VERSION        := v3.1.3
HELM_MODULE           := helm.sh/helm/v4
HELM_VERSION          := v4.3.1
STATICCHECK_MODULE    := honnef.co/go/tools
STATICCHECK_VERSION   := v0.8.2
CONFORMANCE_MODULE    := github.com/opencontainers/distribution-spec/conformance
CONFORMANCE_VERSION   := v0.0.0-20260831232431-97274622c111
# podinfo (server and podcli, static), its Helm chart, kustomize folder and UI: the workload the
# node tests and the demo run through Ferry's registry. The module holds all of them.
PODINFO_MODULE        := github.com/stefanprodan/podinfo
PODINFO_VERSION       := v1.8.1-0.20250910200901-e86405a8674e
# skopeo comes from Debian's packages (apt-get), as the machine provides it.
SKOPEO_VERSION        := debian
# nft (nftables), for the network-namespace fence of the offline agent tests, likewise.
NFT_VERSION           := debian
# containerd, runc and containernetworking-plugins (the node of internal/testenv's StartNode)
# come from Debian's packages likewise: containerd 1.6, runc 1.1, CNI plugins 1.1.
CONTAINERD_VERSION    := debian

# Flux's API: the versions of the Go API modules are in go.mod; controller-gen turns their types
# into the CRDs api/crds holds (`make crds`), the version Flux generated its own with.
# The flux CLI, the release matching those API modules: tests read Ferry's objects with it.
FLUX_MODULE            := github.com/fluxcd/flux2/v2
FLUX_VERSION           := v2.9.5
# Flux's own source-controller, at the API module's version: a test points it at what Ferry
# serves, as a team that keeps Flux's controllers does.
SOURCE_CONTROLLER_MODULE  := github.com/fluxcd/source-controller
SOURCE_CONTROLLER_VERSION := v1.9.6
CONTROLLER_GEN_MODULE  := sigs.k8s.io/controller-tools/cmd/controller-gen
CONTROLLER_GEN_VERSION := v0.21.0
