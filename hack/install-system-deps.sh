#!/usr/bin/env bash
# Install the Debian packages the test servers come from, only when they are missing:
#   postgresql-15  initdb / pg_ctl / postgres for throwaway clusters (hack/testenv/postgres.py)
#   prometheus     prometheus + promtool (hack/testenv/prometheus.py)
#   openssl        certificates for the local control plane (hack/testenv/certs.py)
#   manpages(-zh), fortunes(-zh), debian-edu-doc-en/-zh-cn, python3-doc  the DMU's real-text corpora
#   buildah, mmdebstrap, runc  the images: base from Debian packages, builds, and the image tests
#                  (hack/build-base-image.sh, hack/build-images.sh, tests/deploy/test_images.py)
#   containernetworking-plugins, iptables, curl  the real node (hack/testenv/realnode.py): the pods'
#                  bridge, kube-proxy's rules (inside the node's own network namespace), probes
# Idempotent: a machine that has them all does no network I/O. Needs root (or sudo) otherwise.
# `hack/install-system-deps.sh corpora` (make demo) checks and installs only the corpora.
set -euo pipefail
only=${1:-all}
[ "${only}" = all ] || [ "${only}" = corpora ] || { echo "usage: $0 [corpora]" >&2; exit 2; }

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
missing=()
# The DMU's real-text corpora (heurimentor/corpora.py: make demo, tests/dmu/test_dmu_real_text.py, bench/dmu_*.py).
for package in manpages manpages-zh fortunes fortunes-zh debian-edu-doc-en debian-edu-doc-zh-cn python3-doc; do
    dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q "ok installed" || missing+=("${package}")
done
if [ "${only}" = corpora ]; then
    [ ${#missing[@]} -eq 0 ] && { echo "real-text corpora present: manpages(-zh), fortunes(-zh), debian-edu-doc-en/-zh-cn, python3-doc" >&2; exit 0; }
else
    [ -x "${PG_BIN}/initdb" ] && [ -x "${PG_BIN}/pg_ctl" ] && [ -x "${PG_BIN}/postgres" ] || missing+=(postgresql-15)
    command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
    command -v openssl >/dev/null || missing+=(openssl)
    for tool in buildah mmdebstrap runc; do command -v "${tool}" >/dev/null || missing+=("${tool}"); done
    [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] || missing+=(containernetworking-plugins)
    for tool in iptables curl; do command -v "${tool}" >/dev/null || missing+=("${tool}"); done
fi

if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages present: postgresql-15, prometheus, openssl, buildah, mmdebstrap, runc, CNI plugins, iptables, curl" >&2
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "error: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing: ${missing[*]}" >&2
# Refresh the package lists only when they are absent or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages' -mtime -1 -print -quit 2>/dev/null)" ]; then
    "${sudo[@]}" apt-get update -qq
fi
# --no-install-recommends: prometheus recommends node-exporter, which the tests never use.
# The packages' own services are not wanted (tests start private servers); in a container
# without an init system policy-rc.d / invoke-rc.d simply does not start them.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}" >&2
