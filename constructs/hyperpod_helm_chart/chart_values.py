"""The complete helm values of the HyperPod dependency chart for this project.

Every component switch of the upstream chart (``helm_chart/HyperPodHelmChart`` of
aws/sagemaker-hyperpod-cli: the ``condition`` keys of its Chart.yaml dependencies) is set here
explicitly, so a release never depends on what an older revision or a chart default said. The
installer applies these with ``--reset-values`` on every create and update.

On: what HyperPod resiliency and SkyPilot GPU jobs need (health monitoring agent, deep health
check, job auto restart, HyperPod patching, NVIDIA/EFA/Neuron device plugins, Kubeflow training
operator, MPI operator). Off: components that need extra setup this project does not do (storage,
whose PV has a placeholder volume handle; MLflow; the inference operator, its cert-manager and
the Ray endpoint operator; the GPU operator, which would fight the NVIDIA device plugin over the
GPUs; task-governance RBAC).

The NVIDIA and EFA device plugins are pinned to the instance types of the project's GPU table
(``config.gpu_types``), the same table that labels nodes for SkyPilot, so a GPU type the project
supports always gets its device plugin (upstream's lists lag new types such as ml.g7e). The EFA
plugin also runs on every Trainium type of botocore's ClusterInstanceType enum (all of them carry
EFA), so Neuron instance groups keep EFA; CPU groups get no EFA plugin. Both plugins tolerate
HyperPod's ``node-health-status=Unschedulable`` taint so a node under deep health check still
advertises its devices.
"""

from __future__ import annotations

from typing import Any

from config.gpu_types import GPU_INSTANCE_TYPES, INSTANCE_TYPE_LABEL
from config.sagemaker_api import cluster_instance_types

HEALTH_TAINT_TOLERATION = {
    "key": "sagemaker.amazonaws.com/node-health-status",
    "operator": "Equal",
    "value": "Unschedulable",
    "effect": "NoSchedule",
}
GPU_TAINT_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def gpu_instance_types() -> list[str]:
    return sorted(GPU_INSTANCE_TYPES)


def efa_instance_types() -> list[str]:
    gpus = {t for t, spec in GPU_INSTANCE_TYPES.items() if spec.efa_interfaces > 0}
    trainium = {t for t in cluster_instance_types() if t.startswith("ml.trn")}
    return sorted(gpus | trainium)


def chart_values(region: str) -> dict[str, Any]:
    """Values for ``region`` (a literal, or a CloudFormation token rendered into the template)."""
    return {
        "global": {"region": region},
        "health-monitoring-agent": {"enabled": True, "region": region},
        "deep-health-check": {"enabled": True},
        "job-auto-restart": {"enabled": True},
        "hyperpod-patching": {"enabled": True},
        "trainingOperators": {"enabled": True},
        "mpi-operator": {"enabled": True},
        "nvidia-device-plugin": {
            "devicePlugin": {"enabled": True},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": gpu_instance_types()}
                                ]
                            }
                        ]
                    }
                }
            },
            "tolerations": [GPU_TAINT_TOLERATION, HEALTH_TAINT_TOLERATION],
        },
        "aws-efa-k8s-device-plugin": {
            "devicePlugin": {"enabled": True},
            "supportedInstanceLabels": {"keys": [INSTANCE_TYPE_LABEL], "values": efa_instance_types()},
            # The EFA chart adds the CriticalAddonsOnly toleration itself.
            "tolerations": [
                {"key": "aws.amazon.com/efa", "operator": "Exists", "effect": "NoSchedule"},
                GPU_TAINT_TOLERATION,
                HEALTH_TAINT_TOLERATION,
            ],
        },
        "neuron-device-plugin": {"devicePlugin": {"enabled": True}},
        "storage": {"enabled": False},
        "mlflow": {"enabled": False},
        "inferenceOperators": {"enabled": False},
        "cert-manager": {"enabled": False},
        "gpu-operator": {"enabled": False},
        "hyperpod-ray-endpoint-operator": {"enabled": False},
        "cluster-role-and-bindings": {"enabled": False},
        # The chart's condition is `.enabled`; its own values.yaml says `enable: false`, which switches nothing
        # off (tests/hyperpod_helm_chart/test_rendered_chart.py renders the pinned chart both ways).
        "namespaced-role-and-bindings": {"enabled": False},
        "team-role-and-bindings": {"enabled": False},
    }
