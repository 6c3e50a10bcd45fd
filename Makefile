# Continuity: the two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: node-deps run test test-clock test-order lint unit e2e bench docs schemas setup system-deps clean help test-faults test-cluster lock

help:
	@echo "make run    - set up and run the whole stack on loopback with simulated traffic"
	@echo "make test   - set up and run lint and every test"
	@echo "make lint   - ruff and mypy"
	@echo "make test-faults - the fault suite, long versions (FAULT_SCALE=long), then test-cluster"
	@echo "make test-cluster - the end-to-end suites again on a three-primary Redis Cluster"
	@echo "make test-order - every test, in a shuffled order"
	@echo "make bench  - the worker against a ceiling, an empty Faust agent and a naive agent"
	@echo "make schemas - re-export JSON Schema files from the models"
	@echo "make docs   - regenerate the manual's tables that mirror code"
	@echo "make lock   - move uv.lock to the newest versions pyproject.toml allows"

setup: $(STAMP) system-deps node-deps

# Every install comes from uv.lock: the same versions on every machine and day.
# uv itself is locked too (a dev dependency); the first install bootstraps that
# version with pip, then `uv sync --frozen` makes .venv match the lock exactly
# (uv included, so a lock that moves uv forward moves the installed one too).
UV_VERSION = $(shell sed -n '/^name = "uv"$$/{n;s/^version = "\(.*\)"$$/\1/p;q;}' uv.lock)

$(STAMP): pyproject.toml uv.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@[ -x $(BIN)/uv ] || { \
	  [ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV); \
	  echo "installing uv $(UV_VERSION) into $(VENV)"; \
	  $(BIN)/python -m pip install $(PIP_QUIET) "uv==$(UV_VERSION)"; }
	$(BIN)/uv sync --frozen --extra dev --python $(BIN)/python --quiet
	@touch $(STAMP)

# Move the lock forward to the newest versions pyproject.toml allows, then show
# what changed; `make test` afterwards says whether they still pass.
lock: $(STAMP)
	$(BIN)/uv lock --upgrade
	@git --no-pager diff --stat -- uv.lock || true

# Debian packages, each only when its command is missing (root or sudo needed only
# then): redis-server for the test Redis, promtool (package prometheus) to check
# the alert rules and the /metrics output, chromium for the demo page's browser test
# (Playwright drives it; it never downloads a browser of its own), faketime for the
# clock-shifted run of `make test`.
SYSTEM_DEPS := redis-server:redis-server promtool:prometheus chromium:chromium faketime:faketime

system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
	  command -v "$${dep%%:*}" >/dev/null || missing="$$missing $${dep#*:}"; done; \
	[ -z "$$missing" ] || { \
	  echo "installing$$missing (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  log=$$(mktemp); \
	  { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; } >"$$log" 2>&1 \
	    || { cat "$$log"; rm -f "$$log"; exit 1; }; rm -f "$$log"; }

# The contract validators (@asyncapi/parser, @redocly/cli) from package-lock.json
# into ./node_modules: `npm ci`, only when the lock changed since the last install.
# No install scripts run (.npmrc), so nothing downloads a browser or phones home.
# Without node the step is skipped, and the tests needing it skip with that reason.
NODE_STAMP := node_modules/.installed-stamp

node-deps:
	@if command -v npm >/dev/null; then $(MAKE) -s --no-print-directory $(NODE_STAMP); \
	else echo "npm not found: the contract validators are not installed (their tests skip)"; fi

$(NODE_STAMP): package.json package-lock.json .npmrc
	npm ci --silent
	@touch $(NODE_STAMP)

run: setup
	$(BIN)/continuity dev

lint: $(STAMP)
	$(BIN)/uv lock --check --quiet || { echo "uv.lock does not match pyproject.toml: run make lock"; exit 1; }
	$(BIN)/ruff check streams schemas tests bench
	$(BIN)/ruff format --check streams schemas tests bench
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not e2e" -q

e2e: setup
	$(BIN)/pytest -m e2e -q

# Performance limits (marker `limits`) are not asserted here: a busy machine may
# break them with nothing wrong. `make test-faults` runs them; `make bench` measures.
# Two test processes (pytest-xdist): the tests wait on brokers, workers and Redis far
# more than they compute, so two share a 2-core machine at about half the wall time.
# Each has its own broker and Redis (the session fixtures); TEST_WORKERS=0 runs one.
TEST_WORKERS ?= 2
test: setup lint
	$(BIN)/pytest -q -n $(TEST_WORKERS) -m "not limits"
	@$(MAKE) --no-print-directory test-clock

# The tests whose processes compare event times with a clock (marker `clock`),
# again with every clock 1,100 days ahead (libfaketime; Redis keeps real time and
# the broker is a static binary): proof that no test or code path is a date bomb.
test-clock: setup
	faketime -f '+1100d' $(BIN)/pytest -q -m clock

# The whole suite with modules, and the tests in each, in a shuffled order: no test
# may depend on another. The seed is printed; RANDOM_ORDER_SEED=<seed> repeats a run.
ifeq ($(RANDOM_ORDER_SEED),)
RANDOM_ORDER_SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
test-order: setup
	@echo "test order seed $(RANDOM_ORDER_SEED) (repeat: make test-order RANDOM_ORDER_SEED=$(RANDOM_ORDER_SEED))"
	$(BIN)/pytest -q -m "not limits" --random-order-bucket=module --random-order-seed=$(RANDOM_ORDER_SEED)

# The fault suite's and the SSE load test's long versions (prints the fault table),
# the performance limits (marker `limits`; the load test's own under FAULT_SCALE=long),
# then the property tests searching at random instead of make test's fixed draw.
test-faults: setup
	FAULT_SCALE=long HYPOTHESIS_PROFILE=search $(BIN)/pytest -m "faults or load or limits" -q
	HYPOTHESIS_PROFILE=search $(BIN)/pytest -q -m "not e2e"
	@$(MAKE) --no-print-directory test-cluster

# The end-to-end, merge, fault and rebuild suites again with every stack's Redis on a
# three-primary Redis Cluster (TEST_REDIS=cluster: the session's stack and each private
# stack start one, workers run with CONTINUITY_CROSS_PARTITION=forward, tests needing
# one primary skip), in two processes like make test. Part of make test-faults, not of
# make test (its time budget): make test runs the cluster smoke, reads, ops and faults.
CLUSTER_SUITES ?= tests/system tests/worker tests/gateway tests/ops tests/faults
test-cluster: setup
	TEST_REDIS=cluster $(BIN)/pytest -q -n $(TEST_WORKERS) -m "not limits" $(CLUSTER_SUITES)

# Seeded backlog drained by a plain-aiokafka ceiling, an empty Faust agent, a naive
# GET/fold/SET agent, the worker and two workers; medians of 3 rounds, each run on a
# fresh broker and Redis and checked against the oracle (a few minutes on 2 cores).
# Bigger runs: make bench BENCH_ARGS="--events 50000 --runs 5 --memory-customers 10000,1000000"
BENCH_ARGS ?=
bench: setup
	$(BIN)/python -m bench --events 30000 --customers 3000 --runs 3 $(BENCH_ARGS)

# Pages that mirror code (configuration, Redis layout) rewritten from it; make test
# fails while one is stale.
docs: $(STAMP)
	$(BIN)/python -m streams.docs_pages

schemas: $(STAMP)
	$(BIN)/continuity schema

clean:
	rm -rf $(VENV) node_modules .continuity .pytest_cache .mypy_cache .ruff_cache
