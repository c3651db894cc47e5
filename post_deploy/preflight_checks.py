"""The checks ``preflight`` runs with the deploying credentials, each answering "will CloudFormation
fail on this an hour in?" before anything is created.

Every check takes the shared ``Clients`` and the ``Target`` (config plus what was resolved once, such
as the HyperPod AZ ids) and returns ``Finding``s: ``blocked`` (the deploy would fail), ``warning``
(it may fail, or leaves something behind) or ``ok`` (checked and fine; printed so the user sees what
was covered). A check whose AWS call is refused reports that as a warning naming the call, never
silently passes.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from config import AppConfig, compatibility, names
from config.model import SUPPORTED_EKS_VERSIONS
from post_deploy.address_budget import ec2_type, node_addresses, subnet_capacity

BLOCKED, WARNING, OK = "blocked", "warning", "ok"

# Service Quotas names, as AWS spells them (the per-cluster one has no "of").
QUOTA_PER_TYPE = "{} for cluster usage"
QUOTA_PER_CLUSTER = "Maximum number instances allowed per SageMaker HyperPod cluster"
QUOTA_TOTAL = "Total number of instances allowed across SageMaker HyperPod clusters"
# The DefaultStackSynthesizer's templates carry a CheckBootstrapVersion rule requiring this version
# (tests/post_deploy/test_preflight.py reads it from the synthesized templates).
MIN_BOOTSTRAP_VERSION = 6
DEFAULT_QUALIFIER = "hnb659fds"


@dataclass(frozen=True)
class Finding:
    check: str
    level: str  # blocked | warning | ok
    message: str
    fix: str | None = None

    def line(self) -> str:
        tail = f" -> fix: {self.fix}" if self.fix else ""
        return f"{self.level.upper():<8} {self.check}: {self.message}{tail}"

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "message": self.message, "fix": self.fix}


class Clients:
    """boto3 clients made on first use from one session; tests put stubbed clients in ``cache``."""

    def __init__(self, session, config=None):
        self.session, self.config, self.cache = session, config, {}

    def __call__(self, service: str):
        if service not in self.cache:
            self.cache[service] = self.session.client(service, config=self.config)
        return self.cache[service]


@dataclass
class Target:
    config: AppConfig
    account: str
    az_ids: tuple[str, ...] = ()  # where the HyperPod subnets are (or will be)
    az_names: dict[str, str] = field(default_factory=dict)  # AZ id -> name in this account
    qualifier: str = DEFAULT_QUALIFIER


def aws_refused(check: str, call: str, exc: Exception) -> Finding:
    """A check that could not run: a warning naming the call and AWS's answer."""
    error = exc.response.get("Error", {}) if isinstance(exc, ClientError) else {}
    detail = f"{error.get('Code')}: {error.get('Message')}" if error else str(exc)
    return Finding(check, WARNING, f"not checked: {call} failed ({detail})", f"allow {call} for these credentials")


def guarded(check: str, call: str, body: Callable[[], list[Finding]]) -> list[Finding]:
    try:
        return body()
    except (ClientError, BotoCoreError) as exc:
        return [aws_refused(check, call, exc)]


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


