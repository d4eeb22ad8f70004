#!/usr/bin/env bash
# Run `matteflow train` on a bare GPU machine where the project is not pip-installed.
# The package layout (matteflow.core = core/, matteflow.training = training/, ...) is recreated with symlinks
# in a temporary folder on PYTHONPATH; pure-Python extras that the machine lacks (pymatting) come from
# .carry/pylib. Usage: [PYTHON=python3] training/gpu_job.sh [matteflow train arguments...]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shim=$(mktemp -d)
mkdir -p "$shim/matteflow"
: > "$shim/matteflow/__init__.py"
ln -s "$repo/matteflow/settings.py" "$shim/matteflow/settings.py"
for sub in core training models; do ln -s "$repo/$sub" "$shim/matteflow/$sub"; done
export PYTHONPATH="$shim:$repo/.carry/pylib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
cd "$repo"
exec "${PYTHON:-python3}" -P -c 'import sys; from matteflow.training.cli import train_main; sys.exit(train_main(sys.argv[1:]))' "$@"
