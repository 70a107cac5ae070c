#!/usr/bin/env bash
# Build the local control plane and chart tooling from the Go module proxy, with the machine's Go:
#   kube-apiserver kube-controller-manager kube-scheduler kubectl   (hack/tools/kube)
#   etcd (hack/tools/etcd)   helm (hack/tools/helm)   kwok (hack/tools/kwok)
# into ${HEURIMENTOR_CACHE:-~/.cache/heurimentor}/bin/<hash>/, where <hash> covers hack/versions.env,
# the wrapper modules and the Go version; then the real node's binaries (hack/testenv/realnode.py):
#   kubelet kube-proxy (hack/tools/node)   containerd containerd-shim-runc-v2 ctr (hack/tools/containerd)
#   pause.oci.tar (the pod sandbox image: pause.c of k8s.io/kubernetes, static, FROM scratch)
# into bin/node-<hash>/, a hash of their own, so the node never rebuilds the control plane.
# A complete cache dir makes a rerun instant; Go's own build and module caches make a rebuild
# after a small change cheap.
#
#   hack/build-tools.sh                 build what is missing (progress on stderr)
#   hack/build-tools.sh --node          only the real node's binaries
#   hack/build-tools.sh --bin-dir       only print the control plane's bin dir (nothing is built)
#   hack/build-tools.sh --node-bin-dir  only print the node's bin dir (nothing is built)
# Builds run one at a time (each Go build already uses every core).
set -euo pipefail

hack_dir=$(cd "$(dirname "$0")" && pwd)
tools_dir=${hack_dir}/tools
# shellcheck source=versions.env
source "${hack_dir}/versions.env"
cache=${HEURIMENTOR_CACHE:-${HOME}/.cache/heurimentor}
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd helm kwok)
node_binaries=(kubelet kube-proxy containerd containerd-shim-runc-v2 ctr pause.oci.tar)

command -v go >/dev/null || { echo "error: go not found (need Go >= ${GO_MIN_VERSION})" >&2; exit 1; }
go_version=$(go env GOVERSION)
# sort -V: is GO_MIN_VERSION <= this Go?
if [ "$(printf '%s\n%s\n' "go${GO_MIN_VERSION}" "${go_version}" | sort -V | head -1)" != "go${GO_MIN_VERSION}" ]; then
    echo "error: ${go_version} is older than go${GO_MIN_VERSION}, which the pinned modules need" >&2
    exit 1
fi

# The control plane's wrappers only: hack/tools/kubeflow (the benchmark's peer, hack/build-kubeflow.sh)
# and the node's wrappers, with their KUBEFLOW_* / CONTAINERD_* pins, have cache entries of their
# own, so pinning them never rebuilds the control plane.
plane_tools=(etcd helm kube kwok)
node_tools=(node containerd)
tools_hash() {  # tools_hash <versions.env lines (grep args)> <wrapper dir>...
    local lines=$1; shift
    cd "${hack_dir}/tools"
    # shellcheck disable=SC2086 # the grep arguments are meant to split
    { echo "${go_version}"; grep ${lines} ../versions.env
      for f in go.mod go.sum '*.go'; do for t in "$@"; do cat ${t}/${f}; done; done; } | sha256sum | cut -c1-16
}
bin_dir=${cache}/bin/$(tools_hash "-v -e KUBEFLOW -e CONTAINERD" "${plane_tools[@]}")
node_bin_dir=${cache}/bin/node-$(tools_hash "-e KUBERNETES -e CONTAINERD" "${node_tools[@]}")
case "${1:-}" in
    --bin-dir) echo "${bin_dir}"; exit 0 ;;
    --node-bin-dir) echo "${node_bin_dir}"; exit 0 ;;
    --node | "") ;;
    *) echo "error: unknown argument ${1} (see the header of hack/build-tools.sh)" >&2; exit 2 ;;
esac

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
require node k8s.io/kubernetes "${KUBERNETES_VERSION}"
require containerd github.com/containerd/containerd/v2 "${CONTAINERD_VERSION}"
for t in kube node; do
    stale=$(grep -Eo "k8s\.io/[a-z0-9-]+ => k8s\.io/[a-z0-9-]+ v[0-9.]+" "${tools_dir}/${t}/go.mod" \
        | grep -v " ${KUBERNETES_STAGING_VERSION}\$" || true)
    if [ -n "${stale}" ]; then
        echo "error: hack/tools/${t}/go.mod replaces staging modules at other versions than ${KUBERNETES_STAGING_VERSION}:" >&2
        echo "${stale}" >&2
        exit 1
    fi