# ----- AZ ids --------------------------------------------------------------------------------------
def resolve_az_ids(clients: Clients, target: Target) -> list[Finding]:
    """Fill ``target.az_ids``: the configured ids, else the ids of the HyperPod AZ names (created
    network) or of the given HyperPod subnets (existing network)."""
    config = target.config
    ec2 = clients("ec2")
    zones = ec2.describe_availability_zones(AllAvailabilityZones=False)["AvailabilityZones"]
    by_name = {z["ZoneName"]: z["ZoneId"] for z in zones}
    target.az_names = {z["ZoneId"]: z["ZoneName"] for z in zones}
    configured = config.hyperpod.availability_zone_ids
    findings: list[Finding] = []
    for az_id in configured:
        if az_id not in target.az_names:
            findings.append(
                Finding(
                    "az-ids",
                    BLOCKED,
                    f"{az_id} is not an AZ id available to this account in {config.region}",
                    f"use one of {', '.join(sorted(target.az_names))} in hyperpod.availability_zone_ids",
                )
            )
    existing = config.network.existing
    if existing:
        subnets = ec2.describe_subnets(SubnetIds=list(existing.hyperpod_subnet_ids))["Subnets"]
        target.az_ids = tuple(sorted({s["AvailabilityZoneId"] for s in subnets}))
        for s in subnets:
            if configured and s["AvailabilityZoneId"] not in configured:
                findings.append(
                    Finding(
                        "az-ids",
                        BLOCKED,
                        f"HyperPod subnet {s['SubnetId']} is in {s['AvailabilityZoneId']}, not in "
                        f"hyperpod.availability_zone_ids ({', '.join(configured)})",
                        "list subnets in those AZ ids in network.existing.hyperpod_subnet_ids, or fix the ids",
                    )
                )
    elif configured:
        target.az_ids = configured
    else:
        missing = [n for n in config.hyperpod_azs if n not in by_name]
        if missing:
            findings.append(
                Finding(
                    "az-ids",
                    BLOCKED,
                    f"{', '.join(missing)} not available to this account in {config.region}",
                    f"use AZs from {', '.join(sorted(by_name))}",
                )
            )
        target.az_ids = tuple(by_name[n] for n in config.hyperpod_azs if n in by_name)
    if not findings:
        shown = ", ".join(f"{i} ({target.az_names.get(i, '?')})" for i in target.az_ids)
        findings.append(Finding("az-ids", OK, f"HyperPod subnets in {shown}"))
    return findings


# ----- quotas ----------------------------------------------------------------------------------------
def _quota_values(clients: Clients) -> dict[str, tuple[float, str]]:
    values: dict[str, tuple[float, str]] = {}
    paginator = clients("service-quotas").get_paginator("list_service_quotas")
    for page in paginator.paginate(ServiceCode="sagemaker"):
        for q in page.get("Quotas", []):
            values[q["QuotaName"]] = (q["Value"], q["QuotaCode"])
    return values


def _other_clusters_usage(clients: Clients, own_name: str) -> Counter:
    """Instances other HyperPod clusters in the region hold, per type (they count against the quotas)."""
    sm = clients("sagemaker")
    used: Counter = Counter()
    for page in sm.get_paginator("list_clusters").paginate():
        for summary in page.get("ClusterSummaries", []):
            if summary["ClusterName"] == own_name:
                continue  # an update: its instances are replaced, not added
            detail = sm.describe_cluster(ClusterName=summary["ClusterArn"])
            for group in detail.get("InstanceGroups", []):
                used[group["InstanceType"]] += group.get("CurrentCount", 0)
    return used


def check_quotas(clients: Clients, target: Target) -> list[Finding]:
    config = target.config
    wanted: Counter = Counter()
    for group in config.hyperpod.instance_groups:
        wanted[group.instance_type] += group.instance_count
    quotas = _quota_values(clients)
    used = _other_clusters_usage(clients, config.hyperpod.cluster_name)
    findings = []
    fix = "request an increase in the Service Quotas console (Amazon SageMaker, '{}'), then rerun"
    for instance_type, count in sorted(wanted.items()):
        name = QUOTA_PER_TYPE.format(instance_type)
        if name not in quotas:
            findings.append(Finding("quota", WARNING, f"no quota named '{name}' in {config.region}", fix.format(name)))
            continue
        value, code = quotas[name]
        need = count + used[instance_type]
        level = OK if value >= need else BLOCKED
        held = f" ({used[instance_type]} held by other clusters)" if used[instance_type] else ""
        findings.append(
            Finding(
                "quota",
                level,
                f"'{name}' ({code}) is {value:g}, {need} needed{held}",
                None if level == OK else fix.format(name),
            )
        )
    total = sum(wanted.values())
    for name, need in ((QUOTA_PER_CLUSTER, total), (QUOTA_TOTAL, total + sum(used.values()))):
        if name not in quotas:
            findings.append(Finding("quota", WARNING, f"no quota named '{name}' in {config.region}", fix.format(name)))
            continue
        value, code = quotas[name]
        level = OK if value >= need else BLOCKED
        findings.append(
            Finding(
                "quota",
                level,
                f"'{name}' ({code}) is {value:g}, {need} needed",
                None if level == OK else fix.format(name),
            )
        )
    return findings


