# Ferry's Makefile. `make demo` and `make test` are the two commands a newcomer needs;
# each builds the tools it uses (and only those) from Go modules into .tools/ first.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

include hack/versions.mk

GO        ?= go
TOOLS_DIR := $(CURDIR)/.tools
TOOLS_BIN := $(TOOLS_DIR)/bin
TOOLS_SRC := $(TOOLS_DIR)/src
STAMPS    := $(TOOLS_DIR)/stamps
BIN       := $(CURDIR)/bin
export TOOLS_BIN TOOLS_SRC
# Tests find the real servers here (see internal/testenv).
export FERRY_TOOLS_BIN := $(TOOLS_BIN)

PKGS        := ./...
TEST_FLAGS  ?= -count=1 -timeout 30m
# Tools build side by side: each `go install` is one module build, and on 2 cores two of them
# overlap their downloads and links with each other's compiles.
TOOLS_JOBS  ?= 3
FUZZ_TIME   ?= 60s

# tool NAME MODULE VERSION [EXTRA]: a stamp named after the version, so a changed pin rebuilds
# and an unchanged one costs nothing.
define tool
$(STAMPS)/$(1)@$(3):
	@echo "tools: building $(1) $(3)"
	@hack/build-tool.sh $(1) $(2) $(3) $(4)
	@mkdir -p $(STAMPS) && rm -f $(STAMPS)/$(1)@* && touch $$@
TOOL_STAMPS += $(STAMPS)/$(1)@$(3)
endef
$(eval $(call tool,registry,$(REGISTRY_MODULE),$(REGISTRY_VERSION)))
$(eval $(call tool,minio,$(MINIO_MODULE),$(MINIO_VERSION)))
$(eval $(call tool,etcd,$(ETCD_MODULE),$(ETCD_VERSION)))
$(eval $(call tool,kube-apiserver,$(KUBERNETES_MODULE),$(KUBERNETES_VERSION),$(KUBERNETES_STAGING)))
$(eval $(call tool,kubectl,$(KUBERNETES_MODULE),$(KUBERNETES_VERSION),$(KUBERNETES_STAGING)))
$(eval $(call tool,kubelet,$(KUBERNETES_MODULE),$(KUBERNETES_VERSION),$(KUBERNETES_STAGING)))
$(eval $(call tool,kube-controller-manager,$(KUBERNETES_MODULE),$(KUBERNETES_VERSION),$(KUBERNETES_STAGING)))
$(eval $(call tool,kube-scheduler,$(KUBERNETES_MODULE),$(KUBERNETES_VERSION),$(KUBERNETES_STAGING)))
$(eval $(call tool,kube-proxy,$(KUBERNETES_MODULE),$(KUBERNETES_VERSION),$(KUBERNETES_STAGING)))
# kubectl, kubelet, kube-controller-manager, kube-scheduler and kube-proxy compile the same
# k8s.io packages as kube-apiserver: each waits for the build cache kube-apiserver fills
# instead of compiling them a second time beside it.
$(STAMPS)/kubectl@$(KUBERNETES_VERSION): | $(STAMPS)/kube-apiserver@$(KUBERNETES_VERSION)
$(STAMPS)/kubelet@$(KUBERNETES_VERSION): | $(STAMPS)/kube-apiserver@$(KUBERNETES_VERSION)
$(STAMPS)/kube-controller-manager@$(KUBERNETES_VERSION): | $(STAMPS)/kube-apiserver@$(KUBERNETES_VERSION)
$(STAMPS)/kube-scheduler@$(KUBERNETES_VERSION): | $(STAMPS)/kube-apiserver@$(KUBERNETES_VERSION)
$(STAMPS)/kube-proxy@$(KUBERNETES_VERSION): | $(STAMPS)/kube-apiserver@$(KUBERNETES_VERSION)
$(eval $(call tool,crane,$(CRANE_MODULE),$(CRANE_VERSION)))
$(eval $(call tool,oras,$(ORAS_MODULE),$(ORAS_VERSION)))
$(eval $(call tool,cosign,$(COSIGN_MODULE),$(COSIGN_VERSION)))
$(eval $(call tool,helm,$(HELM_MODULE),$(HELM_VERSION)))
$(eval $(call tool,staticcheck,$(STATICCHECK_MODULE),$(STATICCHECK_VERSION)))
$(eval $(call tool,conformance,$(CONFORMANCE_MODULE),$(CONFORMANCE_VERSION)))
$(eval $(call tool,podinfo,$(PODINFO_MODULE),$(PODINFO_VERSION)))
$(eval $(call tool,flux,$(FLUX_MODULE),$(FLUX_VERSION)))
$(eval $(call tool,source-controller,$(SOURCE_CONTROLLER_MODULE),$(SOURCE_CONTROLLER_VERSION)))
$(eval $(call tool,skopeo,debian,$(SKOPEO_VERSION)))
$(eval $(call tool,nft,debian,$(NFT_VERSION)))
$(eval $(call tool,containerd,debian,$(CONTAINERD_VERSION)))

