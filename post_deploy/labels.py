"""``label-gpus``: give every HyperPod GPU node the ``skypilot.co/accelerator`` label SkyPilot needs.

Why not SkyPilot's own labeler: it needs kubectl, creates RBAC objects and one CUDA Job per node,
takes ten minutes or more, leaves pods Pending on tainted or busy nodes and exits 0 when it fails
(SkyPilot 0.14.1 ``sky/utils/kubernetes/gpu_labeler.py``). The instance type already tells us the
GPU, so the label is a pure function of ``node.kubernetes.io/instance-type`` (``config.gpu_types``)
and one PATCH per node that is missing it or has a wrong value (SkyPilot only understands lowercase
values).

Each PATCH carries the ``metadata.resourceVersion`` the decision was based on: if HyperPod or
anyone else changed the node in between, the API answers 409, and the node is re-read and
re-decided instead of overwriting a change we did not see. 429 and 5xx are retried with
backoff; whatever still fails is reported and turns the exit code into KUBERNETES_API.

The API client and its retries come from ``post_deploy.kube``, shared with ``wait-nodes``.
"""

from __future__ import annotations

import argparse
import functools
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from config.gpu_types import ACCELERATOR_LABEL, INSTANCE_TYPE_LABEL, accelerator_label
from post_deploy.common import StepError, add_common_args, emit_json, say
from post_deploy.exit_codes import ExitCode
from post_deploy.kube import api_error_text, call_with_retries, kube_api_client

CLUSTER_NAME_LABEL = "sagemaker.amazonaws.com/cluster-name"
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_WORKERS = 16
MAX_CONFLICT_RETRIES = 5


# ----- the reconciliation -----------------------------------------------------------------------
def _json(response: urllib3.BaseHTTPResponse) -> Any:
    """Body of a ``_preload_content=False`` response; the connection goes back to the pool drained."""
    try:
        return json.loads(response.read())
    finally:
        response.release_conn()


@dataclass(frozen=True)
class LabelChange:
    node: str
    instance_type: str
    old: str | None
    new: str


@dataclass(frozen=True)
class LabelFailure:
    node: str
    error: str


@dataclass
class LabelReport:
    dry_run: bool
    changed: list[LabelChange] = field(default_factory=list)  # applied, or planned on a dry run
    failed: list[LabelFailure] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # deleted while we worked (HyperPod replacement)
    already_correct: int = 0
    not_gpu: int = 0  # CPU HyperPod nodes and non-HyperPod nodes
    unknown_gpu_types: dict[str, str] = field(default_factory=dict)  # node -> ml.* type with GPUs, not in the table
    writes: int = 0  # PATCH requests sent, including ones answered with an error

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def desired_label(node: dict[str, Any]) -> str | None:
    """The accelerator value a node must carry, or None when label-gpus must leave it alone."""
    labels = node["metadata"].get("labels") or {}
    if CLUSTER_NAME_LABEL not in labels:
        return None
    instance_type = labels.get(INSTANCE_TYPE_LABEL, "")
    return accelerator_label(instance_type) if instance_type.startswith("ml.") else None


def _plan(node: dict[str, Any]) -> LabelChange | None:
    want = desired_label(node)
    labels = node["metadata"].get("labels") or {}
    have = labels.get(ACCELERATOR_LABEL)
    if want is None or have == want:
        return None
    return LabelChange(node["metadata"]["name"], labels.get(INSTANCE_TYPE_LABEL, ""), have, want)


class _Labeler:
    """Applies one node's change; a 409 means re-read, re-decide, re-patch (bounded)."""

    def __init__(self, api: k8s.CoreV1Api, sleep: Callable[[float], None]):
        self.api, self.sleep = api, sleep
        self.writes = 0
        self._lock = threading.Lock()

    def _patch(self, change: LabelChange, resource_version: str) -> None:
        with self._lock:
            self.writes += 1
        body = {"metadata": {"resourceVersion": resource_version, "labels": {ACCELERATOR_LABEL: change.new}}}
        _json(self.api.patch_node(change.node, body, _preload_content=False))

    def _read(self, name: str) -> Any:
        return _json(self.api.read_node(name, _preload_content=False))

    def apply(self, change: LabelChange, resource_version: str) -> tuple[str, Any]:
        for _ in range(MAX_CONFLICT_RETRIES + 1):
            try:
                call_with_retries(functools.partial(self._patch, change, resource_version), sleep=self.sleep)
                return "changed", change
            except ApiException as err:
                if err.status == 404:
                    return "gone", change.node
                if err.status != 409:
                    return "failed", LabelFailure(change.node, api_error_text(err))
            except urllib3.exceptions.HTTPError as err:
                return "failed", LabelFailure(change.node, api_error_text(err))
            # Conflict: someone else wrote the node. Decide again from what is there now.
            try:
                node = call_with_retries(functools.partial(self._read, change.node), sleep=self.sleep)
            except ApiException as err:
                if err.status == 404:
                    return "gone", change.node
                return "failed", LabelFailure(change.node, api_error_text(err))
            except urllib3.exceptions.HTTPError as err:
                return "failed", LabelFailure(change.node, api_error_text(err))
            fresh = _plan(node)
            if fresh is None:
                return "already_correct", change.node
            change, resource_version = fresh, node["metadata"]["resourceVersion"]
        return "failed", LabelFailure(
            change.node, f"still conflicting after {MAX_CONFLICT_RETRIES} re-reads (the node keeps changing)"
        )


