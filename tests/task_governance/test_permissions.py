"""Every SageMaker call the compute-quota handler makes is granted to its role, and nothing else is:
the grants are read from ``permissions.handler_statements``, the calls from the handler's source."""

from __future__ import annotations

import re
from pathlib import Path

import aws_cdk as cdk

from constructs.task_governance import permissions
from constructs.task_governance.runtime import handler

CALL = re.compile(r"_sagemaker\(\)\.(\w+)\(")
# Shared helpers in runtime/aws.py the handler passes its client to, and the call each one makes.
HELPER = re.compile(r"aws\.(\w+)\(_sagemaker\(\)")
HELPER_CALLS = {"sagemaker_tags": "list_tags"}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def test_the_handler_role_grants_exactly_the_calls_the_handler_makes():
    source = Path(handler.__file__).read_text()
    operations = set(CALL.findall(source)) | {HELPER_CALLS[name] for name in HELPER.findall(source)}
    called = {f"sagemaker:{_camel(op)}" for op in operations}
    stack = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="123456789012", region="us-east-1"))
    statements = permissions.handler_statements(
        stack, cluster_arn="arn:aws:sagemaker:us-east-1:123456789012:cluster/x", owner_tag_key="k", owner="o"
    )
    granted: set[str] = set()
    for statement in statements:
        actions = statement.to_statement_json()["Action"]
        granted |= {actions} if isinstance(actions, str) else set(actions)
    assert called == granted
    assert len(called) == 8  # create/update/delete/describe/list quotas, list/add/delete tags
