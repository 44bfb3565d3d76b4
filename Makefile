# The two commands of the README: `make demo` and `make test`. Each creates .venv when
# it is missing (nothing needed but Python and make). The dev extra includes distributed,
# so the contract suite also runs on the Dask backend (a local test cluster).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Other supported Pythons the contract suite also runs on, when this machine has them.
MATRIX ?= 3.10 3.13
SOURCES := src tests bench demo examples

.PHONY: demo test quick lint typecheck unit contract-matrix cpython-suite bench bench-peers soak soak-short clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python demo/showcase.py

test: lint typecheck unit cpython-suite contract-matrix soak-short

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# The inner loop: the unit tests not marked slow (more than about half a second each, or
# a Dask cluster: all of tests/test_dask.py), without the contract suite (every test on
# every backend) nor the CPython suite. Under a minute on an idle 2-core machine; stops
# at the first failure. `make test` still runs everything.
quick: $(STAMP)
	$(BIN)/pytest -m "not slow" -x -q --ignore=tests/contract

# CPython's own test.test_concurrent_futures, unmodified, against corral (it ships with
# CPython 3.13; tests/cpython/run.py, exceptions and their reasons in excepted.py). The
# interpreter is found as for the contract suite; without a 3.13 that has the test
# package it is reported, not hidden.
CPYTHON_SUITE_PY ?= 3.13
cpython-suite: $(STAMP)
	@set -e; v=$(CPYTHON_SUITE_PY); py=""; \
	for cand in $$(ls -d $$HOME/.pyenv/versions/$$v.*/bin/python 2>/dev/null | sort -V | tail -n 1) $$(command -v python$$v 2>/dev/null); do \
	  if "$$cand" -c "import test.test_concurrent_futures" 2>/dev/null; then py=$$cand; break; fi; \
	done; \
	if [ -z "$$py" ]; then echo "CPython's test_concurrent_futures: SKIPPED (no python$$v with its test package here)"; exit 0; fi; \
	venv=.venv-$$v; \
	if [ ! -f $$venv/.installed ] || [ pyproject.toml -nt $$venv/.installed ]; then \
	  rm -rf $$venv; "$$py" -m venv $$venv; \
	  $$venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'; \
	  touch $$venv/.installed; \
	fi; \
	$$venv/bin/python tests/cpython/run.py

# The contract suite (tests/contract) on each Python of MATRIX found on this machine
# (on PATH as pythonX.Y, or under pyenv); a version that is missing is reported, not hidden.
contract-matrix: $(STAMP)
	@set -e; for v in $(MATRIX); do \
	  py=""; \
	  for cand in $$(ls -d $$HOME/.pyenv/versions/$$v.*/bin/python 2>/dev/null | sort -V | tail -n 1) $$(command -v python$$v 2>/dev/null); do \
	    if "$$cand" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$$v'.split('.'))))" 2>/dev/null; then py=$$cand; break; fi; \
	  done; \
	  if [ -z "$$py" ]; then echo "contract suite on Python $$v: SKIPPED (no working python$$v here)"; continue; fi; \
	  venv=.venv-$$v; \
	  if [ ! -f $$venv/.installed ] || [ pyproject.toml -nt $$venv/.installed ]; then \
	    rm -rf $$venv; \
	    "$$py" -m venv $$venv; \
	    $$venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'; \
	    touch $$venv/.installed; \
	  fi; \
	  echo "contract suite on Python $$v ($$py)"; \
	  $$venv/bin/python -m pytest -q -p no:cacheprovider tests/contract; \
	done

bench: $(STAMP)
	$(BIN)/python bench/bench_thread.py
	$(BIN)/python bench/bench_process.py
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_latency.py
	$(BIN)/python bench/bench_asyncio.py
	$(BIN)/python bench/bench_interrupt.py
	$(BIN)/python bench/bench_flow.py
	$(BIN)/python bench/bench_observe.py
	$(BIN)/python bench/bench_dask.py

# corral beside its peers (bench/peers.py: the stdlib, multiprocessing.Pool, loky, pebble,
# mpire, joblib, deadpool): prints the table, writes docs/peers.svg. Takes 10-20 minutes;
# not part of `make test`. The peers come from the bench extra, installed on first use.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench-peers: $(BENCH_STAMP)
	$(BIN)/python bench/peers.py

# The chaos soak (bench/soak.py): both pools, SOAK_SECONDS each, a fixed seed.
SOAK_SECONDS ?= 600
SOAK_SEED ?= 1
soak: $(STAMP)
	$(BIN)/python bench/soak.py --pool both --seconds $(SOAK_SECONDS) --seed $(SOAK_SEED)

# the soak's short run in `make test`: 30 s on each pool, its own seed
soak-short: $(STAMP)
	$(BIN)/python bench/soak.py --pool both --seconds 30 --seed 7

clean:
	rm -rf $(VENV) .venv-* .mypy_cache .pytest_cache .ruff_cache
