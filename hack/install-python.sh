#!/usr/bin/env bash
# Create the project's virtual environment and install the project with every extra.
# pip's download cache ($PIP_CACHE_DIR) makes the second run cheap: torch's CUDA wheels are ~3 GB.
set -euo pipefail
exec 1>&2  # progress only: `make -s cluster-up` keeps stdout for its export lines
python=${1:-python3.11}
venv=${2:-.venv}
[ -x "${venv}/bin/python" ] || "${python}" -m venv "${venv}"
"${venv}/bin/python" -m pip install --quiet --upgrade pip
"${venv}/bin/python" -m pip install --quiet -e ".[all]"
touch "${venv}/.installed"
