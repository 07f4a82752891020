# Everything installs itself, from locks: a fresh machine needs CPython 3.13, make and the Python package index.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# CPython 3.13 matches the Lambda runtime (and uv.lock's requires-python): take it from PATH or pyenv.
PYTHON ?= $(shell for candidate in python3.13 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 2>/dev/null | sort -V | tail -n 1) python3; do \
	$$candidate -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1 && { echo $$candidate; break; }; done)
VENV := .venv
UV_VENV := .venv-uv
TOOLS_VENV := .venv-tools
CHECKOV_VENV := .venv-checkov
SCHEMATHESIS_VENV := .venv-schemathesis
AUDIT_VENV := .venv-audit
SBOM_VENV := .venv-sbom
PY := $(VENV)/bin/python
# uv, pinned with hashes in tools/uv.txt; every other environment and every lock comes from it.
UV := $(UV_VENV)/bin/uv
LAYER_REQUIREMENTS := layers/dependencies/requirements.txt
SBOM := build/sbom/layer.cdx.json
PYTEST_ARGS ?=
# What the test tiers need: the app's environment and every tool's.
TEST_ENVIRONMENTS := dev tools checkov schemathesis sbom-tools audit-tools
# make lock UPGRADE=1 moves every pin to the newest version its input allows.
UPGRADE ?=
# make audit AUDIT_ARGS="--service osv" asks OSV instead of PyPI.
AUDIT_ARGS ?=
# make limits ARGS="show --caller user:ada": the operator command for per-caller limits (scripts/caller_limits.py);
# make stranded ARGS="--table T": the stranded intents (scripts/stranded.py);
# make planted-bugs ARGS="--only NAME": one planted bug (scripts/planted_bugs.py; --list names them).
ARGS ?=
# make token SUB=ada SCOPE="payouts:read" (AUD=, CLIENT_ID=, TTL=): a token from make run's local issuer.
SUB ?=
SCOPE ?= payouts:write
AUD ?=
CLIENT_ID ?=
TTL ?=
# Never let uv fetch a Python of its own: the environments use the CPython 3.13 found above.
export UV_PYTHON_DOWNLOADS := never

.PHONY: help uv dev tools checkov schemathesis audit-tools sbom-tools lock check-locks sbom audit build openapi run \
	token bench load limits stranded planted-bugs check test unit integration faults properties e2e infra browser lint format clean

help:  ## list the targets
	@grep -E '^[a-z0-9][a-z0-9 -]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ gsub(/ /, " | ", $$1); \
		if (length($$1) > 12) printf "  make %s\n  %-17s %s\n", $$1, "", $$2; else printf "  make %-12s %s\n", $$1, $$2 }'

define need_python
	@test -n "$(PYTHON)" || { echo "CPython 3.13 is needed (on PATH as python3.13, or under pyenv; or set PYTHON)"; exit 1; }
endef

$(UV): tools/uv.txt
	$(need_python)
	$(PYTHON) -m venv --clear $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r tools/uv.txt
	touch $@

# Exactly what uv.lock says, or nothing: --locked fails when pyproject.toml has changed and uv.lock has not.
$(VENV)/.installed: pyproject.toml uv.lock $(UV)
	$(need_python)
	$(UV) sync --locked --python $(PYTHON)
	touch $@

# The tool environments are built alike, each from its hashed lock and nothing else (uv pip sync removes what
# the lock does not list); one recipe, named by the venv and its lock.
define tool_venv
	$(need_python)
	$(UV) venv --quiet --clear --python $(PYTHON) $(1)
	$(UV) pip sync --quiet --require-hashes --python $(1)/bin/python $(2)
	touch $(1)/.installed
endef

$(TOOLS_VENV)/.installed: tools/sam.txt $(UV)
	$(call tool_venv,$(TOOLS_VENV),$<)

$(CHECKOV_VENV)/.installed: tools/checkov.txt $(UV)
	$(call tool_venv,$(CHECKOV_VENV),$<)

$(SCHEMATHESIS_VENV)/.installed: tools/schemathesis.txt $(UV)
	$(call tool_venv,$(SCHEMATHESIS_VENV),$<)

$(AUDIT_VENV)/.installed: tools/audit.txt $(UV)
	$(call tool_venv,$(AUDIT_VENV),$<)

$(SBOM_VENV)/.installed: tools/sbom.txt $(UV)
	$(call tool_venv,$(SBOM_VENV),$<)

openapi: dev  ## regenerate openapi.json (and the function's copy) from the models
	$(PY) scripts/openapi.py

run: dev  ## run the proxy locally on http://127.0.0.1:$PORT (default 3000) with moto and the Dots emulator
	$(PY) -m local_stack

token: dev  ## print a token from make run's local issuer: SUB=ada SCOPE="payouts:write" (AUD=, CLIENT_ID=, TTL=)
	@$(PY) -m local_stack.token --scope "$(SCOPE)" $(if $(SUB),--sub "$(SUB)") $(if $(AUD),--aud "$(AUD)") \
		$(if $(CLIENT_ID),--client-id "$(CLIENT_ID)") $(if $(TTL),--ttl "$(TTL)")

