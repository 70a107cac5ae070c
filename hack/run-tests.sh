#!/usr/bin/env bash
# Usage: hack/run-tests.sh PYTHON [pytest args...]: lint (layering, ruff), then the suite.
# A lint failure does not hide the suite's result: both run, and the exit status is non-zero if
# either failed. "No tests collected" (pytest exit 5) is a failure with a reason, never a silent green.
set -uo pipefail
python=$1; shift
bin=$(dirname "${python}")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

lint_status=0
echo "==> lint: import-linter contracts ([tool.importlinter] in pyproject.toml)" >&2
"${bin}/lint-imports" --no-cache || lint_status=1
echo "==> lint: ruff check, ruff format --check" >&2
"${python}" -m ruff check . || lint_status=1
"${python}" -m ruff format --check . || lint_status=1
[ "${lint_status}" -eq 0 ] || echo "error: lint failed (see above); running the suite anyway" >&2

"${python}" -m pytest "$@"
status=$?
if [ "${status}" -eq 5 ]; then
    echo "error: pytest collected no tests (args: ${*:-none}); the suite under tests/ must never be empty" >&2
    exit 1
fi
[ "${status}" -ne 0 ] && exit "${status}"
exit "${lint_status}"
