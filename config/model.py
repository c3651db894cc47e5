"""The one typed configuration object that flows from ``app.py`` into every stack and construct.

Every field is validated before any construct exists, so a bad value stops ``cdk synth`` with one
line naming the key, the value and what is allowed. Where the SageMaker API defines the rule
(instance types, name patterns, count limits) it is read from botocore's model.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config import compatibility, sagemaker_api, service_regions
from config.gpu_types import gpu_spec

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
_PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,18}[a-z0-9]$")
_IAM_PRINCIPAL = re.compile(
    r"^arn:aws[a-z-]*:(iam::\d{12}:(role|user)/[\w+=,.@/-]+|sts::\d{12}:assumed-role/[\w+=,.@-]+)$"
)
_EC2_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_GIT_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HELM_RELEASE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_K8S_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# EC2 ids: 8 hex digits (older resources) or 17.
_VPC_ID = re.compile(r"^vpc-([0-9a-f]{8}|[0-9a-f]{17})$")
_SUBNET_ID = re.compile(r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$")
_SG_ID = re.compile(r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$")
# EKS CreateCluster name: 1-100 characters, starting with a letter or digit.
_EKS_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
# S3 general purpose bucket names: 3-63 lowercase letters, digits, '.' and '-', letter or digit at both ends.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# An AZ id such as use1-az2: region code, -az, number (Local/Wavelength zones have other shapes).
_AZ_ID = re.compile(r"^([a-z]+\d+)-az\d+$")
_REGION_DIRECTIONS = {
    "east": "e",
    "west": "w",
    "north": "n",
    "south": "s",
    "central": "c",
    "northeast": "ne",
    "northwest": "nw",
    "southeast": "se",
    "southwest": "sw",
}

# HyperPod documents EKS 1.28-1.33 (some pages 1.34); the kubectl/helm layer we ship is v1.33 and
# kubectl supports one minor version of skew either way.
SUPPORTED_EKS_VERSIONS = ("1.32", "1.33", "1.34")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


def _botocore_pattern(shape: str, value: str, max_length: int | None = None) -> str:
    """``max_length`` where the model's pattern bounds the length but declares no ``max``."""
    too_long = max_length is not None and len(value) > max_length
    if too_long or not sagemaker_api.full_match(shape, value):
        lo, hi = sagemaker_api.limits(shape)
        hi = hi if hi is not None else max_length
        raise ValueError(
            f"must match {sagemaker_api.pattern(shape)} ({1 if lo is None else lo}-{hi} characters, botocore shape {shape})"
        )
    return value


class InstanceGroupConfig(_Strict):
    """One HyperPod instance group (``ClusterInstanceGroupSpecification``)."""

    name: str
    instance_type: str
    instance_count: int
    threads_per_core: int = 1
    ebs_volume_size_gb: int | None = 500
    deep_health_checks: tuple[str, ...] = ()
    training_plan_arn: str | None = None
    # MinInstanceCount: with continuous provisioning the group is InService once this many nodes run
    # (HyperPod keeps provisioning the rest); only the first transition to InService is affected.
    min_instance_count: int | None = None
    # Karpenter adds and removes this group's nodes (hyperpod.autoscaling: karpenter); it starts at 0.
    karpenter: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _botocore_pattern("ClusterInstanceGroupName", v)

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        allowed = sagemaker_api.cluster_instance_types()
        if v not in allowed:
            near = difflib.get_close_matches(v, allowed, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(
                f"not one of the {len(allowed)} ClusterInstanceType values in botocore's SageMaker model "
                f"(e.g. ml.p5.48xlarge, ml.g5.8xlarge){hint}"
            )
        return v

    @field_validator("instance_count")
    @classmethod
    def _count(cls, v: int) -> int:
        return _within("ClusterInstanceCount", v)

    @field_validator("min_instance_count")
    @classmethod
    def _min_count(cls, v: int | None) -> int | None:
        return None if v is None else _within("ClusterInstanceCount", v)

    @field_validator("threads_per_core")
    @classmethod
    def _threads(cls, v: int) -> int:
        return _within("ClusterThreadsPerCore", v)

    @field_validator("ebs_volume_size_gb")
    @classmethod
    def _ebs(cls, v: int | None) -> int | None:
        return None if v is None else _within("ClusterEbsVolumeSizeInGB", v)

    @field_validator("deep_health_checks")
    @classmethod
    def _checks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        allowed = sagemaker_api.enum_values("DeepHealthCheckType")
        for check in v:
            if check not in allowed:
                raise ValueError(f"{check!r} is not one of {', '.join(allowed)}")
        if len(set(v)) != len(v):
            raise ValueError("lists a check twice")
        return v

    @field_validator("training_plan_arn")
    @classmethod
    def _plan(cls, v: str | None) -> str | None:
        return None if v is None else _botocore_pattern("TrainingPlanArn", v)


def _within(shape: str, v: int) -> int:
    lo, hi = sagemaker_api.limits(shape)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"must be between {lo} and {hi} (botocore shape {shape})")
    return v


# The values CloudWatch Logs accepts for a retention period.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


def _log_retention(v: int) -> int:
    if v not in LOG_RETENTION_DAYS:
        raise ValueError(f"must be one of {', '.join(map(str, LOG_RETENTION_DAYS))} (CloudWatch Logs retention values)")
    return v


def region_az_id_code(region: str) -> str | None:
    """The code AZ ids of ``region`` start with (us-east-1 -> use1, ap-southeast-2 -> apse2,
    us-gov-west-1 -> usgw1), as EC2 ``DescribeAvailabilityZones`` reports them; None if unknown."""
    parts = region.split("-")
    if len(parts) < 3 or not parts[-1].isdigit():
        return None
    middle = parts[1:-1]
    if middle[0] == "gov":
        middle = middle[1:]
        head = parts[0] + "g"
    else:
        head = parts[0]
    if len(middle) != 1 or middle[0] not in _REGION_DIRECTIONS:
        return None
    return head + _REGION_DIRECTIONS[middle[0]] + parts[-1]


