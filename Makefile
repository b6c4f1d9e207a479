# The two commands: `make demo` and `make test`. Everything is installed from this repo's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint unit integration demo bench broker clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check delta tests bench
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

test: lint $(STAMP)
	$(BIN)/pytest tests --durations=10

demo: $(STAMP)
	$(BIN)/python -m delta.demo

bench: $(STAMP)
	$(BIN)/python -m bench

broker: $(STAMP)
	$(BIN)/python -m delta.localkafka

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
