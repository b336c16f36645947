#!/usr/bin/env bash
# Sets up .venv on first use, then stylises the built-in samples into demo/ with a
# TensorBoard log in demo/runs. Extra flags are passed to nst-tf.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
mkdir -p demo
.venv/bin/nst-tf --output=demo/stylized.png --logdir=demo/runs "$@"
echo "Result: demo/stylized.png   Dashboard: .venv/bin/tensorboard --logdir demo/runs"
