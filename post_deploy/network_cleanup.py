"""Step 3 of ``teardown``: what services leave in the VPC after their stacks are gone, cleared so the
network stack can delete its subnets and VPC.

**Network interfaces.** VPC Lambda functions (the Helm installer) release their ENIs up to ~45
minutes after deletion; HyperPod, EFA and the VPC CNI can leave ENIs ``available``. Any of them
makes subnet deletion fail after CloudFormation's own retries and leaves the network stack
``DELETE_FAILED``. So, bounded and with progress: ENIs of those kinds that are in use are waited
for, ``available`` ones are deleted; ENIs of the network stack itself (NAT gateway, its own
endpoints) are left to CloudFormation; anything else (a GuardDuty endpoint, a load balancer,
someone's instance) is reported with its id and description and stops the teardown before the
network stack, because deleting what we cannot attribute is not ours to do.

**EKS's cluster security group.** EKS creates ``eks-cluster-sg-<cluster>-<id>`` in the VPC (tagged
``aws:eks:cluster-name``) and deletes it with the cluster, unless an interface still used it then;
left behind, it makes the VPC's deletion fail with DependencyViolation. Once the interfaces are
clear, the group of this app's EKS cluster (by that tag or that name, never another cluster's) is
deleted; a rule of another group that still references it is reported, not changed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from post_deploy.common import StepError, say
from post_deploy.exit_codes import ExitCode

STEP_NETWORK_INTERFACES = ExitCode.NODES_TIMEOUT
EKS_CLUSTER_TAG = "aws:eks:cluster-name"


class EniKind(StrEnum):
    OWN = "network stack"  # NAT gateway / the stack's own endpoints: CloudFormation deletes them
    LAMBDA = "lambda"
    EFA = "efa"
    HYPERPOD = "hyperpod"
    EKS = "eks"  # EKS control-plane ENIs and VPC CNI ENIs on (HyperPod or system) nodes
    APP = "app security group"  # created for a service we pointed at the network stack's security group
    UNKNOWN = "unknown"


_BUSY_STATUSES = frozenset({"in-use", "attaching", "detaching", "associated"})
_RESOURCE_ID = re.compile(r"\b(?:vpce|nat|i|eni)-[0-9a-f]{8,17}\b")


def classify_eni(eni: Mapping[str, Any], own_ids: frozenset[str]) -> tuple[EniKind, str]:
    """Who left this ENI, and the evidence. Only what the evidence attributes is ever deleted.

    ``own_ids`` are the network stack's physical resource ids. The signals: the description's
    resource id (NAT gateway / endpoint ENIs name theirs), the interface type (``lambda``, ``efa``),
    the texts HyperPod/EKS/the VPC CNI put in descriptions and tags, and, last, the network stack's
    security group, which only services this app configured (EKS, HyperPod, the in-VPC Lambda) use.
    """
    description = eni.get("Description") or ""
    interface_type = eni.get("InterfaceType") or ""
    tags = {t["Key"]: t.get("Value", "") for t in eni.get("TagSet") or []}
    requester = (eni.get("RequesterId") or "").lower()
    mentioned = set(_RESOURCE_ID.findall(description)) & own_ids
    if mentioned:
        return EniKind.OWN, f"belongs to {', '.join(sorted(mentioned))} of the network stack"
    if interface_type == "lambda" or description.startswith("AWS Lambda VPC ENI"):
        return EniKind.LAMBDA, "Lambda VPC ENI"
    if interface_type in ("efa", "efa-only"):
        return EniKind.EFA, f"interface type {interface_type}"
    if description.startswith("aws-K8S-") or "cluster.k8s.amazonaws.com/name" in tags:
        return EniKind.EKS, "VPC CNI ENI of an EKS/HyperPod node"
    if description.startswith("Amazon EKS "):
        return EniKind.EKS, "EKS control-plane ENI"
    # Not "hyperpod" alone: the default prefix (hyperpod-sky) is in names people give their own things.
    if "sagemaker" in description.lower() or "sagemaker" in requester or any("sagemaker" in k.lower() for k in tags):
        return EniKind.HYPERPOD, "SageMaker (HyperPod) ENI"
    groups = {g.get("GroupId") for g in eni.get("Groups") or []} & own_ids
    if groups:
        return EniKind.APP, f"uses the network stack's security group {', '.join(sorted(groups))}"
    return EniKind.UNKNOWN, "not attributable to this app"


@dataclass
class EniReport:
    vpc_id: str | None = None
    deleted: list[str] = field(default_factory=list)
    waited_seconds: float = 0.0
    polls: int = 0
    left_to_cloudformation: list[str] = field(default_factory=list)
    unknown: list[dict[str, str]] = field(default_factory=list)
    skipped: str | None = None


def network_stack_ids(cfn, stack: str) -> tuple[str | None, frozenset[str]]:
    """The VPC id and every physical id of the network stack; (None, {}) if the stack is gone."""
    try:
        resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationError" and "does not exist" in (error.get("Message") or ""):
            return None, frozenset()
        raise
    ids = frozenset(r["PhysicalResourceId"] for r in resources if r.get("PhysicalResourceId"))
    vpcs = [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::EC2::VPC"]
    return (vpcs[0] if vpcs else None), ids


def clear_network_interfaces(
    ec2,
    cfn,
    network_stack: str,
    *,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> EniReport:
    """Wait (bounded) until no HyperPod/EFA/Lambda/EKS ENI is in use in the network stack's VPC,
    deleting those that are ``available``; unattributable ENIs end the step with their details."""
    report = EniReport()
    try:
        vpc_id, own_ids = network_stack_ids(cfn, network_stack)
        if vpc_id is None:
            report.skipped = f"stack {network_stack} (or its VPC) does not exist"
            say(f"network interfaces: skipped: {report.skipped}")
            return report
        report.vpc_id = vpc_id
        start = clock()
        deadline = start + timeout_s
        announced: set[str] = set()
        while True:
            report.polls += 1
            waiting: list[tuple[dict, EniKind, str]] = []
            unknown: list[dict[str, str]] = []
            own: list[str] = []
            for eni in _enis_in_vpc(ec2, vpc_id):
                eni_id = eni["NetworkInterfaceId"]
                kind, why = classify_eni(eni, own_ids)
                status = eni.get("Status", "")
                if kind is EniKind.OWN:
                    own.append(eni_id)
                elif kind is EniKind.UNKNOWN:
                    unknown.append(_describe_unknown(ec2, eni))
                elif status == "available":
                    if _delete_eni(ec2, eni_id):
                        report.deleted.append(eni_id)
                        say(f"network interfaces: deleted {eni_id} ({kind.value}: {why}; was available)")
                    else:
                        waiting.append((eni, kind, why))
                elif status in _BUSY_STATUSES:
                    waiting.append((eni, kind, why))
            for item in unknown:
                if item["id"] not in announced:
                    announced.add(item["id"])
                    say(f"network interfaces: NOT OURS: {_format_unknown(item)}")
            report.unknown = unknown
            report.left_to_cloudformation = own
            now = clock()
            report.waited_seconds = now - start
            if not waiting:
                break
            if now >= deadline:
                listing = "; ".join(
                    f"{e['NetworkInterfaceId']} ({k.value}, {e.get('Status')}): {e.get('Description') or '-'}"
                    for e, k, _ in waiting
                )
                raise StepError(
                    STEP_NETWORK_INTERFACES,
                    f"network interfaces still in use in {vpc_id} after {timeout_s / 60:g} min: "
                    f"{listing}. Rerun later (or with a longer --eni-timeout-minutes)",
                )
            counts: dict[str, int] = {}
            for _, kind, _ in waiting:
                counts[kind.value] = counts.get(kind.value, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            say(
                f"network interfaces: waiting for {len(waiting)} in use in {vpc_id} ({summary}); "
                f"{now - start:.0f}s of {timeout_s:.0f}s"
            )
            sleep(max(0.0, min(poll_s, deadline - now)))
    except (ClientError, BotoCoreError) as exc:
        raise StepError(STEP_NETWORK_INTERFACES, f"network interfaces: AWS call failed: {_aws_error(exc)}") from None
    if report.unknown:
        ids = " ".join(u["id"] for u in report.unknown)
        raise StepError(
            STEP_NETWORK_INTERFACES,
            f"{len(report.unknown)} network interface(s) in {vpc_id} that this app did not create would block "
            f"deleting its subnets: "
            + "; ".join(_format_unknown(u) for u in report.unknown)
            + f". Delete them or their owners (for bare ENIs: `aws ec2 delete-network-interface "
            f"--network-interface-id <id>`; ids: {ids}), then rerun teardown.",
        )
    say(
        f"network interfaces: clear in {vpc_id} after {report.polls} check(s), {len(report.deleted)} deleted"
        + (
            f"; {len(report.left_to_cloudformation)} of the network stack itself left to CloudFormation"
            if report.left_to_cloudformation
            else ""
        )
    )
    return report


def _enis_in_vpc(ec2, vpc_id: str) -> Iterable[dict]:
    for page in ec2.get_paginator("describe_network_interfaces").paginate(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
    ):
        yield from page.get("NetworkInterfaces", [])


def _delete_eni(ec2, eni_id: str) -> bool:
    """True when deleted or already gone; False when it was attached again meanwhile."""
    try:
        ec2.delete_network_interface(NetworkInterfaceId=eni_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "InvalidNetworkInterfaceID.NotFound":
            return True
        if code == "InvalidNetworkInterface.InUse":
            return False
        raise
    return True


def _describe_unknown(ec2, eni: Mapping[str, Any]) -> dict[str, str]:
    item = {
        "id": eni["NetworkInterfaceId"],
        "status": eni.get("Status", ""),
        "type": eni.get("InterfaceType", ""),
        "description": eni.get("Description") or "",
        "requester": eni.get("RequesterId") or "",
        "subnet": eni.get("SubnetId", ""),
    }
    endpoints = [m for m in _RESOURCE_ID.findall(item["description"]) if m.startswith("vpce-")]
    if endpoints:
        try:
            found = ec2.describe_vpc_endpoints(VpcEndpointIds=endpoints[:1]).get("VpcEndpoints", [])
        except ClientError:
            found = []
        if found:
            item["endpoint_service"] = found[0].get("ServiceName", "")
    return item


def _format_unknown(item: Mapping[str, str]) -> str:
    text = (
        f"{item['id']} ({item['status']}, type {item['type'] or '-'}, subnet {item['subnet']}): "
        f"{item['description'] or 'no description'!r}, requester {item['requester'] or '-'}"
    )
    service = item.get("endpoint_service")
    if service:
        text += f", endpoint service {service}"
        if "guardduty" in service:
            text += (
                " (GuardDuty Runtime Monitoring's endpoint: delete it and the GuardDutyManagedSecurityGroup "
                "of this VPC, or exclude the VPC in GuardDuty)"
            )
    return text


def _aws_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{exc.operation_name}: {error.get('Code')}: {error.get('Message')}"
    return str(exc)


# ----- EKS's own cluster security group -------------------------------------------------------------
def eks_cluster_security_groups(ec2, vpc_id: str, eks_cluster_name: str, own_ids: frozenset[str]) -> list[dict]:
    """The security groups EKS created for ``eks_cluster_name`` in the VPC (not the network stack's)."""
    found = []
    for page in ec2.get_paginator("describe_security_groups").paginate(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
    ):
        for group in page.get("SecurityGroups", []):
            tags = {t["Key"]: t.get("Value", "") for t in group.get("Tags") or []}
            # The tag EKS sets decides; the name only when the tag is gone (the name of cluster x-eks-2's
            # group also starts with x-eks-).
            if EKS_CLUSTER_TAG in tags:
                ours = tags[EKS_CLUSTER_TAG] == eks_cluster_name
            else:
                ours = group.get("GroupName", "").startswith(f"eks-cluster-sg-{eks_cluster_name}-")
            if ours and group["GroupId"] not in own_ids:
                found.append(group)
    return found


def delete_eks_cluster_security_groups(ec2, cfn, network_stack: str, eks_cluster_name: str) -> list[str]:
    """Delete the cluster security group(s) EKS left in the network stack's VPC; their ids."""
    try:
        vpc_id, own_ids = network_stack_ids(cfn, network_stack)
    except (ClientError, BotoCoreError) as exc:
        raise StepError(STEP_NETWORK_INTERFACES, f"security groups: AWS call failed: {_aws_error(exc)}") from None
    if vpc_id is None:
        return []
    return delete_eks_cluster_security_groups_in(ec2, vpc_id, eks_cluster_name, own_ids)


def delete_eks_cluster_security_groups_in(
    ec2, vpc_id: str, eks_cluster_name: str, own_ids: frozenset[str] = frozenset()
) -> list[str]:
    """Delete the cluster security group(s) EKS left in ``vpc_id`` for ``eks_cluster_name``; their ids.
    One that a rule of another group or an interface still references is reported (EC2 would refuse it
    with DependencyViolation, and the reference is someone's to remove)."""
    deleted: list[str] = []
    try:
        for group in eks_cluster_security_groups(ec2, vpc_id, eks_cluster_name, own_ids):
            group_id = group["GroupId"]
            references = _references(ec2, vpc_id, group_id)
            if not references:
                try:
                    ec2.delete_security_group(GroupId=group_id)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code == "InvalidGroup.NotFound":
                        continue
                    if code != "DependencyViolation":
                        raise
                    references = f"({exc.response['Error'].get('Message')})"
            if references:
                raise StepError(
                    STEP_NETWORK_INTERFACES,
                    f"security group {group_id} ({group.get('GroupName')}), which EKS created for cluster "
                    f"{eks_cluster_name} and left in {vpc_id}, is still referenced {references}: it would block "
                    f"deleting the VPC; remove those references, then rerun teardown",
                )
            deleted.append(group_id)
            say(
                f"security groups: deleted {group_id} ({group.get('GroupName')}), "
                f"left behind by EKS cluster {eks_cluster_name}"
            )
    except (ClientError, BotoCoreError) as exc:
        raise StepError(STEP_NETWORK_INTERFACES, f"security groups: AWS call failed: {_aws_error(exc)}") from None
    return deleted


def _references(ec2, vpc_id: str, group_id: str) -> str:
    """``by rules of sg-1, sg-2 and by network interfaces eni-1``, or "" when nothing refers to it."""
    parts = []
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "ip-permission.group-id", "Values": [group_id]}]
    ).get("SecurityGroups", [])
    others = sorted(g["GroupId"] for g in groups if g["GroupId"] != group_id)
    if others:
        parts.append(f"by rules of {', '.join(others)}")
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [group_id]}]).get(
        "NetworkInterfaces", []
    )
    if enis:
        parts.append(f"by network interfaces {', '.join(e['NetworkInterfaceId'] for e in enis)}")
    return " and ".join(parts)
