# Two set-up-free entry points: `make demo` and `make test` (both install what is missing).
.PHONY: setup demo test lint fixtures clean

VENV := .venv
PY := $(VENV)/bin/python
LINT_DIRS := $(wildcard src tests fixtures benchmarks scripts)

setup:
	@bash scripts/setup.sh

fixtures: setup
	@$(PY) -m fixtures

demo: setup
	@$(PY) -m fixtures win2003-x86 >/dev/null
	@$(PY) scripts/demo.py

test: setup
	@$(VENV)/bin/ruff check $(LINT_DIRS)
	@$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	@$(VENV)/bin/ruff check $(LINT_DIRS)

clean:
	rm -rf fixtures/.cache demo-output
