"""Turns the typed ``HyperPodConfig`` into the exact CreateCluster request the custom resource sends.

Built here, at synth time, rather than in the Lambda: the instance-type to GPU table (``config.gpu_types``)
and the config model live in the CDK app, the template then shows the literal request a reviewer can read,
and the runtime stays a generic "make the live cluster match this request" engine.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from config import gpu_types
from config.model import HyperPodConfig, InstanceGroupConfig

# Tag on every cluster this construct creates; the handler's IAM policy only lets it update or delete
# clusters carrying it, and a retried Create only adopts a same-named cluster that carries it.
OWNER_TAG_KEY = "hyperpod-cluster:owner"
# SageMaker's TagKey/TagValue patterns use Java \p{...} classes; this is the same set in Python terms.
_TAG_TEXT = re.compile(r"^[\w\s.:/=+\-@]*$")


def validate_tags(tags: Mapping[str, str]) -> None:
    """Reject tags SageMaker would refuse, at synth time, naming the offending tag."""
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or not _TAG_TEXT.match(key) or key.lower().startswith("aws:"):
            raise ValueError(
                f"tags[{key!r}]: tag keys must be 1-128 letters, digits, spaces or _.:/=+-@ and not start with aws:"
            )
        if len(value) > 256 or not _TAG_TEXT.match(value):
            raise ValueError(
                f"tags[{key!r}] = {value!r}: tag values must be up to 256 letters, digits, spaces or _.:/=+-@"
            )
        if key == OWNER_TAG_KEY:
            raise ValueError(f"tags[{key!r}]: this key is reserved for the cluster's ownership tag")


def labels_for(instance_type: str) -> dict[str, str]:
    """Node labels HyperPod applies to every node of a group (replacements included)."""
    accelerator = gpu_types.accelerator_label(instance_type)
    return {gpu_types.ACCELERATOR_LABEL: accelerator} if accelerator else {}


def instance_group(
    group: InstanceGroupConfig,
    *,
    execution_role_arn: str,
    source_s3_uri: str,
    on_create: str,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "InstanceGroupName": group.name,
        "InstanceType": group.instance_type,
        "InstanceCount": group.instance_count,
        "LifeCycleConfig": {"SourceS3Uri": source_s3_uri, "OnCreate": on_create},
        "ExecutionRole": execution_role_arn,
        "ThreadsPerCore": group.threads_per_core,
    }
    if group.ebs_volume_size_gb is not None:
        spec["InstanceStorageConfigs"] = [{"EbsVolumeConfig": {"VolumeSizeInGB": group.ebs_volume_size_gb}}]
    if group.deep_health_checks:
        spec["OnStartDeepHealthChecks"] = list(group.deep_health_checks)
    if group.training_plan_arn:
        spec["TrainingPlanArn"] = group.training_plan_arn
    if group.min_instance_count is not None:
        spec["MinInstanceCount"] = group.min_instance_count
    labels = labels_for(group.instance_type)
    if labels:
        spec["KubernetesConfig"] = {"Labels": labels}
    return spec


def cluster_request(
    config: HyperPodConfig,
    *,
    tags: Mapping[str, str],
    owner: str,
    eks_cluster_arn: str,
    subnet_ids: Sequence[str],
    security_group_id: str,
    execution_role_arn: str,
    source_s3_uri: str,
    cluster_role_arn: str | None = None,
) -> dict[str, Any]:
    """The CreateCluster request. Values may be CDK tokens; the stack serialises them at deploy time.

    With ``autoscaling: karpenter`` the request carries ``AutoScaling`` and the ``ClusterRole`` HyperPod assumes
    to add and remove nodes ("Create and configure a HyperPod cluster with Karpenter autoscaling")."""
    validate_tags(tags)
    request: dict[str, Any] = {
        "ClusterName": config.cluster_name,
        "InstanceGroups": [
            instance_group(
                g, execution_role_arn=execution_role_arn, source_s3_uri=source_s3_uri, on_create=config.on_create_script
            )
            for g in config.instance_groups
        ],
        "VpcConfig": {"SecurityGroupIds": [security_group_id], "Subnets": list(subnet_ids)},
        "Orchestrator": {"Eks": {"ClusterArn": eks_cluster_arn}},
        "NodeRecovery": config.node_recovery,
        "Tags": [{"Key": k, "Value": v} for k, v in sorted({**tags, OWNER_TAG_KEY: owner}.items())],
    }
    if config.provisioning_mode:
        request["NodeProvisioningMode"] = config.provisioning_mode
    if config.autoscaling == "karpenter":
        if not cluster_role_arn:
            raise ValueError("autoscaling: karpenter needs the cluster role HyperPod assumes (cluster_role_arn)")
        request["ClusterRole"] = cluster_role_arn
        request["AutoScaling"] = {"Mode": "Enable", "AutoScalerType": "Karpenter"}
    return request


def spec_digest(config: HyperPodConfig, tags: Mapping[str, str], lifecycle_prefix: str) -> str:
    """Short hash of the desired cluster. It names the WaitCondition and its handle, so any change of spec
    gets a fresh handle and CloudFormation waits again for the new target."""
    payload = {"hyperpod": _digest_view(config), "tags": dict(tags), "lifecycle_prefix": lifecycle_prefix}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10].upper()


# Config keys added after the digest existed, with their "off" values: left out of the digest while off, so
# a deployment that does not use a capability keeps its WaitCondition (and its template) unchanged.
_LATER_CLUSTER_KEYS = {"autoscaling": None}
_LATER_GROUP_KEYS = {"min_instance_count": None, "karpenter": False}


def _digest_view(config: HyperPodConfig) -> dict[str, Any]:
    def without_off(data: dict[str, Any], later: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if not (k in later and v == later[k])}

    view = without_off(config.model_dump(mode="json"), _LATER_CLUSTER_KEYS)
    view["instance_groups"] = [without_off(g, _LATER_GROUP_KEYS) for g in view["instance_groups"]]
    return view
