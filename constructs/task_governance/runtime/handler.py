"""Provider-framework handlers for one team's SageMaker compute quota.

CloudFormation has no type for compute quotas in the pinned CDK, so this custom resource calls
CreateComputeQuota / UpdateComputeQuota / DeleteComputeQuota. Those are asynchronous (the quota goes
Creating -> Created, Updating -> Updated, Deleting -> gone, or ends in a ``*Failed`` status with a
``FailureReason``), so ``on_event`` only starts the change and ``is_complete`` (the framework's poller, well
inside the one-hour custom-resource limit: task governance applies a quota in seconds to minutes) waits for
the outcome. The same rules as the HyperPod cluster's handler keep failures clean:

* The request is validated against botocore's model before any call, and the mutating call is the last one
  ``on_event`` makes, so a Create that fails leaves nothing behind for a rollback that the framework skips.
* A Create that finds a quota of the same name on the cluster adopts it only if this stack's owner tag is on
  it (a retried Create); anything else is refused with what to do.
* An Update that changes the cluster or the team is a replacement (new physical id; CloudFormation deletes
  the old quota afterwards); an Update whose quota vanished creates it again rather than failing the stack.
* Throttling and 5xx are retried by botocore's adaptive mode, and in ``is_complete`` mean "poll again";
  a missing quota on Delete is already deleted; a Delete refused while the quota is busy is asked again.
* Errors reach CloudFormation as one line naming the quota, the team, the operation and SageMaker's message.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import botocore.session
from botocore.exceptions import BotoCoreError, ClientError
from botocore.validate import ParamValidator

from . import aws, jsonlog

LOG = jsonlog.get_logger("compute_quota.handler")
_QUOTA_ID = re.compile(r"^[a-z0-9]{12}$")
SETTLED = frozenset({"Created", "Updated"})
PENDING = frozenset({"Creating", "Updating", "Deleting"})
FAILED = frozenset(
    {
        "CreateFailed",
        "CreateRollbackFailed",
        "UpdateFailed",
        "UpdateRollbackFailed",
        "DeleteFailed",
        "DeleteRollbackFailed",
    }
)
# Fields UpdateComputeQuota takes from the desired request (Name, ClusterArn and Tags are not updatable).
_UPDATABLE = ("ComputeQuotaConfig", "ComputeQuotaTarget", "ActivationState", "Description")


class HandlerError(RuntimeError):
    """A failure phrased for the CloudFormation console: one line, what failed and what to do."""


class Quota:
    """The desired quota from the resource properties: the CreateComputeQuota request and the owner tag."""

    def __init__(self, props: dict[str, Any]) -> None:
        try:
            self.request: dict[str, Any] = json.loads(props["ComputeQuota"])
            self.owner_tag_key = str(props["OwnerTagKey"])
        except (KeyError, TypeError, ValueError) as exc:
            raise HandlerError(f"bad resource properties: need ComputeQuota (JSON) and OwnerTagKey ({exc})") from None
        if not isinstance(self.request, dict):
            raise HandlerError("bad resource properties: ComputeQuota must be a JSON object")
        report = ParamValidator().validate(self.request, _input_shape("CreateComputeQuota"))
        if report.has_errors():
            detail = " ".join(report.generate_report().split())
            raise HandlerError(f"compute quota {self.name}: request does not match the SageMaker API: {detail}")
        self.tags = {t["Key"]: t["Value"] for t in self.request.get("Tags", [])}
        if self.owner_tag_key not in self.tags:
            raise HandlerError(f"compute quota {self.name}: the request carries no {self.owner_tag_key} tag")

    @property
    def name(self) -> str:
        return str(self.request.get("Name", "(unnamed)"))

    @property
    def team(self) -> str:
        return str(self.request.get("ComputeQuotaTarget", {}).get("TeamName", "(no team)"))

    @property
    def cluster_arn(self) -> str:
        return str(self.request.get("ClusterArn", ""))

    @property
    def label(self) -> str:
        return f"compute quota {self.name} (team {self.team})"


@lru_cache(maxsize=4)
def _input_shape(operation: str):
    return botocore.session.get_session().get_service_model("sagemaker").operation_model(operation).input_shape


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
    quota: Quota | None = None
    try:
        if kind == "Delete":
            return _delete(event.get("PhysicalResourceId", ""))
        quota = Quota(event.get("ResourceProperties", {}))
        if kind == "Create":
            return _create(quota)
        if kind == "Update":
            return _update(quota, event)
    except ClientError as exc:
        raise HandlerError(_api_failure(exc, quota, event)) from None
    except BotoCoreError as exc:
        raise HandlerError(f"AWS API unreachable after retries: {aws.describe(exc)}") from None
    raise HandlerError(f"unknown RequestType {kind!r}")


def is_complete(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Polled by the framework. Transient API errors mean "not yet": an exception here fails at once."""
    quota_id = event.get("PhysicalResourceId", "")
    try:
        if event.get("RequestType") == "Delete":
            done = _deleted(quota_id)
            LOG.info("delete progress", extra={"quota_id": quota_id, "complete": done})
            return {"IsComplete": done}
        expected = int((event.get("Data") or {}).get("ComputeQuotaVersion") or 0)
        return _settled(quota_id, expected)
    except (ClientError, BotoCoreError) as exc:
        if aws.is_transient(exc):
            LOG.warning("transient error, will poll again", extra={"quota_id": quota_id, "error": aws.describe(exc)})
            return {"IsComplete": False}
        if isinstance(exc, ClientError):
            raise HandlerError(
                f"{exc.operation_name} failed for compute quota {quota_id}: {aws.describe(exc)}"
            ) from None
        raise HandlerError(f"AWS API unreachable for compute quota {quota_id}: {aws.describe(exc)}") from None


