# Every target sets itself up on a fresh machine: uv (through pip when missing), the
# pinned Python packages (uv.lock), and clang for the on-chain programs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
# Prefect's local API server creates and migrates its database on a first start: 20 s
# (Prefect's default) is too short on a busy machine (core/settings.py says the same).
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 300

.PHONY: help setup programs demo demo-rollback up test bench lint postgres

help:
	@echo "make demo   - the upgrade runbook end to end on an embedded localnet (RESULT {json})"
	@echo "make demo-rollback - upgrade, migration of 1,000 accounts, verification, rollback"
	@echo "make up     - localnet + Prefect server + served deployments (UI on :4200)"
	@echo "make test   - the test suite"
	@echo "make bench  - benchmarks with baselines measured in the same run"
	@echo "make lint   - ruff"

setup: .build/setup.stamp

.build/setup.stamp: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
		python3 -m pip install --quiet uv
	@command -v clang >/dev/null 2>&1 || { \
		echo "installing clang (sBPF builds)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null; }
	$(UV) sync --frozen --quiet
	@mkdir -p .build && touch $@

programs: setup
	$(RUN) python -m programs.toolchain

demo: setup
	RUNBOOKS_PAUSE_POLL_SECONDS=1 $(RUN) runbooks demo

demo-rollback: setup
	RUNBOOKS_PAUSE_POLL_SECONDS=1 $(RUN) runbooks demo --scenario rollback

# The production layout on one machine: make up WORKERS=2 PREFECT_DATABASE=postgresql+asyncpg://...
up: setup
	$(RUN) runbooks up $(if $(WORKERS),--workers $(WORKERS)) \
		$(if $(PREFECT_DATABASE),--prefect-database $(PREFECT_DATABASE))

# Two pytest-xdist workers: most of the suite's time is waiting (servers starting, pauses,
# timelocks). TEST_WORKERS=0 runs it all in this process.
TEST_WORKERS ?= 2
test: setup
	$(RUN) pytest -n $(TEST_WORKERS)

bench: setup
	$(RUN) python -m benches

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .

# Start the machine's PostgreSQL and give root a role (CI; developers run it once).
postgres:
	bash scripts/postgres-start
