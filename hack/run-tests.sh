#!/usr/bin/env bash
# Usage: hack/run-tests.sh PYTHON [pytest args...]: run the suite; "no tests collected" (pytest exit 5)
# is a failure with a reason, never a silent green or an unexplained code.
set -uo pipefail
python=$1; shift
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
"${python}" -m pytest "$@"
status=$?
if [ "${status}" -eq 5 ]; then
    echo "error: pytest collected no tests (args: ${*:-none}); the suite under tests/ must never be empty" >&2
    exit 1
fi
exit "${status}"
