# Developer commands. On a fresh machine you need only Python 3.11+ (as python3) and the
# package index: `make demo`, `make test` and `make bench` create .venv and install into it when needed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Written after a successful install; reinstalls when pyproject.toml changes.
STAMP := $(VENV)/.installed
LINT_PATHS := understudy tests bench examples

.PHONY: venv demo test lint bench clean promtool

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -e ".[dev]"
	touch $@

# The main command: a supervised bank under a chaos monkey, watched live, then audited.
demo: $(STAMP)
	$(VENV)/bin/understudy demo $(DEMO_ARGS)

test: $(STAMP) promtool
	$(PY) -m pytest -q $(PYTEST_ARGS)

# promtool (Debian package `prometheus`) runs the alert rules' unit tests; installed when
# missing and possible (root with apt-get). Without it the test is skipped, except in CI.
promtool:
	@command -v promtool >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		[ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; } || \
		echo "promtool not installed (apt-get install prometheus): its test is skipped" >&2

lint: $(STAMP)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)
	$(PY) -m mypy understudy

# The full suite takes a few minutes; `make bench BENCH_ARGS="--only ask"` runs a part of it.
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