# --- Create ---------------------------------------------------------------------------------------


def _create(quota: Quota) -> dict[str, Any]:
    existing = _find(quota)
    if existing is not None:
        return _adopt(quota, existing)
    LOG.info("CreateComputeQuota", extra={"quota": quota.name, "team": quota.team})
    created = _sagemaker().create_compute_quota(**quota.request)
    # CreateComputeQuota returns no version; any settled version of the new quota is the outcome.
    return _result(created["ComputeQuotaId"], created["ComputeQuotaArn"], 0)


def _find(quota: Quota) -> dict[str, Any] | None:
    """The cluster's live quota of this name, if any (names are unique per cluster; deleted ones linger)."""
    kwargs: dict[str, Any] = {"ClusterArn": quota.cluster_arn, "NameContains": quota.name}
    while True:
        page = _sagemaker().list_compute_quotas(**kwargs)
        for summary in page.get("ComputeQuotaSummaries", []):
            if summary.get("Name") == quota.name and summary.get("Status") != "Deleted":
                return summary
        if not page.get("NextToken"):
            return None
        kwargs["NextToken"] = page["NextToken"]


def _adopt(quota: Quota, existing: dict[str, Any]) -> dict[str, Any]:
    status = existing.get("Status")
    if status == "Deleting":
        raise HandlerError(f"{quota.label} is still being deleted; deploy again once it is gone")
    arn = existing["ComputeQuotaArn"]
    owner = _tags(arn).get(quota.owner_tag_key)
    if owner != quota.tags[quota.owner_tag_key]:
        raise HandlerError(
            f"{quota.label} already exists on the cluster (status {status}) and was not created by this stack "
            f"(tag {quota.owner_tag_key} is {owner!r}); delete it (aws sagemaker delete-compute-quota "
            f"--compute-quota-id {existing['ComputeQuotaId']}) or rename the team"
        )
    LOG.info("adopting existing compute quota", extra={"quota": quota.name, "status": status})
    return _apply(quota, existing["ComputeQuotaId"])


# --- Update ---------------------------------------------------------------------------------------


def _update(quota: Quota, event: dict[str, Any]) -> dict[str, Any]:
    quota_id = event.get("PhysicalResourceId", "")
    previous = _previous(event.get("OldResourceProperties"))
    if previous is None or (previous.cluster_arn, previous.name) != (quota.cluster_arn, quota.name):
        # Another cluster or team is another quota: create it; CloudFormation then deletes the old one.
        LOG.info("replacing compute quota", extra={"old": quota_id, "new": quota.name})
        return _create(quota)
    if _describe(quota_id) is None:
        LOG.warning("compute quota vanished outside CloudFormation; creating it again", extra={"quota_id": quota_id})
        return _create(quota)
    return _apply(quota, quota_id)


def _apply(quota: Quota, quota_id: str) -> dict[str, Any]:
    """UpdateComputeQuota to the desired spec (against the version just read), then the tags."""
    current = _describe(quota_id)
    if current is None:
        raise HandlerError(f"{quota.label} ({quota_id}) disappeared while it was being updated; deploy again")
    status = current.get("Status")
    if status in PENDING:
        raise HandlerError(
            f"{quota.label} is {status}; UpdateComputeQuota needs it settled. Nothing was changed; deploy again"
        )
    arn = current["ComputeQuotaArn"]
    add, remove = _tag_changes(quota, arn)
    if add:
        _sagemaker().add_tags(ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in sorted(add.items())])
    if remove:
        _sagemaker().delete_tags(ResourceArn=arn, TagKeys=sorted(remove))
    wanted = {k: quota.request[k] for k in _UPDATABLE if k in quota.request}
    if status in SETTLED and all(current.get(k) == v for k, v in wanted.items()):
        LOG.info(
            "compute quota already matches", extra={"quota": quota.name, "version": current["ComputeQuotaVersion"]}
        )
        return _result(quota_id, arn, int(current["ComputeQuotaVersion"]))
    LOG.info("UpdateComputeQuota", extra={"quota": quota.name, "from_version": current["ComputeQuotaVersion"]})
    updated = _sagemaker().update_compute_quota(
        ComputeQuotaId=quota_id, TargetVersion=int(current["ComputeQuotaVersion"]), **wanted
    )
    return _result(quota_id, updated.get("ComputeQuotaArn", arn), int(updated["ComputeQuotaVersion"]))


