# The two commands of the README: `make run` and `make test`. Each installs what is missing first.
# `make soak` (not part of `make test`): schemathesis, hostile probes and a load run against a fresh node.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
SOAK_STAMP := $(VENV)/.soak-installed
SOAK_ARGS ?=
STATE_DIR ?= .pdserver

.PHONY: run test system venv engine images compat crossbar bench soak wifi-vm clean

system:
	tools/setup-system

$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $(STAMP)

venv: system $(STAMP)

engine: system
	tools/start-engine

images: engine
	tools/build-base-images

run: venv images
	@echo "Starting the node: API at http://127.0.0.1:8080/ ; the admin password of user 'paradrop'"
	@echo "is in $(STATE_DIR)/initial-admin-password on first start (or set PARADROP_ADMIN_PASSWORD)."
	exec $(VENV)/bin/pdserver node --state-dir $(STATE_DIR)

compat: system
	tools/setup-pdtools-compat

crossbar: system
	tools/setup-crossbar

test: venv images compat crossbar
	$(VENV)/bin/pytest

bench: venv crossbar
	$(VENV)/bin/python tools/bench/run_all.py

# The real-radio tier alone (make test runs it too, as tests/wifi): a QEMU guest with two simulated radios
wifi-vm: venv
	$(VENV)/bin/python tools/wifi-vm/run --python $(VENV)/bin/python

# schemathesis and its dependencies, pinned; they go into .venv (pip finds no conflict with requirements.txt)
$(SOAK_STAMP): $(STAMP) requirements-soak.txt
	$(VENV)/bin/pip install -q -r requirements-soak.txt
	touch $(SOAK_STAMP)

# e.g. make soak SOAK_ARGS="--cases 500 --seconds 20"; tools/soak/run.py --help lists the options
soak: venv images $(SOAK_STAMP)
	$(VENV)/bin/python tools/soak/run.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
