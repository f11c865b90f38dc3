# The two commands a newcomer needs: `make dev` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint services venv clean bench web web-check chromium compose-check

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
	$(BIN)/ruff check gateway bridge devstack tests bench
	$(BIN)/ruff format --check gateway bridge devstack tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The browser half (web/, SPEC §14): dependencies from the lock file, then generated
# API types current, client + app build, type check and unit tests (Vitest).
WEB_DEPS := web/node_modules/.package-lock.json
$(WEB_DEPS): web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	@touch $(WEB_DEPS)

web: $(WEB_DEPS)
	cd web && npm run build

web-check: $(STAMP) $(WEB_DEPS)
	cd web && npm run check

# Debian's Chromium for the browser tests (no browser download from the internet).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The compose files (base and the Synapse-workers profile) are valid: no Docker engine
# here, so Debian's docker-compose parses them; nginx checks the generated proxy config.
compose-check: $(STAMP)
	@command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose nginx-light >/dev/null; }
	PYTHON=$(BIN)/python bash scripts/check-compose.sh

# The presence and fanout suites once more on a local Redis Cluster of three masters
# (started and removed by the tests; docs/redis-cluster.md).
CLUSTER_SUITES := tests/core/test_presence_engine.py tests/core/test_hardening_presence_limits.py \
	tests/http/test_presence_api.py tests/realtime

test: $(STAMP) services lint web-check chromium compose-check
	CITY_WEB_TESTS=required $(BIN)/pytest -q $(PYTEST_ARGS)
	TEST_REDIS_BACKEND=cluster $(BIN)/pytest -q $(CLUSTER_SUITES)

dev: $(STAMP)
	$(BIN)/city-gateway dev

bench: $(STAMP) services
	$(BIN)/python bench/messages.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info web/node_modules test-artifacts
