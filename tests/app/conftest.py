"""Synthesizes the real app once per test session with the real CDK CLI, offline and without AWS
credentials; pytest-xdist workers share the result through a file lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def offline_env(**extra: str) -> dict[str, str]:
    """An environment with no way to reach AWS: no credentials, no profile, no instance metadata."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "CDK_DEFAULT_ACCOUNT"}
    env.update(
        {
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "CDK_DISABLE_VERSION_CHECK": "true",
            "CDK_CLI_NOTICES": "false",
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        }
    )
    env.update(extra)
    return env


def run_cdk_synth(outdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "cdk"), "synth", "--no-lookups", "--quiet", "-o", str(outdir), *args],
        cwd=REPO,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def cdk_out(tmp_path_factory) -> Path:
    # One synth per session: xdist workers each get basetemp/popen-gwN, so their shared parent is this
    # session's folder; without xdist the basetemp itself is (its parent spans every session).
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    outdir = root / "cdk.out"
    with FileLock(str(root / "cdk.out.lock")):
        if not (outdir / "manifest.json").exists():
            result = run_cdk_synth(outdir)
            if result.returncode != 0:
                pytest.fail(f"cdk synth failed:\n{result.stdout}\n{result.stderr}")
    return outdir


@pytest.fixture(scope="session")
def templates(cdk_out) -> dict[str, dict]:
    return {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in cdk_out.glob("*.template.json")}


# Day two: the same config deployed directly and by the pipeline. One synth holds both: the direct stacks at
# the root of cdk.out and the pipeline Stage's copies under assembly-<pipeline>-Deploy/.
DAY_TWO_CONTEXT = (
    "prefix=team-a",
    "hyperpod.cluster_name=team-a-training",
    "pipeline.enabled=true",
    "pipeline.repository=acme/hyperpod",
    "pipeline.connection_arn=arn:aws:codeconnections:us-east-1:111111111111:connection/"
    "12345678-1234-1234-1234-123456789012",
)


@pytest.fixture(scope="session")
def day_two_cdk_out(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    outdir = root / "cdk.out.day-two"
    with FileLock(str(root / "cdk.out.day-two.lock")):
        if not (outdir / "manifest.json").exists():
            result = run_cdk_synth(outdir, *(arg for pair in DAY_TWO_CONTEXT for arg in ("-c", pair)))
            if result.returncode != 0:
                pytest.fail(f"cdk synth (day two) failed:\n{result.stdout}\n{result.stderr}")
    return outdir


def read_templates(folder: Path) -> dict[str, dict]:
    """``{stack name: template}`` of one cloud assembly folder (a Stage's files are named by artifact id)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    return {
        artifact["properties"].get("stackName", artifact_id): json.loads(
            (folder / artifact["properties"]["templateFile"]).read_text()
        )
        for artifact_id, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }


@pytest.fixture(scope="session")
def day_two_templates(day_two_cdk_out) -> dict[str, dict[str, dict]]:
    """``{"direct": {stack: template}, "pipeline": {stack: template}}``; the pipeline stack itself is direct."""
    (stage,) = [p for p in day_two_cdk_out.glob("assembly-*") if p.is_dir()]
    return {"direct": read_templates(day_two_cdk_out), "pipeline": read_templates(stage)}