# ----- instance type offerings --------------------------------------------------------------------
def check_offerings(clients: Clients, target: Target) -> list[Finding]:
    """SageMaker has no offerings API for HyperPod capacity, so EC2's offering of the same type in the
    same AZ id is used as a proxy: a type EC2 does not offer there is very unlikely to be available to
    HyperPod there. A warning, because SageMaker's pools can differ from EC2's."""
    if not target.az_ids:
        return []
    ec2 = clients("ec2")
    types = sorted({ec2_type(g.instance_type) for g in target.config.hyperpod.instance_groups})
    offered: set[tuple[str, str]] = set()
    region_wide: set[str] = set()
    for page in ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone-id", Filters=[{"Name": "instance-type", "Values": types}]
    ):
        for o in page["InstanceTypeOfferings"]:
            region_wide.add(o["InstanceType"])
            offered.add((o["InstanceType"], o["Location"]))
    findings = []
    for t in types:
        if t not in region_wide:
            findings.append(
                Finding(
                    "offering",
                    WARNING,
                    f"EC2 offers {t} in no AZ of {target.config.region}, so the AZ cannot be checked",
                    "confirm ml." + t + " capacity with your AWS account team or use a training plan",
                )
            )
            continue
        for az_id in target.az_ids:
            if (t, az_id) in offered:
                findings.append(
                    Finding("offering", OK, f"{t} is offered in {az_id} (EC2 offering, a proxy for HyperPod)")
                )
            else:
                elsewhere = sorted(loc for typ, loc in offered if typ == t)
                findings.append(
                    Finding(
                        "offering",
                        WARNING,
                        f"{t} is not offered in {az_id} (EC2 offering, a proxy for HyperPod capacity)",
                        f"choose one of {', '.join(elsewhere)} in hyperpod.availability_zone_ids, or a training plan there",
                    )
                )
    return findings


# ----- training plans --------------------------------------------------------------------------------
def check_training_plans(clients: Clients, target: Target) -> list[Finding]:
    findings = []
    sm = clients("sagemaker")
    for i, group in enumerate(target.config.hyperpod.instance_groups):
        if not group.training_plan_arn:
            continue
        key = f"hyperpod.instance_groups[{i}].training_plan_arn"
        name = group.training_plan_arn.rsplit("/", 1)[-1]
        try:
            plan = sm.describe_training_plan(TrainingPlanName=name)
        except ClientError as exc:
            if _code(exc) in ("ResourceNotFound", "ValidationException"):
                findings.append(
                    Finding("training-plan", BLOCKED, f"{name} does not exist in {target.config.region}", f"fix {key}")
                )
                continue
            findings.append(aws_refused("training-plan", "sagemaker:DescribeTrainingPlan", exc))
            continue
        problems: list[tuple[str, str, str]] = []
        status = plan.get("Status")
        if status in ("Expired", "Failed", "Pending"):
            problems.append((BLOCKED, f"{name} is {status}", f"buy or choose an Active plan for {key}"))
        elif status == "Scheduled":
            problems.append(
                (
                    WARNING,
                    f"{name} is Scheduled (starts {plan.get('StartTime')})",
                    "deploy once it is Active, or expect nodes to wait",
                )
            )
        if "hyperpod-cluster" not in plan.get("TargetResources", []):
            problems.append((BLOCKED, f"{name} does not target hyperpod-cluster", f"choose a HyperPod plan for {key}"))
        capacities = [
            c for c in plan.get("ReservedCapacitySummaries", []) if c.get("InstanceType") == group.instance_type
        ]
        if not capacities:
            problems.append(
                (BLOCKED, f"{name} reserves no {group.instance_type}", f"match {key} to the group's instance type")
            )
        available = plan.get("AvailableInstanceCount", 0)
        if available < group.instance_count:
            problems.append(
                (
                    BLOCKED,
                    f"{name} has {available} instances available, group {group.name} wants {group.instance_count}",
                    f"lower hyperpod.instance_groups[{i}].instance_count or extend the plan",
                )
            )
        for c in capacities:
            az_id = c.get("AvailabilityZoneId") or {v: k for k, v in target.az_names.items()}.get(
                c.get("AvailabilityZone", "")
            )
            if target.az_ids and az_id not in target.az_ids:
                problems.append(
                    (
                        BLOCKED,
                        f"{name} reserves capacity in {az_id} but the HyperPod subnets are in {', '.join(target.az_ids)}",
                        f"set hyperpod.availability_zone_ids: [{az_id}] (or HyperPod subnets in {az_id})",
                    )
                )
        if problems:
            findings += [Finding("training-plan", level, msg, fix) for level, msg, fix in problems]
        else:
            findings.append(
                Finding("training-plan", OK, f"{name}: {status}, {available} available in {', '.join(target.az_ids)}")
            )
    return findings


