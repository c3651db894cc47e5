"""Dependencies point one way: the CDK app may import ``config`` and nothing of ``post_deploy``; the CLI
imports ``config`` and never the app. Importing aws-cdk-lib loads jsii, which starts Node: a CLI that
only needs a stack name would pay seconds for it, and the kubeconfig's token plugin runs per request."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import post_deploy
from tests.conftest import REPO

CDK_MODULES = ("aws_cdk", "jsii", "constructs", "cdk_nag", "stacks")

PROBE = """
import importlib, json, sys
found = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in %r)
    if loaded:
        found[name] = loaded
        break
print(json.dumps(found))
"""


def imports_of(*modules: str) -> dict[str, list[str]]:
    """Import ``modules`` one after another in a fresh interpreter; the first that pulled in CDK, with
    what it pulled in."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (CDK_MODULES,), *modules],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_post_deploy_module_imports_cdk():
    modules = sorted(
        f"post_deploy.{m.name}" for m in pkgutil.iter_modules(post_deploy.__path__) if m.name != "__main__"
    )
    assert "post_deploy.teardown" in modules and "post_deploy.network_cleanup" in modules
    assert imports_of(*modules, "config", "config.names") == {}


def test_the_probe_sees_a_cdk_import():
    # The check above must be able to fail: a stacks module does pull aws_cdk in, and is named.
    found = imports_of("config.names", "stacks.infrastructure")
    assert list(found) == ["stacks.infrastructure"] and "aws_cdk" in found["stacks.infrastructure"]
