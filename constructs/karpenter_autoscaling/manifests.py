"""The Karpenter objects HyperPod's managed Karpenter needs before it scales anything: one
``HyperpodNodeClass`` naming the ``karpenter: true`` instance groups, and one ``NodePool`` per instance type
of those groups (AWS docs "Create a NodeClass", "Create a NodePool"; HyperPod ships neither).

Why one NodePool per instance type rather than one for all: Karpenter only starts a node for a pending pod
if the NodePool's template can satisfy the pod's node selectors, and SkyPilot's pods select
``skypilot.co/accelerator`` (and ``submit`` adds ``sagemaker.amazonaws.com/node-health-status:
Schedulable``), labels Karpenter knows nothing about unless a NodePool declares them. A pool per type can
declare the exact accelerator label its nodes get (the same value the cluster construct sets through the
group's ``KubernetesConfig.Labels``) and pin ``node.kubernetes.io/instance-type``, one of the requirements
HyperPod's provider supports.

The health label is declared Schedulable because that is what HyperPod sets on a node that passed its
start-up checks (Karpenter groups have no deep health checks); HyperPod's agents change it afterwards, and
the ``Unschedulable`` taint they add keeps pods off a node they mark. Consolidation: ``WhenEmpty`` after
``CONSOLIDATE_AFTER``, so Karpenter never evicts a running training pod to pack nodes (the default
``WhenEmptyOrUnderutilized`` would) and a relaunch within that window reuses the warm node.
"""

from __future__ import annotations

import re
from typing import Any

from config.gpu_types import ACCELERATOR_LABEL, INSTANCE_TYPE_LABEL, accelerator_label
from config.model import HyperPodConfig

NODE_CLASS_API = "karpenter.sagemaker.amazonaws.com/v1"
NODE_CLASS_KIND = "HyperpodNodeClass"
NODE_POOL_API = "karpenter.sh/v1"
NODE_POOL_KIND = "NodePool"
HEALTH_LABEL = "sagemaker.amazonaws.com/node-health-status"
CONSOLIDATE_AFTER = "10m"


def object_name(cluster_name: str, *parts: str) -> str:
    """A DNS-1123 name (Kubernetes object names) from the cluster name and ``parts``."""
    name = "-".join([cluster_name, *parts]).lower()
    return re.sub(r"[^a-z0-9-]+", "-", name).strip("-")[:253]


def node_class(config: HyperPodConfig) -> dict[str, Any]:
    return {
        "apiVersion": NODE_CLASS_API,
        "kind": NODE_CLASS_KIND,
        "metadata": {"name": object_name(config.cluster_name, "karpenter")},
        "spec": {"instanceGroups": list(config.karpenter_groups)},
    }


def node_pools(config: HyperPodConfig) -> list[dict[str, Any]]:
    types = sorted({g.instance_type for g in config.instance_groups if g.karpenter})
    class_name = node_class(config)["metadata"]["name"]
    pools = []
    for instance_type in types:
        labels = {HEALTH_LABEL: "Schedulable"}
        accelerator = accelerator_label(instance_type)
        if accelerator:
            labels[ACCELERATOR_LABEL] = accelerator
        pools.append(
            {
                "apiVersion": NODE_POOL_API,
                "kind": NODE_POOL_KIND,
                "metadata": {"name": object_name(config.cluster_name, instance_type)},
                "spec": {
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "nodeClassRef": {
                                "group": NODE_CLASS_API.split("/")[0],
                                "kind": NODE_CLASS_KIND,
                                "name": class_name,
                            },
                            "expireAfter": "Never",
                            "requirements": [{"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": [instance_type]}],
                        },
                    },
                    "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": CONSOLIDATE_AFTER},
                },
            }
        )
    return pools


def manifests(config: HyperPodConfig) -> list[dict[str, Any]]:
    """In apply order (the class before the pools that name it; deletion runs in reverse)."""
    return [node_class(config), *node_pools(config)] if config.karpenter_groups else []
