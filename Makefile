# tracebox — one command to run, one to test. See README.md.

CARGO ?= cargo
PYTHON ?= python3
VENV_TRACING := .venv-tracing
VENV_MLFLOW := .venv-mlflow
DEBUG_BIN := target/debug/tracebox

.PHONY: run build test test-rust test-e2e test-e2e-mlflow venvs lint fmt bench bench-compare bench-ingest bench-floor clean help

help:
	@echo "make run            build (release) and serve on ./tracebox-data at http://127.0.0.1:5000"
	@echo "make test           install test dependencies and run every test"
	@echo "make lint           rustfmt and clippy, as CI runs them"
	@echo "make bench          1M-trace search benchmark (tracebox bench search)"
	@echo "make bench-compare  side-by-side benchmark against a real MLflow server"
	@echo "make bench-ingest   OTLP ingestion throughput (tracebox bench ingest)"
	@echo "make bench-floor    least CPU per span SQLite + tantivy ingestion can cost here"

run:
	$(CARGO) run --release -- serve

build:
	$(CARGO) build --release

# The light SDK and the full mlflow package must never share a venv.
$(VENV_TRACING)/.installed: tests/e2e/requirements-tracing.txt
	$(PYTHON) -m venv $(VENV_TRACING)
	$(VENV_TRACING)/bin/pip install -q --disable-pip-version-check -r $<
	@touch $@

$(VENV_MLFLOW)/.installed: tests/e2e/requirements-mlflow.txt
	$(PYTHON) -m venv $(VENV_MLFLOW)
	$(VENV_MLFLOW)/bin/pip install -q --disable-pip-version-check -r $<
	@touch $@

venvs: $(VENV_TRACING)/.installed $(VENV_MLFLOW)/.installed

test: venvs test-rust test-e2e test-e2e-mlflow

test-rust:
	$(CARGO) build
	$(CARGO) nextest run --no-fail-fast

test-e2e: $(VENV_TRACING)/.installed
	$(CARGO) build
	TRACEBOX_BIN=$(CURDIR)/$(DEBUG_BIN) $(VENV_TRACING)/bin/python -m pytest tests/e2e -q --ignore=tests/e2e/full_mlflow

test-e2e-mlflow: $(VENV_MLFLOW)/.installed
	$(CARGO) build
	@if ls tests/e2e/full_mlflow/test_*.py >/dev/null 2>&1; then \
		TRACEBOX_BIN=$(CURDIR)/$(DEBUG_BIN) $(VENV_MLFLOW)/bin/python -m pytest tests/e2e/full_mlflow -q; \
	fi

# Sustained OTLP/HTTP protobuf ingestion: 4 senders, batches of 512 spans,
# in-process server on a fresh data directory. ARGS passes options through,
# e.g. make bench-ingest ARGS="--spans 2000000 --json".
bench-ingest:
	$(CARGO) build --release
	target/release/tracebox bench ingest $(ARGS)

# The floor under bench-ingest: decoding, a bare SQLite row per span and
# full-text indexing, each timed alone on the same requests (ARGS as above).
bench-floor:
	$(CARGO) build --release
	target/release/tracebox bench floor $(ARGS)

# Search benchmark: generates BENCH_TRACES traces once into BENCH_DIR (reused
# by later runs), then times filters, ordering, paging and full-text search.
BENCH_TRACES ?= 1000000
BENCH_DIR ?= ./tracebox-bench
bench:
	$(CARGO) run --release -- bench search --traces $(BENCH_TRACES) --data $(BENCH_DIR)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

# Side-by-side with a real MLflow 3.17.2 server (bench/compare/README.md).
# Sizes are overridable: make bench-compare N=500 SIZES=1000,5000 REPS=10
N ?= 2000
SIZES ?= 10000,100000
REPS ?= 50
BENCH_ARGS ?= --budget 60 --query-timeout 300
bench-compare: build $(VENV_TRACING)/.installed $(VENV_MLFLOW)/.installed
	$(VENV_TRACING)/bin/python bench/compare/run.py --tracebox-bin target/release/tracebox \
		--mlflow-venv $(VENV_MLFLOW) --tracing-venv $(VENV_TRACING) \
		--n $(N) --sizes $(SIZES) --reps $(REPS) --out BENCHMARKS.md $(BENCH_ARGS) \
		--command "make bench-compare N=$(N) SIZES=$(SIZES) REPS=$(REPS)$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')"

clean:
	rm -rf $(VENV_TRACING) $(VENV_MLFLOW)
	$(CARGO) clean
