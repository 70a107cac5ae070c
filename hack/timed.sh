#!/usr/bin/env bash
# Usage: hack/timed.sh "phase name" command [args...]: run a phase and print how long it took.
set -euo pipefail
phase=$1; shift
start=$(date +%s)
echo "==> ${phase}" >&2
status=0
"$@" || status=$?
echo "==> ${phase}: $(( $(date +%s) - start ))s (exit ${status})" >&2
exit "${status}"
