"""The generated values decide every component of the upstream chart explicitly."""

from __future__ import annotations

import yaml

from config.gpu_types import GPU_INSTANCE_TYPES
from constructs.hyperpod_helm_chart.chart_values import chart_values

from .support import CHART_PATH, FIXTURE_REPO

# The `condition` keys of helm_chart/HyperPodHelmChart/Chart.yaml in aws/sagemaker-hyperpod-cli
# (read from the upstream repository; newer commits add a few, none are removed).
UPSTREAM_CONDITIONS = {
    "cert-manager.enabled": False,
    "trainingOperators.enabled": True,
    "mlflow.enabled": False,
    "nvidia-device-plugin.devicePlugin.enabled": True,
    "aws-efa-k8s-device-plugin.devicePlugin.enabled": True,
    "neuron-device-plugin.devicePlugin.enabled": True,
    "storage.enabled": False,
    "health-monitoring-agent.enabled": True,
    "mpi-operator.enabled": True,
    "deep-health-check.enabled": True,
    "job-auto-restart.enabled": True,
    "cluster-role-and-bindings.enabled": False,
    "namespaced-role-and-bindings.enabled": False,
    "team-role-and-bindings.enabled": False,
    "inferenceOperators.enabled": False,
    "hyperpod-patching.enabled": True,
    "gpu-operator.enabled": False,
    "hyperpod-ray-endpoint-operator.enabled": False,
}


def _lookup(values: dict, dotted: str):
    node = values
    for part in dotted.split("."):
        node = node[part]
    return node


def test_every_upstream_condition_is_an_explicit_boolean():
    values = chart_values("us-east-2")
    for condition, expected in UPSTREAM_CONDITIONS.items():
        value = _lookup(values, condition)
        assert value is expected, condition


def test_fixture_chart_declares_the_upstream_condition_keys():
    chart = yaml.safe_load((FIXTURE_REPO / CHART_PATH / "Chart.yaml").read_text())
    conditions = {d["condition"] for d in chart["dependencies"]}
    assert conditions <= set(UPSTREAM_CONDITIONS)


def test_region_lands_where_the_health_monitoring_agent_reads_it():
    values = chart_values("ap-southeast-2")
    assert values["health-monitoring-agent"]["region"] == "ap-southeast-2"
    assert values["global"]["region"] == "ap-southeast-2"


def test_device_plugins_follow_the_gpu_table():
    values = chart_values("us-east-1")
    nvidia_terms = values["nvidia-device-plugin"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert nvidia_terms[0]["matchExpressions"][0]["values"] == sorted(GPU_INSTANCE_TYPES)
    efa = values["aws-efa-k8s-device-plugin"]["supportedInstanceLabels"]["values"]
    gpu_efa = {t for t, s in GPU_INSTANCE_TYPES.items() if s.efa_interfaces > 0}
    assert gpu_efa <= set(efa)
    # Trainium groups keep EFA too (every trn type carries it); CPU and EFA-less GPU types do not.
    assert {"ml.trn1.32xlarge", "ml.trn1n.32xlarge", "ml.trn2.48xlarge"} <= set(efa)
    assert set(efa) - gpu_efa == {t for t in efa if t.startswith("ml.trn")}
    assert "ml.g5.xlarge" not in efa and "ml.m5.large" not in efa
    assert efa == sorted(efa)
