# The README's two commands. Each creates what it needs on first run and reuses it after.
#   make plan   the main job, offline: the stack (STACK=dev) under Pulumi mocks; CONFIG=FILE reads another
#               stack file, OUT=DIR also writes files
#   make test   every test tier: lint, types, unit/config/wiring/rendered/policy, offline plan, e2e
# A bare `make` lists the targets (one line each) rather than starting the e2e build (6.5 GB).
# With AWS and the Pulumi CLI the real job stays `pulumi up -s dev` (it runs the same program from .venv).
# Steps run in the order written (no -j). A missing piece of ../shared skips with its name locally and
# fails under E2E_REQUIRED=1 (CI): see tests/support/shared.py.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.NOTPARALLEL:
.DEFAULT_GOAL := help

# Python writes its bytecode caches (__pycache__/, ignored by git) even where the environment says not
# to: without them every pytest worker and every subprocess of the program compiles it again, and pytest
# rewrites every test module's asserts again (collection measured 3.9 s CPU without, 1.5 s with).
unexport PYTHONDONTWRITEBYTECODE

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

.PHONY: help plan test venv e2e-env lint typecheck unit plan-check e2e bench lock

help: ## this list
	@awk -F ':.*## ' '/^[a-z][a-z0-9-]*:.*## / { printf "  make %-11s %s\n", $$1, $$2 }' $(firstword $(MAKEFILE_LIST))

# The project venv, from the lock files (exact versions, sha256 hashes); reinstalled when a lock's content
# differs from the stamp written by the last install. Content, not file times: a fresh clone or a new
# worktree gives every lock a new mtime, and the venv would be rebuilt for nothing.
# pip itself comes first from its own lock: the venv's bundled pip varies by machine and resolves
# extras differently, so a lock's result would depend on the day.
VENV_LOCKS := requirements/pip.lock requirements/dev.lock
venv: ## the project venv (.venv) from requirements/pip.lock + requirements/dev.lock
	@if ! cmp -s $(VENV)/.installed <(cat $(VENV_LOCKS)); then \
	  [ -x $(PY) ] || $(PYTHON) -m venv $(VENV); \
	  $(PY) -m pip install -q --require-hashes -r requirements/pip.lock $(QUIET_PIP); \
	  $(PY) -m pip install -q --require-hashes -r requirements/dev.lock $(QUIET_PIP); \
	  cat $(VENV_LOCKS) > $(VENV)/.installed; \
	  $(call done,project venv $(VENV)); \
	fi

plan: venv ## offline plan of STACK (dev) under Pulumi mocks; CONFIG=FILE another stack file, OUT=DIR writes files
	$(PY) -m stacks.plan $(STACK) $(if $(CONFIG),--config $(CONFIG)) $(if $(OUT),--out $(OUT))

test: venv e2e-env lint typecheck unit plan-check e2e ## every tier: lint, types, unit, offline plan, e2e (builds .e2e)
	@$(call done,all tiers)

# .e2e/: vLLM (CPU), LiteLLM, the Neuron image's vLLM parser, checkov (and Helm, where scripts/setup-helm.sh exists).
e2e-env: ## the e2e venvs under .e2e/, Debian servers, Node client, Helm (scripts/setup-e2e.sh)
	bash scripts/setup-e2e.sh $(QUIET_PIP)
	@$(call done,e2e venvs)

lint: venv ## ruff check + ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@$(call done,lint (ruff check + format))

# Two runs: the program (pyproject's [tool.mypy], which leaves incluster/ out), and incluster/ on its own
# settings (no config file): it runs in pods on the images' Pythons with the standard library and, in the
# gateway, LiteLLM, which is not installed here (its imports are Any). 3.11: the oldest Python we target.
typecheck: venv ## mypy: the program, then incluster/ on its own settings
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --config-file "" --python-version 3.11 --ignore-missing-imports \
	  --check-untyped-defs --warn-unused-ignores --warn-redundant-casts incluster
	@$(call done,types (mypy: program; incluster))

# Two workers (pytest-xdist), each stack planned once for both (tests/conftest.py shares the plans);
# worksteal: a worker that runs out of tests takes half of the other's queue, so a slow module
# (checkov, Helm, the LiteLLM contract) does not leave one core idle at the end.
unit: venv ## the unit tiers (everything but e2e), on 2 workers
	$(call pytest,-q -n 2 --dist worksteal)
	@$(call done,unit suite)

plan-check: venv ## the offline plan of STACK runs clean
	$(PY) -m stacks.plan $(STACK) > /dev/null
	@$(call done,offline plan of $(STACK))

# Two workers, whole files each (loadfile: a module's servers start once, on one worker). Much of the tier
# waits on servers, timeouts and clients: run serially it kept the two cores 47 % busy (18.7 min of CPU
# in 20 min, 2026-12-07). Every server takes a free port; each worker's vLLM engines compute on a core
# of their own (tests/e2e/servers.py). The 25 slowest steps are listed: where the next minute is.
e2e: venv e2e-env ## the e2e tier: real vLLM, LiteLLM, nginx, Prometheus, Redis, Postgres (2 workers)
	$(call pytest,-m e2e -q -n 2 --dist loadfile --durations=25)
	@$(call done,e2e suite)

# Numbers, not gates (not part of `make test`): each benchmark prints its own figures.
BENCHES := plan_time kv_accuracy gateway_load $(if $(wildcard benchmarks/gateway_cost.py),gateway_cost) s3_weights router_cache
bench: venv e2e-env ## print the benchmarks' numbers (plan_time, kv_accuracy, gateway_load, gateway_cost, s3_weights, router_cache)
	@for b in $(BENCHES); do echo "== benchmarks/$$b.py"; $(PY) -m benchmarks.$$b; done
	@$(call done,benchmarks)

# After editing requirements.txt or a requirements/*.txt: regenerate its lock file (see scripts/lock.sh).
lock: venv ## regenerate the lock files from the requirements files (scripts/lock.sh)
	bash scripts/lock.sh