def _unique_ids(v: tuple[str, ...], pattern: re.Pattern, example: str) -> tuple[str, ...]:
    for item in v:
        if not pattern.match(item):
            raise ValueError(f"{item!r} is not an id like {example}")
    if len(set(v)) != len(v):
        raise ValueError("lists an id twice")
    return v


class HyperPodConfig(_Strict):
    """The SageMaker HyperPod cluster (``CreateCluster``)."""

    cluster_name: str
    node_recovery: Literal["Automatic", "None"] = "Automatic"
    node_provisioning_mode: Literal["Continuous"] | None = None
    # karpenter: HyperPod-managed Karpenter scales the groups marked ``karpenter: true`` from 0
    # (implies node_provisioning_mode Continuous; see ``_autoscaling``).
    autoscaling: Literal["karpenter"] | None = None
    instance_groups: tuple[InstanceGroupConfig, ...] = Field(min_length=1)
    # One AZ by default: HyperPod capacity (and training plans) is tied to a single AZ.
    availability_zones: tuple[str, ...] = Field(default=(), description="AZs for HyperPod subnets")
    # Capacity reservations and training plans name AZ ids (use1-az2), which map to different AZ names in
    # every account; when set, the HyperPod subnets the app creates are placed by id, one per id.
    availability_zone_ids: tuple[str, ...] = ()
    wait_for_in_service: bool = True
    creation_timeout_hours: int = Field(default=12, ge=1, le=12)
    on_create_script: str = "on_create.sh"

    @field_validator("cluster_name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _botocore_pattern("ClusterName", v)

    @field_validator("availability_zone_ids")
    @classmethod
    def _az_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _unique_ids(v, _AZ_ID, "use1-az2")

    @field_validator("instance_groups")
    @classmethod
    def _unique_groups(cls, v: tuple[InstanceGroupConfig, ...]) -> tuple[InstanceGroupConfig, ...]:
        names = [g.name for g in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"instance group names must be unique; repeated: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _deep_health_checks(self) -> HyperPodConfig:
        for i, group in enumerate(self.instance_groups):
            if group.karpenter:
                continue  # a karpenter group takes no deep health checks at all (``_autoscaling``)
            problem = compatibility.deep_health_check_problem(
                group.deep_health_checks, instance_type=group.instance_type, instance_count=group.instance_count
            )
            if problem:
                raise _KeyedError(
                    f"hyperpod.instance_groups[{i}].deep_health_checks", list(group.deep_health_checks), problem
                )
        return self

    @model_validator(mode="after")
    def _autoscaling(self) -> HyperPodConfig:
        """AWS's rules for HyperPod autoscaling ("Autoscaling on SageMaker HyperPod EKS": prerequisites, and
        "Create a NodeClass": considerations), checked before anything is created."""
        continuous = self.provisioning_mode == "Continuous"
        for i, group in enumerate(self.instance_groups):
            key = f"hyperpod.instance_groups[{i}]"
            if group.min_instance_count is not None:
                if not continuous:
                    raise _KeyedError(
                        f"{key}.min_instance_count",
                        group.min_instance_count,
                        "needs hyperpod.node_provisioning_mode: Continuous (or hyperpod.autoscaling: karpenter)",
                    )
                if group.min_instance_count > group.instance_count:
                    raise _KeyedError(
                        f"{key}.min_instance_count",
                        group.min_instance_count,
                        f"must not exceed instance_count ({group.instance_count})",
                    )
            if group.karpenter:
                if self.autoscaling != "karpenter":
                    raise _KeyedError(f"{key}.karpenter", True, "needs hyperpod.autoscaling: karpenter")
                problem = _karpenter_group_problem(group)
                if problem:
                    field, value, message = problem
                    raise _KeyedError(f"{key}.{field}", value, message)
        if self.autoscaling is None:
            return self
        if self.node_recovery != "Automatic":
            raise _KeyedError(
                "hyperpod.node_recovery", self.node_recovery, "must be Automatic for hyperpod.autoscaling: karpenter"
            )
        if not self.wait_for_in_service:
            raise _KeyedError(
                "hyperpod.wait_for_in_service",
                False,
                "must be true for hyperpod.autoscaling: karpenter (the HyperpodNodeClass can only be applied once "
                "HyperPod reports autoscaling InService)",
            )
        managed = self.karpenter_groups
        if not managed:
            raise _KeyedError(
                "hyperpod.autoscaling",
                self.autoscaling,
                "needs at least one instance group with karpenter: true (and instance_count: 0) for Karpenter to scale",
            )
        if len(managed) > KARPENTER_MAX_GROUPS:
            raise _KeyedError(
                "hyperpod.autoscaling",
                self.autoscaling,
                f"a HyperpodNodeClass lists at most {KARPENTER_MAX_GROUPS} instance groups; "
                f"{len(managed)} have karpenter: true",
            )
        return self

    @property
    def provisioning_mode(self) -> str | None:
        """NodeProvisioningMode sent to HyperPod: autoscaling is built on continuous provisioning."""
        return "Continuous" if self.autoscaling else self.node_provisioning_mode

    @property
    def karpenter_groups(self) -> tuple[str, ...]:
        """Names of the groups Karpenter scales (their node counts belong to Karpenter, not to the config)."""
        return tuple(g.name for g in self.instance_groups if g.karpenter)


# "Create a NodeClass": you can specify up to 10 instance groups in a NodeClass.
KARPENTER_MAX_GROUPS = 10


def _karpenter_group_problem(group: InstanceGroupConfig) -> tuple[str, object, str] | None:
    """Why a group cannot be Karpenter's (AWS "Create a NodeClass" considerations), as (field, value, message)."""
    if group.instance_count != 0:
        return (
            "instance_count",
            group.instance_count,
            "must be 0 for a karpenter group (Karpenter adds the nodes; it would scale a larger group down to 0)",
        )
    if group.min_instance_count:
        return ("min_instance_count", group.min_instance_count, "must be unset or 0 for a karpenter group")
    if group.deep_health_checks:
        return (
            "deep_health_checks",
            list(group.deep_health_checks),
            "must be [] for a karpenter group (HyperPod autoscaling does not support deep health checks: "
            "pods would wait 60-90 minutes per new node)",
        )
    if group.training_plan_arn:
        return (
            "training_plan_arn",
            group.training_plan_arn,
            "must be unset for a karpenter group (HyperPod autoscaling supports on-demand capacity only)",
        )
    if compatibility.ec2_architecture(group.instance_type.removeprefix("ml.")) != compatibility.X86_64:
        return (
            "instance_type",
            group.instance_type,
            "is Arm-based; HyperPod's Karpenter provider supports amd64 nodes only",
        )
    return None


class ExistingNetworkConfig(_Strict):
    """A VPC someone else owns: the app creates no VPC, subnet, NAT or security group and uses these ids."""

    vpc_id: str
    hyperpod_subnet_ids: tuple[str, ...] = Field(min_length=1)
    # EKS wants control-plane subnets in at least two AZs.
    eks_subnet_ids: tuple[str, ...] = Field(min_length=2)
    # Carried by HyperPod nodes, the EKS control plane and the installer Lambda; must allow all traffic
    # from and to itself (EFA). Preflight checks the rules.
    security_group_id: str

    @field_validator("vpc_id")
    @classmethod
    def _vpc(cls, v: str) -> str:
        if not _VPC_ID.match(v):
            raise ValueError("is not a VPC id like vpc-0123456789abcdef0")
        return v

    @field_validator("hyperpod_subnet_ids", "eks_subnet_ids")
    @classmethod
    def _subnets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _unique_ids(v, _SUBNET_ID, "subnet-0123456789abcdef0")

    @field_validator("security_group_id")
    @classmethod
    def _sg(cls, v: str) -> str:
        if not _SG_ID.match(v):
            raise ValueError("is not a security group id like sg-0123456789abcdef0")
        return v


class NetworkConfig(_Strict):
    existing: ExistingNetworkConfig | None = None
    vpc_cidr: str = "10.192.0.0/16"
    availability_zones: tuple[str, ...] = Field(min_length=2)
    nat_gateways: Literal["single", "per_az"] = "single"
    hyperpod_subnet_cidr_mask: int = Field(default=18, ge=16, le=24)
    interface_endpoints: bool = False
    fsx_lustre_ports: bool = False
    flow_log_retention_days: int = 30

    @field_validator("flow_log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        return _log_retention(v)

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            net = ipaddress.IPv4Network(v, strict=True)
        except ValueError as exc:
            raise ValueError(f"not an IPv4 CIDR block ({exc})") from None
        if not 16 <= net.prefixlen <= 20:
            raise ValueError("the VPC must be a /16 to /20 (HyperPod pods take VPC IPs)")
        return v

    @field_validator("availability_zones")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError("lists an AZ twice")
        return v


class SystemNodeGroupConfig(_Strict):
    """Managed nodes for system pods (coredns, operators) before any HyperPod node exists."""

    instance_type: str = "m7i.large"
    desired_size: int = Field(default=2, ge=0, le=20)
    disk_size_gb: int = Field(default=50, ge=20, le=1000)
    # EKS API spelling (AL2023_x86_64_STANDARD, BOTTLEROCKET_ARM_64, ...); None: AL2023 standard for the
    # instance type's architecture. Checked against eks.version in EksConfig.
    ami_type: str | None = None

    @field_validator("instance_type")
    @classmethod
    def _type(cls, v: str) -> str:
        if not _EC2_TYPE.match(v) or v.startswith("ml."):
            raise ValueError("must be an EC2 instance type such as m7i.large (no ml. prefix)")
        compatibility.ec2_architecture(v)  # raises for types no node group can use (Mac)
        return v

    @property
    def resolved_ami_type(self) -> str:
        return self.ami_type or compatibility.default_node_ami_type(self.instance_type)


# The chart's files at this commit hash to this digest (`python -m helm_chart_installer.chart_digest --commit ...`
# from constructs/hyperpod_helm_chart/runtime prints it; tests/hyperpod_helm_chart checks the vendored copy).
PINNED_CHART_COMMIT = "0e32919013e957dc9bd2051bca645a4d60df9e8e"
PINNED_CHART_FILES_SHA256 = "26fc72dde401b2bfac8a6c7a9b2af03ab8ab363794fb3cad83756cd423249330"


class HelmChartConfig(_Strict):
    """The HyperPod dependency chart, fetched at deploy time from a pinned upstream commit."""

    repository: str = "aws/sagemaker-hyperpod-cli"
    commit: str = PINNED_CHART_COMMIT
    chart_path: str = "helm_chart/HyperPodHelmChart"
    # sha256 over the extracted chart files (the construct's chart_digest.py); the deploy fails on any other
    # digest. Empty: log the digest, do not enforce (only for trying a new commit, before pinning its digest).
    files_sha256: str = PINNED_CHART_FILES_SHA256
    release_name: str = "dependencies"
    namespace: str = "kube-system"

    @field_validator("commit")
    @classmethod
    def _commit(cls, v: str) -> str:
        if not _GIT_COMMIT.match(v):
            raise ValueError("must be a full 40-character lowercase git commit id (tags and branches move)")
        return v

    @field_validator("files_sha256")
    @classmethod
    def _digest(cls, v: str) -> str:
        if v and not _SHA256.match(v):
            raise ValueError("must be empty or a 64-character lowercase hex sha256")
        return v

    @model_validator(mode="after")
    def _digest_matches_commit(self) -> HelmChartConfig:
        moved = self.commit != PINNED_CHART_COMMIT or self.repository != "aws/sagemaker-hyperpod-cli"
        if moved and self.files_sha256 == PINNED_CHART_FILES_SHA256:
            raise _KeyedError(
                "eks.helm_chart.files_sha256",
                self.files_sha256,
                f"is the digest of {PINNED_CHART_COMMIT[:12]}'s chart, not of {self.repository}@{self.commit[:12]}; "
                'set that commit\'s digest, or "" to have the deploy log it',
            )
        return self

    @field_validator("repository")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", v):
            raise ValueError("must be a GitHub owner/name")
        return v

    @field_validator("chart_path")
    @classmethod
    def _chart_path(cls, v: str) -> str:
        if v.startswith("/") or "\\" in v or any(p in ("", ".", "..") for p in v.split("/")):
            raise ValueError("must be a relative path inside the repository such as helm_chart/HyperPodHelmChart")
        return v

    @field_validator("release_name")
    @classmethod
    def _release(cls, v: str) -> str:
        if not _HELM_RELEASE.match(v) or len(v) > 53:
            raise ValueError(
                "must be a helm release name (lowercase letters, digits, '-' and '.', at most 53 characters)"
            )
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not _K8S_NAMESPACE.match(v) or len(v) > 63:
            raise ValueError("must be a Kubernetes namespace name (lowercase letters, digits and '-', at most 63)")
        return v


class ExistingEksConfig(_Strict):
    """An EKS cluster someone else owns: the app adds the HyperPod chart and its own access entries to it
    and leaves its settings (version, add-ons, nodes, authentication) alone."""

    cluster_name: str
    # EKS's own cluster security group (eks-cluster-sg-*), which its managed nodes carry.
    cluster_security_group_id: str

    @field_validator("cluster_name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _EKS_CLUSTER_NAME.match(v):
            raise ValueError("is not an EKS cluster name (1-100 letters, digits, '-' or '_', starting alphanumeric)")
        return v

    @field_validator("cluster_security_group_id")
    @classmethod
    def _sg(cls, v: str) -> str:
        if not _SG_ID.match(v):
            raise ValueError("is not a security group id like sg-0123456789abcdef0")
        return v


class EksConfig(_Strict):
    existing: ExistingEksConfig | None = None
    version: str = "1.33"
    endpoint_access: Literal["public", "private", "public_and_private"] = "public_and_private"
    public_access_cidrs: tuple[str, ...] = ()
    authentication_mode: Literal["API", "API_AND_CONFIG_MAP"] = "API_AND_CONFIG_MAP"
    admin_principal_arns: tuple[str, ...] = ()
    system_node_group: SystemNodeGroupConfig = SystemNodeGroupConfig()
    # Minimum vpc-cni HyperPod supports is v1.18.3; None lets EKS pick its default for the version.
    vpc_cni_version: str | None = None
    helm_chart: HelmChartConfig = HelmChartConfig()
    log_retention_days: int = 30

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        return _log_retention(v)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if v not in SUPPORTED_EKS_VERSIONS:
            raise ValueError(
                f"must be one of {', '.join(SUPPORTED_EKS_VERSIONS)} (HyperPod-supported and within kubectl v1.33 skew)"
            )
        return v

    @field_validator("admin_principal_arns")
    @classmethod
    def _principals(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for arn in v:
            if not _IAM_PRINCIPAL.match(arn):
                raise ValueError(f"{arn!r} is not an IAM role or user ARN (arn:aws:iam::123456789012:role/Name)")
        return v

    @field_validator("public_access_cidrs")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in v:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR block") from None
        return v

    @field_validator("vpc_cni_version")
    @classmethod
    def _cni(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)-eksbuild\.\d+", v)
        if not m:
            raise ValueError("must look like v1.19.2-eksbuild.1")
        if tuple(int(x) for x in m.groups()) < (1, 18, 3):
            raise ValueError("HyperPod needs vpc-cni v1.18.3 or newer")
        return v

    @model_validator(mode="after")
    def _endpoint(self) -> EksConfig:
        if self.public_access_cidrs and self.endpoint_access == "private":
            raise ValueError("public_access_cidrs needs endpoint_access public or public_and_private")
        return self

    @model_validator(mode="after")
    def _node_ami(self) -> EksConfig:
        nodes = self.system_node_group
        if nodes.ami_type is not None:
            problem = compatibility.node_ami_type_problem(
                nodes.ami_type, kubernetes_version=self.version, instance_type=nodes.instance_type
            )
            if problem:
                raise _KeyedError("eks.system_node_group.ami_type", nodes.ami_type, problem)
        return self


class LifecycleBucketConfig(_Strict):
    # destroy: empty and delete the bucket with the stack; retain: keep it (and its logs).
    removal_policy: Literal["destroy", "retain"] = "destroy"
    # A bucket someone else owns: the scripts go under <prefix>/lifecycle_scripts/ and the bucket is never
    # deleted (removal_policy then only concerns those objects' deletion with the stack).
    existing_bucket_name: str | None = None

    @field_validator("existing_bucket_name")
    @classmethod
    def _bucket(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith("sagemaker-"):
            raise ValueError(
                "must start with sagemaker- (AmazonSageMakerClusterInstanceRolePolicy only reads sagemaker-* buckets)"
            )
        if not _BUCKET_NAME.match(v) or ".." in v:
            raise ValueError("is not an S3 bucket name (3-63 lowercase letters, digits, '.' and '-')")
        return v


# FSx for Lustre PERSISTENT_2 on SSD: 1200 GiB, 2400 GiB, then increments of 2400 GiB (FSx API
# CreateFileSystem StorageCapacity); throughput tiers in MB/s per TiB (PerUnitStorageThroughput).
FSX_PERSISTENT_2_THROUGHPUT = (125, 250, 500, 1000)
_S3_PATH = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/([^/\s]+/)*)?$")
_FSX_ID = re.compile(r"^fs-[0-9a-f]{8,}$")  # FileSystemId pattern of the FSx API
_MOUNT_PATH = re.compile(r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$")


class FsxConfig(_Strict):
    """FSx for Lustre shared by every HyperPod pod (``constructs/fsx_lustre``, ``stacks/storage.py``)."""

    enabled: bool = True
    storage_capacity_gib: int = 1200
    throughput_per_unit_mib: int = 250
    compression: Literal["LZ4", "NONE"] = "LZ4"
    s3_import_path: str | None = None
    existing_file_system_id: str | None = None
    # snapshot: a final user backup before the file system is deleted; retain: keep it; destroy: delete it.
    removal_policy: Literal["snapshot", "retain", "destroy"] = "snapshot"
    mount_path: str = "/fsx"

    @field_validator("storage_capacity_gib")
    @classmethod
    def _capacity(cls, v: int) -> int:
        if v != 1200 and (v < 2400 or v % 2400):
            raise ValueError("PERSISTENT_2 SSD capacity must be 1200 or a multiple of 2400 GiB (2400, 4800, 7200, ...)")
        return v

    @field_validator("throughput_per_unit_mib")
    @classmethod
    def _throughput(cls, v: int) -> int:
        if v not in FSX_PERSISTENT_2_THROUGHPUT:
            raise ValueError(
                f"must be one of {', '.join(map(str, FSX_PERSISTENT_2_THROUGHPUT))} MB/s per TiB (PERSISTENT_2 tiers)"
            )
        return v

    @field_validator("s3_import_path")
    @classmethod
    def _s3(cls, v: str | None) -> str | None:
        if v is not None and not _S3_PATH.match(v):
            raise ValueError(
                "must be s3://bucket/ or s3://bucket/prefix/ (a bucket name, an optional prefix ending in /)"
            )
        return v

    @field_validator("existing_file_system_id")
    @classmethod
    def _fs_id(cls, v: str | None) -> str | None:
        if v is not None and not _FSX_ID.match(v):
            raise ValueError("must be an FSx file system id such as fs-0123456789abcdef0")
        return v

    @field_validator("mount_path")
    @classmethod
    def _mount(cls, v: str) -> str:
        if not _MOUNT_PATH.match(v) or ".." in v.split("/") or v in ("/", "/tmp", "/dev", "/proc", "/sys"):
            raise ValueError("must be an absolute directory path such as /fsx (not /, /tmp, /dev, /proc or /sys)")
        return v

    @model_validator(mode="after")
    def _combinations(self) -> FsxConfig:
        if self.existing_file_system_id and self.s3_import_path:
            raise _KeyedError(
                "storage.fsx.s3_import_path",
                self.s3_import_path,
                "cannot be set with existing_file_system_id (link the existing file system to S3 yourself)",
            )
        if self.s3_import_path and self.removal_policy == "snapshot" and not self.existing_file_system_id:
            raise _KeyedError(
                "storage.fsx.removal_policy",
                self.removal_policy,
                "FSx for Lustre takes no backups of a file system linked to an S3 data repository "
                "(s3_import_path); use retain or destroy (the S3 data stays in the bucket)",
            )
        return self

    @property
    def creates_file_system(self) -> bool:
        return self.enabled and self.existing_file_system_id is None


class StorageConfig(_Strict):
    """Shared storage for pods: FSx for Lustre and the EBS CSI driver with a default gp3 StorageClass."""

    fsx: FsxConfig = FsxConfig()
    ebs_csi: bool = True

    @property
    def enabled(self) -> bool:
        return self.fsx.enabled or self.ebs_csi


class PipelineConfig(_Strict):
    """CodePipeline delivery (``stacks/pipeline.py``); off unless ``enabled``."""

    enabled: bool = False
    source: Literal["codeconnections", "codecommit", "s3"] = "codeconnections"
    connection_arn: str | None = None  # codeconnections
    repository: str = "example-org/hyperpod-skypilot"  # owner/name (codeconnections) or repo name (codecommit)
    branch: str = "main"
    s3_bucket: str | None = None  # s3 source
    s3_key: str = "source.zip"
    manual_approval: bool = False
    # Pipeline in a tools account, cluster in the workload account given by account/region.
    pipeline_account: str | None = None
    pipeline_region: str | None = None
    cross_account_keys: bool = False
    post_deploy_tasks: tuple[str, ...] = ("sky_tasks/smoke.yaml",)
    post_deploy_timeout_minutes: int = Field(default=240, ge=30, le=2160)
    # The post-deploy CodeBuild step runs outside any VPC and reaches the EKS endpoint over the internet,
    # from CodeBuild's published ranges (ip-ranges.json, service CODEBUILD): say so when
    # eks.public_access_cidrs are meant to admit them.
    public_access_cidrs_include_codebuild: bool = False
    # A first stage that runs `python -m post_deploy canary` (examples/canary.yaml, deployed and destroyed
    # again) in the workload's account and region before the real deployment.
    canary: bool = False

    @field_validator("connection_arn")
    @classmethod
    def _connection(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(
            r"arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}", v
        ):
            raise ValueError(
                "must be a CodeConnections connection ARN (arn:aws:codeconnections:<region>:<account>:connection/<uuid>)"
            )
        return v

    @field_validator("pipeline_account")
    @classmethod
    def _account(cls, v: str | None) -> str | None:
        if v is not None and not _ACCOUNT.match(v):
            raise ValueError("must be a 12-digit AWS account id")
        return v

    @field_validator("pipeline_region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not _REGION.match(v):
            raise ValueError("must be an AWS region name such as us-east-1")
        return v

    @model_validator(mode="after")
    def _source_settings(self) -> PipelineConfig:
        if not self.enabled:
            return self
        if self.source == "codeconnections" and not self.connection_arn:
            raise _KeyedError("pipeline.connection_arn", None, "is required when pipeline.source is codeconnections")
        if self.source == "codeconnections" and not re.fullmatch(r"[\w.-]+/[\w.-]+", self.repository):
            raise _KeyedError("pipeline.repository", self.repository, "must be owner/name for a CodeConnections source")
        if self.source == "s3" and not self.s3_bucket:
            raise _KeyedError("pipeline.s3_bucket", None, "is required when pipeline.source is s3")
        return self


class ObservabilityConfig(_Strict):
    """HyperPod observability (``constructs/observability``): the EKS add-on, an Amazon Managed Service
    for Prometheus workspace it writes to, optionally an Amazon Managed Grafana workspace."""

    enabled: bool = False
    # An Amazon Managed Grafana workspace (IAM Identity Center sign-in) that may read the Prometheus workspace.
    grafana: bool = False
    # The add-on also ships HyperPod logs to CloudWatch Logs (grants its role the log actions).
    logging: bool = False
    # destroy: the workspaces (and the metrics they hold) go with the stack or the switch; retain: they stay.
    removal_policy: Literal["destroy", "retain"] = "destroy"

    @model_validator(mode="after")
    def _grafana_needs_prometheus(self) -> ObservabilityConfig:
        if self.grafana and not self.enabled:
            raise _KeyedError(
                "observability.grafana",
                True,
                "needs observability.enabled true (Grafana reads its Prometheus workspace)",
            )
        if self.logging and not self.enabled:
            raise _KeyedError("observability.logging", True, "needs observability.enabled true")
        return self


class TrainingOperatorConfig(_Strict):
    """The HyperPod training operator add-on with the cert-manager add-on it needs
    (``constructs/training_operator``)."""

    enabled: bool = False


class InstanceQuotaConfig(_Strict):
    """Whole instances of one type a team is guaranteed (``ComputeQuotaResourceConfig``)."""

    instance_type: str
    count: int = Field(ge=1)

    @field_validator("instance_type")
    @classmethod
    def _type(cls, v: str) -> str:
        allowed = sagemaker_api.compute_quota_instance_types()
        if v not in allowed:
            near = difflib.get_close_matches(v, allowed, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(f"not one of the {len(allowed)} instance types compute quotas accept (botocore){hint}")
        return v


class TeamConfig(_Strict):
    """One team sharing the cluster: its compute quota, namespace ``hyperpod-ns-<name>`` and Kueue queue."""

    name: str
    instance_quotas: tuple[InstanceQuotaConfig, ...] = Field(min_length=1)
    # LendAndBorrow: lend idle quota to other teams and borrow theirs; false: DontLend (strict reservation).
    lend_and_borrow: bool = True
    fair_share_weight: int = 1
    # LowerPriority: a higher-priority task of the team may preempt the team's own lower-priority tasks.
    preempt_team_tasks: Literal["Never", "LowerPriority"] = "LowerPriority"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # Team names become Kubernetes namespaces (hyperpod-ns-<name>), hence the API's own pattern.
        return _botocore_pattern("ComputeQuotaTargetTeamName", v, max_length=40)

    @field_validator("fair_share_weight")
    @classmethod
    def _weight(cls, v: int) -> int:
        return _within("FairShareWeight", v)

    @field_validator("instance_quotas")
    @classmethod
    def _unique_types(cls, v: tuple[InstanceQuotaConfig, ...]) -> tuple[InstanceQuotaConfig, ...]:
        types = [q.instance_type for q in v]
        dupes = sorted({t for t in types if types.count(t) > 1})
        if dupes:
            raise ValueError(f"lists an instance type twice: {', '.join(dupes)}")
        return v


class PriorityClassConfig(_Strict):
    """A cluster-policy priority class; tasks name it as ``<name>-priority``; higher weight goes first."""

    name: str
    weight: int

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _botocore_pattern("ClusterSchedulerPriorityClassName", v, max_length=40)

    @field_validator("weight")
    @classmethod
    def _weight(cls, v: int) -> int:
        return _within("PriorityWeight", v)


class TaskGovernanceConfig(_Strict):
    """HyperPod task governance (Kueue): the add-on, the cluster policy and one compute quota per team."""

    enabled: bool = False
    teams: tuple[TeamConfig, ...] = ()
    priority_classes: tuple[PriorityClassConfig, ...] = ()
    # Idle compute goes to teams by fair-share weight (Enabled) or first come, first served (Disabled).
    fair_share: bool = True
    # None: the add-on version EKS picks for the cluster's Kubernetes version.
    addon_version: str | None = None

    @field_validator("teams")
    @classmethod
    def _unique_teams(cls, v: tuple[TeamConfig, ...]) -> tuple[TeamConfig, ...]:
        names = [t.name for t in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"team names must be unique; repeated: {', '.join(dupes)}")
        return v

    @field_validator("priority_classes")
    @classmethod
    def _unique_classes(cls, v: tuple[PriorityClassConfig, ...]) -> tuple[PriorityClassConfig, ...]:
        lo, hi = sagemaker_api.list_limits("SchedulerConfig", "PriorityClasses")
        if hi is not None and len(v) > hi:
            raise ValueError(f"at most {hi} priority classes (botocore SchedulerConfig.PriorityClasses)")
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"priority class names must be unique; repeated: {', '.join(dupes)}")
        return v

    @field_validator("addon_version")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"v\d+\.\d+\.\d+-eksbuild\.\d+", v):
            raise ValueError("must look like v1.0.0-eksbuild.1 (aws eks describe-addon-versions)")
        return v

    @model_validator(mode="after")
    def _teams_when_enabled(self) -> TaskGovernanceConfig:
        if self.enabled and not self.teams:
            raise _KeyedError("task_governance.teams", [], "needs at least one team when task_governance.enabled")
        return self


class AppConfig(_Strict):
    """Everything that differs between deployments of this app."""

    account: str | None = None
    region: str
    prefix: str = "hyperpod-sky"
    tags: dict[str, str] = {}
    network: NetworkConfig
    eks: EksConfig = EksConfig()
    hyperpod: HyperPodConfig
    lifecycle_bucket: LifecycleBucketConfig = LifecycleBucketConfig()
    storage: StorageConfig = StorageConfig()
    pipeline: PipelineConfig = PipelineConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    training_operator: TrainingOperatorConfig = TrainingOperatorConfig()
    task_governance: TaskGovernanceConfig = TaskGovernanceConfig()

    @field_validator("account")
    @classmethod
    def _account(cls, v: str | None) -> str | None:
        if v is not None and not _ACCOUNT.match(v):
            raise ValueError("must be a 12-digit AWS account id")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not _REGION.match(v):
            raise ValueError("must be an AWS region name such as us-east-1")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _PREFIX.match(v):
            raise ValueError(
                "must be 3-20 lowercase letters, digits or '-', starting with a letter (it goes into bucket names)"
            )
        return v

    @model_validator(mode="after")
    def _azs_in_region(self) -> AppConfig:
        for i, az in enumerate(self.network.availability_zones):
            if not re.fullmatch(re.escape(self.region) + r"[a-z]", az):
                raise _KeyedError(f"network.availability_zones[{i}]", az, f"is not an AZ of region {self.region}")
        for i, az in enumerate(self.hyperpod.availability_zones):
            if az not in self.network.availability_zones:
                raise _KeyedError(
                    f"hyperpod.availability_zones[{i}]",
                    az,
                    f"must be one of network.availability_zones ({', '.join(self.network.availability_zones)})",
                )
        return self

    @model_validator(mode="after")
    def _existing_resources(self) -> AppConfig:
        if self.eks.existing and not self.network.existing:
            raise _KeyedError(
                "eks.existing.cluster_name",
                self.eks.existing.cluster_name,
                "needs network.existing too (the cluster's VPC, subnets and security group)",
            )
        return self

    @model_validator(mode="after")
    def _az_ids_in_region(self) -> AppConfig:
        ids = self.hyperpod.availability_zone_ids
        code = region_az_id_code(self.region)
        for i, az_id in enumerate(ids):
            match = _AZ_ID.match(az_id)
            if code and match and match.group(1) != code:
                raise _KeyedError(
                    f"hyperpod.availability_zone_ids[{i}]",
                    az_id,
                    f"is not an AZ id of region {self.region} (those look like {code}-az1)",
                )
        if ids and not self.network.existing and len(ids) != len(self.hyperpod_azs):
            raise _KeyedError(
                "hyperpod.availability_zone_ids",
                list(ids),
                f"needs one id per HyperPod subnet, i.e. per hyperpod.availability_zones entry "
                f"({', '.join(self.hyperpod_azs)}): the AZ name labels the subnet, the id places it",
            )
        return self

    @model_validator(mode="after")
    def _efa_in_one_az(self) -> AppConfig:
        """EFA traffic does not cross Availability Zones (AWS ParallelCluster user guide, "Elastic Fabric
        Adapter": EFA isn't supported over different AZs; EC2: OS-bypass within a subnet), the cluster's
        VpcConfig lists every HyperPod subnet, so HyperPod may spread a group over them, and SkyPilot keeps
        a job's pods in one zone only for ``network_tier: best`` (``sky/templates/kubernetes-ray.yml.j2``
        ``k8s_efa_same_az``), which ``post_deploy`` refuses. So a group with EFA gets one AZ."""
        azs = self.hyperpod.availability_zone_ids or self.hyperpod.availability_zones
        if len(azs) < 2:
            return self
        for i, group in enumerate(self.hyperpod.instance_groups):
            spec = gpu_spec(group.instance_type)
            if spec and spec.efa_interfaces:
                raise _KeyedError(
                    "hyperpod.availability_zone_ids"
                    if self.hyperpod.availability_zone_ids
                    else "hyperpod.availability_zones",
                    list(azs),
                    f"instance group {group.name!r} ({group.instance_type}, {spec.efa_interfaces} EFA interfaces "
                    f"per node; hyperpod.instance_groups[{i}]) needs a single AZ: EFA traffic does not cross "
                    "Availability Zones, so multi-node NCCL would fall back to TCP or fail",
                )
        return self

    @model_validator(mode="after")
    def _karpenter_in_one_az(self) -> AppConfig:
        """ "Create a NodeClass": the subnets an instance group uses should belong to one AZ, and the groups use
        the cluster's VpcConfig, which lists one HyperPod subnet per AZ."""
        if self.hyperpod.karpenter_groups and len(self.hyperpod_azs) > 1:
            raise _KeyedError(
                "hyperpod.availability_zones",
                list(self.hyperpod_azs),
                f"karpenter instance groups ({', '.join(self.hyperpod.karpenter_groups)}) need a single AZ: "
                "HyperPod's Karpenter provider needs each group's subnets in one Availability Zone",
            )
        return self

    @model_validator(mode="after")
    def _team_quotas_fit_the_cluster(self) -> AppConfig:
        """A team's guaranteed instances must exist in the cluster: CreateComputeQuota would accept the
        quota, and Kueue would then hold the team's tasks for capacity that can never come."""
        if not self.task_governance.enabled:
            return self
        available: dict[str, int] = {}
        # A Karpenter group starts at 0 and grows with demand: its instance_count is no ceiling (service quotas are).
        elastic = {g.instance_type for g in self.hyperpod.instance_groups if g.karpenter}
        for group in self.hyperpod.instance_groups:
            available[group.instance_type] = available.get(group.instance_type, 0) + group.instance_count
        for i, team in enumerate(self.task_governance.teams):
            for j, quota in enumerate(team.instance_quotas):
                key = f"task_governance.teams[{i}].instance_quotas[{j}]"
                have = available.get(quota.instance_type)
                if have is None:
                    raise _KeyedError(
                        f"{key}.instance_type",
                        quota.instance_type,
                        f"no HyperPod instance group has this type (groups: {', '.join(sorted(available))})",
                    )
                if quota.count > have and quota.instance_type not in elastic:
                    raise _KeyedError(
                        f"{key}.count",
                        quota.count,
                        f"team {team.name!r} would be guaranteed more {quota.instance_type} than the cluster's "
                        f"{have} (sum of hyperpod.instance_groups[].instance_count)",
                    )
        return self

    @model_validator(mode="after")
    def _canary_in_own_account(self) -> AppConfig:
        p = self.pipeline
        if p.enabled and p.canary and p.pipeline_account and p.pipeline_account != self.account:
            raise _KeyedError(
                "pipeline.canary",
                True,
                "needs the pipeline in the workload's own account (pipeline.pipeline_account unset or equal to "
                "account): the canary's teardown and leftovers check call AWS with the pipeline's credentials",
            )
        return self

    @model_validator(mode="after")
    def _cross_account(self) -> AppConfig:
        p = self.pipeline
        if p.enabled and p.pipeline_account and p.pipeline_account != self.account:
            if self.account is None:
                raise _KeyedError("account", None, "must be set when the pipeline deploys into another account")
            if not p.cross_account_keys:
                raise _KeyedError(
                    "pipeline.cross_account_keys", False, "must be true when pipeline_account differs from account"
                )
        return self

    @model_validator(mode="after")
    def _pipeline_reaches_eks(self) -> AppConfig:
        """The pipeline's post-deploy step (kubeconfig, wait-nodes, SkyPilot) talks to the EKS API from a
        CodeBuild project without VPC configuration, i.e. through the public endpoint."""
        p, eks = self.pipeline, self.eks
        if not p.enabled:
            return self
        if eks.endpoint_access == "private":
            raise _KeyedError(
                "eks.endpoint_access",
                eks.endpoint_access,
                "the pipeline's post-deploy step runs in CodeBuild outside the VPC and cannot reach a private "
                "endpoint; use public_and_private (optionally with eks.public_access_cidrs) or disable the pipeline",
            )
        restricted = eks.public_access_cidrs and "0.0.0.0/0" not in eks.public_access_cidrs
        if restricted and not p.public_access_cidrs_include_codebuild:
            raise _KeyedError(
                "eks.public_access_cidrs",
                list(eks.public_access_cidrs),
                "would lock out the pipeline's post-deploy step, which reaches EKS from CodeBuild's public IP "
                f"ranges in {self.region}; include them and set pipeline.public_access_cidrs_include_codebuild: true",
            )
        return self

    @model_validator(mode="after")
    def _observability_services_in_region(self) -> AppConfig:
        """Amazon Managed Service for Prometheus and Amazon Managed Grafana exist in fewer regions than
        HyperPod; botocore's endpoint data says which."""
        obs = self.observability
        for enabled, key, service, name in (
            (obs.enabled, "observability.enabled", "amp", "Amazon Managed Service for Prometheus"),
            (obs.grafana, "observability.grafana", "grafana", "Amazon Managed Grafana"),
        ):
            if enabled and not service_regions.has_service(service, self.region):
                raise _KeyedError(
                    key,
                    True,
                    f"{name} has no endpoint in region {self.region} (botocore lists "
                    f"{', '.join(service_regions.regions(service, service_regions.partition_of(self.region))) or 'none'})",
                )
        return self

    @model_validator(mode="after")
    def _physical_names_fit(self) -> AppConfig:
        """Names built from several keys (``sagemaker-<prefix>-lifecycle-<account>-<region>``) can pass
        an AWS limit that no single field sees; ``config.names`` lists them with their limits."""
        from config import names

        too_long = names.first_too_long(self)
        if too_long:
            raise _KeyedError(too_long.key, _lookup_key(self, too_long.key), names.too_long_message(too_long))
        return self

    @property
    def hyperpod_azs(self) -> tuple[str, ...]:
        """AZs that get HyperPod subnets: the configured ones, else the first VPC AZ."""
        return self.hyperpod.availability_zones or self.network.availability_zones[:1]


def _lookup_key(config: AppConfig, dotted: str) -> object:
    value: object = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


class _KeyedError(ValueError):
    """A cross-field error that names its own key (pydantic would blame the model root)."""

    def __init__(self, key: str, value: object, message: str):
        super().__init__(message)
        self.key, self.value, self.message = key, value, message
