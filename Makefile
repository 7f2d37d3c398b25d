# alertd — two commands on a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-geo chaos soak lint services venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "alertd needs Python 3.11 or newer"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: install it with 'sudo apt-get install python3-venv'"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: venv
	$(BIN)/alertd demo

services: venv
	@bash tests/services.sh

# Two test processes: most tests wait on sockets, servers and subprocesses, so two share
# a 2-core machine well. Each test file runs whole in one process (its module fixtures,
# such as the imported boundaries, are built once). PYTEST_JOBS=0 runs in one process.
PYTEST_JOBS ?= 2
test: venv services
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_JOBS) --dist loadfile $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check alertd adapters geo simulations tests

# The services as for the tests, and Alertmanager (the flash fan-out's peer) installed if missing.
bench: venv
	@bash tests/services.sh bench
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m simulations.bench_geo
	$(BIN)/python -m simulations.bench $(BENCH_ARGS)
	$(BIN)/python -m simulations.bench_hostile

# Fault injection (simulations/chaos.py): kills Redis, the broker, endpoints and engines
# mid fan-out; writes bench/chaos.json and a table. CHAOS_ARGS=--short for the CI sizes.
chaos: venv services
	$(BIN)/python -m simulations.chaos $(CHAOS_ARGS)

# 30 minutes of routine storm with Redis and workers killed on a schedule and a fifth of
# the webhooks bad (simulations/soak.py): loss, engine RSS growth, Redis memory. Not CI.
soak: venv services
	$(BIN)/python -m simulations.soak $(SOAK_ARGS)

bench-geo: venv
	$(BIN)/python -m simulations.bench_geo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache bench
