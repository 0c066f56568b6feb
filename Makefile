# Both targets bootstrap .venv themselves, so they work on a fresh clone: every package comes from uv.lock.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
UV := $(VENV)/bin/uv
# uv installs into .venv with this machine's Python; it never downloads an interpreter.
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo test install clean iam-calls deps-latest lock

# uv comes first, at the locked version, checked against the hashes in tools/bootstrap.txt; then `uv sync --locked`
# installs exactly uv.lock (and fails if pyproject.toml has moved on without the lock).
$(STAMP): pyproject.toml uv.lock tools/bootstrap.txt
	@echo "==> installing into $(VENV) from uv.lock (first time: about 30 s)"
	@test -x $(VENV)/bin/python || { echo "==> creating $(VENV) with $(PYTHON) (a few seconds)"; $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r tools/bootstrap.txt
	$(UV) sync --locked --extra dev --group bootstrap
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/drctl demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# Re-record deploy/iam/calls.json: the whole suite, so every call any test makes the orchestrator do is in it.
iam-calls: $(STAMP)
	DR_IAM_CALLS_WRITE=1 $(VENV)/bin/python -m pytest -q

# The whole suite on the newest releases pyproject.toml's ranges allow, in a throwaway venv; prints what differs
# from uv.lock. How the lock moves forward: see README, "Dependencies".
deps-latest: $(STAMP)
	tools/deps-latest

# Re-resolve uv.lock after editing pyproject.toml (keeps every other pin), and the bootstrap file with it.
lock: $(STAMP)
	$(UV) lock
	$(UV) export --only-group bootstrap --locked --no-emit-project -o tools/bootstrap.txt

clean:
	rm -rf $(VENV) .state .pytest_cache *.egg-info
