"""Rules AWS enforces at deploy time that no API model encodes, checked at synth so a bad combination
stops ``cdk synth`` with one line instead of failing minutes into ``cdk deploy``.

* EKS managed node AMIs: EKS publishes no Amazon Linux 2 AMIs from Kubernetes 1.33 on and refuses
  ``AL2_*`` node groups there ("AMI Type AL2_x86_64 is only supported for kubernetes versions 1.32 or
  earlier"); an AMI type must match the architecture of the node group's instance types. CDK picks
  ``AL2_x86_64`` when no AMI type is given, so the app always sets one.
* HyperPod deep health checks (AWS docs "Deep health checks"): every check targets GPUs or Trainium
  chips and their EFA devices; ``InstanceConnectivity`` is the cluster-level NCCL/NCCOM test, which
  "requires at least 2 nodes and is only supported on instances with multi-node GPU communication
  capabilities", i.e. EFA.

The architecture of an EC2 type follows its name (Graviton families carry a ``g`` among the letters
after the generation, ``a1`` is Graviton 1); the tests cross-check this against EC2's
DescribeInstanceTypes data that moto ships, for every type in it. botocore's EKS model lists the AMI
types (the tests check every name here is in it), not which Kubernetes versions accept them.
"""

from __future__ import annotations

import re

from config.gpu_types import gpu_spec

X86_64, ARM64 = "x86_64", "arm64"

# AMI type (EKS API spelling) -> architecture. GPU and Neuron variants are left out on purpose: the
# system node group runs coredns and controllers, not accelerator workloads.
NODE_AMI_TYPES: dict[str, str] = {
    "AL2023_x86_64_STANDARD": X86_64,
    "AL2023_ARM_64_STANDARD": ARM64,
    "BOTTLEROCKET_x86_64": X86_64,
    "BOTTLEROCKET_ARM_64": ARM64,
    "BOTTLEROCKET_x86_64_FIPS": X86_64,
    "BOTTLEROCKET_ARM_64_FIPS": ARM64,
    "AL2_x86_64": X86_64,
    "AL2_ARM_64": ARM64,
}
# The last Kubernetes version EKS accepts Amazon Linux 2 node groups for.
LAST_AL2_VERSION = (1, 32)

# Trainium types HyperPod offers (botocore ClusterInstanceType) and the EFA interfaces each carries
# (EC2 EfaInfo.MaximumEfaInterfaces; cross-checked against moto's data in the tests).
TRAINIUM_EFA_INTERFACES: dict[str, int] = {
    "ml.trn1.32xlarge": 8,
    "ml.trn1n.32xlarge": 16,
    "ml.trn2.3xlarge": 1,
    "ml.trn2.48xlarge": 16,
}

_EC2_NAME = re.compile(
    r"^(?P<family>[a-z]+?)(?P<generation>\d+)(?P<attributes>[a-z]*)(?P<variant>-[a-z0-9]+)?\.[a-z0-9-]+$"
)


def ec2_architecture(instance_type: str) -> str:
    """``x86_64`` or ``arm64`` for an EC2 instance type name (without ``ml.``); ValueError for Mac types."""
    if instance_type.startswith("mac"):
        raise ValueError("Mac instances cannot join EKS node groups")
    if instance_type.startswith("u-"):  # High Memory (u-6tb1.112xlarge): Intel
        return X86_64
    m = _EC2_NAME.match(instance_type)
    if not m:
        raise ValueError("is not an EC2 instance type name such as m7i.large")
    # Graviton: a1, or a "g" among the attributes (m7g, c7gn, x2gd); Grace: the -gb200/-gb300 variants.
    if m["family"] == "a" or "g" in m["attributes"] or (m["variant"] or "").startswith("-gb"):
        return ARM64
    return X86_64


def _version(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


def default_node_ami_type(instance_type: str) -> str:
    """AL2023 standard for the instance type's architecture: the AMI EKS recommends for 1.33+."""
    return "AL2023_ARM_64_STANDARD" if ec2_architecture(instance_type) == ARM64 else "AL2023_x86_64_STANDARD"


def node_ami_type_problem(ami_type: str, *, kubernetes_version: str, instance_type: str) -> str | None:
    """Why EKS would refuse a managed node group with this AMI type, or None."""
    if ami_type not in NODE_AMI_TYPES:
        return f"must be one of {', '.join(NODE_AMI_TYPES)}"
    if ami_type.startswith("AL2_") and _version(kubernetes_version) > LAST_AL2_VERSION:
        return (
            f"EKS has no Amazon Linux 2 AMIs for Kubernetes {kubernetes_version} (AL2 ends with "
            f"{'.'.join(map(str, LAST_AL2_VERSION))}); use {default_node_ami_type(instance_type)}"
        )
    arch = ec2_architecture(instance_type)
    if NODE_AMI_TYPES[ami_type] != arch:
        return f"is for {NODE_AMI_TYPES[ami_type]} but eks.system_node_group.instance_type {instance_type} is {arch}"
    return None


def efa_interfaces(instance_type: str) -> int:
    """EFA interfaces of an ``ml.*`` GPU or Trainium type (0: none, or not an accelerator type)."""
    spec = gpu_spec(instance_type)
    if spec is not None:
        return spec.efa_interfaces
    return TRAINIUM_EFA_INTERFACES.get(instance_type, 0)


def is_accelerated(instance_type: str) -> bool:
    """GPU or Trainium: the instance types deep health checks run on."""
    return gpu_spec(instance_type) is not None or instance_type in TRAINIUM_EFA_INTERFACES


def deep_health_check_problem(checks: tuple[str, ...], *, instance_type: str, instance_count: int) -> str | None:
    """Why HyperPod would not run these on-start deep health checks on this group, or None."""
    if not checks:
        return None
    if not is_accelerated(instance_type):
        return f"deep health checks run only on GPU and Trainium instance types, not {instance_type}"
    if "InstanceConnectivity" in checks:
        if efa_interfaces(instance_type) == 0:
            return f"InstanceConnectivity needs multi-node networking (EFA), which {instance_type} does not have"
        if instance_count < 2:
            return f"InstanceConnectivity tests between nodes and needs instance_count >= 2 (is {instance_count})"
    return None


# The EKS-managed add-ons the app installs on a cluster it creates (stacks/eks.py), and the ones
# preflight asks DescribeAddonVersions about; an existing cluster keeps its own.
EKS_MANAGED_ADDONS = ("vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent")
# HyperPod's EKS prerequisites: the VPC CNI add-on at v1.18.3 or newer.
MIN_VPC_CNI_VERSION = (1, 18, 3)


def addon_version_tuple(version: str) -> tuple[int, ...] | None:
    """(1, 19, 2) for ``v1.19.2-eksbuild.1``; None for anything else."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(-.*)?", version)
    return tuple(int(x) for x in m.groups()[:3]) if m else None
