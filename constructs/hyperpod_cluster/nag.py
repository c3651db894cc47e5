"""cdk-nag 3.x acknowledgments for this construct, each with the reason a reviewer reads.

cdk-nag 3 matches acknowledgment ids exactly, and an IAM5 id embeds the flattened resource ARN
(``Resource::arn:<AWS::Partition>:eks:...:access-entry/<...>/*``). When the EKS cluster lives in another
stack, that text contains the cross-stack export name, which only exists after CDK's prepare phase. So
wildcard findings are acknowledged from a construct validation, which runs after references are resolved
and before the validation plugins read the acknowledgments: each IAM statement that needs a wildcard
carries a Sid, the reason for that Sid is registered here, and exactly the wildcard resources of that
statement in the final template are acknowledged on the policy that holds it. Any other wildcard (or any
wildcard action) stays a finding and fails the synth.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import jsii
from aws_cdk import CfnResource, Stack
from aws_cdk import aws_iam as iam

from constructs import IConstruct, IValidation
from constructs.nag_acknowledgment import acknowledge


def flatten(value) -> str:
    """cdk-nag's ``flattenCfnReference``: how an ARN appears inside an IAM5 finding id."""
    if isinstance(value, str):
        return value.replace("${", "<").replace("}", ">")
    if isinstance(value, dict):
        if "Fn::Join" in value:
            delimiter, items = value["Fn::Join"]
            return delimiter.join(flatten(i) for i in items)
        if "Fn::Sub" in value:
            return flatten(value["Fn::Sub"])
        if "Fn::GetAtt" in value:
            resource, attribute = value["Fn::GetAtt"]
            return f"<{flatten(resource)}.{flatten(attribute)}>"
        if "Fn::ImportValue" in value:
            return flatten(value["Fn::ImportValue"])
        if "Ref" in value:
            return f"<{flatten(value['Ref'])}>"
    return json.dumps(value, separators=(",", ":"))


# A statement selector returns the reason for a statement's wildcard resources, or None to leave them.
Selector = Callable[[Mapping], str | None]


def by_sid(reasons: Mapping[str, str]) -> Selector:
    return lambda statement: reasons.get(statement.get("Sid", ""))


# Wildcards that aws-cdk-lib itself writes into the policies of roles it manages for us.
_GENERATED = (
    (
        {"lambda:InvokeFunction"},
        "aws-cdk-lib's grantInvoke lists the function ARN and '<arn>:*' (its versions and aliases); no other "
        "function can be invoked.",
    ),
    (
        {
            "logs:CreateLogDelivery",
            "logs:CreateLogStream",
            "logs:GetLogDelivery",
            "logs:UpdateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutLogEvents",
            "logs:PutResourcePolicy",
            "logs:DescribeResourcePolicies",
            "logs:DescribeLogGroups",
        },
        "Step Functions execution logging uses the CloudWatch Logs vended-log delivery APIs, which support no "
        "resource-level permissions (IAM requires '*'); this is what logging ALL events (AwsSolutions-SF1) needs.",
    ),
    (
        {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"},
        "X-Ray trace upload and sampling APIs support no resource-level permissions (IAM requires '*'); needed "
        "for Step Functions tracing (AwsSolutions-SF2).",
    ),
)


def generated_by_cdk(statement: Mapping) -> str | None:
    actions = statement.get("Action", [])
    actions = set(actions if isinstance(actions, list) else [actions])
    # With @aws-cdk/aws-iam:minimizePolicies, CDK merges statements that share resources, so one
    # statement may carry e.g. both the log-delivery and the X-Ray actions: justify it only if every
    # action belongs to some generated group, and give the reasons of all groups involved.
    if not actions or not actions <= set().union(*(allowed for allowed, _ in _GENERATED)):
        return None
    return " ".join(reason for allowed, reason in _GENERATED if actions & allowed)


def justify_wildcard_resources(policy: IConstruct, cfn: CfnResource, select: Selector) -> None:
    """Acknowledge, at validation time, the IAM5 resource findings of the statements ``select`` justifies."""
    policy.node.add_validation(_WildcardAcknowledger(policy, cfn, select))


@jsii.implements(IValidation)
class _WildcardAcknowledger:
    def __init__(self, policy: IConstruct, cfn: CfnResource, select: Selector) -> None:
        self._policy, self._cfn, self._select = policy, cfn, select

    def validate(self) -> list[str]:
        stack = Stack.of(self._cfn)
        if isinstance(self._cfn, iam.CfnRole):
            policies = stack.resolve(self._cfn.policies) or []
            documents = [p.get("policyDocument") or p.get("PolicyDocument") or {} for p in policies]
        else:  # CfnPolicy / CfnManagedPolicy, resolved the way cdk-nag resolves them
            documents = [stack.resolve(self._cfn.policy_document)]
        reasons: dict[str, list[str]] = {}
        for document in documents:
            for statement in document.get("Statement", []):
                reason = self._select(statement)
                if reason is None or statement.get("Effect") != "Allow":
                    continue
                resources = statement.get("Resource", [])
                resources = resources if isinstance(resources, list) else [resources]
                for flat in sorted({flatten(r) for r in resources}):
                    if "*" in flat and reason not in reasons.setdefault(flat, []):
                        reasons[flat].append(reason)
        # One finding id per policy and resource: if several justified statements share a wildcard
        # resource, the acknowledgment carries all of their reasons.
        for flat, texts in sorted(reasons.items()):
            acknowledge(self._policy, " | ".join(texts), f"AwsSolutions-IAM5[Resource::{flat}]")
        return []
