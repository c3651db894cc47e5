"""Provider-framework handlers for the HyperPod cluster custom resource.

``on_event`` starts work and returns within seconds; it never waits for HyperPod. Waiting happens
elsewhere: for Create/Update a CloudFormation WaitCondition (up to 12 h) released by the poller state
machine that ``on_event`` starts; for Delete the framework's ``is_complete`` loop (the cluster must be gone
before CloudFormation removes the EKS cluster and subnets it uses, and deletion fits in the 1-hour limit).

Ordering rules that keep failures clean:
* Every check (validation, refusals, ownership, status) runs before the first mutating call.
* On Create, CreateCluster is the last call: an exception in ``on_event`` during Create makes the
  framework skip the rollback Delete, so nothing may exist yet when ``on_event`` can still fail.
* On Update, AddTags/DeleteTags follow UpdateCluster: a tag call that fails then fails the update
  after HyperPod took the new spec, and CloudFormation's rollback sends the old spec back as an Update.
* A retried Create adopts a cluster of the same name only if this stack's owner tag is on it (the current
  value, or one an earlier version wrote: ``LegacyOwnerTagValues``) and its spec matches; anything else is
  refused with the command-free fix (delete it or rename). The next update re-tags it with the current value.
* Errors reach CloudFormation as one line naming the cluster, the operation and HyperPod's own message.

Updates never fail because HyperPod is busy. UpdateCluster needs the cluster InService, but an update (and
above all CloudFormation's rollback, which sends the previous spec back while HyperPod may still be Updating,
SystemUpdating or RollingBack) can arrive at any time. Then ``on_event`` changes nothing and marks the event
deferred (a top-level key the Provider framework hands to ``is_complete`` unchanged); ``is_complete`` applies
the update once the cluster is InService again. If it is still busy at the handler's deadline (or Failed),
nothing is changed and the resource succeeds, so a rollback always completes; the spec's own WaitCondition
gets a FAILURE naming the status instead, so a forward update still fails (and rolls back) with that message.
Without a WaitCondition the deadline fails the update unless the live cluster already has the wanted counts.

Deadlines: the handler gives up at ``HANDLER_DEADLINE_SECONDS`` after ``on_event``; the Provider's total
timeout (``infrastructure.PROVIDER_TOTAL_TIMEOUT``) is longer by one ``is_complete`` run and one poll
interval, and CloudFormation's custom-resource limit (3600 s) is longer still, so CloudFormation always
receives this handler's message rather than a bare timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from . import aws, jsonlog, spec, wait_handle
from .spec import Properties, SpecError

LOG = jsonlog.get_logger("hyperpod_cluster.handler")
POLLER_ENV = "POLLER_STATE_MACHINE_ARN"
# The poller reports a timeout (with the last status) this long before the WaitCondition itself expires.
DEADLINE_MARGIN_SECONDS = 300
# How long is_complete keeps waiting (a deferred update, a deletion) before it answers CloudFormation itself.
HANDLER_DEADLINE_SECONDS = 45 * 60
# The most AWS calls one on_event / is_complete makes (an update: describe, list tags, start the poller,
# UpdateCluster, add and delete tags; is_complete of a deferred update adds one describe).
ON_EVENT_MAX_CALLS = 6
IS_COMPLETE_MAX_CALLS = 7
# Top-level keys of on_event's result: the framework passes them to is_complete, but not to CloudFormation.
DEFERRED_KEY = "DeferredUpdate"
DELETE_DEADLINE_KEY = "DeleteDeadlineEpoch"
_CLUSTER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class HandlerError(RuntimeError):
    """A failure phrased for the CloudFormation console: one line, what failed and what to do."""


def on_event(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    kind = event.get("RequestType")
    LOG.info(
        "custom resource event",
        extra={
            "request_type": kind,
            "physical_id": event.get("PhysicalResourceId"),
            "logical_id": event.get("LogicalResourceId"),
        },
    )
    try:
        if kind == "Create":
            return _create(Properties.parse(event.get("ResourceProperties", {})), event["RequestId"])
        if kind == "Update":
            return _update(event)
        if kind == "Delete":
            return _delete(event["PhysicalResourceId"])
    except SpecError as exc:
        raise HandlerError(str(exc)) from None
    except ClientError as exc:
        raise HandlerError(_api_failure(exc, event)) from None
    except BotoCoreError as exc:
        raise HandlerError(f"AWS API unreachable after retries: {aws.describe(exc)}") from None
    raise HandlerError(f"unknown RequestType {kind!r}")


def is_complete(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Polled by the framework. Transient API errors mean "not yet": an exception here fails at once."""
    name = event.get("PhysicalResourceId", "")
    try:
        if event.get("RequestType") == "Delete":
            done = _deleted(name)
            LOG.info("delete progress", extra={"cluster": name, "complete": done})
            if not done and time.time() >= event.get(DELETE_DEADLINE_KEY, float("inf")):
                raise HandlerError(
                    f"HyperPod cluster {name} was still being deleted after {HANDLER_DEADLINE_SECONDS // 60} "
                    "minutes; CloudFormation stops waiting here. Delete the stack again once DescribeCluster "
                    "reports it gone (the deletion goes on)"
                )
            return {"IsComplete": done}
        if event.get("RequestType") == "Update" and event.get(DEFERRED_KEY):
            return _apply_deferred(event)
        return _accepted(name)
    except (ClientError, BotoCoreError) as exc:
        if aws.is_transient(exc):
            LOG.warning("transient error, will poll again", extra={"cluster": name, "error": aws.describe(exc)})
            return {"IsComplete": False}
        if isinstance(exc, ClientError):
            raise HandlerError(_api_failure(exc, event)) from None
        raise HandlerError(f"AWS API unreachable for HyperPod cluster {name}: {aws.describe(exc)}") from None


