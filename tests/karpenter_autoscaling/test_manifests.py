"""The HyperpodNodeClass and NodePools applied for ``hyperpod.autoscaling: karpenter``: names, groups,
and the labels that let HyperPod's Karpenter start a node for a SkyPilot pod.

Rules encoded here (sources in comments): AWS "Create a NodeClass" (the class lists pre-created groups,
at most 10), "Create a NodePool" (apiVersion/kind/nodeClassRef group, the supported requirement keys),
Karpenter v1's NodePool CRD (label domains a template may not set), SkyPilot 0.14.1's pod selectors.
"""

from __future__ import annotations

import json
import re

from config.gpu_types import ACCELERATOR_LABEL
from constructs.hyperpod_cluster.request import labels_for
from constructs.karpenter_autoscaling import manifests
from post_deploy import placement
from tests.conftest import make_config

GROUPS = [
    {"name": "system", "instance_type": "ml.m5.xlarge", "instance_count": 1},
    {"name": "gpu-auto-a", "instance_type": "ml.g5.8xlarge", "instance_count": 0, "karpenter": True},
    {"name": "gpu-auto-b", "instance_type": "ml.g5.8xlarge", "instance_count": 0, "karpenter": True},
    {"name": "cpu-auto", "instance_type": "ml.c5.4xlarge", "instance_count": 0, "karpenter": True},
]
# "Create a NodePool": the requirements HyperPod's provider supports.
SUPPORTED_REQUIREMENTS = {"node.kubernetes.io/instance-type", "topology.kubernetes.io/zone", "kubernetes.io/arch"}
# Karpenter v1 NodePool CRD (aws/karpenter-provider-aws v1.14.1, pkg/apis/crds/karpenter.sh_nodepools.yaml):
# template labels may not use these domains/keys.
RESTRICTED_LABEL = re.compile(r"^([^/]*\.)?(karpenter\.sh|karpenter\.k8s\.aws)/|^kubernetes\.io/hostname$")


def config(groups=GROUPS, **overrides):
    return make_config(
        **{"hyperpod.autoscaling": "karpenter", "hyperpod.instance_groups": json.dumps(groups), **overrides}
    ).hyperpod


def test_the_node_class_lists_exactly_the_karpenter_groups():
    (node_class, *pools) = manifests.manifests(config())
    assert node_class == {
        "apiVersion": "karpenter.sagemaker.amazonaws.com/v1",
        "kind": "HyperpodNodeClass",
        "metadata": {"name": "hyperpod-sky-karpenter"},
        "spec": {"instanceGroups": ["gpu-auto-a", "gpu-auto-b", "cpu-auto"]},
    }
    assert len(pools) == 2  # one per instance type, not per group


def test_each_pool_pins_its_instance_type_and_names_the_node_class():
    pools = {p["metadata"]["name"]: p for p in manifests.node_pools(config())}
    assert set(pools) == {"hyperpod-sky-ml-c5-4xlarge", "hyperpod-sky-ml-g5-8xlarge"}
    for name, pool in pools.items():
        assert (pool["apiVersion"], pool["kind"]) == ("karpenter.sh/v1", "NodePool")
        spec = pool["spec"]["template"]["spec"]
        assert spec["nodeClassRef"] == {
            "group": "karpenter.sagemaker.amazonaws.com",
            "kind": "HyperpodNodeClass",
            "name": "hyperpod-sky-karpenter",
        }
        (requirement,) = spec["requirements"]
        assert requirement["key"] in SUPPORTED_REQUIREMENTS and requirement["operator"] == "In"
        assert name.endswith(requirement["values"][0].replace(".", "-"))
        assert pool["spec"]["disruption"] == {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "10m"}


def test_pool_labels_satisfy_the_selectors_skypilot_pods_carry():
    """A GPU pod selects skypilot.co/accelerator (SkyPilot) and the health label (submit): the pool must
    declare both with the values the group's nodes really get, or Karpenter never starts a node."""
    pools = {p["spec"]["template"]["spec"]["requirements"][0]["values"][0]: p for p in manifests.node_pools(config())}
    gpu = pools["ml.g5.8xlarge"]["spec"]["template"]["metadata"]["labels"]
    assert gpu == {placement.HEALTH_LABEL: placement.SCHEDULABLE, **labels_for("ml.g5.8xlarge")}
    assert gpu[ACCELERATOR_LABEL] == "a10g"
    cpu = pools["ml.c5.4xlarge"]["spec"]["template"]["metadata"]["labels"]
    assert cpu == {placement.HEALTH_LABEL: placement.SCHEDULABLE}  # a CPU pod's affinity wants no accelerator


def test_no_pool_label_is_one_karpenter_reserves():
    for pool in manifests.node_pools(config()):
        labels = pool["spec"]["template"]["metadata"]["labels"]
        assert not [k for k in labels if RESTRICTED_LABEL.search(k)], labels
    assert RESTRICTED_LABEL.search("karpenter.sh/nodepool") and RESTRICTED_LABEL.search("kubernetes.io/hostname")


def test_names_are_dns_1123_for_any_cluster_name():
    hyperpod = config(**{"hyperpod.cluster_name": "ML-Team-Cluster-01"})
    for manifest in manifests.manifests(hyperpod):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", manifest["metadata"]["name"]), manifest["metadata"]


def test_without_autoscaling_there_is_nothing_to_apply():
    assert manifests.manifests(make_config().hyperpod) == []
