# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-sqlite install migrate bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# `make demo DEMO_ARGS=--windows-now` opens every application window (论文, 学位 ...) to try them.
demo: $(STAMP)
	$(VENV)/bin/zikao-bot demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

# Only the SQLite half, for a machine without PostgreSQL.
test-sqlite: $(STAMP)
	$(PY) -m pytest -q -rs -k "not postgres" $(PYTEST_ARGS)

migrate: $(STAMP)
	$(VENV)/bin/zikao-bot migrate

bench: $(STAMP)
	$(PY) -m bench.loadgen --spawn --users 2000 --duration 10

clean:
	rm -rf $(VENV) var .pytest_cache