def _previous(old_props: dict[str, Any] | None) -> Quota | None:
    try:
        return Quota(old_props or {})
    except HandlerError:
        return None


def _tag_changes(quota: Quota, arn: str) -> tuple[dict[str, str], set[str]]:
    have = _tags(arn)
    add = {k: v for k, v in quota.tags.items() if have.get(k) != v}
    remove = {k for k in have if k not in quota.tags and not k.startswith("aws:")}
    return add, remove


# --- Delete ---------------------------------------------------------------------------------------


def _delete(quota_id: str) -> dict[str, Any]:
    if not _QUOTA_ID.match(quota_id or ""):
        LOG.info("nothing to delete: physical id is not a compute quota id", extra={"physical_id": quota_id})
        return {}
    # Describe first: DeleteComputeQuota is granted only on quotas carrying the owner tag, and IAM cannot
    # evaluate that condition for a quota that no longer exists (AccessDenied instead of not found).
    current = _describe(quota_id)
    if current is None or current.get("Status") in ("Deleted", "Deleting"):
        LOG.info("compute quota already gone or going", extra={"quota_id": quota_id})
        return {}
    _request_delete(quota_id)
    return {}


def _request_delete(quota_id: str) -> None:
    """DeleteComputeQuota; a missing quota is already deleted and a busy one is asked again by ``is_complete``."""
    try:
        LOG.info("DeleteComputeQuota", extra={"quota_id": quota_id})
        _sagemaker().delete_compute_quota(ComputeQuotaId=quota_id)
    except ClientError as exc:
        if aws.is_not_found(exc):
            LOG.info("compute quota already gone", extra={"quota_id": quota_id})
            return
        if aws.error_code(exc) == "ConflictException":
            LOG.info(
                "DeleteComputeQuota refused for now, will retry",
                extra={"quota_id": quota_id, "error": aws.describe(exc)},
            )
            return
        raise


def _deleted(quota_id: str) -> bool:
    if not _QUOTA_ID.match(quota_id or ""):
        return True
    current = _describe(quota_id)
    if current is None or current.get("Status") == "Deleted":
        return True
    status = current.get("Status")
    if status in ("DeleteFailed", "DeleteRollbackFailed"):
        raise HandlerError(
            f"compute quota {current.get('Name', quota_id)} could not be deleted ({status}): "
            f"{current.get('FailureReason') or 'no FailureReason'}"
        )
    if status != "Deleting":
        # DeleteComputeQuota was refused while the quota was busy: ask again.
        _request_delete(quota_id)
    return False


# --- Create/Update outcome ------------------------------------------------------------------------


def _settled(quota_id: str, expected_version: int) -> dict[str, Any]:
    current = _describe(quota_id)
    if current is None:
        raise HandlerError(f"compute quota {quota_id} does not exist right after it was requested")
    status = current.get("Status")
    version = int(current.get("ComputeQuotaVersion") or 0)
    label = (
        f"compute quota {current.get('Name', quota_id)} (team {current.get('ComputeQuotaTarget', {}).get('TeamName')})"
    )
    if status in FAILED:
        raise HandlerError(f"{label} is {status}: {current.get('FailureReason') or 'no FailureReason'}")
    if status in SETTLED and version >= expected_version:
        return {"IsComplete": True, "Data": {"Status": status}}
    LOG.info("waiting for compute quota", extra={"quota_id": quota_id, "status": status, "version": version})
    return {"IsComplete": False}


# --- shared ---------------------------------------------------------------------------------------


def _sagemaker():
    return aws.client("sagemaker", "event")


def _describe(quota_id: str) -> dict[str, Any] | None:
    try:
        return _sagemaker().describe_compute_quota(ComputeQuotaId=quota_id)
    except ClientError as exc:
        if aws.is_not_found(exc):
            return None
        raise


def _tags(arn: str) -> dict[str, str]:
    return aws.sagemaker_tags(_sagemaker(), arn)


def _result(quota_id: str, arn: str, version: int) -> dict[str, Any]:
    return {
        "PhysicalResourceId": quota_id,
        "Data": {"ComputeQuotaId": quota_id, "ComputeQuotaArn": arn, "ComputeQuotaVersion": str(version)},
    }


def _api_failure(exc: ClientError, quota: Quota | None, event: dict[str, Any]) -> str:
    label = quota.label if quota is not None else f"compute quota {event.get('PhysicalResourceId') or '(unnamed)'}"
    return f"{exc.operation_name} failed for {label}: {aws.describe(exc)}"
