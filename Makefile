# Two entry points (see README): `make app` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 8501

.PHONY: app hall test setup setup-dev browser services lint

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
setup-dev: $(VENV)/.dev-stamp browser services

# A chromium for the browser tests: Debian's where apt-get exists (here, in CI), else, or when the apt-get install
# fails (no root), Playwright's own download (a lecturer's Mac). bench/_browser.py drives whichever is there.
browser: $(VENV)/.dev-stamp
	@test -x /usr/bin/chromium || \
	  (command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  (echo "make: no Debian chromium here; downloading Playwright's chromium" && $(BIN)/python -m playwright install chromium)

# Debian's HAProxy and Redis for the lecture hall (make hall) and its tests (and openssl: the HTTPS test's certificate).
# Without apt-get (a Mac) it says what to install; the hall's tests skip where they are missing.
services:
	@(test -x /usr/sbin/haproxy -o -n "$$(command -v haproxy)") && command -v redis-server >/dev/null || \
	  if command -v apt-get >/dev/null; then apt-get update -qq && apt-get install -y -qq haproxy redis-server >/dev/null; \
	  else echo "make: no apt-get here; install haproxy and redis-server (e.g. brew install haproxy redis) for make hall"; fi
	@command -v openssl >/dev/null || ! command -v apt-get >/dev/null || apt-get install -y -qq openssl >/dev/null

app: setup
	$(BIN)/streamlit run app/main.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

# A lecture hall: REPLICAS Streamlit replicas (default: the cores) behind HAProxy on PORT, two Redis (with the
# secret in data/cache/hall-secret, made at the first start), the GPU queue's worker and the scene warm-up
# (serve/hall.py; README, "Serving a lecture hall"). CERT=/path/fullchain.pem (certificate and key in one PEM):
# HTTPS and WSS on PORT, plain HTTP on HTTP_PORT redirected (80 by default with PORT=443). Ctrl-C stops all.
hall: setup services
	$(BIN)/python -m serve.hall --port $(PORT) $(if $(REPLICAS),--replicas $(REPLICAS)) \
	  $(if $(CERT),--cert $(CERT)) $(if $(HTTP_PORT),--http-port $(HTTP_PORT))

test: setup-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

lint: setup-dev
	$(BIN)/ruff check .
