# Both targets bootstrap .venv themselves, so they work on a fresh clone: every package comes from uv.lock.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
UV := $(VENV)/bin/uv
# uv installs into .venv with this machine's Python; it never downloads an interpreter.
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
# Python's bytecode caches, under .venv. An environment with PYTHONDONTWRITEBYTECODE set (this machine's, many
# containers') has none: every process then compiles every module it imports from source again, each test worker,
# each drctl a test starts, each workflow run's sandbox as it re-imports the workflow code; most of the suite's CPU
# went there. The prefix keeps the caches out of the source tree, which is what that setting is usually for.
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test check install clean iam-calls deps-latest lock ui-check chaos record-histories

# Test files run in parallel, each file whole on one pytest-xdist worker (its module fixtures and the order of its
# tests as written); every worker has its own sandbox and Temporal servers. Most of a test's time is waiting on
# AWS-like operations, so more workers than the 2 cores of a small machine still pay: TEST_WORKERS=1 to debug.
# The 10 slowest tests close every run, so a test that grows slow is seen the day it does.
TEST_WORKERS ?= 4
PYTEST := $(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=10

# uv comes first, at the locked version, checked against the hashes in tools/bootstrap.txt; then `uv sync --locked`
# installs exactly uv.lock (and fails if pyproject.toml has moved on without the lock).
$(UV): tools/bootstrap.txt
	@test -x $(VENV)/bin/python || { echo "==> creating $(VENV) with $(PYTHON) (a few seconds)"; $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r tools/bootstrap.txt
	@touch $(UV)

$(STAMP): pyproject.toml uv.lock $(UV)
	@echo "==> installing into $(VENV) from uv.lock (first time: about 30 s)"
	$(UV) sync --locked --extra dev --group bootstrap
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/drctl demo

# The architecture, checked before the tests: the layer contracts ([tool.importlinter]) and the types ([tool.mypy]:
# every package of the product and the sandbox) as pyproject.toml sets them.
check: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/mypy

test: check
	$(PYTEST)

# The fault suite (tests/faults): the product as processes (dev server, sandbox, drctl workers) on the three-tier
# plan, with the server and workers killed and DRS failing on purpose; each case asserts the outcome, a time bound,
# the DRS jobs (none twice) and what was left behind (nothing). Minutes long, so apart from `make test`; CI runs both.
# Two files at a time: each has its own stack, and its time bounds assume it is not starved of CPU.
chaos: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile --durations=0 -m faults tests/faults

# What a person sees of the demo's drill in the Temporal Web UI, checked in headless Chromium (Debian: `apt-get install
# chromium`): screenshots and page text under .state/ui-check. Not part of `make test`: it needs the browser.
ui-check: $(STAMP)
	tools/ui-check

# At each release, on the release's commit: record the histories of the scenarios in tests/histories/record.py that
# are not recorded yet (old ones are never overwritten), tagged with the release and the commit; `make test` replays
# them against every later change. ARGS pass to pytest (ARGS="-k drs"). See docs/versioning.md. Seed 2, as every
# committed history: its str hashes order sets as sorted, which every worker's replay matches (tests/histories).
record-histories: $(STAMP)
	PYTHONHASHSEED=2 $(VENV)/bin/python -m tests.histories.record $(ARGS)

# Re-record deploy/iam/calls.json: the whole suite, so every call any test makes the orchestrator do is in it
# (written at the end of the session from every worker's calls, when it passed); then the templates against it.
iam-calls: $(STAMP)
	DR_IAM_CALLS_WRITE=1 $(PYTEST) --ignore=tests/test_iam_policies.py
	$(VENV)/bin/python -m pytest -q tests/test_iam_policies.py

# The whole suite on the newest releases pyproject.toml's ranges allow, in a throwaway venv; prints what differs
# from uv.lock. How the lock moves forward: see README, "Dependencies".
deps-latest: $(STAMP)
	tools/deps-latest -n $(TEST_WORKERS) --dist loadfile

# Re-resolve uv.lock after editing pyproject.toml (keeps every other pin), and the bootstrap file with it. Needs only
# uv: the lock is what the install would fail on when pyproject.toml has moved on.
lock: $(UV)
	$(UV) lock
	$(UV) export --only-group bootstrap --locked --no-emit-project -o tools/bootstrap.txt

clean:
	rm -rf $(VENV) .state .pytest_cache *.egg-info
