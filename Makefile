# Roost: `make run` starts the server on the embedded default; `make test` runs the whole suite.
# Both install into .venv from the lock files on first use (requirements.txt and requirements-dev.txt:
# exact versions with hashes); `make lock` and `make upgrade` are the only ways those change.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
PIP = $(BIN)/python -m pip --disable-pip-version-check --quiet
RUN_STAMP = $(VENV)/.run-installed
DEV_STAMP = $(VENV)/.dev-installed

.PHONY: run test lint unit install services check-lock lock upgrade clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

check-lock:
	@$(PYTHON) scripts/check-lock.py

# install_from LOCK: every package at its locked version, hashes checked (pip and setuptools too), then
# Roost itself against them: no build isolation, no dependency resolution, so nothing unlocked comes in.
define install_from
	$(PYTHON) scripts/check-lock.py
	$(PIP) install --require-hashes -r $(1)
	$(PIP) install --no-deps --no-build-isolation -e .
endef

$(RUN_STAMP): pyproject.toml requirements.txt | $(BIN)/python
	$(call install_from,requirements.txt)
	touch $@

$(DEV_STAMP): pyproject.toml requirements-dev.txt | $(BIN)/python
	$(call install_from,requirements-dev.txt)
	touch $@ $(RUN_STAMP)

install: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(BIN)/roost serve

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/mypy src/roost tests/backends

# The suite talks to real Redis, NATS and PostgreSQL and drives Debian's chromium: make sure they are there.
services:
	bash scripts/ensure-services.sh

test: lint services
	$(BIN)/pytest

unit: $(DEV_STAMP)
	$(BIN)/pytest tests/protocol -q

# Edit pyproject.toml, then `make lock`: the lock files follow it, keeping every pin that still fits.
# `make upgrade`: every pin moves to the newest release pyproject.toml allows. Both run the suite on the
# result; commit pyproject.toml and the requirements*.txt locks together once it is green.
lock upgrade: | $(BIN)/python
	$(PIP) install --require-hashes -r requirements-dev.txt
	bash scripts/lock.sh $(if $(filter upgrade,$@),--upgrade)
	$(MAKE) test

clean:
	rm -rf $(VENV) roost-data .pytest_cache .mypy_cache .ruff_cache
