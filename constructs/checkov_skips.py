"""checkov skip metadata, each with the reason a security reviewer reads (tests/app/test_checkov.py fails on any
checkov failure without one).

Two kinds:
- ``skip(resource, check_id, reason)`` on one resource, at the line that creates it, for a finding that only that
  resource has (an AWS-documented wildcard, a log bucket that cannot log to itself).
- ``CheckovSkips``, an aspect for the findings every resource of a kind shares in this app: the Lambda functions
  (ours and aws-cdk-lib's custom-resource framework) and their log groups. A function already in a VPC gets no
  VPC skip, and a log group that sets its own KMS key needs none.
"""

from __future__ import annotations

import re

import jsii
from aws_cdk import CfnResource, IAspect
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from constructs import IConstruct

_METADATA_KEY = "checkov"

LAMBDA_REASONS = {
    "CKV_AWS_115": (
        "Runs only during stack operations (custom-resource handlers, the cluster poller), a few invocations at a "
        "time; reserved concurrency would take capacity from the account's unreserved pool for no benefit."
    ),
    "CKV_AWS_116": (
        "Custom-resource handlers and Step Functions tasks: CloudFormation reports a failed or missing response as a "
        "stack event and Step Functions as a failed task; a dead-letter queue would hold an event nobody may replay "
        "after its stack operation has ended."
    ),
    "CKV_AWS_117": (
        "Calls only AWS service APIs over their public endpoints (the functions that reach the EKS API get a VPC "
        "configuration and are not skipped); a VPC attachment adds ENIs that hold up subnet and security-group "
        "deletion at destroy and needs NAT for the same calls."
    ),
    "CKV_AWS_173": (
        "The environment holds resource names, ARNs and settings only (a test over the synthesized templates "
        "refuses a variable whose name suggests a secret); Lambda encrypts environment variables at rest with an "
        "AWS managed key."
    ),
}
LOG_GROUP_REASON = (
    "Operational logs of this app's own handlers and workflows (resource names, API status, error messages; no "
    "credentials or user data). CloudWatch Logs encrypts every log group at rest with a service-managed key; a "
    "log group that can hold sensitive data must set its own KMS key, and then needs no skip."
)
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE_KEY|API_KEY", re.IGNORECASE)


def skip(resource: IConstruct, check_id: str, reason: str) -> None:
    """Adds one skip to the CloudFormation resource behind ``resource`` (an L1, or an L2 with a default child)."""
    cfn = resource if isinstance(resource, CfnResource) else resource.node.default_child
    if not isinstance(cfn, CfnResource):
        raise TypeError(f"{resource.node.path} has no CloudFormation resource to carry a checkov skip")
    if len(reason.strip()) < 40:
        raise ValueError(f"checkov skip {check_id} on {resource.node.path}: give a reason a reviewer can check")
    entry = cfn.get_metadata(_METADATA_KEY) or {"skip": []}
    if all(s["id"] != check_id for s in entry["skip"]):
        entry["skip"].append({"id": check_id, "comment": reason})
    cfn.add_metadata(_METADATA_KEY, entry)


@jsii.implements(IAspect)
class CheckovSkips:
    """The app-wide skips described in the module docstring; added to every stack by its layer."""

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource):
            return
        if node.cfn_resource_type == "AWS::Lambda::Function":
            self._function(node)
        elif isinstance(node, logs.CfnLogGroup) and not node.kms_key_id:
            skip(node, "CKV_AWS_158", LOG_GROUP_REASON)

    def _function(self, node: CfnResource) -> None:
        # aws-cdk-lib's own singleton providers (S3 auto-delete) are raw CfnResources with no VPC; every other
        # function here is an L1 CfnFunction. Its environment is rendered lazily, so the "no secrets in it"
        # half of CKV_AWS_173's reason is checked on the synthesized templates (tests/app/test_checkov.py).
        function = node if isinstance(node, lambda_.CfnFunction) else None
        for check_id, reason in LAMBDA_REASONS.items():
            if check_id == "CKV_AWS_117" and function is not None and function.vpc_config is not None:
                continue
            if check_id == "CKV_AWS_173" and function is not None and function.kms_key_arn:
                continue
            skip(node, check_id, reason)