# --- Create ---------------------------------------------------------------------------------------


def _create(props: Properties, request_id: str) -> dict[str, Any]:
    name = props.cluster_name
    existing = _describe(name)
    if existing is not None:
        _check_adoptable(props, existing)
        LOG.info("adopting existing cluster", extra={"cluster": name, "status": existing["ClusterStatus"]})
        _start_poller(props, "Create", request_id)
        return _result(name, existing["ClusterArn"])
    _start_poller(props, "Create", request_id)
    LOG.info("CreateCluster", extra={"cluster": name, "groups": spec.target_counts(props.request)})
    arn = _sagemaker().create_cluster(**props.request)["ClusterArn"]
    return _result(name, arn)


def _check_adoptable(props: Properties, existing: dict[str, Any]) -> None:
    name, status = props.cluster_name, existing["ClusterStatus"]
    if status == "Deleting":
        raise HandlerError(
            f"a HyperPod cluster named {name} is still being deleted; deploy again once it is gone, "
            "or choose another hyperpod.cluster_name"
        )
    tags = _tags(existing["ClusterArn"])
    owner = tags.get(props.owner_tag_key)
    if owner not in props.accepted_owner_tag_values:
        raise HandlerError(
            f"a HyperPod cluster named {name} already exists (status {status}) and was not created by this stack "
            f"(tag {props.owner_tag_key} is {owner!r}, expected {props.owner_tag_value!r}); delete it or choose "
            "another hyperpod.cluster_name"
        )
    mismatches = spec.adoption_mismatches(props.request, existing, props.karpenter_groups)
    if mismatches:
        raise HandlerError(
            f"HyperPod cluster {name} already exists from an earlier attempt with a different spec "
            f"({'; '.join(mismatches)}); delete it or choose another hyperpod.cluster_name"
        )


# --- Update ---------------------------------------------------------------------------------------


def _update(event: dict[str, Any]) -> dict[str, Any]:
    props = Properties.parse(event.get("ResourceProperties", {}))
    name = props.cluster_name
    if name != event["PhysicalResourceId"]:
        # A new name is a replacement: create the new cluster; CloudFormation deletes the old one afterwards.
        LOG.info("replacing cluster", extra={"old": event["PhysicalResourceId"], "new": name})
        return _create(props, event["RequestId"])
    actual = _describe(name)
    if actual is None:
        raise HandlerError(
            f"HyperPod cluster {name} no longer exists (deleted outside CloudFormation?); "
            "change hyperpod.cluster_name to create a new one"
        )
    problems = spec.refusals(props.request, actual)
    if problems:
        raise HandlerError(spec.refusal_message(name, problems))
    previous = _previous_request(event.get("OldResourceProperties"))
    update_needed = spec.needs_update(props.request, previous, actual, props.karpenter_groups)
    status = actual["ClusterStatus"]
    if update_needed and status != "InService":
        LOG.info("update deferred until the cluster is InService", extra={"cluster": name, "status": status})
        deferred = {"Until": int(time.time()) + HANDLER_DEADLINE_SECONDS, "Status": status}
        return {**_result(name, actual["ClusterArn"]), DEFERRED_KEY: deferred}
    return _apply_update(props, event, actual, update_needed)


