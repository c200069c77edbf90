# Every target sets itself up: a virtual environment from the lock files, then the command.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
UV_VERSION := 0.13.9

.PHONY: up test lint typecheck contracts unit bench faults clean lock

$(BIN)/python:
	@echo "cleave: creating the virtual environment in $(VENV) (once)"
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Cleave needs Python 3.11 or newer")'
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Compiled to bytecode at install, as pip does and uv does not by default: an interpreter that
# never writes .pyc (PYTHONDONTWRITEBYTECODE) would otherwise compile every import at each start.
$(VENV)/.runtime: $(BIN)/python requirements.lock pyproject.toml
	@echo "cleave: installing the locked dependencies (about a minute on a cold cache)"
	$(UV) pip install --quiet --python $(BIN)/python --compile-bytecode -r requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q src
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock
	@echo "cleave: installing the locked development tools (ruff, mypy, pytest, Playwright, ...)"
	$(UV) pip install --quiet --python $(BIN)/python --compile-bytecode -r requirements-dev.lock
	touch $@

up: $(VENV)/.runtime  ## run the whole system on embedded defaults
	$(BIN)/cleave up

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

contracts: $(VENV)/.dev
	$(BIN)/lint-imports

test: lint typecheck contracts  ## the whole suite: style, types, boundaries, then every test
	$(BIN)/python tests/services.py ensure
	bash tests/browser.sh
	npm ci --prefix tests/a11y --no-audit --no-fund --silent
	npm ci --prefix tools/contracts --no-audit --no-fund --silent
	@# Two workers: the end-to-end tests on one, in turn; the in-process suites on the other.
	$(BIN)/pytest -n 2 --dist loadgroup --durations=30

bench: $(VENV)/.dev  ## every performance figure as a ratio in one run; QUICK=1 for the short run
	@command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install wrk"; exit 1; }
	$(BIN)/python -m bench $(if $(QUICK),--quick)

faults: $(VENV)/.dev  ## every fault class under load, then the invariants (QUICK=1: a few hundred orders)
	$(BIN)/python -m bench.faults $(if $(QUICK),--quick) $(if $(ONLY),--only $(ONLY))

lock:  ## refresh the lock files after editing pyproject.toml
	$(UV) pip compile pyproject.toml --python-version 3.11 --generate-hashes -q -o requirements.lock
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -q -o requirements-dev.lock

clean:
	rm -rf $(VENV) var/*.db var/*.db-* .pytest_cache .mypy_cache .ruff_cache
