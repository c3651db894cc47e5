"""Custom resource: set the retention of a log group that a service writes to by a fixed name, creating it
only if it does not exist yet (create-or-adopt).

EKS writes its control-plane logs to ``/aws/eks/<cluster>/cluster`` and creates that group itself, also
for the last lines it writes *after* the cluster was deleted. An ``AWS::Logs::LogGroup`` with that name
therefore fails the next deploy of the same cluster ("already exists"); this handler adopts the group
instead. On Delete it removes the group when the removal policy says so (EKS may create it again with its
final lines; the next deploy adopts that one).

A single Lambda function answering CloudFormation through the presigned ``ResponseURL`` (no Provider
framework): every call here is one idempotent API call, so nothing needs polling.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)
_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 5}, connect_timeout=5, read_timeout=10)


def handle(event: dict[str, Any], context: Any = None) -> None:
    props = event.get("ResourceProperties", {})
    name = props.get("LogGroupName", "")
    physical_id = event.get("PhysicalResourceId") or name
    try:
        if event["RequestType"] in ("Create", "Update"):
            apply(name, int(props["RetentionInDays"]), props.get("KmsKeyArn") or None)
            physical_id = name
        elif props.get("RemovalPolicy") == "destroy":
            delete(physical_id)
        respond(event, "SUCCESS", physical_id, reason="")
    except Exception as exc:  # noqa: BLE001 - CloudFormation must always get an answer, or it waits an hour
        reason = f"log group {name or physical_id}: {' '.join(str(exc).split())}"
        LOG.error(reason)
        respond(event, "FAILED", physical_id, reason=reason)


def apply(name: str, retention_days: int, kms_key_arn: str | None = None, logs: Any = None) -> None:
    """With ``kms_key_arn``, a group it creates is encrypted from the start, and an adopted one (EKS created it,
    unencrypted) gets the key associated: CloudWatch Logs encrypts what arrives from then on."""
    logs = logs or boto3.client("logs", config=_CONFIG)
    try:
        logs.create_log_group(logGroupName=name, **({"kmsKeyId": kms_key_arn} if kms_key_arn else {}))
        LOG.info("created %s", name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
        LOG.info("adopting existing %s", name)
        if kms_key_arn:
            logs.associate_kms_key(logGroupName=name, kmsKeyId=kms_key_arn)
    logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)


def delete(name: str) -> None:
    logs = boto3.client("logs", config=_CONFIG)
    try:
        logs.delete_log_group(logGroupName=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise


def respond(event: dict[str, Any], status: str, physical_id: str, *, reason: str) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:1000] or "ok",
            "PhysicalResourceId": physical_id or event["RequestId"],
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
        }
    ).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - URL comes from CloudFormation
        response.read()
