#!/usr/bin/env bash
# Build the platform's images with buildah (no Docker engine here) and write each as an OCI archive
# under ${HEURIMENTOR_CACHE}/images, named by a hash of everything that goes into it (Dockerfile,
# base image, sources, pinned versions): an unchanged image is not rebuilt.
#
# Usage: hack/build-images.sh [--check] [postgresql] [operator] [dmu] [tsm] [trainer]   (default: all five)
#   --check  build nothing: exit 1 naming every image whose archive is missing or out of date
# Offline: the Debian packages come with the local bases (hack/build-base-image.sh), the Python
# packages from the wheelhouse ${HEURIMENTOR_CACHE}/wheels (filled by hack/install-python.sh); the
# build runs in a network namespace of its own with no interfaces up (unshare --net). Images are tagged localhost/heurimentor/<name>:<version>.
# The last lines printed are a table: image, unpacked size, archive size, seconds (build or cache hit), archive.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${HEURIMENTOR_CACHE:-${HOME}/.cache/heurimentor}
wheelhouse=${cache}/wheels
out=${cache}/images
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
buildah=(buildah --storage-driver vfs)
check=false
if [ "${1:-}" = --check ]; then check=true; shift; fi
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(postgresql operator dmu tsm trainer)
mkdir -p "${out}"

if ${check}; then
    python_base=localhost/heurimentor/bookworm-slim-python:latest
    build_base=localhost/heurimentor/bookworm-slim-python-build:latest
    postgresql_base=localhost/heurimentor/bookworm-slim-postgresql:latest
else
    python_base=$(hack/build-base-image.sh python)
    build_base=$(hack/build-base-image.sh python-build)  # the build stage: gcc and Python's headers
    postgresql_base=
    for name in "${names[@]}"; do
        [ "${name}" = postgresql ] && postgresql_base=$(hack/build-base-image.sh postgresql)
    done
fi
stale=()

# The build context: the sources a `pip install .` needs (tracked and new files, as git sees them;
# symlinks kept, the CRD links resolve inside) and wheels/ as hard links into the wheelhouse.
context=$(mktemp -d "${out}/context.XXXXXX")
trap 'rm -rf "${context}"' EXIT
mkdir -p "${context}/src"
git ls-files -z --cached --others --exclude-standard -- pyproject.toml hack/constraints.txt heurimentor \
    operator trainer dmu_service tsm_service charts/heurimentor/crds docker/postgresql-entrypoint.sh \
    | tar --null -T - -cf - | tar -xf - -C "${context}/src"
# The wheel's long description: a fixed line, so an edit of the project README rebuilds no image.
echo "HeuriMentor: see the project's README." > "${context}/src/README.md"
if [ -d "${wheelhouse}" ]; then cp -al "${wheelhouse}" "${context}/wheels"; else mkdir "${context}/wheels"; fi
sources_hash=$(cd "${context}/src" && find . \( -type f -o -type l \) -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)

rows=()
for name in "${names[@]}"; do
    dockerfile=docker/${name}.Dockerfile
    [ -f "${dockerfile}" ] || { echo "error: no ${dockerfile} (images: postgresql operator dmu tsm trainer)" >&2; exit 2; }
    if [ "${name}" = postgresql ]; then base=${postgresql_base}; else base=${python_base}; fi
    base_id=$("${buildah[@]}" inspect --type image --format '{{.FromImageID}}' "${base}" 2>/dev/null) || base_id=missing
    if [ "${name}" = postgresql ]; then inputs=$(sha256sum "${dockerfile}" docker/postgresql-entrypoint.sh | cut -c1-64 | tr '\n' ' ')
    else
        build_base_id=$("${buildah[@]}" inspect --type image --format '{{.FromImageID}}' "${build_base}" 2>/dev/null) || build_base_id=missing
        inputs="$(sha256sum "${dockerfile}" | cut -c1-64) ${sources_hash} ${build_base_id}"
    fi
    hash=$(echo "${name} ${base_id} ${inputs} ${version}" | sha256sum | cut -c1-16)
    tag=localhost/heurimentor/${name}:${version}
    archive=${out}/${name}-${hash}.oci.tar
    start=$(date +%s)
    if ${check}; then
        built=$("${buildah[@]}" inspect --type image --format '{{index .OCIv1.Config.Labels "io.heurimentor.build-hash"}}' "${tag}" 2>/dev/null || true)
        [ -s "${archive}" ] && [ "${built}" = "${hash}" ] || stale+=("${name}")
        continue
    fi
    if [ -s "${archive}" ]; then
        # Cached: make sure local storage has it too (a fresh storage pulls it from the archive).
        if [ "$("${buildah[@]}" inspect --type image --format '{{index .OCIv1.Config.Labels "io.heurimentor.build-hash"}}' "${tag}" 2>/dev/null)" != "${hash}" ]; then
            "${buildah[@]}" pull --quiet "oci-archive:${archive}" >/dev/null
            "${buildah[@]}" tag "$("${buildah[@]}" images --quiet --filter "reference=${tag}" | head -1)" "${tag}" 2>/dev/null || true
        fi
        echo "==> ${name}: cached (${archive})" >&2
    else
        echo "==> ${name}: building ${tag} from ${dockerfile} (base ${base})" >&2
        ctx=${context}
        [ "${name}" = postgresql ] && ctx=${context}/src
        # chroot isolation runs RUN steps in buildah's own network namespace: a new, empty one.
        unshare --net -- "${buildah[@]}" bud --isolation chroot --format docker --layers=false --quiet \
            --build-arg "BASE_IMAGE=${base}" --build-arg "BUILD_BASE_IMAGE=${build_base}" \
            --build-arg "VERSION=${version}" --build-arg "REVISION=${revision}" \
            --label "io.heurimentor.build-hash=${hash}" \
            -f "${PWD}/${dockerfile}" -t "${tag}" "${ctx}" >/dev/null
        rm -f "${out}/${name}"-*.oci.tar
        # The image this tag pointed at before is dangling now: vfs keeps every one whole (5 GB for the trainer).
        "${buildah[@]}" rmi --prune >/dev/null 2>&1 || true
        "${buildah[@]}" push --quiet "${tag}" "oci-archive:${archive}.tmp:${tag}"
        mv "${archive}.tmp" "${archive}"
    fi
    archived=$(( $(stat -c %s "${archive}") / 1000000 ))  # gzip-compressed layers: what a registry stores
    unpacked=$("${buildah[@]}" images --noheading --format '{{.Size}}' "${tag}" | head -1)
    rows+=("$(printf '%-11s %9s unpacked %6s MB archive %5ss  %s' "${name}" "${unpacked}" "${archived}" "$(( $(date +%s) - start ))" "${archive}")")
done
if ${check}; then
    [ ${#stale[@]} -eq 0 ] && { echo "images up to date: ${names[*]}" >&2; exit 0; }
    echo "error: images missing or out of date: ${stale[*]} (run \`make images\`)" >&2
    exit 1
fi
printf '%s\n' "${rows[@]}"
