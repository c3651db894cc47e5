"""``wait-nodes``: wait until the HyperPod cluster's nodes are registered, Ready and schedulable.

Why a separate wait: ``AWS::SageMaker::Cluster`` (and CreateCluster) can report InService before
any node has joined EKS (continuous provisioning), and a node that joined can still be running
deep health checks or be marked Unschedulable by HyperPod. SkyPilot would then see no GPUs, or
place pods on nodes that are about to be replaced. This step polls DescribeCluster (expected node
count = sum of the instance groups' TargetCount) and the nodes labelled with the cluster's name,
and ends with a distinct exit code per reason:

- CLUSTER_NOT_READY: the cluster is Failed/RollingBack/Deleting (its FailureMessage is shown),
  or still Creating/Updating when the time is up;
- NODES_UNHEALTHY: nodes with ``deep-health-check-status=Failed`` or
  ``node-health-status=Unschedulable*`` (at the deadline, or at once with ``--fail-fast``, since
  with automatic node recovery HyperPod may still replace them in time);
- NODES_TIMEOUT: otherwise not enough nodes Ready and schedulable by the deadline.

The clock and sleep are parameters so tests can drive whole sequences in milliseconds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import urllib3
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from rich.console import Console
from rich.live import Live
from rich.table import Table

from config.gpu_types import INSTANCE_TYPE_LABEL
from post_deploy import autoscaling
from post_deploy.common import AWS_RETRY_CONFIG, StepError, add_common_args, aws_failure, aws_session, emit_json, say
from post_deploy.exit_codes import ExitCode
from post_deploy.kube import api_error_text, kube_api_client
from post_deploy.labels import CLUSTER_NAME_LABEL, list_hyperpod_nodes

HEALTH_LABEL = "sagemaker.amazonaws.com/node-health-status"
DEEP_HEALTH_LABEL = "sagemaker.amazonaws.com/deep-health-check-status"
FAILED_CLUSTER_STATUSES = frozenset({"Failed", "RollingBack", "Deleting"})
DEFAULT_TIMEOUT = 3600.0
DEFAULT_POLL_INTERVAL = 15.0


@dataclass(frozen=True)
class NodeState:
    name: str
    instance_type: str
    ready: bool  # kubelet's Ready condition
    health: str | None  # node-health-status label
    deep_health: str | None  # deep-health-check-status label
    cordoned: bool  # spec.unschedulable

    @property
    def unhealthy(self) -> bool:
        return self.deep_health == "Failed" or (self.health or "").startswith("Unschedulable")

    @property
    def usable(self) -> bool:
        return (
            self.ready
            and not self.unhealthy
            and not self.cordoned
            and self.deep_health != "InProgress"
            and self.health in (None, "Schedulable")
        )

    def why_not_usable(self) -> str:
        reasons = []
        if not self.ready:
            reasons.append("NotReady")
        if self.health not in (None, "Schedulable"):
            reasons.append(f"{HEALTH_LABEL}={self.health}")
        if self.deep_health in ("InProgress", "Failed"):
            reasons.append(f"{DEEP_HEALTH_LABEL}={self.deep_health}")
        if self.cordoned:
            reasons.append("cordoned")
        return ", ".join(reasons)

    @classmethod
    def from_node(cls, node: dict[str, Any]) -> NodeState:
        labels = node["metadata"].get("labels") or {}
        conditions = (node.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return cls(
            node["metadata"]["name"],
            labels.get(INSTANCE_TYPE_LABEL, ""),
            ready,
            labels.get(HEALTH_LABEL),
            labels.get(DEEP_HEALTH_LABEL),
            bool((node.get("spec") or {}).get("unschedulable")),
        )


@dataclass
class Snapshot:
    """One poll: what SageMaker and Kubernetes said."""

    cluster_status: str
    failure_message: str | None
    expected: int
    nodes: list[NodeState] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # "name: current/target (status)"
    scaled: list[str] = field(default_factory=list)  # Karpenter's groups, not counted in ``expected``

    @property
    def usable(self) -> list[NodeState]:
        return [n for n in self.nodes if n.usable]

    @property
    def unhealthy(self) -> list[NodeState]:
        return [n for n in self.nodes if n.unhealthy]

    @property
    def done(self) -> bool:
        return self.cluster_status == "InService" and len(self.usable) >= self.expected

    def summary(self) -> str:
        return (
            f"cluster {self.cluster_status}; nodes registered {len(self.nodes)}/{self.expected}, "
            f"ready {len(self.usable)}/{self.expected}, unhealthy {len(self.unhealthy)}"
        )


@dataclass
class WaitResult:
    code: ExitCode
    message: str
    snapshot: Snapshot | None
    elapsed: float

    def to_dict(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "step": "wait-nodes",
            "ok": self.code == ExitCode.OK,
            "exit_code": int(self.code),
            "message": self.message,
            "elapsed_seconds": round(self.elapsed, 3),
            "cluster_status": snap.cluster_status if snap else None,
            "expected": snap.expected if snap else None,
            "nodes": [asdict(n) | {"usable": n.usable} for n in snap.nodes] if snap else [],
        }


class SageMakerClient(Protocol):
    def describe_cluster(self, *, ClusterName: str) -> dict[str, Any]: ...


def _describe(
    sagemaker: SageMakerClient, cluster_name: str, expected: int | None, karpenter_groups: tuple[str, ...] = ()
) -> Snapshot:
    try:
        cluster = sagemaker.describe_cluster(ClusterName=cluster_name)
    except (ClientError, BotoCoreError) as err:
        raise aws_failure(f"DescribeCluster {cluster_name!r} failed", err) from None
    groups = cluster.get("InstanceGroups") or []
    # A Karpenter group's count follows pending pods (0 when idle is normal); its nodes are not waited for.
    target = sum(g.get("TargetCount", 0) for g in groups if g["InstanceGroupName"] not in karpenter_groups)
    return Snapshot(
        cluster_status=cluster["ClusterStatus"],
        failure_message=cluster.get("FailureMessage"),
        expected=target if expected is None else expected,
        scaled=[g["InstanceGroupName"] for g in groups if g["InstanceGroupName"] in karpenter_groups],
        groups=[
            f"{g['InstanceGroupName']}: {g.get('CurrentCount', 0)}/{g.get('TargetCount', 0)} "
            f"{g.get('InstanceType', '')} ({g.get('Status', '?')})"
            for g in groups
        ],
    )


def poll_once(
    api: k8s.CoreV1Api,
    sagemaker: SageMakerClient,
    cluster_name: str,
    *,
    expected: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    karpenter_groups: tuple[str, ...] = (),
) -> Snapshot:
    snapshot = _describe(sagemaker, cluster_name, expected, karpenter_groups)
    try:
        nodes = list_hyperpod_nodes(api, cluster_name=cluster_name, sleep=sleep)
    except (ApiException, urllib3.exceptions.HTTPError) as err:
        raise StepError(ExitCode.KUBERNETES_API, f"cannot list nodes: {api_error_text(err)}") from None
    snapshot.nodes = sorted((NodeState.from_node(n) for n in nodes), key=lambda n: n.name)
    return snapshot


def _outcome(
    snapshot: Snapshot, cluster_name: str, timeout: float, *, final: bool, fail_fast: bool
) -> tuple[ExitCode, str] | None:
    """The result if this snapshot ends the wait, else None."""
    status = snapshot.cluster_status
    if status in FAILED_CLUSTER_STATUSES:
        reason = f": {snapshot.failure_message}" if snapshot.failure_message else ""
        return ExitCode.CLUSTER_NOT_READY, f"HyperPod cluster {cluster_name!r} is {status}{reason}"
    if snapshot.done:
        scaled = (
            f"; Karpenter scales {', '.join(snapshot.scaled)} (nodes come when pods need them)"
            if snapshot.scaled
            else ""
        )
        return ExitCode.OK, (
            f"{len(snapshot.usable)} of {snapshot.expected} expected nodes of "
            f"{cluster_name!r} are Ready and schedulable{scaled}"
        )
    unhealthy = snapshot.unhealthy
    if unhealthy and (final or fail_fast):
        listed = "; ".join(f"{n.name} ({n.instance_type}): {n.why_not_usable()}" for n in unhealthy)
        return ExitCode.NODES_UNHEALTHY, (
            f"{len(unhealthy)} node(s) of {cluster_name!r} marked unhealthy by HyperPod: {listed}"
        )
    if not final:
        return None
    if status != "InService":
        return ExitCode.CLUSTER_NOT_READY, (
            f"HyperPod cluster {cluster_name!r} still {status} after "
            f"{timeout:g} s ({'; '.join(snapshot.groups) or 'no instance groups'})"
        )
    waiting = [f"{n.name}: {n.why_not_usable()}" for n in snapshot.nodes if not n.usable]
    detail = f"; not ready: {'; '.join(waiting)}" if waiting else ""
    return ExitCode.NODES_TIMEOUT, (
        f"timed out after {timeout:g} s: {len(snapshot.nodes)} of {snapshot.expected} "
        f"nodes registered, {len(snapshot.usable)} ready and schedulable{detail}"
    )


def wait_for_nodes(
    api_client: k8s.ApiClient,
    sagemaker: SageMakerClient,
    cluster_name: str,
    *,
    expected: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    fail_fast: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_poll: Callable[[Snapshot, float], None] | None = None,
    karpenter_groups: tuple[str, ...] = (),
) -> WaitResult:
    """Poll until the nodes are usable, the cluster failed, or ``timeout`` seconds have passed.

    Raises StepError(AWS_API / KUBERNETES_API) when an API call fails after its retries.
    """
    api = k8s.CoreV1Api(api_client)
    start = clock()
    deadline = start + timeout
    while True:
        snapshot = poll_once(
            api, sagemaker, cluster_name, expected=expected, sleep=sleep, karpenter_groups=karpenter_groups
        )
        now = clock()
        if on_poll:
            on_poll(snapshot, now - start)
        outcome = _outcome(snapshot, cluster_name, timeout, final=now >= deadline, fail_fast=fail_fast)
        if outcome:
            return WaitResult(outcome[0], outcome[1], snapshot, now - start)
        sleep(max(0.0, min(poll_interval, deadline - now)))


# ----- progress display -------------------------------------------------------------------------
class ProgressView:
    """A live rich table on a terminal; otherwise one plain line whenever the summary changes."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self._last = ""

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.__exit__(None, None, None)

    def update(self, snapshot: Snapshot, elapsed: float) -> None:
        if self.live:
            self.live.update(self._table(snapshot, elapsed))
            return
        line = snapshot.summary()
        if line != self._last:
            self._last = line
            say(f"[{elapsed:6.0f}s] {line}")

    @staticmethod
    def _table(snapshot: Snapshot, elapsed: float) -> Table:
        table = Table(title=f"[{elapsed:.0f}s] {snapshot.summary()}", title_justify="left")
        for column in ("node", "instance type", "Ready", "health", "deep health", ""):
            table.add_column(column)
        for n in snapshot.nodes:
            table.add_row(
                n.name,
                n.instance_type,
                "yes" if n.ready else "no",
                n.health or "-",
                n.deep_health or "-",
                "ok" if n.usable else n.why_not_usable(),
            )
        return table


