"""Offline checks of a SkyPilot task YAML before anything is provisioned on the GPUs.

``sky.Task.from_yaml`` catches typos in top-level and ``resources`` keys, but the SkyPilot client
deliberately lets unknown keys under ``config:`` through for its API server to judge
(``sky.utils.schemas._allow_additional_properties``), and nobody checks that
``config.kubernetes.pod_config`` makes a valid pod until the API server rejects it minutes into a
launch. Both are checked here:

* ``config:`` against SkyPilot's own task-config schema built the way its API server builds it
  (unknown keys rejected), so ``pod_confg`` fails before the launch instead of during it;
* ``pod_config`` merged, with SkyPilot's own merge function, into a pod shaped like the one
  SkyPilot renders (container ``ray-node``, the task's image and GPU request), then validated
  against the Kubernetes OpenAPI schema of the cluster's version (strict: unknown fields fail),
  plus the API server's rule that extended resources (GPUs, EFA) request exactly their limit.

Every task must also target Kubernetes (``resources.infra: k8s``): this stack has no other cloud,
and an unpinned task would let the optimizer consider clouds that are not configured.

EFA is requested explicitly (``vpc.amazonaws.com/efa`` in the pod config), never through
``resources.network_tier: best``: SkyPilot 0.14.1 then takes the EFA count from the first node
that carries the accelerator label *key* and enough GPUs, whatever its GPU type
(``sky/clouds/kubernetes.py`` ``_detect_network_type``: on a mixed fleet H100:8 can get 1 EFA and
A10G:8 can get 32 and never schedule), and it silently runs over TCP when no node carries AWS
topology labels. An explicit count is refused when no instance type with that GPU offers it
(``config.gpu_types``), since such a pod would stay Pending.

The task comes back as ``submit`` launches it: each GPU resource selects healthy HyperPod nodes
(``post_deploy.placement``), and the pods checked here include that selector.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate.utils import VersionNotSupportedError

from config.gpu_types import GPU_INSTANCE_TYPES
from config.model import EksConfig
from post_deploy import placement

# The EKS version the stacks deploy by default; the schema the pod is checked against.
DEFAULT_K8S_VERSION = EksConfig.model_fields["version"].default
GPU_RESOURCE = "nvidia.com/gpu"
EFA_RESOURCE = "vpc.amazonaws.com/efa"
# Resources Kubernetes lets a container request below its limit; every other (extended) resource
# must request exactly its limit or the API server refuses the pod.
_OVERCOMMITTABLE = ("cpu", "memory", "ephemeral-storage")


class TaskInvalid(ValueError):
    """A task YAML failed an offline check; the message is one line naming the file and key."""


@dataclass
class ValidatedTask:
    path: Path
    task: Any  # sky.Task, as submit launches it (GPU resources select healthy nodes)
    pod: dict  # the pod spec of its first resources (SkyPilot base pod + pod_config)
    warnings: list[str] = field(default_factory=list)
    pods: list[dict] = field(default_factory=list)  # one per resources alternative, in task order


def validate_task_file(path: str | Path, k8s_version: str = DEFAULT_K8S_VERSION) -> ValidatedTask:
    """Run every offline check on one task file; raise ``TaskInvalid`` with one line on failure."""
    path = Path(path)
    raw = _read_yaml(path)
    check_config_block(raw.get("config"), where=str(path))
    task = _parse_with_skypilot(path)
    _require_kubernetes(task, path)
    _refuse_network_tier_best(task, path)
    where = f"{path}: config.kubernetes.pod_config"
    pod_config = ((raw.get("config") or {}).get("kubernetes") or {}).get("pod_config") or {}
    if not isinstance(pod_config, dict):
        raise TaskInvalid(f"{where} must be a mapping, got {type(pod_config).__name__}")
    health = placement.selected_health(pod_config)
    if health not in (None, placement.SCHEDULABLE):
        raise TaskInvalid(
            f"{where}: spec.nodeSelector.{placement.HEALTH_LABEL} = {health}: GPU pods run only on "
            f"{placement.SCHEDULABLE} nodes (HyperPod is about to reboot or replace the others)"
        )
    task.set_resources(type(task.resources)(placement.with_healthy_node_selector(r) for r in task.resources))
    pods = []
    for resources in task.resources:
        pod = merged_pod(task, placement.task_pod_config(resources), resources)
        check_pod(pod, k8s_version, where=where)
        check_efa_request(resources, efa_request(pod), where=where)
        pods.append(pod)
    warnings = []
    if any(r.image_id is None for r in task.resources):
        warnings.append(f"{path}: resources.image_id is not pinned; SkyPilot will pick its default image")
    if task.num_nodes > 1 and any(
        efa_request(p) == 0 and _offers_efa(r) for r, p in zip(task.resources, pods, strict=True)
    ):
        warnings.append(
            f"{path}: {task.num_nodes} nodes but no {EFA_RESOURCE} request: NCCL between the nodes will use TCP "
            "although the instance type has EFA (request it in config.kubernetes.pod_config)"
        )
    return ValidatedTask(path=path, task=task, pod=pods[0], warnings=warnings, pods=pods)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise TaskInvalid(f"{path}: task file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskInvalid(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TaskInvalid(f"{path}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise TaskInvalid(f"{path}: a task YAML must be a mapping of keys (name, resources, run, ...)")
    return data


def _parse_with_skypilot(path: Path):
    import sky  # heavy import (~1.5 s): only when a task is actually checked

    try:
        return sky.Task.from_yaml(str(path))
    except Exception as exc:  # SkyPilot raises ValueError, InvalidSkyPilotConfigError, KeyError, ...
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise TaskInvalid(f"{path}: {first}") from None


def _require_kubernetes(task, path: Path) -> None:
    from sky import clouds

    for resources in task.resources:
        if resources.cloud is None or not clouds.Kubernetes().is_same_cloud(resources.cloud):
            raise TaskInvalid(
                f"{path}: resources.infra must be k8s (this stack runs tasks on the HyperPod "
                f"EKS cluster), got {resources.infra.to_str() if resources.infra else None!r}"
            )


def _refuse_network_tier_best(task, path: Path) -> None:
    from sky.utils import resources_utils

    if any(r.network_tier == resources_utils.NetworkTier.BEST for r in task.resources):
        raise TaskInvalid(
            f"{path}: resources.network_tier = best: on HyperPod SkyPilot sizes EFA from whichever GPU node it "
            f"lists first and falls back to TCP without telling; request {EFA_RESOURCE} in "
            "config.kubernetes.pod_config instead (requests == limits; counts per instance type in config/gpu_types.py)"
        )


# --- EFA ---------------------------------------------------------------------------------------------


def _gpu_request(resources) -> tuple[str, int] | None:
    if not resources.accelerators:
        return None
    name, count = next(iter(resources.accelerators.items()))
    return name, int(count)


def efa_offers(accelerator: str, count: int) -> dict[str, int]:
    """EFA interfaces of each ``ml.*`` type with ``count`` or more ``accelerator`` GPUs per node."""
    return {
        instance_type: spec.efa_interfaces
        for instance_type, spec in GPU_INSTANCE_TYPES.items()
        if spec.accelerator == accelerator.lower() and spec.count >= count
    }


def _offers_efa(resources) -> bool:
    gpu = _gpu_request(resources)
    return bool(gpu) and any(efa_offers(*gpu).values())


def check_efa_request(resources, requested: int, where: str) -> None:
    """Refuse an EFA count no instance type with this GPU request offers: the pod would never schedule."""
    if not requested:
        return
    gpu = _gpu_request(resources)
    if gpu is None:
        raise TaskInvalid(f"{where}: {EFA_RESOURCE} = {requested}: EFA interfaces need a GPU request (accelerators)")
    offers = efa_offers(*gpu)
    most = max(offers.values(), default=0)
    if requested > most:
        best = ", ".join(f"{t}: {n}" for t, n in sorted(offers.items(), key=lambda kv: (-kv[1], kv[0])) if n == most)
        raise TaskInvalid(
            f"{where}: {EFA_RESOURCE} = {requested}: more than any instance type with {gpu[0]}:{gpu[1]} offers "
            + (f"(at most {most}, {best})" if offers else "(no instance type in config/gpu_types.py has that many)")
        )


# --- config: block --------------------------------------------------------------------------------


@contextlib.contextmanager
def _server_side_schema_strictness() -> Iterator[None]:
    """Build SkyPilot's schemas as its API server does after loading plugins: unknown keys fail.

    The client build allows unknown keys so a newer server can accept keys an older client does
    not know; this project pins client and server to the same SkyPilot, so the strict build is
    the verdict the server would give.
    """
    from sky.utils import schemas

    original = schemas._allow_additional_properties
    schemas._allow_additional_properties = lambda: False
    try:
        yield
    finally:
        schemas._allow_additional_properties = original


def strict_task_config_schema() -> dict:
    from sky.utils import schemas

    with _server_side_schema_strictness():
        return schemas.get_task_schema()["properties"]["config"]


def check_config_block(config: Any, where: str) -> None:
    """Validate a task's ``config:`` block against SkyPilot's strict schema."""
    if config is None:
        return
    from sky.utils import validator

    schema = strict_task_config_schema()
    errors = sorted(validator.get_schema_validator()(schema).iter_errors(config), key=lambda e: list(e.path))
    if not errors:
        return
    error = errors[0]
    key_path = ".".join(["config", *map(str, error.path)])
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set((error.schema.get("properties") or {}).keys())
        unknown = [k for k in error.instance if k not in known]
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, 1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TaskInvalid(
            f"{where}: {key_path}: unknown key {', '.join(hints)}; known keys: {', '.join(sorted(known))}"
        )
    raise TaskInvalid(f"{where}: {key_path}: {error.message}")


# --- pod_config ------------------------------------------------------------------------------------


def base_pod(task, resources=None) -> dict:
    """The parts of SkyPilot's rendered pod (sky/templates/kubernetes-ray.yml.j2) a pod_config
    merges into: one ``ray-node`` container with the task's image and GPU request."""
    resources = resources or next(iter(task.resources))
    image = None
    if resources.image_id:
        image = next(iter(resources.image_id.values()))
        image = image[len("docker:") :] if image.startswith("docker:") else image
    requests: dict[str, Any] = {"cpu": "1", "memory": "1G"}
    limits: dict[str, Any] = {}
    if resources.accelerators:
        count = int(sum(resources.accelerators.values()))
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = count
    container = {
        "name": "ray-node",
        "image": image or "skypilot-default-image",
        "command": ["/bin/bash", "-c", "--"],
        "args": ["sleep infinity"],
        "resources": {"requests": requests, **({"limits": limits} if limits else {})},
    }
    name = (task.name or "task").lower()
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-head", "labels": {"skypilot-cluster": name}},
        "spec": {"restartPolicy": "Never", "containers": [container]},
    }


