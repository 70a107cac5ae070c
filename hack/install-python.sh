#!/usr/bin/env bash
# Create the project's virtual environment and install the project with every extra.
#
# A new venv is filled from a wheelhouse, ${HEURIMENTOR_CACHE}/wheels: `pip download` fetches only the
# wheels not already there, then pip installs offline from it. (pip's own HTTP cache is not enough: the
# registry proxy on these machines sends no caching headers, so ~/.cache/pip stays empty and a re-created
# venv would fetch torch's ~3 GB of CUDA wheels again.) An existing venv is just updated in place.
set -euo pipefail
exec 1>&2  # progress only: `make -s cluster-up` keeps stdout for its export lines
python=${1:-python3.11}
venv=${2:-.venv}
wheelhouse=${HEURIMENTOR_CACHE:-${HOME}/.cache/heurimentor}/wheels
# Pinned versions (torch 2.11 is also what the GPU machines run): a fresh clone gets what was tested.
constraints=(-c hack/constraints.txt)

if [ ! -x "${venv}/bin/python" ]; then
    "${python}" -m venv "${venv}"
    mkdir -p "${wheelhouse}"
    echo "fetching wheels into ${wheelhouse} (present ones are reused)"
    "${venv}/bin/python" -m pip download --quiet -d "${wheelhouse}" --find-links "${wheelhouse}" \
        pip "setuptools>=69" wheel ".[all]" "${constraints[@]}"
    "${venv}/bin/python" -m pip install --quiet --no-index --find-links "${wheelhouse}" --upgrade pip
    "${venv}/bin/python" -m pip install --quiet --no-index --find-links "${wheelhouse}" -e ".[all]" "${constraints[@]}"
else
    "${venv}/bin/python" -m pip install --quiet --upgrade pip
    "${venv}/bin/python" -m pip install --quiet -e ".[all]" "${constraints[@]}"
fi
touch "${venv}/.installed"
