# The two commands a newcomer needs: `make dev` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint services venv clean bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Start PostgreSQL / Redis / NATS on this machine if they do not answer.
services:
	@bash scripts/ensure-services.sh

lint: $(STAMP)
	$(BIN)/ruff check gateway bridge tests bench
	$(BIN)/ruff format --check gateway bridge tests bench
	$(BIN)/mypy

test: $(STAMP) services lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

dev: $(STAMP)
	$(BIN)/city-gateway dev

bench: $(STAMP) services
	$(BIN)/python bench/messages.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
