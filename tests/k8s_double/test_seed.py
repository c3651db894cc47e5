"""The builders produce nodes shaped like HyperPod's (labels and names as the AWS HyperPod EKS user guide lists them) that the client can parse."""

from __future__ import annotations

import re

from kubernetes import client

from tests.k8s_double import seed


def test_hyperpod_gpu_node_carries_hyperpod_labels_capacity_and_readiness(k8s_double, k8s_api_client):
    name = k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge", gpus=8, efa=32))["metadata"]["name"]

    node = client.CoreV1Api(k8s_api_client).read_node(name)

    assert re.fullmatch(r"hyperpod-i-[0-9a-f]{17}", name)
    assert node.metadata.labels["node.kubernetes.io/instance-type"] == "ml.p5.48xlarge"
    assert node.metadata.labels["sagemaker.amazonaws.com/cluster-name"] == "hp-test"
    assert node.metadata.labels["sagemaker.amazonaws.com/node-health-status"] == "Schedulable"
    assert node.metadata.labels["sagemaker.amazonaws.com/deep-health-check-status"] == "Passed"
    assert "skypilot.co/accelerator" not in node.metadata.labels
    assert node.status.allocatable["nvidia.com/gpu"] == "8" and node.status.capacity["vpc.amazonaws.com/efa"] == "32"
    assert [(c.type, c.status) for c in node.status.conditions] == [("Ready", "True")]
    assert node.spec.taints is None


def test_unschedulable_health_adds_hyperpods_taint(k8s_double):
    node = seed.hyperpod_node(health="UnschedulablePendingReplacement", ready=False)

    assert node["spec"]["taints"] == [
        {
            "key": "sagemaker.amazonaws.com/node-health-status",
            "value": "UnschedulablePendingReplacement",
            "effect": "NoSchedule",
        }
    ]
    assert node["status"]["conditions"][0]["status"] == "False"


def test_cpu_and_system_nodes_have_no_gpus_and_system_nodes_no_hyperpod_labels():
    cpu, system = seed.cpu_hyperpod_node(), seed.system_node()

    assert "nvidia.com/gpu" not in cpu["status"]["capacity"]
    assert cpu["metadata"]["labels"]["sagemaker.amazonaws.com/cluster-name"] == "hp-test"
    assert not any(k.startswith("sagemaker.amazonaws.com/") for k in system["metadata"]["labels"])
    assert not system["metadata"]["labels"]["node.kubernetes.io/instance-type"].startswith("ml.")