def merged_pod(task, pod_config: dict, resources=None) -> dict:
    """SkyPilot's base pod with ``pod_config`` merged the way SkyPilot merges it."""
    from sky.utils import config_utils

    if not isinstance(pod_config, dict):
        raise TaskInvalid(f"config.kubernetes.pod_config must be a mapping, got {type(pod_config).__name__}")
    pod = base_pod(task, resources)
    try:
        config_utils.merge_k8s_configs(pod, copy.deepcopy(pod_config))
    except (ValueError, TypeError, AttributeError) as exc:
        raise TaskInvalid(f"config.kubernetes.pod_config cannot be merged into SkyPilot's pod: {exc}") from None
    return pod


def check_pod(pod: dict, k8s_version: str, where: str) -> None:
    """The merged pod against the Kubernetes schema and the extended-resource request rule."""
    known = schema_versions()
    if ".".join(k8s_version.removeprefix("v").split(".")[:2]) not in known:
        # kubernetes_validate compares versions as strings and falls back to older schemas, so an
        # unknown version would be checked against the wrong API (or crash); refuse it instead.
        raise TaskInvalid(
            f"{where}: cannot check against Kubernetes {k8s_version}: no schema for it (have {known[0]}..{known[-1]})"
        )
    try:
        kubernetes_validate.validate(pod, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise TaskInvalid(
            f"{where}: invalid pod for Kubernetes {k8s_version} at {path or '<pod>'}: {exc.message}"
        ) from None
    except (
        kubernetes_validate.SchemaNotFoundError,
        kubernetes_validate.InvalidSchemaError,
        VersionNotSupportedError,
    ) as exc:
        raise TaskInvalid(f"{where}: cannot check against Kubernetes {k8s_version}: {exc.message}") from None
    for kind in ("containers", "initContainers"):
        for container in pod.get("spec", {}).get(kind) or []:
            res = container.get("resources") or {}
            requests, limits = res.get("requests") or {}, res.get("limits") or {}
            for name in set(requests) | set(limits):
                if name in _OVERCOMMITTABLE or name.startswith("hugepages-"):
                    continue
                if name in requests and name in limits and str(requests[name]) != str(limits[name]):
                    raise TaskInvalid(
                        f"{where}: container {container.get('name')!r}: {name} request "
                        f"{requests[name]} must equal its limit {limits[name]} (extended resource)"
                    )


def schema_versions() -> list[str]:
    """The Kubernetes minor versions kubernetes_validate ships schemas for, oldest first."""
    from kubernetes_validate.utils import all_versions, major_minor

    versions = {major_minor(v) for v in all_versions()}
    return sorted(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


def efa_request(pod: dict) -> int:
    """EFA interfaces the pod's containers request (0 when none)."""
    return sum(
        int((c.get("resources", {}).get("requests") or {}).get(EFA_RESOURCE, 0))
        for c in pod.get("spec", {}).get("containers") or []
    )
