# qc: two entry points. `make bench` runs the gates on models.yaml; `make test` runs qc's own checks.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REPORTS ?= reports
PYTEST_ARGS ?=
# Sharding (`make plan-shards`, then `make bench-shard SHARD=i` on each machine, then `qc merge OUT REPORT_DIR...`)
SHARDS ?= 2
SHARD ?= 1
RUN_GROUP ?=
SPLIT_PLAN ?= $(REPORTS)/split-plan.json

.PHONY: setup system-deps assets bench plan-shards bench-shard diagnose calibrate test lint typecheck clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# Debian packages the integration tests drive for real (OpenSSH server).
system-deps:
	@bash .ci/system-deps.sh

assets: setup
	$(BIN)/qc assets

bench: assets
	mkdir -p $(REPORTS)
	$(BIN)/python -m pytest benchmarks --qc-report-dir $(REPORTS) --junitxml=$(REPORTS)/junit.xml $(PYTEST_ARGS); \
	  rc=$$?; [ $$rc -eq 5 ] && { echo "no gate test ran" >&2; exit 1; }; exit $$rc

# pytest-split's durations for a split into whole models, weighted by what the last run into $(REPORTS) measured
# (its durations.json; without one, every gate counts 1 s).
plan-shards: assets
	mkdir -p $(REPORTS)
	$(BIN)/python -m pytest benchmarks --collect-only -q --qc-report-dir $(REPORTS) \
	  --qc-plan-durations $(SPLIT_PLAN) $(PYTEST_ARGS)

# Shard $(SHARD) of $(SHARDS) of `make bench`, into its own report folder; shards of one run share RUN_GROUP.
bench-shard: assets
	mkdir -p $(REPORTS)
	$(BIN)/python -m pytest benchmarks --splits $(SHARDS) --group $(SHARD) --durations-path $(SPLIT_PLAN) \
	  $(if $(RUN_GROUP),--qc-run-group $(RUN_GROUP)) --qc-report-dir $(REPORTS) --junitxml=$(REPORTS)/junit.xml \
	  $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && { echo "no gate test ran in shard $(SHARD)/$(SHARDS)" >&2; exit 1; }; \
	  exit $$rc

# The opt-in diagnosis of every model (local error, ranges, sensitivity, verified advice): a few minutes a model.
diagnose: assets
	mkdir -p $(REPORTS)
	$(BIN)/python -m pytest benchmarks --qc-diagnose --qc-report-dir $(REPORTS) -k diagnose $(PYTEST_ARGS)

# Fit the label-free agreement thresholds to the labelled budgets: a quantization sweep of every labelled entry
# (docs/calibration.md, .csv, .svg); counts at the pre-calibration default 0.5 too. Minutes; every variant is cached.
calibrate: assets
	$(BIN)/qc calibrate models.yaml --out docs --also 0.5

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/actionlint -no-color -oneline

typecheck: setup
	$(BIN)/mypy

test: setup system-deps assets lint typecheck
	$(BIN)/python -m pytest tests -p no:cacheprovider -n 2 --ignore=tests/perf $(PYTEST_ARGS)
	mkdir -p $(REPORTS)
	$(BIN)/python -m pytest tests/perf -p no:cacheprovider --benchmark-only \
	  --benchmark-json=$(REPORTS)/qc-perf.json --benchmark-columns=mean,stddev,rounds

clean:
	rm -rf $(VENV) $(REPORTS) .mypy_cache .ruff_cache