done

complete() {  # complete <dir> <file>...: every file is there (published dirs are whole, see publish)
    local dir=$1 b; shift
    for b in "$@"; do [ -s "${dir}/${b}" ] || return 1; done
}

# -buildvcs=false: the wrappers live in this repo; stamping its git state would defeat the cache.
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
mkdir -p "${cache}/bin"
work=
trap '[ -z "${work}" ] || rm -rf "${work}"' EXIT

build() {  # build <module dir> <ldflags> <package>...
    local dir=$1 ldflags=$2; shift 2
    echo "building $* (hack/tools/${dir})" >&2
    local start=${SECONDS}
    (cd "${tools_dir}/${dir}" && go build ${BUILD_TAGS:+-tags "${BUILD_TAGS}"} -ldflags "${ldflags}" -o "${work}/" "$@")
    echo "built hack/tools/${dir} in $((SECONDS - start))s" >&2
}

# Publish atomically: a half-built directory never looks complete.
publish() {  # publish <bin dir>
    rm -rf "$1"
    mv "${work}" "$1"
    work=
}

kube_minor=$(echo "${KUBERNETES_VERSION}" | cut -d. -f2)
kv=k8s.io/component-base/version
kube_ldflags="-s -w -X ${kv}.gitVersion=${KUBERNETES_VERSION} -X ${kv}.gitMajor=1 -X ${kv}.gitMinor=${kube_minor}"
kube_ldflags+=" -X ${kv}.gitCommit=0000000000000000000000000000000000000000 -X ${kv}.gitTreeState=clean"
kube_ldflags+=" -X ${kv}.buildDate=${KUBERNETES_BUILD_DATE}"

build_control_plane() {
if complete "${bin_dir}" "${binaries[@]}"; then
    echo "control-plane binaries cached in ${bin_dir}" >&2
    return
fi
work=$(mktemp -d "${cache}/bin/.build-XXXXXX")
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
publish "${bin_dir}"
echo "control-plane binaries built into ${bin_dir}" >&2
}

build_node() {
# One node build at a time: a second run waits here, then finds the binaries cached.
exec 9>"${cache}/bin/.node-build.lock"
flock 9
if complete "${node_bin_dir}" "${node_binaries[@]}"; then
    echo "node binaries cached in ${node_bin_dir}" >&2
    return
fi
for tool in gcc buildah; do
    command -v "${tool}" >/dev/null || { echo "error: ${tool} not found (the pause image); run make system-deps" >&2; exit 1; }
done
work=$(mktemp -d "${cache}/bin/.build-node-XXXXXX")
build node "${kube_ldflags}" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
cv=github.com/containerd/containerd/v2/version
# no_btrfs: the btrfs snapshotter needs cgo and headers; overlayfs is what the node uses.
BUILD_TAGS=no_btrfs build containerd "-s -w -X ${cv}.Version=${CONTAINERD_VERSION} -X ${cv}.Revision=" \
    github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr

# The pod sandbox image: no registry is reachable, so pause is built from the pinned Kubernetes source.
pause_src=$(cd "${tools_dir}/node" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
gcc -Os -static -DVERSION="${KUBERNETES_VERSION}" -o "${work}/pause" "${pause_src}"
strip "${work}/pause"
buildah=(buildah --storage-driver vfs)
container=$("${buildah[@]}" from scratch)
"${buildah[@]}" copy --quiet "${container}" "${work}/pause" /pause >/dev/null
"${buildah[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "${container}"
"${buildah[@]}" commit --quiet --rm "${container}" "oci-archive:${work}/pause.oci.tar:localhost/heurimentor/pause:${KUBERNETES_VERSION}" >/dev/null
rm "${work}/pause"

for b in "${node_binaries[@]}"; do
    [ -s "${work}/${b}" ] || { echo "error: build produced no ${b} in ${work}" >&2; exit 1; }
done
"${work}/kubelet" --version >&2
"${work}/containerd" --version >&2
publish "${node_bin_dir}"
echo "node binaries built into ${node_bin_dir}" >&2
}

[ "${1:-}" = --node ] || build_control_plane
build_node
