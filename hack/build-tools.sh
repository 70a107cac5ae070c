#!/usr/bin/env bash
# Build the local control plane and chart tooling from the Go module proxy, with the machine's Go:
#   kube-apiserver kube-controller-manager kube-scheduler kubectl   (hack/tools/kube)
#   etcd (hack/tools/etcd)   helm (hack/tools/helm)   kwok (hack/tools/kwok)
# into ${HEURIMENTOR_CACHE:-~/.cache/heurimentor}/bin/<hash>/, where <hash> covers hack/versions.env,
# the wrapper modules and the Go version. A complete cache dir makes a rerun instant; Go's own build
# and module caches make a rebuild after a small change cheap.
#
#   hack/build-tools.sh            build what is missing (progress on stderr)
#   hack/build-tools.sh --bin-dir  only print the bin dir (nothing is built; used by hack/testenv)
# Builds run one at a time (each Go build already uses every core).
set -euo pipefail

hack_dir=$(cd "$(dirname "$0")" && pwd)
tools_dir=${hack_dir}/tools
# shellcheck source=versions.env
source "${hack_dir}/versions.env"
cache=${HEURIMENTOR_CACHE:-${HOME}/.cache/heurimentor}
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd helm kwok)

command -v go >/dev/null || { echo "error: go not found (need Go >= ${GO_MIN_VERSION})" >&2; exit 1; }
go_version=$(go env GOVERSION)
# sort -V: is GO_MIN_VERSION <= this Go?
if [ "$(printf '%s\n%s\n' "go${GO_MIN_VERSION}" "${go_version}" | sort -V | head -1)" != "go${GO_MIN_VERSION}" ]; then
    echo "error: ${go_version} is older than go${GO_MIN_VERSION}, which the pinned modules need" >&2
    exit 1
fi

# The control plane's wrappers only: hack/tools/kubeflow (the benchmark's peer, hack/build-kubeflow.sh)
# and its KUBEFLOW_* pin have their own cache entry, so pinning it never rebuilds the control plane.
plane_tools=(etcd helm kube kwok)
hash=$(
    cd "${hack_dir}/tools"
    { echo "${go_version}"; grep -v KUBEFLOW ../versions.env
      for f in go.mod go.sum '*.go'; do for t in "${plane_tools[@]}"; do cat ${t}/${f}; done; done; } | sha256sum | cut -c1-16
)
bin_dir=${cache}/bin/${hash}
if [ "${1:-}" = "--bin-dir" ]; then
    echo "${bin_dir}"
    exit 0
fi

# The wrapper go.mod files must require exactly what versions.env pins.
require() {  # require <module dir> <module path> <version>
    if ! grep -Eq "^[[:space:]]*(require[[:space:]]+)?$2[[:space:]]+$3([[:space:]]|$)" "${tools_dir}/$1/go.mod"; then
        echo "error: hack/tools/$1/go.mod does not require $2 $3 (hack/versions.env); edit it and run go mod tidy" >&2
        exit 1
    fi
}
require kube k8s.io/kubernetes "${KUBERNETES_VERSION}"
require kube k8s.io/api "${KUBERNETES_STAGING_VERSION}"
require etcd go.etcd.io/etcd/server/v3 "${ETCD_VERSION}"
require helm helm.sh/helm/v3 "${HELM_VERSION}"
require kwok sigs.k8s.io/kwok "${KWOK_VERSION}"
stale=$(grep -Eo "k8s\.io/[a-z0-9-]+ => k8s\.io/[a-z0-9-]+ v[0-9.]+" "${tools_dir}/kube/go.mod" \
    | grep -v " ${KUBERNETES_STAGING_VERSION}\$" || true)
if [ -n "${stale}" ]; then
    echo "error: hack/tools/kube/go.mod replaces staging modules at other versions than ${KUBERNETES_STAGING_VERSION}:" >&2
    echo "${stale}" >&2
    exit 1
fi

missing=()
for b in "${binaries[@]}"; do [ -x "${bin_dir}/${b}" ] || missing+=("${b}"); done
if [ ${#missing[@]} -eq 0 ]; then
    echo "control-plane binaries cached in ${bin_dir}" >&2
    exit 0
fi

# -buildvcs=false: the wrappers live in this repo; stamping its git state would defeat the cache.
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
mkdir -p "${cache}/bin"
work=$(mktemp -d "${cache}/bin/.build-XXXXXX")
trap 'rm -rf "${work}"' EXIT

build() {  # build <module dir> <ldflags> <package>...
    local dir=$1 ldflags=$2; shift 2
    echo "building $* (hack/tools/${dir})" >&2
    local start=${SECONDS}
    (cd "${tools_dir}/${dir}" && go build -ldflags "${ldflags}" -o "${work}/" "$@")
    echo "built hack/tools/${dir} in $((SECONDS - start))s" >&2
}

kube_minor=$(echo "${KUBERNETES_VERSION}" | cut -d. -f2)
kv=k8s.io/component-base/version
kube_ldflags="-s -w -X ${kv}.gitVersion=${KUBERNETES_VERSION} -X ${kv}.gitMajor=1 -X ${kv}.gitMinor=${kube_minor}"
kube_ldflags+=" -X ${kv}.gitCommit=0000000000000000000000000000000000000000 -X ${kv}.gitTreeState=clean"
kube_ldflags+=" -X ${kv}.buildDate=${KUBERNETES_BUILD_DATE}"
build kube "${kube_ldflags}" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl

build etcd "-s -w" .  # module heurimentor.dev/hack/tools/etcd: the binary is named etcd

# helm stamps its own version and the Kubernetes minor of its client-go (what `helm template` assumes).
helm_kube=$(cd "${tools_dir}/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)
helm_kube_minor=$(echo "${helm_kube}" | cut -d. -f2)
hv=helm.sh/helm/v3
helm_ldflags="-s -w -X ${hv}/internal/version.version=${HELM_VERSION} -X ${hv}/internal/version.metadata="
helm_ldflags+=" -X ${hv}/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
    helm_ldflags+=" -X ${hv}/${pkg}.k8sVersionMajor=1 -X ${hv}/${pkg}.k8sVersionMinor=${helm_kube_minor}"
done
build helm "${helm_ldflags}" helm.sh/helm/v3/cmd/helm

build kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION}" sigs.k8s.io/kwok/cmd/kwok

for b in "${binaries[@]}"; do
    [ -x "${work}/${b}" ] || { echo "error: build produced no ${b} in ${work}" >&2; exit 1; }
done
"${work}/kube-apiserver" --version >&2
"${work}/etcd" --version | head -1 >&2
"${work}/helm" version --short >&2
"${work}/kwok" --version >&2
# Publish atomically: a half-built directory never looks complete.
rm -rf "${bin_dir}"
mv "${work}" "${bin_dir}"
trap - EXIT
echo "control-plane binaries built into ${bin_dir}" >&2
