# Everything a fresh Debian 12 machine needs is installed from here: apt packages,
# a virtualenv with the Python packages, and (in later issues) the bundled models.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the project needs at run or test time.
APT_PACKAGES := python3-venv python3-pip espeak-ng sox libsox-fmt-base sip-tester baresip-core
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup apt demo test validate clean

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

# The main job. Until telephony lands it runs the demo dialplan's scripted
# conversations in text, then one whole call in voice without SIP: the customer
# (espeak-ng) answers over a simulated phone line, the bot (Piper) listens with
# PocketSphinx. Later it becomes a real campaign against a simulated PBX.
DEMO_DIR := build/demo
DEMO_ANSWERS := "yes, sure" "we keep them in a spreadsheet" "yes, why not" "the second one" "yes"
demo: setup
	$(BIN)/voicebot validate dialplans/*.yaml
	$(BIN)/voicebot test-script --show dialplans/tests/demo_en.yaml
	@rm -rf $(DEMO_DIR)/answers && mkdir -p $(DEMO_DIR)/answers
	@i=1; for answer in $(DEMO_ANSWERS); do \
	  espeak-ng -v en-us -w $(DEMO_DIR)/answers/0$$i.wav "$$answer"; i=$$((i+1)); done
	$(BIN)/voicebot simulate dialplans/demo_en.yaml --audio $(DEMO_DIR)/answers --phone-line 20 \
	  --out $(DEMO_DIR)/call --cache $(DEMO_DIR)/prompts --contact first_name=Anna --contact "company=Northwind Traders"

# pytest exits non-zero when it collects no test, so an empty run fails loudly.
test: setup
	$(BIN)/python -m pytest

validate: setup
	$(BIN)/voicebot validate dialplans/*.yaml

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
