"""Builders for the objects a HyperPod EKS cluster holds, shaped like what HyperPod and kubelet write.

Labels follow what HyperPod sets on its nodes (AWS HyperPod EKS user guide; ``node.kubernetes.io/instance-type`` with the ``ml.`` prefix,
``sagemaker.amazonaws.com/cluster-name``, ``.../node-health-status``,
``.../deep-health-check-status``), names ``hyperpod-i-<17 hex>``. GPU and EFA capacity is given
explicitly by the caller where a test's expectation depends on it, so the double never decides
what a test expects; ``gpus=None`` takes the count from ``config.gpu_types`` for bulk seeding.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from config.gpu_types import ACCELERATOR_LABEL, INSTANCE_TYPE_LABEL, gpu_spec

CLUSTER_NAME_LABEL = "sagemaker.amazonaws.com/cluster-name"
HEALTH_LABEL = "sagemaker.amazonaws.com/node-health-status"
DEEP_HEALTH_LABEL = "sagemaker.amazonaws.com/deep-health-check-status"
HEALTH_TAINT_KEY = HEALTH_LABEL

_rng = random.Random(20251126)
_ips = itertools.count(10)


def instance_id() -> str:
    return "i-" + "".join(_rng.choice("0123456789abcdef") for _ in range(17))


def _node_info() -> dict[str, str]:
    return {
        "architecture": "amd64",
        "bootID": "b0",
        "containerRuntimeVersion": "containerd://1.7.27",
        "kernelVersion": "6.1.141-155.222.amzn2023.x86_64",
        "kubeProxyVersion": "v1.33.5-eks-3025e55",
        "kubeletVersion": "v1.33.5-eks-3025e55",
        "machineID": "m0",
        "operatingSystem": "linux",
        "osImage": "Amazon Linux 2023.8.20250818",
        "systemUUID": "s0",
    }


def node(
    name: str,
    labels: dict[str, str],
    *,
    capacity: dict[str, str],
    ready: bool = True,
    taints: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
    provider_id: str | None = None,
) -> dict[str, Any]:
    """A v1 Node with a Ready condition; allocatable equals capacity (what device plugins advertise)."""
    octet = next(_ips)
    spec: dict[str, Any] = {"providerID": provider_id or f"aws:///us-west-2a/{name}"}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                **labels,
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": spec,
        "status": {
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "message": "kubelet is posting ready status" if ready else "container runtime network not ready",
                    "lastHeartbeatTime": "2025-11-26T12:00:00Z",
                    "lastTransitionTime": "2025-11-26T12:00:00Z",
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": f"10.1.{octet // 250}.{octet % 250}"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": _node_info(),
        },
    }


def hyperpod_node(
    instance_type: str = "ml.p5.48xlarge",
    *,
    cluster: str = "hp-test",
    instance_group: str = "worker-group-1",
    gpus: int | None = None,
    efa: int | None = None,
    accelerator: str | None = None,
    health: str = "Schedulable",
    deep_health: str | None = "Passed",
    ready: bool = True,
    extra_labels: dict[str, str] | None = None,
    name: str | None = None,
    taint: bool = True,
) -> dict[str, Any]:
    """A node HyperPod registered. ``accelerator`` sets ``skypilot.co/accelerator`` (absent by default).

    HyperPod taints nodes it marks Unschedulable*, so ``health`` other than Schedulable adds
    the NoSchedule taint as well as the label; ``taint=False`` gives the label alone (how HyperPod
    marks a node pending reboot or replacement, which only a node selector on the label avoids).
    """
    spec = gpu_spec(instance_type)
    gpus = (spec.count if spec else 0) if gpus is None else gpus
    efa = (spec.efa_interfaces if spec else 0) if efa is None else efa
    iid = instance_id()
    labels = {
        INSTANCE_TYPE_LABEL: instance_type,
        "beta.kubernetes.io/instance-type": instance_type,
        CLUSTER_NAME_LABEL: cluster,
        HEALTH_LABEL: health,
        "sagemaker.amazonaws.com/compute-type": "hyperpod",
        "sagemaker.amazonaws.com/instance-group-name": instance_group,
        "topology.kubernetes.io/zone": "us-west-2a",
        "topology.kubernetes.io/region": "us-west-2",
    }
    if deep_health is not None:
        labels[DEEP_HEALTH_LABEL] = deep_health
    if accelerator is not None:
        labels[ACCELERATOR_LABEL] = accelerator
    labels.update(extra_labels or {})
    capacity = {"cpu": "192", "memory": "2097152Mi", "pods": "737", "ephemeral-storage": "3500Gi"}
    if gpus:
        capacity["nvidia.com/gpu"] = str(gpus)
    if efa:
        capacity["vpc.amazonaws.com/efa"] = str(efa)
    taints = None
    if health != "Schedulable" and taint:
        taints = [{"key": HEALTH_TAINT_KEY, "value": health, "effect": "NoSchedule"}]
    return node(
        name or f"hyperpod-{iid}",
        labels,
        capacity=capacity,
        ready=ready,
        taints=taints,
        provider_id=f"aws:///us-west-2a/sagemaker/cluster/{cluster}-{iid}",
    )


def cpu_hyperpod_node(instance_type: str = "ml.m5.2xlarge", **kwargs: Any) -> dict[str, Any]:
    """A HyperPod node without GPUs (controller or CPU worker group)."""
    kwargs.setdefault("instance_group", "cpu-group")
    return hyperpod_node(instance_type, gpus=0, efa=0, **kwargs)


def system_node(
    instance_type: str = "m5.large", *, name: str | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """An EKS managed-node-group node (no ``ml.`` prefix, no HyperPod labels)."""
    octet = _rng.randrange(2, 250)
    return node(
        name or f"ip-10-192-10-{octet}.us-west-2.compute.internal",
        {INSTANCE_TYPE_LABEL: instance_type, "eks.amazonaws.com/nodegroup": "system", **(labels or {})},
        capacity={"cpu": "2", "memory": "7910Mi", "pods": "29"},
    )


# kubelet's view of an EC2 instance on the EKS AMI, for tests whose outcome depends on what fits:
# capacity.memory is MemTotal, which is below the nominal size (the m5.large above: 7910Mi of 8192Mi);
# allocatable subtracts the AMI's kube-reserved (memory 255Mi + 11Mi per pod, CPU 6% of the first
# core, 1% of the second, 0.5% of the third and fourth, 0.25% of the rest) and the 100Mi hard
# eviction threshold. vCPUs, memory and ENI limits come from EC2's instance-type data shipped with
# moto, not from config.gpu_types.
_MEMTOTAL_FRACTION = 7910 / 8192


def kubelet_resources(instance_type: str, *, gpus: int = 0, efa: int = 0, disk_gib: int = 50) -> tuple[dict, dict]:
    """(capacity, allocatable) of a node of ``instance_type`` (``ml.`` prefix allowed)."""
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    info = INSTANCE_TYPES[instance_type.removeprefix("ml.")]
    vcpus = info["VCpuInfo"]["DefaultVCpus"]
    network = info["NetworkInfo"]
    max_pods = network["MaximumNetworkInterfaces"] * (network["Ipv4AddressesPerInterface"] - 1) + 2
    max_pods = min(max_pods, 110 if vcpus < 30 else 250)  # the EKS max-pods recommendation caps
    memory_mi = int(info["MemoryInfo"]["SizeInMiB"] * _MEMTOTAL_FRACTION)
    reserved_cpu_m = 60 + (10 if vcpus > 1 else 0) + 5 * min(max(vcpus - 2, 0), 2) + 2.5 * max(vcpus - 4, 0)
    capacity = {
        "cpu": str(vcpus),
        "memory": f"{memory_mi}Mi",
        "pods": str(max_pods),
        "ephemeral-storage": f"{disk_gib * 1024 * 1024 - 1024 * 1024}Ki",
    }
    allocatable = {
        **capacity,
        "cpu": f"{int(vcpus * 1000 - reserved_cpu_m)}m",
        "memory": f"{memory_mi - 255 - 11 * max_pods - 100}Mi",
        "ephemeral-storage": f"{int((disk_gib - 1) * 1024 * 0.9)}Mi",
    }
    for resource, count in (("nvidia.com/gpu", gpus), ("vpc.amazonaws.com/efa", efa)):
        if count:
            capacity[resource] = allocatable[resource] = str(count)
    return capacity, allocatable


def sized(node_obj: dict[str, Any], *, disk_gib: int = 50) -> dict[str, Any]:
    """``node_obj`` with the capacity/allocatable kubelet reports for its instance type; GPU and EFA
    counts are kept from the node as given."""
    status = node_obj["status"]
    capacity, allocatable = kubelet_resources(
        node_obj["metadata"]["labels"][INSTANCE_TYPE_LABEL],
        gpus=int(status["capacity"].get("nvidia.com/gpu", 0)),
        efa=int(status["capacity"].get("vpc.amazonaws.com/efa", 0)),
        disk_gib=disk_gib,
    )
    status["capacity"], status["allocatable"] = capacity, allocatable
    return node_obj


def pod(
    name: str,
    *,
    namespace: str = "default",
    node_name: str | None = None,
    gpus: int = 0,
    phase: str = "Running",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod holding ``gpus`` GPUs on ``node_name`` (SkyPilot subtracts these from what is free)."""
    resources: dict[str, Any] = {"requests": {"cpu": "1"}}
    if gpus:
        resources = {"requests": {"cpu": "1", "nvidia.com/gpu": str(gpus)}, "limits": {"nvidia.com/gpu": str(gpus)}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": "busybox", "resources": resources}]},
        "status": {"phase": phase},
    }
