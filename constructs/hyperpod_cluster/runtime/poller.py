"""One check of a HyperPod cluster per Step Functions loop iteration, and the WaitCondition signal at the end.

Errors of a check mean "wait" until the deadline (``report_error``; see ``wait.py``).

The state machine waits between checks (no Lambda idles), passes this function its own previous result
(``$.Check``) so a stateless function can still tell "an update was rolled back" from "the update has not
started yet", and stops when this function reports SUCCESS or FAILURE after signalling CloudFormation.

A check costs one DescribeCluster. ListClusterNodes is called only once the cluster is InService with every
group at its target count, to confirm that many nodes are actually Running (with NodeProvisioningMode
Continuous HyperPod reports InService before any node exists).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from . import aws, jsonlog, wait_handle

LOG = jsonlog.get_logger("hyperpod_cluster.poller")
WAIT, SUCCESS, FAILURE = "WAIT", "SUCCESS", "FAILURE"
_BUSY = ("Creating", "Updating", "SystemUpdating")
# The signal is the last call of a check; with two API calls it must fit the check's timeout (wait.py).
SIGNAL_TIMEOUT_SECONDS = 5


@dataclass
class Verdict:
    outcome: str
    status: str
    reason: str
    data: dict[str, Any] = field(default_factory=dict)
    rolled_back: bool = False


def handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point for both poller tasks: the Catch path hands over the error under ``Error``."""
    return report_error(event) if "Error" in event else check(event)


