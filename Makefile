# JobForge task runner: few verbs. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help install run test lint bench docs docs-serve screenshots clean

help: ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# the project's own packages, compiled to bytecode by `make install` as pip compiles a wheel's at install time
# (the editable install leaves that to the first import, which PYTHONDONTWRITEBYTECODE turns off)
PACKAGES := workers shared activities workflows sdk/jobforge

install: $(STAMP) ## create .venv and install JobForge (the SDK from sdk/, then the server) with its dev tools
	$(BIN)/python -m compileall -q $(PACKAGES)

$(STAMP): pyproject.toml sdk/pyproject.toml setup.py shared/_native.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e './sdk[temporal,keys]' -e '.[dev]'
	touch $(STAMP)

run: install ## verify the sample repositories (Python, Node) through the embedded stack, print the verdicts
	JOBFORGE_AUTOPILOT_JOBS_ENABLED=1 VERIFY_PACK_ENABLED=1 $(BIN)/jobforge verify examples/python-sample
	JOBFORGE_AUTOPILOT_JOBS_ENABLED=1 VERIFY_PACK_ENABLED=1 $(BIN)/jobforge verify examples/node-sample

test: install lint ## lint, typecheck and run the whole test suite against real PostgreSQL + Temporal
	$(BIN)/python -m tests.support.run_pytest -n 2 --dist loadfile

lint: install ## ruff + mypy strict
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install ## run the benchmarks under bench/ (ratios against a same-run baseline)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# MkDocs and its plugins print notices about their own future on every run; they say nothing about this site
DOCS_ENV := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true

docs: install ## build the documentation site into site/ (strict: a broken link or reference fails; offline)
	$(DOCS_ENV) $(BIN)/mkdocs build --strict --site-dir site

DOCS_ADDR ?= 127.0.0.1:8000

docs-serve: install ## serve the site on 127.0.0.1:8000 (DOCS_ADDR=host:port), rebuilt as docs/ and the code change
	$(DOCS_ENV) $(BIN)/mkdocs serve --strict --dev-addr $(DOCS_ADDR) --watch sdk --watch shared --watch workers

screenshots: install ## run the console's browser tests, saving a screenshot of each page in docs/screenshots/
	JOBFORGE_SCREENSHOTS=docs/screenshots $(BIN)/python -m tests.support.run_pytest -q tests/e2e/test_console_browser.py

clean: ## remove the embedded stack's data (.jobforge/) and caches
	rm -rf .jobforge .pytest_cache .mypy_cache .ruff_cache site
