#!/usr/bin/env python3
"""CDK entry point: load config -> build stacks -> add validations. Nothing else."""

import sys

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from config import ConfigError, load_config
from config.names import pipeline_stack_name
from stacks.infrastructure import add_infrastructure
from stacks.pipeline import PipelineStack

app = cdk.App()
try:
    config = load_config(app.node.get_all_context())
    add_infrastructure(app, config)
    if config.pipeline.enabled:  # deployed once with `cdk deploy <prefix>-pipeline`, then self-updating
        PipelineStack(app, pipeline_stack_name(config), config=config)
except ConfigError as exc:
    sys.exit(str(exc))

cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
