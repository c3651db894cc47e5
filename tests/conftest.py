"""Fixtures shared by every test: the cdk.json context and a config built from it."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Tests never see real credentials: anything that would reach AWS goes to moto or a Stubber.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_var, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    }
)


def cdk_context() -> dict:
    """The committed cdk.json context (defaults + feature flags)."""
    return copy.deepcopy(json.loads((REPO / "cdk.json").read_text())["context"])


@pytest.fixture
def context() -> dict:
    return cdk_context()


def make_config(**overrides):
    """The default config with ``-c``-style dotted overrides applied."""
    from config import load_config

    return load_config({**cdk_context(), **overrides})


# Fixtures that run a real CLI (cdk synth, helm, moto_server, SkyPilot's API server) for the tests that take them.
_REAL_CLI_FIXTURES = {"cdk_out", "templates", "moto_server", "sky_tools_bin", "skypilot_env"}


def pytest_collection_modifyitems(items):
    """`slow` means "runs a real CLI end to end" (`make test-quick` leaves those out): besides the modules that
    mark themselves, every test taking one of the fixtures above is one."""
    for item in items:
        if _REAL_CLI_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
