#!/usr/bin/env python3
"""CDK entry point: load config -> build stacks -> add validations. Nothing else."""

import sys

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from config import ConfigError, load_config
from stacks.infrastructure import add_infrastructure

app = cdk.App()
try:
    config = load_config(app.node.get_all_context())
except ConfigError as exc:
    sys.exit(str(exc))

add_infrastructure(app, config)
cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
