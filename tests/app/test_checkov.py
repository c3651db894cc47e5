"""checkov on the synthesized templates: no failure without a skip, and no skip without a reviewable reason
(constructs/checkov_skips.py holds the reasons)."""

from __future__ import annotations

import json

from constructs.checkov_skips import SECRET_LIKE
from tests.checkov_scan import passed_and_skipped, scan, unexplained


def test_checkov_reports_no_unexplained_finding_on_any_stack(cdk_out):
    reports = scan(sorted(cdk_out.glob("*.template.json")))
    assert unexplained(reports) == []
    passed, skipped = passed_and_skipped(reports)
    assert passed > 200 and skipped > 0  # it really scanned the app's resources


def test_the_scan_reports_a_function_without_skips_and_a_skip_without_a_reason(tmp_path):
    template = {
        "Resources": {
            "Bare": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Handler": "i.h",
                    "Runtime": "python3.13",
                    "Role": "arn:aws:iam::1:role/r",
                    "Code": {"ZipFile": "x"},
                },
            },
            "Logs": {
                "Type": "AWS::Logs::LogGroup",
                "Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_158", "comment": "n/a"}]}},
                "Properties": {"RetentionInDays": 7},
            },
        }
    }
    path = tmp_path / "probe.template.json"
    path.write_text(json.dumps(template))
    problems = unexplained(scan([path]))
    assert "CKV_AWS_116 failed: probe.template.json AWS::Lambda::Function.Bare" in problems
    assert "CKV_AWS_158 skipped without a reviewable reason ('n/a'): AWS::Logs::LogGroup.Logs" in problems


def _function_stack(**environment: str):
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk.assertions import Template

    from constructs.checkov_skips import CheckovSkips

    app = cdk.App()
    stack = cdk.Stack(app, "Probe")
    lambda_.Function(
        stack,
        "Fn",
        runtime=lambda_.Runtime.PYTHON_3_13,
        handler="i.h",
        code=lambda_.Code.from_inline("def h(e, c): pass"),
        environment=environment,
    )
    cdk.Aspects.of(stack).add(CheckovSkips())
    return Template.from_stack(stack)


def test_no_function_environment_variable_name_looks_like_a_secret(cdk_out):
    """The half of CKV_AWS_173's skip reason that a template can prove."""
    names = {
        (template.name, logical_id, name)
        for template in cdk_out.glob("*.template.json")
        for logical_id, resource in json.loads(template.read_text())["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
        for name in resource["Properties"].get("Environment", {}).get("Variables", {})
    }
    assert names, "no function environment found: the check would pass vacuously"
    assert [n for n in names if SECRET_LIKE.search(n[2])] == []
    assert SECRET_LIKE.search("DB_PASSWORD") and SECRET_LIKE.search("GITHUB_TOKEN")


def test_a_function_with_plain_settings_gets_the_four_documented_skips():
    template = _function_stack(CLUSTER_NAME="c")
    (function,) = template.find_resources("AWS::Lambda::Function").values()
    skips = {s["id"]: s["comment"] for s in function["Metadata"]["checkov"]["skip"]}
    assert set(skips) == {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"}
