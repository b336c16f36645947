#!/usr/bin/env bash
# Sets up .venv with the test extras on first use, then runs the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" test
cd "$root"
# Two workers (one per core here), a test file's tests kept together in one worker: the
# suite takes about half its serial time. NST_TF_TEST_WORKERS=0 runs it serially.
.venv/bin/python -m pytest -q -n "${NST_TF_TEST_WORKERS:-2}" --dist loadfile "$@"
