# Everything installs itself: a fresh machine needs Python 3.13 (3.12+ works) and make.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13 matches the Lambda runtime: take it from PATH or pyenv, else any python3 that is 3.12 or newer.
PYTHON ?= $(shell for candidate in python3.13 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 2>/dev/null | sort -V | tail -n 1) python3; do \
	$$candidate -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { echo $$candidate; break; }; done)
VENV := .venv
TOOLS_VENV := .venv-tools
CHECKOV_VENV := .venv-checkov
SCHEMATHESIS_VENV := .venv-schemathesis
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help dev tools checkov schemathesis openapi run bench load check test unit integration faults properties e2e infra browser lint format clean

help:  ## list the targets
	@grep -E '^[a-z0-9][a-z0-9 -]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ gsub(/ /, " | ", $$1); \
		if (length($$1) > 12) printf "  make %s\n  %-17s %s\n", $$1, "", $$2; else printf "  make %-12s %s\n", $$1, $$2 }'

$(VENV)/.installed: requirements-dev.txt layers/dependencies/requirements.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12+ is needed (3.13 preferred)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements-dev.txt
	touch $@

# The tool venvs are built alike; one recipe, named by the venv and its requirements file.
define tool_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(1)/bin/uv pip install --quiet --python $(1)/bin/python -r $(2)
	touch $(1)/.installed
endef

$(TOOLS_VENV)/.installed: requirements-tools.txt
	$(call tool_venv,$(TOOLS_VENV),$<)

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(call tool_venv,$(CHECKOV_VENV),$<)

$(SCHEMATHESIS_VENV)/.installed: requirements-schemathesis.txt
	$(call tool_venv,$(SCHEMATHESIS_VENV),$<)

dev: $(VENV)/.installed  ## create the development environment (.venv)

tools: $(TOOLS_VENV)/.installed  ## create the SAM tooling environment (.venv-tools)

checkov: $(CHECKOV_VENV)/.installed  ## create the template scanner's environment (.venv-checkov)

schemathesis: $(SCHEMATHESIS_VENV)/.installed  ## create the API fuzzer's environment (.venv-schemathesis)

openapi: dev  ## regenerate openapi.json (and the function's copy) from the models
	$(PY) scripts/openapi.py

run: dev  ## run the proxy locally on http://127.0.0.1:$PORT (default 3000) with moto and the Dots emulator
	$(PY) -m local_stack

check: lint  ## the one-minute loop: style, then the unit and integration tests (needs only .venv)
	$(PY) -m pytest -q -m "unit or integration" $(PYTEST_ARGS)

test: lint tools checkov schemathesis  ## the whole truth: style, then every test tier
	$(PY) -m pytest $(PYTEST_ARGS)

# browser: headless Chromium (Debian's chromium package); skipped, in one line, where there is none.
unit integration faults properties browser: dev  ## run one test tier (these need only .venv)
	$(PY) -m pytest -m $@ $(PYTEST_ARGS)

e2e: dev schemathesis  ## run the end-to-end tier (the local stack over HTTP, and the API fuzzer)
	$(PY) -m pytest -m $@ $(PYTEST_ARGS)

infra: dev tools checkov  ## run the template tier (SAM translator, cfn-lint, sam validate and build, checkov)
	$(PY) -m pytest -m $@ $(PYTEST_ARGS)

bench: dev tools  ## measure cold start, warm CPU, round trips, size and memory against the floor; writes docs/performance.md
	$(PY) bench/perf.py

load: dev  ## drive the local stack with 2,000 requests and check one link per intent (bench/load.py)
	$(PY) bench/load.py

lint: dev  ## check style
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: dev  ## fix style
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:  ## remove the environments and build output
	rm -rf $(VENV) $(TOOLS_VENV) $(CHECKOV_VENV) $(SCHEMATHESIS_VENV) .aws-sam .pytest_cache .ruff_cache
