# The README's two commands. Each creates what it needs on first run and reuses it after.
#   make plan   the main job, offline: the stack (STACK=dev) under Pulumi mocks; OUT=DIR also writes files
#   make test   every test tier: lint, types, unit/config/wiring/rendered/policy, offline plan, e2e
# With AWS and the Pulumi CLI the real job stays `pulumi up -s dev` (it runs the same program from .venv).
# Steps run in the order written (no -j). A missing piece of ../shared skips with its name locally and
# fails under E2E_REQUIRED=1 (CI): see tests/support/shared.py.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.NOTPARALLEL:
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV ?= .venv
STACK ?= dev
PY := $(VENV)/bin/python
START := $(shell date +%s)
# pip names every extra index it looked in and did not find a package in: noise, not news.
QUIET_PIP := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
done = echo "== $(1): ok at $$(( $$(date +%s) - $(START) ))s"
# pytest exits 5 when it ran no test: a tier that ran nothing is a failure, said in words.
pytest = $(PY) -m pytest $(1) || { rc=$$?; [ $$rc -ne 5 ] || echo "error: pytest ran no test ($(1))" >&2; exit $$rc; }

.PHONY: plan test venv e2e-env lint typecheck unit plan-check e2e lock

# The project venv, from the lock file (exact versions, sha256 hashes); rebuilt when a lock changes.
# pip itself comes first from its own lock: the venv's bundled pip varies by machine and resolves
# extras differently, so a lock's result would depend on the day.
$(VENV)/.installed: requirements-pip.lock requirements-dev.lock
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements-pip.lock $(QUIET_PIP)
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock $(QUIET_PIP)
	cat requirements-pip.lock requirements-dev.lock > $@
	@$(call done,project venv $(VENV))

venv: $(VENV)/.installed

plan: venv
	$(PY) -m stacks.plan $(STACK) $(if $(OUT),--out $(OUT))

test: venv e2e-env lint typecheck unit plan-check e2e
	@$(call done,all tiers)

# .e2e/: vLLM (CPU), LiteLLM, the Neuron image's vLLM parser, checkov (and Helm, where scripts/setup-helm.sh exists).
e2e-env:
	bash scripts/setup-e2e.sh $(QUIET_PIP)
	@$(call done,e2e venvs)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@$(call done,lint (ruff check + format))

typecheck: venv
	$(VENV)/bin/mypy
	@$(call done,types (mypy))

unit: venv
	$(call pytest,-q)
	@$(call done,unit suite)

plan-check: venv
	$(PY) -m stacks.plan $(STACK) > /dev/null
	@$(call done,offline plan of $(STACK))

e2e: venv e2e-env
	$(call pytest,-m e2e -q)
	@$(call done,e2e suite)

# After editing a requirements*.txt: regenerate its lock file (see scripts/lock.sh).
lock: venv
	bash scripts/lock.sh
