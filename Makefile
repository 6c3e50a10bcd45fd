# Continuity: the two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: run test lint unit e2e bench schemas setup system-deps clean help

help:
	@echo "make run    - set up and run the whole stack on loopback with simulated traffic"
	@echo "make test   - set up and run lint and every test"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - measure worker start time and events folded per second"
	@echo "make schemas - re-export JSON Schema files from the models"

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade pip
	$(BIN)/pip install $(PIP_QUIET) -e '.[dev]'
	@touch $(STAMP)

# Debian's redis-server, when the machine lacks it (root or sudo needed only then).
system-deps:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends redis-server; }

run: setup
	$(BIN)/continuity dev

lint: $(STAMP)
	$(BIN)/ruff check streams schemas tests bench
	$(BIN)/ruff format --check streams schemas tests bench
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -m "not e2e" -q

e2e: setup
	$(BIN)/pytest -m e2e -q

test: setup lint
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m bench.core --events 30000 --runs 3

schemas: $(STAMP)
	$(BIN)/continuity schema

clean:
	rm -rf $(VENV) .continuity .pytest_cache .mypy_cache .ruff_cache
