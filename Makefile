# Roost: `make run` starts the server on the embedded default; `make test` runs the whole suite.
# Both bootstrap a virtualenv in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed-stamp

.PHONY: run test lint unit install services clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/roost serve

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy src/roost

# The suite talks to real Redis, NATS and PostgreSQL and drives Debian's chromium: make sure they are there.
services:
	bash scripts/ensure-services.sh

test: lint services
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/protocol -q

clean:
	rm -rf $(VENV) roost-data .pytest_cache .mypy_cache .ruff_cache