# ----- CLI --------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "wait-nodes",
        help="wait until the HyperPod cluster's nodes are Ready and schedulable",
        description="Poll SageMaker DescribeCluster and the Kubernetes nodes labelled "
        f"{CLUSTER_NAME_LABEL}=<name> until as many nodes as the instance groups' TargetCount "
        "(or --expected) are Ready, not cordoned, not in deep health checks and not marked "
        "Unschedulable by HyperPod. Exit codes: 4 cluster not InService (Failed, or still "
        "Creating/Updating at the deadline), 5 timeout, 6 nodes marked unhealthy.",
    )
    add_common_args(parser)
    parser.add_argument("--cluster-name", required=True, metavar="NAME", help="HyperPod cluster name")
    parser.add_argument(
        "--expected", type=int, metavar="N", help="nodes to wait for (default: sum of the instance groups' TargetCount)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up after this long (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between polls (default {DEFAULT_POLL_INTERVAL:g})",
    )
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first unhealthy node instead of waiting for HyperPod to replace it",
    )
    parser.add_argument(
        "--karpenter-groups",
        metavar="NAME[,NAME]",
        help="instance groups Karpenter scales (the HyperPodKarpenterGroups stack output): not waited for, "
        "0 nodes is normal",
    )
    parser.add_argument("--region", help="AWS region of the HyperPod cluster")
    parser.add_argument("--profile", help="AWS profile")
    parser.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> str | None:
    if args.expected is not None and args.expected < 0:
        return f"--expected must be 0 or more, got {args.expected}"
    if args.timeout <= 0:
        return f"--timeout must be positive, got {args.timeout:g}"
    if args.poll_interval <= 0:
        return f"--poll-interval must be positive, got {args.poll_interval:g}"
    return None


def run(
    args: argparse.Namespace,
    *,
    sagemaker: SageMakerClient | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    console: Console | None = None,
) -> int:
    if problem := _check_args(args):
        say(problem)
        return ExitCode.USAGE
    try:
        api_client = kube_api_client(args.kubeconfig, args.context)
        if sagemaker is None:
            sagemaker = aws_session(args.profile, args.region).client("sagemaker", config=AWS_RETRY_CONFIG)
        with api_client, ProgressView(console) as view:
            result = wait_for_nodes(
                api_client,
                sagemaker,
                args.cluster_name,
                expected=args.expected,
                timeout=args.timeout,
                poll_interval=args.poll_interval,
                fail_fast=args.fail_fast,
                clock=clock,
                sleep=sleep,
                on_poll=view.update,
                karpenter_groups=autoscaling.parse_groups(getattr(args, "karpenter_groups", None)),
            )
    except StepError as err:
        say(err.message)
        emit_json(args, {"step": "wait-nodes", "ok": False, "exit_code": int(err.code), "message": err.message})
        return err.code
    say(result.message if result.code == ExitCode.OK else f"wait-nodes FAILED: {result.message}")
    emit_json(args, result.to_dict())
    return result.code
