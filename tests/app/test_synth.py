"""The whole app synthesizes offline with the real CDK CLI and passes cdk-nag and cfn-lint."""

from __future__ import annotations

import json
import subprocess

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from tests.app.conftest import BIN, REPO, run_cdk_synth

STACKS = {"hyperpod-sky-network", "hyperpod-sky-lifecycle", "hyperpod-sky-eks", "hyperpod-sky-hyperpod"}


def test_every_layer_is_synthesized_without_lookups_or_credentials(templates):
    # cdk_out was produced by `cdk synth --no-lookups` with no AWS credentials or metadata access.
    assert STACKS <= set(templates)
    assert not (REPO / "cdk.context.json").exists(), "a lookup crept in: synth must not depend on cached lookups"


def nag_report(outdir) -> dict:
    """The AwsSolutions plugin's part of the validation report CDK writes when a plugin is registered."""
    data = json.loads((outdir / "validation-report.json").read_text())
    plugins = {p["pluginName"]: p for p in data["pluginReports"]}
    assert "AwsSolutions" in plugins, f"cdk-nag did not run; plugins: {sorted(plugins)}"
    return plugins["AwsSolutions"]


def test_cdk_nag_ran_on_the_app_and_reports_no_finding(cdk_out):
    # app.py registers AwsSolutionsChecks; every finding is either fixed or acknowledged on its construct
    # (constructs/nag_acknowledgment.py), and an acknowledged finding is not reported.
    report = nag_report(cdk_out)
    assert (report["conclusion"], report["violations"]) == ("success", [])


def test_the_nag_report_shows_an_unacknowledged_finding(tmp_path):
    # What the test above reads does report findings: a bucket without TLS enforcement or access logs.
    app = cdk.App(outdir=str(tmp_path))
    s3.Bucket(cdk.Stack(app, "Bare"), "Bucket")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="ValidationFailed|Validation failed"):
        app.synth()
    report = nag_report(tmp_path)
    assert report["conclusion"] == "failure"
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= {v["ruleName"] for v in report["violations"]}


def test_cfn_lint_finds_nothing_but_w3005(cdk_out):
    files = sorted(str(p) for p in cdk_out.glob("*.template.json"))
    result = subprocess.run(
        [str(BIN / "cfn-lint"), "--format", "parseable", "--ignore-checks", "W3005", "--", *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(files) == len(STACKS)


def test_constructs_folder_has_no_init_file():
    # The jsii `constructs` package calls pkgutil.extend_path, so this folder joins it as is; an __init__.py
    # would shadow the library and break `from constructs import Construct`.
    assert not (REPO / "constructs" / "__init__.py").exists()


def test_a_config_error_stops_synth_with_one_line_and_writes_no_template(tmp_path):
    result = run_cdk_synth(tmp_path / "out", "-c", "hyperpod.instance_groups[0].instance_type=ml.p5.48xlarg")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert lines == [
        'config error: hyperpod.instance_groups[0].instance_type = "ml.p5.48xlarg": not one of the 209 '
        "ClusterInstanceType values in botocore's SageMaker model (e.g. ml.p5.48xlarge, ml.g5.8xlarge); "
        "did you mean ml.p5.48xlarge, ml.p5e.48xlarge, ml.p5.4xlarge?"
    ]
    assert not list((tmp_path / "out").glob("*.template.json"))


def test_an_explicit_account_needs_no_availability_zone_lookup(tmp_path):
    # With account and region known CDK would look the AZs up in the account; the configured AZs
    # answer instead, so `--no-lookups` still succeeds without credentials.
    result = run_cdk_synth(tmp_path / "out", "-c", "account=123456789012")
    assert result.returncode == 0, result.stdout + result.stderr
    network = json.loads((tmp_path / "out" / "hyperpod-sky-network.template.json").read_text())
    azs = {
        r["Properties"]["AvailabilityZone"] for r in network["Resources"].values() if r["Type"] == "AWS::EC2::Subnet"
    }
    assert azs == {"us-east-1a", "us-east-1b"}


def test_a_cross_account_pipeline_synthesizes_offline_and_lints_clean(tmp_path):
    out = tmp_path / "out"
    result = run_cdk_synth(
        out,
        "-c",
        "pipeline.enabled=true",
        "-c",
        "pipeline.connection_arn=arn:aws:codeconnections:us-east-1:111111111111:connection/"
        "12345678-1234-1234-1234-123456789012",
        "-c",
        "pipeline.repository=acme/hyperpod",
        "-c",
        "pipeline.pipeline_account=111111111111",
        "-c",
        "pipeline.cross_account_keys=true",
        "-c",
        "pipeline.manual_approval=true",
        "-c",
        "account=222222222222",
    )
    assert result.returncode == 0, result.stdout + result.stderr  # includes cdk-nag on every stack
    files = sorted(str(p) for p in [*out.glob("*.template.json"), *out.glob("assembly-*/*.template.json")])
    assert len(files) == len(STACKS) * 2 + 1  # direct stacks, the pipeline, the pipeline's stage
    lint = subprocess.run(
        [str(BIN / "cfn-lint"), "--ignore-checks", "W3005", "--", *files], capture_output=True, text=True, timeout=300
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
