# One target per habit. `make run` and `make test` bootstrap everything on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test test-system-deps lint format bench train train-cpu eval clean

install: $(STAMP)

# The venv is rebuilt only when missing; the project is reinstalled when its metadata changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[torch,train,dev]'
	@# pymatting's numba functions compile on first import (~40 s on 2 cores) and cache beside the package:
	@# pay it here, not in the first --refine a user runs.
	$(BIN)/python -c "import pymatting"
	@touch $(STAMP)

run: install
	$(BIN)/matteflow up

# Browser tests need Debian's chromium, the alert-rule tests Debian's promtool: both come from apt here,
# since a fresh CI machine has neither and Playwright's own browser download is not reachable.
test-system-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium prometheus >/dev/null; \
		else echo "note: chromium/promtool missing and apt-get unavailable; browser/rules tests will skip"; fi; \
	fi

test: install test-system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/run_bench.py
	$(BIN)/python bench/service_bench.py
	@if $(BIN)/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then \
		$(BIN)/python bench/gpu_bench.py; \
	else echo "no CUDA GPU: skipping bench/gpu_bench.py (run it with --device cpu for the CPU numbers)"; fi

# Every stage (teachers, labels, fit, export). Sized for one GPU (training/gpu_job.sh runs it on a bare GPU
# machine); on a 2-core CPU the fit stage alone takes days.
train: install
	$(BIN)/matteflow train --config training/config.json

# The same stages with a small network sized for this 2-core CPU (~3 hours for the fit stage; resumable).
train-cpu: install
	$(BIN)/matteflow train --config training/config-cpu.json

eval: install
	$(BIN)/matteflow eval --images tests/data/people --masks tests/data/people_masks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
