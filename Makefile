# Two commands matter: `make run` (serve on 127.0.0.1:5000, files under ./data) and
# `make test` (install everything the tests need, then ruff, mypy and pytest).
# `make test-fast` is the edit loop: the in-process tests only (no server process, no S3, no
# cluster, no deployment tools), in well under a minute.
# Topic fragments in mk/*.mk add targets and append to APT_PACKAGES / TEST_PREREQS.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-$(shell cksum pyproject.toml | cut -d' ' -f1)
TEST_STAMP := $(VENV)/.test-$(shell cksum pyproject.toml | cut -d' ' -f1)

# Debian packages the test suite uses: the S3 server (Ceph RADOS Gateway), PostgreSQL (the fleet
# mode's index, scripts/postgres.sh), curl, tmux (the CLI's progress bars as a person sees them
# on a terminal), zsh (its completion script), and Chromium with its WebDriver (the fleet page's
# browser tests, tests/web).
APT_PACKAGES := radosgw ceph-mon ceph-osd postgresql curl tmux zsh chromium chromium-driver
# Extra targets `make test` runs before pytest (fragments append to this).
TEST_PREREQS :=

.PHONY: run test test-fast lint typecheck pytest install install-test system-packages clean

run: $(RUN_STAMP)
	$(BIN)/mindproject serve

install: $(RUN_STAMP)
install-test: $(TEST_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e .
	rm -f $(VENV)/.run-* && touch $@

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.test-* $(VENV)/.run-* && touch $@ $(RUN_STAMP)

-include mk/*.mk

system-packages:
	bash scripts/install-system-packages.sh $(APT_PACKAGES)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# The suite runs on PYTEST_WORKERS xdist workers (a module stays on one worker, the longest
# groups start first: tests/conftest.py). Most of its time is spent waiting on servers, so
# more workers than cores pays; PYTEST_WORKERS=0 runs it in this one process.
PYTEST_WORKERS ?= 3

pytest: $(TEST_STAMP) system-packages $(TEST_PREREQS)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --durations=25 $(PYTEST_ARGS)

test: lint typecheck pytest

# Markers (pyproject.toml): s3, pg, server, cluster, slow, deploy, container, browser.
FAST_MARKERS := not s3 and not pg and not server and not cluster and not slow and not deploy and not container and not browser

test-fast: $(TEST_STAMP)
	$(BIN)/pytest -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build
