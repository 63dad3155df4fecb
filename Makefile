# Two commands for a newcomer:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/channels.yaml
STAMP  := $(VENV)/.installed

.PHONY: install run check test lint typecheck system-deps kafka-jars bench bench-crash clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the daemon with the shipped config (embedded bus, SQLite store).
run: install
	$(BIN)/omnirouter run -c $(CONFIG)

check: install
	$(BIN)/omnirouter check -c $(CONFIG)

## Everything CI runs: lint, type check, the whole test suite on real services.
test: install system-deps kafka-jars lint typecheck
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check router connectors tests bench
	$(BIN)/ruff format --check router connectors tests bench

typecheck: install
	$(BIN)/mypy

## Java, Maven and PostgreSQL from Debian's packages (needs root; no-op when present).
system-deps:
	bash .ci/system-deps

## The Kafka broker's jars, from Maven Central, into tests/kafka/.jars (git-ignored).
kafka-jars:
	@test -f tests/kafka/.jars/kafka_2.13-4.1.1.jar || \
	  mvn -q -B -f tests/kafka/pom.xml dependency:copy-dependencies

bench: install kafka-jars
	$(BIN)/python bench/bus.py

## Repeats and losses when the daemon is SIGKILLed while busy (Kafka, SQLite; ~3 min).
bench-crash: install kafka-jars
	$(BIN)/python bench/crash.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
