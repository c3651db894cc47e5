"""The whole app synthesized in-process (no CLI, no cdk-nag), for construct tests that need every
stack of one configuration: a few seconds instead of a CLI synth, and templates keyed by stack name."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk

from config import load_config
from stacks.infrastructure import add_infrastructure
from tests.conftest import cdk_context


def synth_context(context: dict[str, Any]) -> dict[str, dict]:
    config = load_config(context)
    app = cdk.App()
    stacks = add_infrastructure(app, config)
    assembly = app.synth()
    return {s.stack_name: assembly.get_stack_by_name(s.stack_name).template for s in stacks.all()}


def synth(**overrides: str) -> dict[str, dict]:
    """Templates of the default config with ``-c``-style dotted overrides."""
    return synth_context({**cdk_context(), **overrides})