# ----- addresses -----------------------------------------------------------------------------------
def check_addresses(clients: Clients, target: Target) -> list[Finding]:
    config = target.config
    ec2 = clients("ec2")
    types = sorted({ec2_type(g.instance_type) for g in config.hyperpod.instance_groups})
    known: dict[str, dict] = {}
    for t in types:
        try:
            known[t] = ec2.describe_instance_types(InstanceTypes=[t])["InstanceTypes"][0]
        except ClientError as exc:
            if _code(exc) != "InvalidInstanceType":
                raise
    minimum = full = 0
    parts = []
    for group in config.hyperpod.instance_groups:
        per = node_addresses(group.instance_type, known.get(ec2_type(group.instance_type)))
        minimum += per.minimum * group.instance_count
        full += per.full * group.instance_count
        parts.append(
            f"{group.instance_count} x {group.instance_type} ({per.primary} primary + {per.efa} EFA + {per.pods} pod)"
        )
    existing = config.network.existing
    if existing:
        subnets = ec2.describe_subnets(SubnetIds=list(existing.hyperpod_subnet_ids))["Subnets"]
        free = sum(s["AvailableIpAddressCount"] for s in subnets)
        where = f"{len(subnets)} existing HyperPod subnet(s) have {free} free"
        fix = "add larger HyperPod subnets to network.existing.hyperpod_subnet_ids"
    else:
        count = len(config.hyperpod_azs)
        free = count * subnet_capacity(config.network.hyperpod_subnet_cidr_mask)
        where = f"{count} new /{config.network.hyperpod_subnet_cidr_mask} HyperPod subnet(s) hold {free}"
        fix = "lower network.hyperpod_subnet_cidr_mask (a larger subnet) within network.vpc_cidr"
        vpc = ipaddress.IPv4Network(config.network.vpc_cidr)
        if count * 2 ** (32 - config.network.hyperpod_subnet_cidr_mask) > vpc.num_addresses // 2:
            fix += " (or a larger network.vpc_cidr)"
    need = f"nodes need {minimum} to start, {full} with every pod address: " + "; ".join(parts)
    if free < minimum:
        return [Finding("addresses", BLOCKED, f"{where}; {need}", fix)]
    if free < full:
        return [Finding("addresses", WARNING, f"{where}; {need} (pods go Pending once the nodes fill)", fix)]
    return [Finding("addresses", OK, f"{where}; {need}")]


