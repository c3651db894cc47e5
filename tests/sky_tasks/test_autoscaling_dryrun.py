"""A SkyPilot launch on a cluster whose GPU groups Karpenter keeps at 0: SkyPilot 0.14.1's own launch up to
pod creation against a Kubernetes double with no GPU node, with and without the settings
``submit --karpenter-groups`` sends, then kube-scheduler's filters over the node Karpenter would add.

The node is built as HyperPod registers it for a ``karpenter: true`` ml.g5.8xlarge group: the group's
``KubernetesConfig.Labels`` from the very function the cluster construct uses (``request.labels_for``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from constructs.hyperpod_cluster.request import labels_for
from post_deploy import autoscaling, placement
from tests.k8s_double import seed
from tests.sky_tasks import scheduling
from tests.sky_tasks.test_placement_dryrun import Cluster

TASK = Path(__file__).resolve().parent / "fixtures" / "a10g-task.yaml"
SMOKE = Path(__file__).resolve().parents[2] / "sky_tasks" / "smoke.yaml"  # lists eight accelerators
GROUP_TYPE = "ml.g5.8xlarge"


def _empty_fleet() -> list[dict]:
    """Everything a scaled-to-zero cluster has: a fixed CPU group's node and the EKS system nodes."""
    return [
        seed.sized(seed.cpu_hyperpod_node("ml.m5.2xlarge", name="hyperpod-cpu"), disk_gib=100),
        seed.sized(seed.system_node("m7i.large", name="system-a")),
        seed.sized(seed.system_node("m7i.large", name="system-b")),
    ]


def _karpenters_node() -> dict:
    node = seed.hyperpod_node(GROUP_TYPE, name="hyperpod-i-0karpenter", instance_group="gpu-auto")
    node["metadata"]["labels"].update(labels_for(GROUP_TYPE))
    return seed.sized(node, disk_gib=500)


@pytest.fixture(scope="module")
def launches(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("scaled"), fleets={"scaled": _empty_fleet()})
    try:
        plain = cluster.dryrun(["scaled"], [TASK])[("scaled", TASK.name, None)]
        found = cluster.dryrun(
            ["scaled"], [TASK, SMOKE], None, "--karpenter-groups", "gpu-auto", "--cluster-accelerators", "a10g"
        )
    finally:
        cluster.stop()
    return plain, found[("scaled", TASK.name, None)], found[("scaled", SMOKE.name, None)]


def test_without_the_autoscaler_setting_skypilot_refuses_a_gpu_task_on_an_empty_cluster(launches):
    plain, _, _ = launches
    assert "error" in plain and "ResourcesUnavailableError" in plain["error"], plain


def test_with_the_autoscaler_setting_skypilot_renders_the_pod_and_lets_it_wait_for_the_node(launches):
    _, scaled, _ = launches
    assert "error" not in scaled, scaled.get("error")
    assert scaled["provision_timeout"] == autoscaling.DEFAULT_SCALE_UP_TIMEOUT
    pod = scaled["pod"]
    assert pod["nodeSelector"] == {placement.HEALTH_LABEL: placement.SCHEDULABLE}
    # Nowhere to go yet: the pod stays Pending, which is what Karpenter acts on.
    assert scheduling.feasible_nodes(pod, _empty_fleet()) == []


def test_the_pod_selects_the_label_the_karpenter_group_carries_and_fits_its_node(launches):
    _, scaled, _ = launches
    pod = scaled["pod"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    selected = {e["key"]: e["values"] for e in term["matchExpressions"] if e["operator"] == "In"}
    assert selected == {"skypilot.co/accelerator": [labels_for(GROUP_TYPE)["skypilot.co/accelerator"]]}
    assert scheduling.feasible_nodes(pod, [*_empty_fleet(), _karpenters_node()]) == ["hyperpod-i-0karpenter"]


def _selected_accelerator(pod: dict) -> list[str]:
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return [v for e in term["matchExpressions"] if e["key"] == "skypilot.co/accelerator" for v in e["values"]]


def test_a_task_listing_several_gpus_is_narrowed_to_what_the_groups_offer_and_fits_karpenters_node(launches):
    _, _, smoke = launches
    assert "error" not in smoke, smoke.get("error")
    assert _selected_accelerator(smoke["pod"]) == ["a10g"]
    assert scheduling.feasible_nodes(smoke["pod"], [*_empty_fleet(), _karpenters_node()]) == ["hyperpod-i-0karpenter"]
