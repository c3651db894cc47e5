"""Where the pods SkyPilot starts may land on a HyperPod EKS cluster.

SkyPilot 0.14.1 pins a GPU pod only by ``skypilot.co/accelerator`` (a required node-affinity
term, ``sky/provision/kubernetes/utils.py`` ``get_node_affinity``). HyperPod marks a node that
waits for a reboot or a replacement only through the ``sagemaker.amazonaws.com/node-health-status``
label (the AWS HyperPod EKS user guide documents that label for node selectors), so a GPU pod could be
placed on a node HyperPod is about to take away. Two rules close that:

* every GPU resource of a task selects ``node-health-status: Schedulable`` through its pod
  config's ``nodeSelector``. Not a required node-affinity term: SkyPilot's merge
  (``sky/utils/config_utils.py`` ``merge_k8s_configs``) appends list items, so a second
  ``nodeSelectorTerms`` entry would be ORed with SkyPilot's accelerator term instead of ANDed.
  Not the global ``kubernetes.pod_config`` either: that also reaches the managed-jobs controller
  and CPU pods, whose EKS system nodes carry no HyperPod label and would then match nothing.
  ``submit`` adds it to each GPU resource of every task it launches (the user's own tasks
  included); the tasks in ``sky_tasks/`` also carry it, so ``sky launch`` without ``submit``
  is protected as well.
* every CPU resource gets a required node-affinity term: EKS system nodes, or HyperPod nodes
  without GPUs that HyperPod marks Schedulable (two terms, ORed). SkyPilot only *prefers* to keep
  CPU pods off nodes with an accelerator label (``get_node_affinity``'s preferred term), so a CPU
  task could otherwise take CPUs and memory of a p5 a GPU job is waiting for. A CPU pod has no
  required term of SkyPilot's own that ours could be ORed with.
* the managed-jobs controller gets a home on the EKS system nodes: SkyPilot's default controller
  asks for ``cpus: 4+``, ``memory: 4x`` and a 50 GB disk (``sky/jobs/constants.py``
  ``CONTROLLER_RESOURCES``; on Kubernetes ``disk_size`` becomes an ephemeral-storage request,
  ``sky/clouds/kubernetes.py``), which the default m7i.large system nodes cannot hold, so the
  fit check (``check_instance_fits``, node *capacity*) sends it to a p5. ``submit --managed``
  therefore sends ``jobs.controller.resources`` sized for a system node, with a required
  node-affinity term that keeps it off every HyperPod node. The only controller-only pod-config
  path SkyPilot has is the resources' ``_cluster_config_overrides`` (accepted by the
  ``jobs.controller.resources`` schema, ``sky/utils/schemas.py``, and parsed by
  ``Resources.from_yaml_config``); a CPU pod has no required term of SkyPilot's own to be ORed
  with. ``jobs.controller.resources`` is not in ``SKIPPED_CLIENT_OVERRIDE_KEYS``
  (``sky/skylet/constants.py``), so the request's config reaches any API server.
"""

from __future__ import annotations

from typing import Any

from config.gpu_types import ACCELERATOR_LABEL

HEALTH_LABEL = "sagemaker.amazonaws.com/node-health-status"
SCHEDULABLE = "Schedulable"
# HyperPod puts it on every node it registers (AWS HyperPod EKS user guide); EKS managed nodes never carry it.
HYPERPOD_NODE_LABEL = "sagemaker.amazonaws.com/cluster-name"

# A controller that fits an m7i.large system node (2 vCPU, 8 GiB, 50 GB root volume; kubelet
# leaves about 1.9 CPU and 7 GiB allocatable): one CPU, 4 GB (SkyPilot keeps 2 GB of a
# controller's memory in reserve and sizes its job workers from the rest,
# ``sky/utils/controller_utils.py``), and a 10 GB ephemeral-storage request instead of 50.
CONTROLLER_CPUS = 1
CONTROLLER_MEMORY_GB = 4
CONTROLLER_DISK_GB = 10


def healthy_node_pod_config() -> dict[str, Any]:
    """The ``kubernetes.pod_config`` fragment every GPU pod gets."""
    return {"spec": {"nodeSelector": {HEALTH_LABEL: SCHEDULABLE}}}


def off_hyperpod_affinity() -> dict[str, Any]:
    """A required node-affinity term matching only nodes HyperPod did not register."""
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": HYPERPOD_NODE_LABEL, "operator": "DoesNotExist"}]}]
            }
        }
    }


def cpu_pod_affinity() -> dict[str, Any]:
    """System nodes, or healthy HyperPod nodes without GPUs (``skypilot.co/accelerator`` is on every
    HyperPod GPU node: the cluster construct and ``label-gpus`` put it there)."""
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": HYPERPOD_NODE_LABEL, "operator": "DoesNotExist"}]},
                    {
                        "matchExpressions": [
                            {"key": ACCELERATOR_LABEL, "operator": "DoesNotExist"},
                            {"key": HEALTH_LABEL, "operator": "In", "values": [SCHEDULABLE]},
                        ]
                    },
                ]
            }
        }
    }


def jobs_controller_resources(context: str | None) -> dict[str, Any]:
    """``jobs.controller.resources`` for a controller on the EKS system nodes of ``context``."""
    return {
        "infra": f"k8s/{context}" if context else "k8s",
        "cpus": str(CONTROLLER_CPUS),
        "memory": str(CONTROLLER_MEMORY_GB),
        "disk_size": CONTROLLER_DISK_GB,
        "_cluster_config_overrides": {"kubernetes": {"pod_config": {"spec": {"affinity": off_hyperpod_affinity()}}}},
    }


def with_jobs_controller_home(config: Any, context: str | None) -> tuple[Any, list[str]]:
    """``config`` (a SkyPilot ``Config``) with our controller resources under the user's own, and
    the keys of ours the user's ``jobs.controller.resources`` replaced (theirs win)."""
    ours = jobs_controller_resources(context)
    theirs = dict(config.get_nested(("jobs", "controller", "resources"), None) or {})
    config.set_nested(("jobs", "controller", "resources"), {**ours, **theirs})
    return config, sorted(k for k in theirs if k in ours and theirs[k] != ours[k])


def selected_health(pod_config: dict[str, Any]) -> str | None:
    """The health status a pod config selects, if any."""
    return ((pod_config.get("spec") or {}).get("nodeSelector") or {}).get(HEALTH_LABEL)


def placed(resources: Any) -> Any:
    """A copy of one ``sky.Resources`` whose pod config keeps it where it belongs: GPU pods on
    Schedulable nodes, CPU pods off GPU nodes and off unhealthy HyperPod nodes."""
    if resources.accelerators:
        pod_config = healthy_node_pod_config()
    else:
        pod_config = {"spec": {"affinity": cpu_pod_affinity()}}
    return resources.copy(_cluster_config_overrides={"kubernetes": {"pod_config": pod_config}})


def task_pod_config(resources: Any) -> dict[str, Any]:
    """The task-level ``config.kubernetes.pod_config`` one ``sky.Resources`` carries."""
    overrides = resources.cluster_config_overrides or {}
    return dict((overrides.get("kubernetes") or {}).get("pod_config") or {})
