#!/usr/bin/env bash
# Build Kubeflow's training-operator (the peer of bench/operator_vs_kubeflow.py) from the Go module
# proxy through the wrapper module hack/tools/kubeflow, with its CRDs beside it, into
# ${HEURIMENTOR_CACHE:-~/.cache/heurimentor}/bin/kubeflow-<hash>/ (hash: the Go version, the
# KUBEFLOW_* pin of hack/versions.env and the wrapper). Only that benchmark runs this; `make test`
# never does. A complete cache dir makes a rerun instant.
#
#   hack/build-kubeflow.sh            build if missing (progress on stderr), print the bin dir
#   hack/build-kubeflow.sh --bin-dir  only print the bin dir
set -euo pipefail

hack_dir=$(cd "$(dirname "$0")" && pwd)
module_dir=${hack_dir}/tools/kubeflow
# shellcheck source=versions.env
source "${hack_dir}/versions.env"
cache=${HEURIMENTOR_CACHE:-${HOME}/.cache/heurimentor}
command -v go >/dev/null || { echo "error: go not found (need Go >= ${GO_MIN_VERSION})" >&2; exit 1; }
hash=$(
    { go env GOVERSION; grep KUBEFLOW "${hack_dir}/versions.env"; cat "${module_dir}/go.mod" "${module_dir}/go.sum" "${module_dir}/tools.go"; } \
        | sha256sum | cut -c1-16
)
bin_dir=${cache}/bin/kubeflow-${hash}
if [ "${1:-}" = "--bin-dir" ]; then
    echo "${bin_dir}"
    exit 0
fi
module=github.com/kubeflow/training-operator
if ! grep -Eq "^require ${module} ${KUBEFLOW_TRAINING_OPERATOR_VERSION}$" "${module_dir}/go.mod"; then
    echo "error: hack/tools/kubeflow/go.mod does not require ${module} ${KUBEFLOW_TRAINING_OPERATOR_VERSION} (hack/versions.env)" >&2
    exit 1
fi
if [ -x "${bin_dir}/training-operator" ] && [ -f "${bin_dir}/kubeflow.org_pytorchjobs.yaml" ]; then
    echo "${bin_dir}"
    exit 0
fi
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
mkdir -p "${cache}/bin"
work=$(mktemp -d "${cache}/bin/.build-kubeflow-XXXXXX")
trap 'rm -rf "${work}"' EXIT
echo "building ${module}/cmd/training-operator.v1 ${KUBEFLOW_TRAINING_OPERATOR_VERSION} (hack/tools/kubeflow)" >&2
start=${SECONDS}
cd "${module_dir}"
go build -ldflags "-s -w" -o "${work}/training-operator" "${module}/cmd/training-operator.v1"
# The CRDs ship in the module (manifests/base/crds), as its kustomize install applies them; with
# its default flags the controller runs every job kind, so it needs all of them.
cp "$(go list -m -f '{{.Dir}}' "${module}")"/manifests/base/crds/kubeflow.org_*.yaml "${work}/"
chmod u+w "${work}"/*.yaml
echo "built hack/tools/kubeflow in $((SECONDS - start))s" >&2
rm -rf "${bin_dir}"
mv "${work}" "${bin_dir}"
trap - EXIT
echo "${bin_dir}"