def _apply_update(props: Properties, event: dict[str, Any], actual: dict[str, Any], update_needed: bool):
    """Retag, start the poller, then UpdateCluster last (the cluster is InService, or nothing needs it)."""
    name, arn = props.cluster_name, actual["ClusterArn"]
    add, remove = _tag_changes(props, arn)
    _start_poller(props, "Update", event["RequestId"])
    if update_needed:
        request = spec.update_request(props.request, actual, props.karpenter_groups)
        LOG.info(
            "UpdateCluster",
            extra={
                "cluster": name,
                "groups": spec.target_counts(props.request),
                "deleting": request.get("InstanceGroupsToDelete", []),
                "autoscaling": request.get("AutoScaling", {}).get("Mode", "unchanged"),
            },
        )
        _sagemaker().update_cluster(**request)
    if add:
        _sagemaker().add_tags(ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in sorted(add.items())])
    if remove:
        _sagemaker().delete_tags(ResourceArn=arn, TagKeys=sorted(remove))
    return _result(name, arn)


def _apply_deferred(event: dict[str, Any]) -> dict[str, Any]:
    """is_complete of a deferred update: apply it once InService; give up at the deadline or on Failed."""
    props = Properties.parse(event.get("ResourceProperties", {}))
    name = props.cluster_name
    actual = _describe(name)
    if actual is None:
        raise HandlerError(
            f"HyperPod cluster {name} no longer exists (deleted outside CloudFormation?); "
            "change hyperpod.cluster_name to create a new one"
        )
    status = actual["ClusterStatus"]
    if status == "InService":
        problems = spec.refusals(props.request, actual)
        if problems:
            raise HandlerError(spec.refusal_message(name, problems))
        previous = _previous_request(event.get("OldResourceProperties"))
        _apply_update(props, event, actual, spec.needs_update(props.request, previous, actual, props.karpenter_groups))
        LOG.info("deferred update applied", extra={"cluster": name})
        return {"IsComplete": True, "Data": {"ClusterStatus": status}}
    if status != "Failed" and time.time() < event[DEFERRED_KEY]["Until"]:
        LOG.info("deferred update still waiting", extra={"cluster": name, "status": status})
        return {"IsComplete": False}
    return _give_up(props, actual)


def _give_up(props: Properties, actual: dict[str, Any]) -> dict[str, Any]:
    """Leave the cluster as it is. With a WaitCondition, fail that instead of the resource (see module doc)."""
    name, status = props.cluster_name, actual["ClusterStatus"]
    detail = f" ({actual['FailureMessage']})" if actual.get("FailureMessage") else ""
    state = status if status == "Failed" else f"still {status} after {HANDLER_DEADLINE_SECONDS // 60} minutes"
    reason = (
        f"HyperPod cluster {name} is {state}{detail}; UpdateCluster needs it InService. "
        "Nothing was changed; deploy again once it is InService"
    )
    if props.wait_handle_url is not None:
        try:
            wait_handle.send(
                props.wait_handle_url,
                success=False,
                reason=reason,
                unique_id=name,
                data=json.dumps({"ClusterName": name, "Status": status}),
            )
        except wait_handle.SignalError as exc:
            # Failing here would fail a rollback; a forward update's WaitCondition then times out instead.
            LOG.error("could not signal the WaitCondition", extra={"cluster": name, "error": str(exc)})
        LOG.warning("deferred update not applied; signalled FAILURE", extra={"cluster": name, "reason": reason})
        return {"IsComplete": True, "Data": {"ClusterStatus": status}}
    fixed = set(spec.groups_of(props.request)) - set(props.karpenter_groups)  # Karpenter's counts move on their own
    have = {g: d.get("TargetCount") for g, d in spec.groups_of(actual).items() if g in fixed}
    if have == {g: c for g, c in spec.target_counts(props.request).items() if g in fixed}:
        LOG.warning("deferred update not applied; the live counts already match", extra={"cluster": name})
        return {"IsComplete": True, "Data": {"ClusterStatus": status}}
    raise HandlerError(reason)


def _previous_request(old_props: dict[str, Any] | None) -> dict[str, Any] | None:
    """The request from the previous deployment, if it parses; only used to spot in-place changes."""
    try:
        return Properties.parse(old_props or {}).request
    except SpecError:
        return None


def _tag_changes(props: Properties, arn: str) -> tuple[dict[str, str], set[str]]:
    want = spec.tags_of(props.request)
    have = _tags(arn)
    add = {k: v for k, v in want.items() if have.get(k) != v}
    remove = {k for k in have if k not in want and not k.startswith("aws:")}
    return add, remove


# --- Delete ---------------------------------------------------------------------------------------


def _delete(physical_id: str) -> dict[str, Any]:
    if not _CLUSTER_NAME.match(physical_id or ""):
        LOG.info("nothing to delete: physical id is not a cluster name", extra={"physical_id": physical_id})
        return {}
    _request_delete(physical_id)
    return {DELETE_DEADLINE_KEY: int(time.time()) + HANDLER_DEADLINE_SECONDS}


