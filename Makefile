# `make run` and `make test` are the whole set-up on a fresh machine with only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

DOCS_STAMP := $(VENV)/.docs-stamp

.PHONY: install run test test-faults lint format bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,redis,postgres,oauth]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m examples.quickstart --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Only the fault-injection suite (tests/faults, a few minutes; `make test` runs it too).
# Everything else: make test PYTEST_ARGS='-m "not faults"'.
test-faults: $(STAMP)
	$(BIN)/python -m pytest -m faults tests/faults $(PYTEST_ARGS)

# ruff, mypy --strict (package, tests, benchmarks, examples) and the import rules
# (import-linter; contracts in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check ghapp_celery tests benchmarks examples tools
	$(BIN)/ruff format --check ghapp_celery tests benchmarks examples tools
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format ghapp_celery tests benchmarks examples tools
	$(BIN)/ruff check --fix ghapp_celery tests benchmarks examples tools

# Benchmarks, not tests: each writes its section of docs/performance.md (about 25 minutes).
bench: $(STAMP)
	$(BIN)/python benchmarks/intake.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/background.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/client.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/observability.py $(BENCH_ARGS)

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,redis,postgres,oauth,docs]'
	touch $(DOCS_STAMP)

# The docs site with its API reference, built strictly (a broken link or docstring fails).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info site
