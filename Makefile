# Two entry points (see README): `make app` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 8501

.PHONY: app test setup setup-dev browser lint

$(BIN)/python:
	$(PY) -m venv $(VENV)

# The install is skipped when requirements have not changed since the last one.
$(VENV)/.req-stamp: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-stamp: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.req-stamp

setup: $(VENV)/.req-stamp
setup-dev: $(VENV)/.dev-stamp browser

# Debian's chromium for the browser tests (playwright cannot download its own browser here).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

app: setup
	$(BIN)/streamlit run app/main.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: setup-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

lint: setup-dev
	$(BIN)/ruff check .
