#!/usr/bin/env bash
# build-tool.sh NAME MODULE VERSION [EXTRA]: builds one tool of hack/versions.mk into $TOOLS_BIN.
# Called by the Makefile, which skips it when the tool's stamp for that version exists.
# Everything comes from the Go module proxy; nothing is downloaded any other way.
set -euo pipefail

name=$1 module=$2 version=$3 extra=${4:-}
bin=${TOOLS_BIN:?TOOLS_BIN must be set}
src=${TOOLS_SRC:?TOOLS_SRC must be set}
mkdir -p "$bin" "$src"
start=$(date +%s)

# A scratch module for tools that `go install pkg@version` refuses (their go.mod has replace directives).
scratch() {
  local dir=$src/$name
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init "ferry.local/tools/$name" >/dev/null 2>&1
}

# apt_install PKG...: Debian packages, one apt at a time. make tools builds in parallel and
# several tools come from Debian; dpkg's lock refuses a second apt-get instead of waiting.
apt_install() {
  flock "$src/.apt.lock" sh -c 'apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null' apt "$@"
}

case $name in
  registry)    GOBIN=$bin go install "$module/cmd/registry@$version" ;;
  minio)       GOBIN=$bin go install "$module@$version" ;;
  crane)       GOBIN=$bin go install "$module/cmd/crane@$version" ;;
  oras)        GOBIN=$bin go install "$module/cmd/oras@$version" ;;
  cosign)      GOBIN=$bin go install "$module/cmd/cosign@$version" ;;
  helm)        GOBIN=$bin go install "$module/cmd/helm@$version" ;;
  staticcheck) GOBIN=$bin go install "$module/cmd/staticcheck@$version" ;;
  conformance) GOBIN=$bin go install "$module@$version" ;;
  flux)
    # flux's go.mod has replace directives, so it is built as the main module of its own
    # source; cmd/flux embeds manifests/*.yaml, which its release build generates for
    # `flux install` (not used here): one placeholder stands in for them.
    dir=$(go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
    rm -rf "$src/flux" && cp -r "$dir" "$src/flux" && chmod -R u+w "$src/flux"
    mkdir -p "$src/flux/cmd/flux/manifests"
    printf '# flux install is not available in this build\n' > "$src/flux/cmd/flux/manifests/placeholder.yaml"
    (cd "$src/flux" && CGO_ENABLED=0 go build -o "$bin/flux" ./cmd/flux)
    ;;
  source-controller)
    # Built as the main module of its own source (it has replace directives). Its go.mod
    # replaces its API module with ./api, which the module's zip does not hold: the API module
    # of the same version is taken from the proxy instead. github.com/fluxcd/pkg/artifact
    # v0.18.3, which it requires, is not served by the module proxy here; v0.18.0 builds.
    dir=$(go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
    rm -rf "$src/$name" && cp -r "$dir" "$src/$name" && chmod -R u+w "$src/$name"
    (cd "$src/$name" &&
      go mod edit -dropreplace "$module/api" -replace github.com/fluxcd/pkg/artifact=github.com/fluxcd/pkg/artifact@v0.18.0 &&
      go get "$module/api@$version" &&
      CGO_ENABLED=0 go build -mod=mod -o "$bin/$name" .)
    # Its published CRDs, all of them (it watches Buckets and ExternalArtifacts too, which sync
    # does not reconcile): the test installs them.
    share=$(dirname "$bin")/share/$name
    rm -rf "$share" && mkdir -p "$share" && cp "$src/$name"/config/crd/bases/*.yaml "$share/"
    ;;
  podinfo)
    # Static podinfo and podcli, and the module's chart, kustomize folder and UI, into
    # $TOOLS_BIN/../share/podinfo: internal/testenv builds podinfo's image from them.
    share=$(dirname "$bin")/share/podinfo
    rm -rf "$share" && mkdir -p "$share/bin"
    CGO_ENABLED=0 GOBIN=$share/bin go install -ldflags "-s -w" "$module/cmd/podinfo@$version" "$module/cmd/podcli@$version"
    dir=$(go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
    cp -r "$dir/charts/podinfo" "$share/chart" && cp -r "$dir/kustomize" "$dir/ui" "$share/"
    chmod -R u+w "$share"
    ;;
  skopeo)
    # Debian's skopeo (the machine is Debian and the tools run as root); nothing else installs it.
    if ! command -v skopeo >/dev/null; then
      apt_install skopeo
    fi
    ln -sf "$(command -v skopeo)" "$bin/skopeo"
    ;;
  nft)
    # Debian's nftables: the offline tests fence their network namespace with it.
    if ! command -v nft >/dev/null; then
      apt_install nftables
    fi
    ln -sf "$(command -v nft)" "$bin/nft"
    ;;
  containerd)
    # Debian's containerd, runc and CNI plugins: the single node of internal/testenv runs Pods
    # with them. ctr is containerd's own client (images are imported with it).
    if ! command -v containerd >/dev/null || ! command -v runc >/dev/null || [ ! -x /usr/lib/cni/bridge ]; then
      apt_install containerd runc containernetworking-plugins
    fi
    for b in containerd containerd-shim-runc-v2 ctr runc; do ln -sf "$(command -v $b)" "$bin/$b"; done
    mkdir -p "$bin/cni" && for p in bridge host-local loopback; do ln -sf "/usr/lib/cni/$p" "$bin/cni/$p"; done
    ;;
  etcd)
    scratch
    go get "$module@$version"
    go build -o "$bin/etcd" "$module"
    ;;
  kube-apiserver|kubectl|kubelet|kube-controller-manager|kube-scheduler|kube-proxy)
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local
    # paths; a consumer replaces each with the published module at the matching v0.x version.
    staging=$extra
    scratch
    gomod=$(go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    go mod edit -require="$module@$version"
    for m in $(awk '/^require/,/^\)/ { if ($2 == "v0.0.0") print $1 }' "$gomod"); do
      go mod edit -replace="$m=$m@$staging"
    done
    go get "$module/cmd/$name@$version"
    minor=$(echo "$version" | cut -d. -f2)
    go build -o "$bin/$name" -ldflags "-X k8s.io/component-base/version.gitVersion=$version \
      -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
      "$module/cmd/$name"
    ;;
  *) echo "build-tool.sh: unknown tool $name" >&2; exit 2 ;;
esac
echo "tools: built $name $version in $(( $(date +%s) - start ))s" >&2
