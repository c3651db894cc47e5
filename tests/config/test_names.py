"""``config.names``: the names app and CLI share, their AWS length limits checked at config time, and
``python -m config.names`` / ``make pipeline`` taking the pipeline stack's name from the config."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest

from config import ConfigError, names
from tests.conftest import REPO, make_config

CONNECTION = "arn:aws:codeconnections:us-east-1:111111111111:connection/12345678-1234-1234-1234-123456789012"


def longest_region() -> str:
    """The longest region name botocore knows in any partition (us-isof-south-1 today)."""
    endpoints = botocore.session.get_session().get_data("endpoints")
    return max((r for p in endpoints["partitions"] for r in p["regions"]), key=len)


def in_region(region: str, **overrides: str):
    return make_config(
        region=region,
        **{
            "network.availability_zones": f"[{region}a, {region}b]",
            "hyperpod.availability_zones": f"[{region}a]",
            **overrides,
        },
    )


# ----- lengths ------------------------------------------------------------------------------------
def test_default_config_names_all_fit_with_the_pipeline_on():
    config = make_config(**{"pipeline.enabled": "true", "pipeline.connection_arn": CONNECTION})
    listed = names.physical_names(config)
    assert {n.what for n in listed} >= {
        "lifecycle bucket",
        "EKS cluster",
        "post-deploy IAM role",
        "post-deploy CodeBuild IAM role",
        "pipeline stack",
    }
    assert [n for n in listed if n.too_long] == []


def test_a_prefix_that_overflows_the_bucket_name_in_the_longest_region_is_refused_naming_prefix():
    region = longest_region()
    assert len(region) >= 15
    with pytest.raises(ConfigError) as err:
        in_region(region, prefix="a" * 20)
    message = str(err.value)
    assert "\n" not in message
    bucket = f"sagemaker-{'a' * 20}-lifecycle-{names.ACCOUNT_PLACEHOLDER}-{region}"
    assert message == (
        f'config error: prefix = "{"a" * 20}": makes the lifecycle bucket name {bucket!r} {len(bucket)} '
        f"characters; AWS allows at most 63 (shorten it by {len(bucket) - 63})"
    )


def test_the_longest_prefix_that_fits_the_longest_region_is_accepted():
    region = longest_region()
    fits = 63 - len(f"sagemaker--lifecycle-000000000000-{region}")
    config = in_region(region, prefix="a" * fits)
    (bucket,) = [n for n in names.physical_names(config) if n.what == "lifecycle bucket"]
    assert len(bucket.value) == 63
    with pytest.raises(ConfigError, match=r"^config error: prefix = .*shorten it by 1\)$"):
        in_region(region, prefix="a" * (fits + 1))


def test_a_configured_account_is_measured_as_it_is():
    config = make_config(account="123456789012")
    (bucket,) = [n for n in names.physical_names(config) if n.what == "lifecycle bucket"]
    assert bucket.value == "sagemaker-hyperpod-sky-lifecycle-123456789012-us-east-1"


# ----- python -m config.names and make pipeline -----------------------------------------------------
def names_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "config.names", *argv], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_the_cli_prints_the_pipeline_stack_of_the_config_the_cdk_args_select():
    assert names_cli("pipeline-stack").stdout == "hyperpod-sky-pipeline\n"
    # a config file, a later -c override and cdk flags that do not change names
    done = names_cli("pipeline-stack", "-c", "config=examples/cluster.yaml", "--require-approval", "never")
    assert (done.returncode, done.stdout) == (0, "team-a-pipeline\n")
    assert names_cli("pipeline-stack", "-c", "config=examples/cluster.yaml", "-c", "prefix=ml-prod").stdout == (
        "ml-prod-pipeline\n"
    )


def test_the_cli_refuses_a_bad_config_with_its_one_line():
    done = names_cli("pipeline-stack", "-c", "prefix=Bad_Prefix")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith('config error: prefix = "Bad_Prefix"')


@pytest.fixture
def cdk_recorder(tmp_path: Path) -> tuple[Path, Path]:
    """An executable that records its argv, one line per call, instead of deploying."""
    log = tmp_path / "calls"
    script = tmp_path / "cdk"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def make(*argv: str) -> subprocess.CompletedProcess:
    # -o venv: the shared .venv is installed already; never let a test reinstall it.
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "venv", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MAKEFLAGS": ""},
    )


def test_make_pipeline_deploys_the_pipeline_stack_the_config_names(cdk_recorder):
    cdk, log = cdk_recorder
    args = "-c config=examples/cluster.yaml -c prefix=ml-prod"
    done = make("pipeline", f"CDK={cdk}", f"CDK_ARGS={args}")
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [f"deploy ml-prod-pipeline {args}"]


def test_make_pipeline_with_a_bad_config_deploys_nothing(cdk_recorder):
    cdk, log = cdk_recorder
    done = make("pipeline", f"CDK={cdk}", "CDK_ARGS=-c prefix=Bad_Prefix")
    assert done.returncode != 0
    assert 'config error: prefix = "Bad_Prefix"' in done.stderr
    assert not log.exists()
