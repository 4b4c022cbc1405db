# One entry point for humans and CI.  Every target sets itself up from scratch when needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test lint typecheck contracts unit systemd-analyze promtool demo bench chaos soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ required"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy reads its files from pyproject.toml: controller/ strict, and every body in tests/ checked
# (check_untyped_defs; a test needs no annotations of its own).
typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

# The suite runs on every core (pytest-xdist; PYTEST_WORKERS=0 runs it serially) with branch
# coverage: the whole package is reported, and the pure core and the API client must stay >= 95 %.
# The chaos and soak suites (make chaos, make soak) and the benchmarks (make bench) are not part of it.
PYTEST_WORKERS ?= auto
COVERAGE_FLOOR := controller/core/*,controller/model/*,controller/planning/*,controller/flyapi/*

# Python may write bytecode even where PYTHONDONTWRITEBYTECODE is set: pytest then caches the
# assertion-rewritten test modules and plugins (hypothesis, schemathesis...), and collecting the
# suite in each worker takes ~4 s of CPU instead of ~11 s from the second run on.
unit: $(STAMP) systemd-analyze promtool
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -m 'not bench and not chaos and not soak' -n $(PYTEST_WORKERS) --dist worksteal --cov --cov-report=term-missing:skip-covered
	@echo "coverage floor (95 %) on the pure core and the API client:"
	$(BIN)/coverage report --include='$(COVERAGE_FLOOR)' --fail-under=95

# tests/deploy checks the systemd units with systemd-analyze: install Debian's systemd package
# when it is missing and we are root (CI); otherwise those tests skip and say why.
systemd-analyze:
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing systemd (for systemd-analyze)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends systemd >/dev/null; \
	  else \
	    echo "systemd-analyze not found and cannot install it (not root or no apt-get)"; \
	  fi; }

# tests/deploy checks and unit-tests the Prometheus rules with promtool: Debian's prometheus
# package has it; installed the same way (root + apt-get), otherwise those tests skip.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing prometheus (for promtool)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else \
	    echo "promtool not found and cannot install it (not root or no apt-get)"; \
	  fi; }

## make test: set up .venv, then ruff, mypy (strict on controller/), import contracts, pytest
## (in parallel, with coverage and its floor).
test: lint typecheck contracts unit

## make demo: start the embedded emulator, seed it, and list machines through the client.
demo: $(STAMP)
	$(BIN)/machine-reconciler demo

## make bench: benchmarks (not part of make test).
bench: $(STAMP)
	$(BIN)/pytest -m bench -p no:randomly -s tests/bench

## make chaos: generated fault schedules, kill -9 and signals, many examples (README "Chaos,
## crash and soak testing").  make test runs a fixed-seed slice of it.
CHAOS_EXAMPLES ?= 30
CHAOS_KILLS ?= 5
chaos: $(STAMP)
	CHAOS_EXAMPLES=$(CHAOS_EXAMPLES) CHAOS_KILLS=$(CHAOS_KILLS) CHAOS_RANDOM=1 \
	  $(BIN)/pytest -m 'not soak' -p no:randomly -o timeout=0 -s tests/chaos

## make soak: the daemon against 1,000 machines with light faults for SOAK_SECONDS (600).
SOAK_SECONDS ?= 600
soak: $(STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/pytest -m soak -p no:randomly -o timeout=0 -s tests/chaos

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache *.egg-info .coverage .coverage.*
