#!/usr/bin/env bash
# Build the images' base from Debian's own packages with mmdebstrap (what the official
# debian:bookworm-slim is made from: a minbase bootstrap with docs, man pages and locales dropped),
# and import it into buildah's local storage. No container registry is reachable here, so nothing
# is pulled; the Dockerfiles take this name as their BASE_IMAGE build argument.
#
# Usage: hack/build-base-image.sh python|python-build|postgresql
#   python      localhost/heurimentor/bookworm-slim-python     bookworm-slim + python3, python3-venv
#   python-build  localhost/heurimentor/bookworm-slim-python-build  the same + gcc, python3-dev (the
#               images' build stage compiles the DMU's C kernels; the runtime stage has no compiler)
#   postgresql  localhost/heurimentor/bookworm-slim-postgresql bookworm-slim + postgresql-15
# The Debian packages an image needs are part of its local base, so the image builds themselves run
# offline (with the public bookworm-slim base the Dockerfiles apt-get the same packages instead).
# An image already in storage whose package list label matches is kept (prints its name either way).
set -euo pipefail

flavour=${1:?usage: $0 python|python-build|postgresql}
case "${flavour}" in
    python) packages=(python3 python3-venv ca-certificates) ;;
    python-build) packages=(python3 python3-venv python3-dev gcc libc6-dev ca-certificates) ;;
    postgresql) packages=(postgresql-15 ca-certificates) ;;
    *) echo "error: unknown base flavour '${flavour}' (python, python-build or postgresql)" >&2; exit 2 ;;
esac
suite=bookworm
name=localhost/heurimentor/${suite}-slim-${flavour}:latest
buildah=(buildah --storage-driver vfs)
wanted="${suite}:$(IFS=,; echo "${packages[*]}")"

if existing=$("${buildah[@]}" inspect --type image --format '{{index .ImageAnnotations "io.heurimentor.base.packages"}}' "${name}" 2>/dev/null) \
        && [ "${existing}" = "${wanted}" ]; then
    echo "${name}"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "${work}"' EXIT
start=$(date +%s)
# The slimming of the official image: no docs, man pages, locales (their paths, not the packages).
mmdebstrap --quiet --mode=root --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log' \
    "${suite}" "${work}/rootfs.tar" >&2

container=$("${buildah[@]}" from scratch)
"${buildah[@]}" add "${container}" "${work}/rootfs.tar" / >/dev/null
"${buildah[@]}" config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --annotation "io.heurimentor.base.packages=${wanted}" \
    --label "org.opencontainers.image.title=heurimentor base (${suite}-slim + ${packages[*]})" \
    --label "org.opencontainers.image.source=https://deb.debian.org/debian ${suite}" "${container}"
"${buildah[@]}" commit --quiet --rm "${container}" "${name}" >/dev/null
echo "built ${name} in $(( $(date +%s) - start ))s" >&2
echo "${name}"
