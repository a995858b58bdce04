# SUA Portal: `make demo` runs the portal with a demo cohort, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CHROMIUM ?= /usr/bin/chromium
# Some machines set PYTHONDONTWRITEBYTECODE: then every Python process (pytest's, each Celery worker,
# gunicorn, each training process) compiled the project from source again, and pytest rewrote its test
# modules again in each process. Bytecode is written under __pycache__ (ignored by git).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test setup lint typecheck chromium benchmarks benchmarks-large clean

setup: $(VENV)/.installed frontend/node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	# torch first and pinned: an unpinned resolve pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $@

chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "error: $(CHROMIUM) is missing: install Debian's chromium package (browser tests need it)" >&2; exit 1; fi; }

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	# The browser modules: ESLint, then their JSDoc types checked by tsc.
	cd frontend && npm run --silent lint && npm run --silent typecheck

typecheck: setup
	$(BIN)/mypy analysis sua_portal tests benchmarks

# pytest in PYTEST_WORKERS processes (pytest-xdist; 0: one process). Each has its own test database,
# MEDIA_ROOT, broker keys, Celery worker and browser; worksteal keeps a module's tests together while
# it can, so module fixtures are mostly made once (scope-based --dist modes would drop tests: see tests/conftest.py).
# Three on two cores: much of a browser or worker test is waiting, which a third process fills
# (measured here, pytest's time: -n 2 202 s, -n 3 163-181 s, -n 4 182 s).
PYTEST_WORKERS ?= 3

test: setup chromium lint typecheck
	# The project's bytecode written once, before the test processes and their Celery workers start
	# at the same moment and would each compile it.
	$(BIN)/python -m compileall -q analysis sua_portal
	$(BIN)/python scripts/devenv.py run -- $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=25 $(PYTEST_ARGS)

demo: setup
	$(BIN)/python scripts/devenv.py demo

LARGE_BENCHMARKS := $(wildcard benchmarks/bench_large_*.py) benchmarks/bench_sua_large.py

benchmarks: setup
	for b in $(filter-out $(LARGE_BENCHMARKS),$(wildcard benchmarks/bench_*.py)); do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The Camelyon-size slide (98,000 x 215,000 px, hours of CPU; LARGE_ROWS="Y0 Y1" writes a band of it) and the
# benchmarks at that size; not part of `make test` or `make benchmarks`.
LARGE_DIR := var/large
LARGE_ROWS ?=
LARGE_SLIDE := $(LARGE_DIR)/camelyon_98000x215000_seed0$(if $(LARGE_ROWS),_rows$(subst $() ,-,$(LARGE_ROWS))).tiff

$(LARGE_SLIDE):
	$(BIN)/python -m analysis.synthetic large $(LARGE_DIR) $(if $(LARGE_ROWS),--rows $(LARGE_ROWS))

benchmarks-large: setup $(LARGE_SLIDE)
	for b in $(LARGE_BENCHMARKS); do echo "== $$b"; $(BIN)/python $$b --slide $(LARGE_SLIDE:.tiff=.json) || exit 1; done

clean:
	rm -rf var/media var/test-media var/slide-cache var/static