# The fast loop's workers: it spends most of its time waiting (sockets, lock expiries, settle delays), so four keep
# two cores busy (on two cores: 48-51 s with four, 54-60 s with three).
CHECK_WORKERS ?= 4

check: lint  ## the one-minute loop: style and types, then the unit and integration tests (needs only .venv)
	$(PY) -m pytest -q -m "unit or integration" -n $(CHECK_WORKERS) --dist worksteal $(PYTEST_ARGS)

planted-bugs: dev  ## plant each bug of scripts/planted_bugs.py in a throwaway copy: make check's tests must catch every one
	$(PY) scripts/planted_bugs.py --workers $(CHECK_WORKERS) $(ARGS)

test: lint $(TEST_ENVIRONMENTS)  ## the whole truth: style and types, then every test tier
	$(PY) -m pytest $(PYTEST_ARGS)

# browser: headless Chromium (Debian's chromium package); skipped, in one line, where there is none.
unit integration faults properties browser: dev  ## run one test tier (these need only .venv)
	$(PY) -m pytest -m $@ $(PYTEST_ARGS)

e2e: dev schemathesis  ## run the end-to-end tier (the local stack over HTTP, and the API fuzzer)
	$(PY) -m pytest -m $@ $(PYTEST_ARGS)

infra: dev tools checkov sbom-tools audit-tools  ## run the template tier (SAM translator, cfn-lint, sam validate and build, checkov; the locks, SBOM and audit)
	$(PY) -m pytest -m $@ $(PYTEST_ARGS)

bench: dev tools  ## measure cold start, warm CPU, round trips, size and memory against the floor; writes docs/performance.md
	$(PY) bench/perf.py

load: dev  ## drive the local stack with 2,000 requests and check one link per intent (bench/load.py)
	$(PY) bench/load.py

limits: dev  ## set, show or remove a caller's own limits: ARGS="set|show|remove --caller C ..." (scripts/caller_limits.py)
	$(PY) -m scripts.caller_limits $(ARGS)

stranded: dev  ## list the intents the settler gave up on, for an operator to settle (scripts/stranded.py)
	$(PY) -m scripts.stranded $(ARGS)

lint: dev  ## check style and types (ruff; mypy, configured in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: dev  ## fix style
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lock: $(UV)  ## regenerate uv.lock, the layer's hashed requirements and tools/*.txt (UPGRADE=1: newest pins)
	$(need_python)
	$(PYTHON) scripts/locks.py --uv $(UV) $(if $(UPGRADE),--upgrade)

check-locks: $(UV)  ## fail when any lock or export is stale (from uv's cache when it can)
	$(need_python)
	$(PYTHON) scripts/locks.py --uv $(UV) --check

sbom: sbom-tools  ## write the layer's CycloneDX SBOM (JSON) to build/sbom/layer.cdx.json
	@mkdir -p $(dir $(SBOM))
	$(SBOM_VENV)/bin/python -W 'ignore:The Component this BOM is describing:UserWarning' -m cyclonedx_py \
		requirements --pyproject pyproject.toml --output-reproducible --output-format JSON --output-file $(SBOM) \
		$(LAYER_REQUIREMENTS)
	@echo "wrote $(SBOM)"

audit: audit-tools  ## check the layer's locked requirements for known vulnerabilities (needs PyPI's JSON API)
	$(AUDIT_VENV)/bin/python scripts/audit.py $(AUDIT_ARGS) $(LAYER_REQUIREMENTS)

build: tools uv  ## sam build from the locks: the layer from its hashed requirements, with the pinned uv
	PATH="$(CURDIR)/$(UV_VENV)/bin:$$PATH" PYTHON313="$(PYTHON)" $(TOOLS_VENV)/bin/sam build

uv: $(UV)  ## bootstrap the pinned uv (.venv-uv) from tools/uv.txt's hashes

dev: $(VENV)/.installed  ## create the development environment (.venv) from uv.lock, the project editable

tools: $(TOOLS_VENV)/.installed  ## create the SAM tooling environment (.venv-tools) from tools/sam.txt

checkov: $(CHECKOV_VENV)/.installed  ## create the template scanner's environment (.venv-checkov)

schemathesis: $(SCHEMATHESIS_VENV)/.installed  ## create the API fuzzer's environment (.venv-schemathesis)

audit-tools: $(AUDIT_VENV)/.installed  ## create pip-audit's environment (.venv-audit)

sbom-tools: $(SBOM_VENV)/.installed  ## create the SBOM generator's environment (.venv-sbom)

clean:  ## remove the environments and build output
	rm -rf $(VENV) $(UV_VENV) $(TOOLS_VENV) $(CHECKOV_VENV) $(SCHEMATHESIS_VENV) $(AUDIT_VENV) $(SBOM_VENV) \
		.aws-sam build .pytest_cache .ruff_cache *.egg-info .mypy_cache
