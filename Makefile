# The two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench openapi migration clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Serve the platform on http://127.0.0.1:8000 with an embedded SQLite database and a seeded sandbox.
run: install
	QUANLIAN_SEED_DEMO=true $(BIN)/quanlian serve --host 127.0.0.1 --port 8000

lint: install
	$(BIN)/ruff check gateway partners products sandbox tests migrations

## Lint, then the whole suite on SQLite and, when QUANLIAN_TEST_DATABASE_URL is set, on
## PostgreSQL at the same time (tests/tools/run_suites.py; QUANLIAN_TEST_SERIAL=1: one after the other).
test: install lint
	$(BIN)/quanlian openapi --check
	$(BIN)/python -m tests.tools.run_suites

bench: install
	$(BIN)/python -m tests.bench.run_all

openapi: install
	$(BIN)/quanlian openapi

## Regenerate the initial migration from the models (pre-release only; see README).
migration: install
	$(BIN)/python -m tests.tools.regenerate_migration

clean:
	rm -rf $(VENV) var test-output