def _request_delete(name: str) -> None:
    """DeleteCluster; a missing cluster is already deleted and a busy one is retried by ``is_complete``."""
    try:
        LOG.info("DeleteCluster", extra={"cluster": name})
        _sagemaker().delete_cluster(ClusterName=name)
    except ClientError as exc:
        if aws.is_not_found(exc):
            LOG.info("cluster already gone", extra={"cluster": name})
            return
        if aws.error_code(exc) == "ConflictException":
            LOG.info("DeleteCluster refused for now, will retry", extra={"cluster": name, "error": aws.describe(exc)})
            return
        raise


def _deleted(name: str) -> bool:
    if not _CLUSTER_NAME.match(name or ""):
        return True
    cluster = _describe(name)
    if cluster is None:
        return True
    if cluster["ClusterStatus"] != "Deleting":
        # DeleteCluster was refused while the cluster was busy, or an earlier deletion failed: ask again.
        _request_delete(name)
    return False


# --- Create/Update acceptance ---------------------------------------------------------------------


def _accepted(name: str) -> dict[str, Any]:
    """Create/Update return once HyperPod accepted the request; the WaitCondition does the long wait."""
    cluster = _describe(name)
    if cluster is None:
        raise HandlerError(f"HyperPod cluster {name} does not exist right after it was requested")
    if cluster["ClusterStatus"] == "Failed":
        raise HandlerError(f"HyperPod cluster {name} failed: {cluster.get('FailureMessage') or 'no FailureMessage'}")
    return {"IsComplete": True, "Data": {"ClusterStatus": cluster["ClusterStatus"]}}


# --- shared ---------------------------------------------------------------------------------------


def _sagemaker():
    return aws.client("sagemaker", "event")


def _describe(name: str) -> dict[str, Any] | None:
    try:
        return _sagemaker().describe_cluster(ClusterName=name)
    except ClientError as exc:
        if aws.is_not_found(exc):
            return None
        raise


def _tags(arn: str) -> dict[str, str]:
    return aws.sagemaker_tags(_sagemaker(), arn)


def _start_poller(props: Properties, operation: str, request_id: str) -> None:
    """Start the poller that signals the WaitCondition. Same request, same execution name: a retried event
    finds the execution already running instead of starting a second one."""
    if props.wait_handle_url is None:
        return
    state_machine = os.environ.get(POLLER_ENV)
    if not state_machine:
        raise HandlerError(f"WaitHandleUrl is set but {POLLER_ENV} is not; the construct sets both")
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:16]
    payload = {
        "ClusterName": props.cluster_name,
        "WaitHandleUrl": props.wait_handle_url,
        "UniqueId": props.cluster_name,
        "Operation": operation,
        "DeadlineEpoch": int(time.time()) + props.wait_timeout_seconds - DEADLINE_MARGIN_SECONDS,
        "TargetCounts": {n: c for n, c in spec.target_counts(props.request).items() if n not in props.karpenter_groups},
    }
    min_counts = {
        g["InstanceGroupName"]: g["MinInstanceCount"]
        for g in props.request["InstanceGroups"]
        if "MinInstanceCount" in g
    }
    if min_counts:
        payload["MinCounts"] = min_counts
    if props.karpenter_groups:
        # Karpenter's groups have no target to wait for; the deploy waits for autoscaling to be InService.
        payload["KarpenterGroups"] = list(props.karpenter_groups)
        payload["AutoScaling"] = True
    try:
        execution = aws.client("stepfunctions", "event").start_execution(
            stateMachineArn=state_machine,
            name=f"{props.cluster_name[:60]}-{digest}",
            input=json.dumps(payload),
        )
        LOG.info("poller started", extra={"cluster": props.cluster_name, "execution": execution["executionArn"]})
    except ClientError as exc:
        if aws.error_code(exc) != "ExecutionAlreadyExists":
            raise
        LOG.info("poller already running for this request", extra={"cluster": props.cluster_name})


def _result(name: str, arn: str) -> dict[str, Any]:
    return {"PhysicalResourceId": name, "Data": {"ClusterArn": arn, "ClusterName": name}}


def _api_failure(exc: ClientError, event: dict[str, Any]) -> str:
    name = _name_from(event) or event.get("PhysicalResourceId") or "(unnamed)"
    return f"{exc.operation_name} failed for HyperPod cluster {name}: {aws.describe(exc)}"


def _name_from(event: dict[str, Any]) -> str | None:
    try:
        return json.loads(event["ResourceProperties"]["ClusterRequest"])["ClusterName"]
    except (KeyError, TypeError, ValueError):
        return None