# ----- CDK bootstrap ---------------------------------------------------------------------------------
def check_bootstrap(clients: Clients, target: Target) -> list[Finding]:
    name = f"/cdk-bootstrap/{target.qualifier}/version"
    bootstrap = f"cdk bootstrap aws://{target.account}/{target.config.region}"
    try:
        value = clients("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if _code(exc) == "ParameterNotFound":
            return [
                Finding(
                    "bootstrap", BLOCKED, f"{target.config.region} is not CDK-bootstrapped ({name} missing)", bootstrap
                )
            ]
        raise
    if int(value) < MIN_BOOTSTRAP_VERSION:
        return [
            Finding(
                "bootstrap",
                BLOCKED,
                f"bootstrap version {value} is older than the {MIN_BOOTSTRAP_VERSION} the templates require",
                bootstrap,
            )
        ]
    return [Finding("bootstrap", OK, f"bootstrap version {value} ({name})")]


# ----- EKS versions and add-ons ------------------------------------------------------------------------
def check_eks_versions(clients: Clients, target: Target) -> list[Finding]:
    """For a cluster the app creates: the version is one EKS offers and every add-on the app installs has
    a version for it (a pinned vpc-cni version must be among them)."""
    config = target.config
    if config.eks.existing:
        return []  # the existing cluster's own version and add-ons: check_existing_cluster
    eks = clients("eks")
    version = config.eks.version
    findings = []
    versions = eks.describe_cluster_versions(clusterVersions=[version]).get("clusterVersions", [])
    if not versions:
        findings.append(
            Finding(
                "eks-version",
                BLOCKED,
                f"EKS offers no Kubernetes {version} in {config.region}",
                "choose another eks.version",
            )
        )
    else:
        status = versions[0].get("versionStatus") or versions[0].get("status")
        if status and status.upper() not in ("STANDARD_SUPPORT", "STANDARD"):
            findings.append(
                Finding(
                    "eks-version",
                    WARNING,
                    f"Kubernetes {version} is in {status} (extended support is billed extra)",
                    "choose a version in standard support for eks.version",
                )
            )
        else:
            findings.append(Finding("eks-version", OK, f"Kubernetes {version}: {status or 'offered'}"))
    for addon in compatibility.EKS_MANAGED_ADDONS:
        offered = []
        for page in eks.get_paginator("describe_addon_versions").paginate(kubernetesVersion=version, addonName=addon):
            for a in page.get("addons", []):
                offered += [v["addonVersion"] for v in a.get("addonVersions", [])]
        pinned = config.eks.vpc_cni_version if addon == "vpc-cni" else None
        if not offered:
            findings.append(
                Finding(
                    "eks-addon",
                    BLOCKED,
                    f"no {addon} add-on version for Kubernetes {version}",
                    "choose another eks.version",
                )
            )
        elif pinned and pinned not in offered:
            findings.append(
                Finding(
                    "eks-addon",
                    BLOCKED,
                    f"vpc-cni {pinned} is not offered for Kubernetes {version}",
                    f"set eks.vpc_cni_version to one of {', '.join(offered[:3])} or leave it unset",
                )
            )
        else:
            findings.append(
                Finding(
                    "eks-addon",
                    OK,
                    f"{addon}: {len(offered)} versions for {version}" + (f", {pinned} among them" if pinned else ""),
                )
            )
    return findings


# ----- existing resources ------------------------------------------------------------------------------
def _allows_all_with_itself(permissions: Iterable[dict], group_id: str) -> bool:
    return any(
        p.get("IpProtocol") == "-1" and any(pair.get("GroupId") == group_id for pair in p.get("UserIdGroupPairs", []))
        for p in permissions
    )


def check_existing_network(clients: Clients, target: Target) -> list[Finding]:
    existing = target.config.network.existing
    if not existing:
        return []
    ec2 = clients("ec2")
    findings = []
    try:
        ec2.describe_vpcs(VpcIds=[existing.vpc_id])
    except ClientError as exc:
        if _code(exc).startswith("InvalidVpcID"):
            return [
                Finding(
                    "existing-network",
                    BLOCKED,
                    f"{existing.vpc_id} does not exist in {target.config.region}",
                    "fix network.existing.vpc_id",
                )
            ]
        raise
    subnet_ids = [*existing.hyperpod_subnet_ids, *existing.eks_subnet_ids]
    try:
        subnets = {s["SubnetId"]: s for s in ec2.describe_subnets(SubnetIds=sorted(set(subnet_ids)))["Subnets"]}
    except ClientError as exc:
        if _code(exc).startswith("InvalidSubnetID"):
            return [
                Finding(
                    "existing-network",
                    BLOCKED,
                    f"a listed subnet does not exist ({_code(exc)})",
                    "fix network.existing subnet ids",
                )
            ]
        raise
    for sid, s in sorted(subnets.items()):
        if s["VpcId"] != existing.vpc_id:
            findings.append(
                Finding(
                    "existing-network",
                    BLOCKED,
                    f"subnet {sid} is in {s['VpcId']}, not {existing.vpc_id}",
                    "list subnets of network.existing.vpc_id",
                )
            )
    eks_azs = {subnets[s]["AvailabilityZoneId"] for s in existing.eks_subnet_ids if s in subnets}
    if len(eks_azs) < 2:
        findings.append(
            Finding(
                "existing-network",
                BLOCKED,
                f"EKS subnets span {len(eks_azs)} AZ, EKS needs two",
                "add an EKS subnet in a second AZ to network.existing.eks_subnet_ids",
            )
        )
    groups = ec2.describe_security_groups(GroupIds=[existing.security_group_id])["SecurityGroups"]
    sg = groups[0]
    if sg["VpcId"] != existing.vpc_id:
        findings.append(
            Finding(
                "existing-network",
                BLOCKED,
                f"{sg['GroupId']} is in {sg['VpcId']}, not {existing.vpc_id}",
                "fix network.existing.security_group_id",
            )
        )
    rule_fix = (
        f"aws ec2 authorize-security-group-{{}} --group-id {sg['GroupId']} "
        f"--ip-permissions 'IpProtocol=-1,UserIdGroupPairs=[{{{{GroupId={sg['GroupId']}}}}}]'"
    )
    if not _allows_all_with_itself(sg.get("IpPermissions", []), sg["GroupId"]):
        findings.append(
            Finding(
                "existing-network",
                BLOCKED,
                f"{sg['GroupId']} does not allow all traffic from itself (EFA, node-to-node)",
                rule_fix.format("ingress"),
            )
        )
    if not _allows_all_with_itself(sg.get("IpPermissionsEgress", []), sg["GroupId"]):
        findings.append(
            Finding(
                "existing-network",
                BLOCKED,
                f"{sg['GroupId']} does not allow all traffic to itself (EFA needs the self egress rule even beside 0.0.0.0/0)",
                rule_fix.format("egress"),
            )
        )
    all_egress = any(
        p.get("IpProtocol") == "-1" and any(r.get("CidrIp") == "0.0.0.0/0" for r in p.get("IpRanges", []))
        for p in sg.get("IpPermissionsEgress", [])
    )
    if not all_egress:
        findings.append(
            Finding(
                "existing-network",
                WARNING,
                f"{sg['GroupId']} does not allow all egress; HyperPod nodes, pods and the chart installer need the "
                "EKS API, ECR, S3, STS and GitHub (tests/rules assume all egress)",
                f"aws ec2 authorize-security-group-egress --group-id {sg['GroupId']} "
                "--ip-permissions 'IpProtocol=-1,IpRanges=[{CidrIp=0.0.0.0/0}]', or check each of those paths",
            )
        )
    if not findings:
        findings.append(
            Finding(
                "existing-network",
                OK,
                f"{existing.vpc_id}: {len(subnets)} subnets in it, {sg['GroupId']} allows all to and from itself",
            )
        )
    return findings


def check_existing_cluster(clients: Clients, target: Target) -> list[Finding]:
    config = target.config
    existing = config.eks.existing
    if not existing:
        return []
    eks = clients("eks")
    try:
        cluster = eks.describe_cluster(name=existing.cluster_name)["cluster"]
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return [
                Finding(
                    "existing-cluster",
                    BLOCKED,
                    f"EKS cluster {existing.cluster_name} does not exist in {config.region}",
                    "fix eks.existing.cluster_name",
                )
            ]
        raise
    findings = []
    name = existing.cluster_name
    if cluster.get("status") != "ACTIVE":
        findings.append(
            Finding("existing-cluster", BLOCKED, f"{name} is {cluster.get('status')}", "wait until it is ACTIVE")
        )
    mode = cluster.get("accessConfig", {}).get("authenticationMode", "CONFIG_MAP")
    if mode not in ("API", "API_AND_CONFIG_MAP"):
        findings.append(
            Finding(
                "existing-cluster",
                BLOCKED,
                f"{name} uses authentication mode {mode}; HyperPod and the app's access entries need API",
                f"aws eks update-cluster-config --name {name} --access-config authenticationMode=API_AND_CONFIG_MAP",
            )
        )
    if cluster.get("version") not in SUPPORTED_EKS_VERSIONS:
        findings.append(
            Finding(
                "existing-cluster",
                BLOCKED,
                f"{name} runs Kubernetes {cluster.get('version')}; this app supports {', '.join(SUPPORTED_EKS_VERSIONS)}",
                f"upgrade {name} to a supported version",
            )
        )
    vpc_config = cluster.get("resourcesVpcConfig", {})
    network = config.network.existing  # eks.existing requires it (config/model.py)
    if network is not None and vpc_config.get("vpcId") != network.vpc_id:
        findings.append(
            Finding(
                "existing-cluster",
                BLOCKED,
                f"{name} is in {vpc_config.get('vpcId')}, not {network.vpc_id}",
                "fix network.existing.vpc_id",
            )
        )
    if vpc_config.get("clusterSecurityGroupId") != existing.cluster_security_group_id:
        findings.append(
            Finding(
                "existing-cluster",
                BLOCKED,
                f"{name}'s cluster security group is {vpc_config.get('clusterSecurityGroupId')}, not {existing.cluster_security_group_id}",
                f"set eks.existing.cluster_security_group_id: {vpc_config.get('clusterSecurityGroupId')}",
            )
        )
    public_cidrs = vpc_config.get("publicAccessCidrs", ["0.0.0.0/0"])
    if not vpc_config.get("endpointPrivateAccess", False) and "0.0.0.0/0" not in public_cidrs:
        findings.append(
            Finding(
                "existing-cluster",
                WARNING,
                f"{name} has no private endpoint and its public one admits only {', '.join(public_cidrs)}: the chart "
                "installer and HyperPod nodes reach it from the VPC's NAT addresses",
                f"aws eks update-cluster-config --name {name} --resources-vpc-config endpointPrivateAccess=true, "
                "or add the NAT gateways' addresses to publicAccessCidrs",
            )
        )
    if "vpc-cni" not in eks.list_addons(clusterName=name).get("addons", []):
        findings.append(
            Finding(
                "existing-cluster",
                WARNING,
                f"{name} has no vpc-cni EKS add-on (self-managed?); HyperPod needs v1.18.3+",
                "check the aws-node image version",
            )
        )
    else:
        version = eks.describe_addon(clusterName=name, addonName="vpc-cni")["addon"]["addonVersion"]
        parsed = compatibility.addon_version_tuple(version)
        if parsed is None or parsed < compatibility.MIN_VPC_CNI_VERSION:
            findings.append(
                Finding(
                    "existing-cluster",
                    BLOCKED,
                    f"{name} runs vpc-cni {version}; HyperPod needs v1.18.3 or newer",
                    f"aws eks update-addon --cluster-name {name} --addon-name vpc-cni --addon-version <newer>",
                )
            )
    if not findings:
        findings.append(
            Finding(
                "existing-cluster",
                OK,
                f"{name}: ACTIVE, {mode}, Kubernetes {cluster.get('version')}, in {vpc_config.get('vpcId')}",
            )
        )
    return findings


def check_bucket(clients: Clients, target: Target) -> list[Finding]:
    config = target.config
    s3 = clients("s3")
    name = names.lifecycle_bucket_name(config, target.account, config.region)
    existing = config.lifecycle_bucket.existing_bucket_name
    try:
        s3.head_bucket(Bucket=name)
        exists = True
    except ClientError as exc:
        code = _code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            exists = False
        elif code in ("403", "AccessDenied") and existing:
            return [
                Finding(
                    "bucket",
                    BLOCKED,
                    f"{name} is not accessible with these credentials (403)",
                    "use a bucket in this account, or grant access",
                )
            ]
        elif code in ("403", "AccessDenied"):
            return [Finding("bucket", BLOCKED, f"{name} is taken by another account", "choose another prefix")]
        else:
            raise
    if not existing:
        if exists:
            return [
                Finding(
                    "bucket",
                    BLOCKED,
                    f"{name} already exists (kept by an earlier deploy with removal_policy retain?); the stack would fail to create it",
                    f"delete it, or set lifecycle_bucket.existing_bucket_name: {name}",
                )
            ]
        return [Finding("bucket", OK, f"{name} is free for the lifecycle stack to create")]
    if not exists:
        return [
            Finding(
                "bucket", BLOCKED, f"{name} does not exist", "create it or fix lifecycle_bucket.existing_bucket_name"
            )
        ]
    region = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
    if region != config.region:
        return [
            Finding(
                "bucket",
                BLOCKED,
                f"{name} is in {region}, the cluster in {config.region}",
                "use a sagemaker-* bucket in the cluster's region",
            )
        ]
    return [Finding("bucket", OK, f"{name} exists in {region}; scripts go under {config.prefix}/lifecycle_scripts/")]


# ----- GuardDuty -------------------------------------------------------------------------------------
def check_guardduty(clients: Clients, target: Target) -> list[Finding]:
    """GuardDuty runtime monitoring with automated agent management adds a ``guardduty-data`` VPC endpoint
    and ``GuardDutyManagedSecurityGroup`` to every VPC with monitored workloads; CloudFormation knows
    neither, so they block deleting the VPC the app created."""
    gd = clients("guardduty")
    for detector_id in gd.list_detectors().get("DetectorIds", []):
        for feature in gd.get_detector(DetectorId=detector_id).get("Features", []):
            if (
                feature.get("Name") not in ("RUNTIME_MONITORING", "EKS_RUNTIME_MONITORING")
                or feature.get("Status") != "ENABLED"
            ):
                continue
            automated = [
                c["Name"]
                for c in feature.get("AdditionalConfiguration", [])
                if c.get("Status") == "ENABLED" and c.get("Name") in ("EKS_ADDON_MANAGEMENT", "EC2_AGENT_MANAGEMENT")
            ]
            if not automated:
                continue
            if target.config.network.existing:
                return [
                    Finding(
                        "guardduty",
                        OK,
                        f"runtime monitoring ({', '.join(automated)}) is on; the VPC is not the app's to delete",
                    )
                ]
            return [
                Finding(
                    "guardduty",
                    WARNING,
                    f"runtime monitoring with {', '.join(automated)} is on (detector {detector_id}): its guardduty-data VPC "
                    "endpoint and GuardDutyManagedSecurityGroup will block deleting the app's VPC",
                    "at destroy, `make destroy` names them: delete them, then rerun it",
                )
            ]
    return [Finding("guardduty", OK, "no runtime monitoring with automated agents; nothing left in the VPC at destroy")]


CHECKS: tuple[tuple[str, str, Callable[[Clients, Target], list[Finding]]], ...] = (
    ("quota", "servicequotas:ListServiceQuotas / sagemaker:ListClusters", check_quotas),
    ("offering", "ec2:DescribeInstanceTypeOfferings", check_offerings),
    ("training-plan", "sagemaker:DescribeTrainingPlan", check_training_plans),
    ("addresses", "ec2:DescribeInstanceTypes / ec2:DescribeSubnets", check_addresses),
    ("bootstrap", "ssm:GetParameter", check_bootstrap),
    ("eks-version", "eks:DescribeClusterVersions / eks:DescribeAddonVersions", check_eks_versions),
    ("existing-network", "ec2:DescribeVpcs / DescribeSubnets / DescribeSecurityGroups", check_existing_network),
    ("existing-cluster", "eks:DescribeCluster / ListAddons / DescribeAddon", check_existing_cluster),
    ("bucket", "s3:ListBucket / s3:GetBucketLocation", check_bucket),
    ("guardduty", "guardduty:ListDetectors / GetDetector", check_guardduty),
)
