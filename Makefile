# Two set-up-free entry points: `make demo` and `make test` (both install what is missing).
.PHONY: setup demo test test-slow lint fixtures clean

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

# Fixture images are built first (two appliances at once on two CPUs), then the suite runs on
# two workers, a test file per worker at a time (module fixtures are not duplicated).
# `make test` leaves out the cases marked slow (every fixture profile converted and read
# back, the near-miss check images, ...); `make test-slow` runs exactly those; CI runs both.
PYTEST_ARGS ?= -n 2 --dist loadfile

test: setup
	@$(VENV)/bin/ruff check $(LINT_DIRS)
	@$(PY) -m fixtures >/dev/null
	@$(PY) -m pytest $(PYTEST_ARGS) -m "not slow"

test-slow: setup
	@$(PY) -m fixtures >/dev/null
	@$(PY) -m pytest $(PYTEST_ARGS) -m slow

lint: setup
	@$(VENV)/bin/ruff check $(LINT_DIRS)

clean:
	rm -rf fixtures/.cache demo-output