def check(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """State machine task: evaluate once, signal if finished, tell the Choice state what to do next."""
    name = event["ClusterName"]
    previous = event.get("Check") or {}
    verdict = evaluate(
        name,
        event["TargetCounts"],
        previous,
        karpenter_groups=tuple(event.get("KarpenterGroups", ())),
        autoscaling=bool(event.get("AutoScaling")),
        min_counts=event.get("MinCounts") or {},
    )
    if verdict.outcome == WAIT and time.time() >= event["DeadlineEpoch"]:
        verdict = Verdict(
            FAILURE,
            verdict.status,
            f"HyperPod cluster {name} was not ready before the deployment's wait limit "
            f"(hyperpod.creation_timeout_hours); last state: {verdict.reason}",
        )
    LOG.info(
        "check", extra={"cluster": name, "outcome": verdict.outcome, "status": verdict.status, "reason": verdict.reason}
    )
    if verdict.outcome != WAIT:
        wait_handle.send(
            event["WaitHandleUrl"],
            success=verdict.outcome == SUCCESS,
            reason=verdict.reason,
            unique_id=event["UniqueId"],
            data=json.dumps({"ClusterName": name, "Status": verdict.status, **verdict.data}),
            timeout=SIGNAL_TIMEOUT_SECONDS,
        )
        LOG.info("signalled CloudFormation", extra={"cluster": name, "outcome": verdict.outcome})
    return {
        "Outcome": verdict.outcome,
        "Status": verdict.status,
        "Reason": verdict.reason,
        "RolledBack": verdict.rolled_back or bool(previous.get("RolledBack")),
    }


def report_error(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """State machine Catch target: the check itself failed (after its retries). Before the deadline that
    means "look again next interval"; at the deadline CloudFormation gets FAILURE with the last error.

    Gets the whole state with the error under ``Error`` and returns the whole state without it (the task's
    ResultPath is ``$``), with a fresh ``Check`` the Choice state reads."""
    name = event["ClusterName"]
    error = event.get("Error") or {}
    cause = error.get("Cause", "")
    try:
        cause = json.loads(cause).get("errorMessage", cause)
    except (ValueError, AttributeError):
        pass
    previous = event.get("Check") or {}
    errors = int(previous.get("Errors", 0)) + 1
    detail = f"{error.get('Error', 'error')}: {cause}"
    state = {k: v for k, v in event.items() if k != "Error"}
    carried = {"Status": previous.get("Status", "Unknown"), "RolledBack": bool(previous.get("RolledBack"))}
    if time.time() < event["DeadlineEpoch"]:
        reason = f"checking HyperPod cluster {name} failed ({errors} in a row), will look again: {detail}"
        LOG.warning("check failed; waiting for the next interval", extra={"cluster": name, "reason": reason})
        return {**state, "Check": {"Outcome": WAIT, "Reason": reason, "Errors": errors, **carried}}
    reason = (
        f"HyperPod cluster {name} was not confirmed ready before the deployment's wait limit "
        f"(hyperpod.creation_timeout_hours); the last {errors} check(s) failed: {detail}"
    )
    wait_handle.send(
        event["WaitHandleUrl"],
        success=False,
        reason=reason,
        unique_id=event["UniqueId"],
        data=json.dumps({"ClusterName": name}),
        timeout=SIGNAL_TIMEOUT_SECONDS,
    )
    LOG.error("poller failed until the deadline; signalled FAILURE", extra={"cluster": name, "reason": reason})
    return {**state, "Check": {"Outcome": FAILURE, "Reason": reason, "Errors": errors, **carried}}


def evaluate(
    name: str,
    targets: dict[str, int],
    previous: dict[str, Any],
    *,
    karpenter_groups: tuple[str, ...] = (),
    autoscaling: bool = False,
    min_counts: dict[str, int] | None = None,
) -> Verdict:
    """One look at the cluster. Karpenter's groups have no target (their counts follow pending pods); with
    ``autoscaling`` the cluster is ready only once HyperPod reports its autoscaling InService, the point from
    which the HyperpodNodeClass can become Ready (AWS: "Create and configure a HyperPod cluster with
    Karpenter autoscaling"). A group with a MinInstanceCount is ready with that many Running nodes (continuous
    provisioning keeps adding the rest in the background)."""
    sagemaker = aws.client("sagemaker", "poll")
    rolled_back = bool(previous.get("RolledBack"))
    try:
        cluster = sagemaker.describe_cluster(ClusterName=name)
    except (ClientError, BotoCoreError) as exc:
        if aws.is_not_found(exc):
            return Verdict(
                FAILURE, "NotFound", f"HyperPod cluster {name} no longer exists (deleted while CloudFormation waited)"
            )
        # Throttling, timeouts, 5xx, even AccessDenied while IAM propagates: wait, until the deadline says.
        return Verdict(
            WAIT, previous.get("Status", "Unknown"), f"DescribeCluster not answered yet ({aws.describe(exc)})"
        )

    status = cluster["ClusterStatus"]
    message = cluster.get("FailureMessage") or ""
    groups = {g["InstanceGroupName"]: g for g in cluster.get("InstanceGroups", [])}
    progress = _progress(groups, targets)
    data = {"ClusterArn": cluster["ClusterArn"]}
    if status == "Failed":
        return Verdict(FAILURE, status, f"HyperPod cluster {name} failed: {message or 'no FailureMessage given'}", data)
    if status == "Deleting":
        return Verdict(FAILURE, status, f"HyperPod cluster {name} is being deleted", data)
    if status == "RollingBack":
        return Verdict(
            WAIT, status, f"RollingBack ({message or 'no FailureMessage yet'}); {progress}", data, rolled_back=True
        )
    if status in _BUSY:
        return Verdict(WAIT, status, f"{status}; {progress}", data, rolled_back=rolled_back)

    # InService (or a status this code does not know yet, which is treated like InService).
    failed = sorted(n for n, g in groups.items() if g.get("Status") == "Failed" and n in targets)
    if failed:
        nodes = _node_failures(sagemaker, name, failed)
        return Verdict(
            FAILURE, status, f"HyperPod cluster {name}: instance group(s) {', '.join(failed)} failed; {nodes}", data
        )
    scaled = set(karpenter_groups)
    mismatched = sorted(
        n for n in (set(targets) | set(groups)) - scaled if groups.get(n, {}).get("TargetCount") != targets.get(n)
    )
    if mismatched:
        if rolled_back or message:
            return Verdict(
                FAILURE,
                status,
                f"HyperPod cluster {name} rolled back the update: {message or 'no FailureMessage'}; {progress}",
                data,
            )
        return Verdict(
            WAIT,
            status,
            f"{status}; waiting for HyperPod to take the new targets of {', '.join(mismatched)}; {progress}",
            data,
        )
    needed = {n: (min_counts or {}).get(n, count) for n, count in targets.items()}
    if any(groups[n].get("CurrentCount", 0) < count for n, count in needed.items()):
        return Verdict(WAIT, status, f"{status}; {progress}", data)
    if autoscaling:
        scaling = cluster.get("AutoScaling") or {}
        scaling_status = scaling.get("Status", "not reported")
        if scaling_status == "Failed":
            return Verdict(
                FAILURE,
                status,
                f"HyperPod cluster {name}: autoscaling failed: {scaling.get('FailureMessage') or 'no FailureMessage'}",
                data,
            )
        if scaling.get("Mode") != "Enable" or scaling_status != "InService":
            return Verdict(
                WAIT, status, f"{status}; autoscaling {scaling.get('Mode', 'unset')}/{scaling_status}; {progress}", data
            )
    try:
        running = _running_nodes(sagemaker, name)
    except (ClientError, BotoCoreError) as exc:
        return Verdict(WAIT, status, f"{status}; ListClusterNodes not answered yet ({aws.describe(exc)})", data)
    short = {n: (running.get(n, 0), count) for n, count in needed.items() if running.get(n, 0) < count}
    if short:
        detail = ", ".join(f"{n} {have}/{want} Running" for n, (have, want) in sorted(short.items()))
        return Verdict(WAIT, status, f"{status}; nodes not all Running yet: {detail}", data)
    summary = ", ".join(f"{n} {running.get(n, 0)}/{targets[n]}" for n in sorted(targets)) or "no fixed-size groups"
    if scaled:
        summary += f"; Karpenter scales {', '.join(sorted(scaled))}"
    return Verdict(
        SUCCESS,
        status,
        f"HyperPod cluster {name} is InService with every node Running: {summary}",
        {**data, "Running": {n: running.get(n, 0) for n in sorted(targets)}},
    )


def _progress(groups: dict[str, dict[str, Any]], targets: dict[str, int]) -> str:
    parts = [f"{n} {groups.get(n, {}).get('CurrentCount', 0)}/{want}" for n, want in sorted(targets.items())]
    return "nodes " + ", ".join(parts)


def _list_nodes(sagemaker, name: str, group: str | None = None) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"ClusterName": name, "MaxResults": 100}
    if group:
        kwargs["InstanceGroupNameContains"] = group
    nodes: list[dict[str, Any]] = []
    while True:
        page = sagemaker.list_cluster_nodes(**kwargs)
        nodes.extend(page.get("ClusterNodeSummaries", []))
        if not page.get("NextToken"):
            return nodes
        kwargs["NextToken"] = page["NextToken"]


def _running_nodes(sagemaker, name: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in _list_nodes(sagemaker, name):
        if node.get("InstanceStatus", {}).get("Status") == "Running":
            counts[node["InstanceGroupName"]] = counts.get(node["InstanceGroupName"], 0) + 1
    return counts


def _node_failures(sagemaker, name: str, groups: list[str]) -> str:
    try:
        nodes = _list_nodes(sagemaker, name)
    except (ClientError, BotoCoreError) as exc:
        return f"node details unavailable ({aws.describe(exc)})"
    messages = sorted(
        {
            f"{n['InstanceGroupName']}/{n['InstanceId']}: {n['InstanceStatus'].get('Message') or 'Failure'}"
            for n in nodes
            if n["InstanceGroupName"] in groups and n.get("InstanceStatus", {}).get("Status") == "Failure"
        }
    )
    return "; ".join(messages[:3]) or "no node reported a failure message"
