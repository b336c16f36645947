#!/usr/bin/env bash
# Serves the documentation site on 127.0.0.1 (default port 8000), rebuilding on every change.
# Usage: scripts/docs.sh [PORT]. Sets up .venv with the test extras (mkdocs) on first use.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" test
cd "$root"
export NO_MKDOCS_2_WARNING=1
exec .venv/bin/python -m mkdocs serve --strict -a "127.0.0.1:${1:-8000}"
