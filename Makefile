# Two commands for a newcomer:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/channels.yaml
# Another listen address for `make run`, e.g. HTTP=127.0.0.1:9000 (default: the config's).
HTTP   ?=
# Runtime dependencies for `run` and `check` (with the PostgreSQL driver: the shipped
# config switches to PostgreSQL by OMNI_STORE_URL); the test and dev tools on top for the rest.
RUNTIME := $(VENV)/.installed-runtime
DEV     := $(VENV)/.installed-dev
PIP     := $(BIN)/pip --disable-pip-version-check

.PHONY: install install-dev run check test lint typecheck system-deps kafka-jars bench bench-crash clean

$(BIN)/python:
	@echo "==> creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> upgrading pip in $(VENV)"
	$(PIP) install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	@echo "==> installing omnirouter and its runtime dependencies into $(VENV) (a minute the first time)"
	$(PIP) install --progress-bar off -e '.[postgres]'
	touch $(RUNTIME)

$(DEV): pyproject.toml | $(BIN)/python
	@echo "==> installing omnirouter with the test and development tools into $(VENV)"
	$(PIP) install --progress-bar off -e '.[dev]'
	touch $(RUNTIME) $(DEV)

install: $(RUNTIME)

install-dev: $(DEV)

## Run the daemon with the shipped config (embedded bus, SQLite store).
run: install
	@echo "==> starting omnirouter with $(CONFIG)$(if $(HTTP), on $(HTTP)) (Ctrl-C stops it)"
	$(BIN)/omnirouter run -c $(CONFIG)$(if $(HTTP), --http '$(HTTP)')

check: install
	$(BIN)/omnirouter check -c $(CONFIG)

## Everything CI runs: lint, type check, the whole test suite on real services.
test: install-dev system-deps kafka-jars lint typecheck
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check router connectors tests bench
	$(BIN)/ruff format --check router connectors tests bench

typecheck: install-dev
	$(BIN)/mypy

## Java, Maven and PostgreSQL from Debian's packages (needs root; no-op when present).
system-deps:
	bash .ci/system-deps

## The Kafka broker's jars, from Maven Central, into tests/kafka/.jars (git-ignored).
kafka-jars:
	@test -f tests/kafka/.jars/kafka_2.13-4.1.1.jar || \
	  mvn -q -B -f tests/kafka/pom.xml dependency:copy-dependencies

bench: install-dev kafka-jars
	$(BIN)/python bench/bus.py

## Repeats and losses when the daemon is SIGKILLed while busy (Kafka, SQLite; ~3 min).
bench-crash: install-dev kafka-jars
	$(BIN)/python bench/crash.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