.PHONY: tools
tools: ## build every server and CLI the tests use into .tools/bin (in parallel)
	@$(MAKE) --no-print-directory -j$(TOOLS_JOBS) $(TOOL_STAMPS)

# The demo runs a registry, etcd, kube-apiserver and kubectl: nothing else is built for it.
DEMO_STAMPS := $(STAMPS)/registry@$(REGISTRY_VERSION) $(STAMPS)/etcd@$(ETCD_VERSION) \
	$(STAMPS)/kube-apiserver@$(KUBERNETES_VERSION) $(STAMPS)/kubectl@$(KUBERNETES_VERSION)

.PHONY: demo-tools
demo-tools: ## build only the tools `make demo` runs
	@$(MAKE) --no-print-directory -j$(TOOLS_JOBS) $(DEMO_STAMPS)

.PHONY: build
build: ## build the mirror and sync binaries into bin/
	$(GO) build -o $(BIN)/ ./cmd/mirror ./cmd/sync

.PHONY: image
image: ## build the sync agent's OCI image (linux/amd64+arm64, no Docker) into bin/image; IMAGE_PUSH=host/repo:tag [IMAGE_PLAIN_HTTP=1] pushes it
	@version=$${VERSION:-$$(git describe --tags --always --dirty 2>/dev/null || echo dev)}; \
	revision=$$(git rev-parse HEAD 2>/dev/null || true); \
	export SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || echo 0)}; \
	for arch in amd64 arm64; do \
	  echo "image: building sync $$version for linux/$$arch"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w -X github.com/ferry-gitops/ferry/internal/buildinfo.Version=$$version" -o $(BIN)/linux_$$arch/sync ./cmd/sync; \
	done; \
	rm -rf $(BIN)/image; \
	$(GO) run ./hack/image --binary $(BIN)/linux_amd64/sync --binary $(BIN)/linux_arm64/sync \
	  --version "$$version" --revision "$$revision" --layout $(BIN)/image \
	  $${IMAGE_PUSH:+--push "$$IMAGE_PUSH"} $${IMAGE_PLAIN_HTTP:+--plain-http}

.PHONY: test
test: tools ## run every test, against real servers
	$(GO) test $(TEST_FLAGS) -v $(PKGS) 2>&1 | hack/test-summary.sh

.PHONY: e2e
e2e: tools ## run only the end-to-end tests
	$(GO) test $(TEST_FLAGS) -v ./e2e/... 2>&1 | hack/test-summary.sh

.PHONY: demo
demo: ## run the whole flow on an embedded default (builds only the four tools it runs)
	@$(MAKE) --no-print-directory -j2 demo-tools build
	$(GO) run ./hack/demo

.PHONY: bench
bench: tools build ## ratios against crane and the machine's floors (BENCH_SIZE=1GiB)
	$(GO) run ./bench

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZ_TIME each
	@hack/fuzz-all.sh $(FUZZ_TIME)

.PHONY: lint
lint: $(STAMPS)/staticcheck@$(STATICCHECK_VERSION) ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(TOOLS_BIN)/staticcheck $(PKGS)

# The CRDs of the Flux kinds Ferry reconciles, generated from the Flux API modules go.mod pins
# (as Flux generates the CRDs it publishes) and embedded in sync: run after changing those pins.
FLUX_API_PKGS := github.com/fluxcd/kustomize-controller/api/v1 github.com/fluxcd/helm-controller/api/v2 \
	github.com/fluxcd/source-controller/api/v1 github.com/fluxcd/source-watcher/api/v2/v1beta1
FLUX_CRDS := kustomize.toolkit.fluxcd.io_kustomizations helm.toolkit.fluxcd.io_helmreleases \
	source.toolkit.fluxcd.io_gitrepositories source.toolkit.fluxcd.io_ocirepositories \
	source.toolkit.fluxcd.io_helmrepositories source.toolkit.fluxcd.io_helmcharts \
	source.extensions.fluxcd.io_artifactgenerators source.toolkit.fluxcd.io_externalartifacts

.PHONY: crds
crds: ## regenerate api/crds from the Flux API modules in go.mod
	@out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	$(GO) run $(CONTROLLER_GEN_MODULE)@$(CONTROLLER_GEN_VERSION) crd $(addprefix paths=,$(FLUX_API_PKGS)) output:crd:dir=$$out; \
	for c in $(FLUX_CRDS); do cp "$$out/$$c.yaml" api/crds/; done

.PHONY: clean
clean: ## remove build outputs (keeps the tools)
	rm -rf $(BIN)

.PHONY: clean-tools
clean-tools: ## remove every built tool
	rm -rf $(TOOLS_DIR)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | sed 's/:.*## /\t/' | sort
