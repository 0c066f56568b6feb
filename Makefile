# Both targets bootstrap .venv themselves, so they work on a fresh clone.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test install clean iam-calls

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/drctl demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# Re-record deploy/iam/calls.json: the whole suite, so every call any test makes the orchestrator do is in it.
iam-calls: $(STAMP)
	DR_IAM_CALLS_WRITE=1 $(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) .state .pytest_cache *.egg-info