def list_hyperpod_nodes(
    api: k8s.CoreV1Api, *, cluster_name: str | None = None, sleep: Callable[[float], None] = time.sleep
) -> list[dict[str, Any]]:
    """HyperPod nodes as plain dicts (parsing 1,000 nodes into V1Node objects would cost seconds)."""
    selector = f"{CLUSTER_NAME_LABEL}={cluster_name}" if cluster_name else CLUSTER_NAME_LABEL

    return call_with_retries(
        lambda: _json(api.list_node(label_selector=selector, _preload_content=False))["items"], sleep=sleep
    )


def reconcile_gpu_labels(
    api_client: k8s.ApiClient,
    *,
    dry_run: bool = False,
    workers: int = DEFAULT_WORKERS,
    cluster_name: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_change: Callable[[LabelChange], None] | None = None,
) -> LabelReport:
    """Make ``skypilot.co/accelerator`` match the instance type on every HyperPod GPU node.

    Raises ApiException / urllib3 errors only when the node list itself cannot be read;
    per-node failures land in ``report.failed``.
    """
    api = k8s.CoreV1Api(api_client)
    report = LabelReport(dry_run=dry_run)
    nodes = list_hyperpod_nodes(api, cluster_name=cluster_name, sleep=sleep)
    todo: list[tuple[LabelChange, str]] = []
    for node in nodes:
        name = node["metadata"]["name"]
        labels = node["metadata"].get("labels") or {}
        change = _plan(node)
        if change:
            todo.append((change, node["metadata"]["resourceVersion"]))
        elif desired_label(node):
            report.already_correct += 1
        else:
            report.not_gpu += 1
            gpus = (node.get("status") or {}).get("capacity", {}).get(GPU_RESOURCE, "0")
            if gpus not in ("0", "") and labels.get(INSTANCE_TYPE_LABEL, "").startswith("ml."):
                report.unknown_gpu_types[name] = labels[INSTANCE_TYPE_LABEL]
    if dry_run:
        report.changed = [change for change, _ in todo]
        for change in report.changed:
            if on_change:
                on_change(change)
        return report

    labeler = _Labeler(api, sleep)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="label-gpus") as pool:
        results = list(pool.map(lambda item: labeler.apply(*item), todo))
    for outcome, value in results:
        if outcome == "changed":
            report.changed.append(value)
            if on_change:
                on_change(value)
        elif outcome == "failed":
            report.failed.append(value)
        elif outcome == "gone":
            report.gone.append(value)
        else:
            report.already_correct += 1
    report.writes = labeler.writes
    return report


# ----- CLI --------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "label-gpus",
        help="set skypilot.co/accelerator on HyperPod GPU nodes from their instance type",
        description="Add or fix the skypilot.co/accelerator label on every HyperPod node whose ml.* "
        "instance type has NVIDIA GPUs (config/gpu_types.py), so SkyPilot sees them. CPU nodes, "
        "non-HyperPod nodes and correctly labelled nodes are left alone; a second run writes nothing. "
        "Needs get/list/patch on nodes. Exit code 7 if any node could not be labelled.",
    )
    add_common_args(parser)
    parser.add_argument(
        "--cluster-name", metavar="NAME", help="only nodes of this HyperPod cluster (default: every HyperPod node)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"concurrent PATCH requests (default {DEFAULT_WORKERS})",
    )
    parser.set_defaults(func=run)


def _describe(change: LabelChange, dry_run: bool) -> str:
    verb = "would set" if dry_run else "set"
    return (
        f"{change.node} ({change.instance_type}): {verb} {ACCELERATOR_LABEL} {change.old or '<unset>'} -> {change.new}"
    )


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        say(f"--workers must be at least 1, got {args.workers}")
        return ExitCode.USAGE
    try:
        api_client = kube_api_client(args.kubeconfig, args.context, pool_size=args.workers)
    except StepError as err:
        say(err.message)
        emit_json(args, {"step": "label-gpus", "ok": False, "error": err.message})
        return err.code
    with api_client:
        try:
            report = reconcile_gpu_labels(
                api_client,
                dry_run=args.dry_run,
                workers=args.workers,
                cluster_name=args.cluster_name,
                on_change=lambda c: say(_describe(c, args.dry_run)),
            )
        except (ApiException, urllib3.exceptions.HTTPError) as err:
            message = f"cannot list nodes: {api_error_text(err)}"
            say(message)
            emit_json(args, {"step": "label-gpus", "ok": False, "error": message})
            return ExitCode.KUBERNETES_API
    for failure in report.failed:
        say(f"{failure.node}: FAILED to set {ACCELERATOR_LABEL}: {failure.error}")
    for node in report.gone:
        say(f"{node}: deleted while labelling (replaced by HyperPod?); its replacement needs a new run")
    for node, instance_type in report.unknown_gpu_types.items():
        say(f"{node}: {instance_type} has {GPU_RESOURCE} but is not in config/gpu_types.py; not labelled")
    action = "would change" if args.dry_run else "changed"
    say(
        f"label-gpus: {action} {len(report.changed)}, already correct {report.already_correct}, "
        f"not GPU {report.not_gpu}, failed {len(report.failed)} ({report.writes} API writes)"
    )
    emit_json(args, {"step": "label-gpus", **report.to_dict()})
    return ExitCode.OK if report.ok else ExitCode.KUBERNETES_API
