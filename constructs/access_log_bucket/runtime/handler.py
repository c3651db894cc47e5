"""Custom resource that deletes an S3 access-log bucket only once its log deliveries have stopped.

aws/aws-cdk issue 21776: with ``auto_delete_objects`` the log bucket is emptied while its source bucket is
still being emptied and deleted; S3 delivers the access logs of those final deletions minutes later, the
log bucket is no longer empty, and the stack stops with BucketNotEmpty (a rerun meets the same race).

Here the source buckets depend on this resource, so CloudFormation deletes them first; then this Delete
empties the log bucket (every version and delete marker), waits ``QuietSeconds`` for deliveries still on
their way, empties again while new objects keep arriving, and deletes the bucket itself. Once the bucket is
gone no delivery can land in it, and CloudFormation's own delete of the ``AWS::S3::Bucket`` finds nothing to
do and succeeds (as for any bucket deleted outside CloudFormation; cf. aws/aws-cdk issue 16619). If
deliveries never stop within the function's time, it answers FAILED in one line instead of timing out.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)
_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 5}, connect_timeout=5, read_timeout=20)
# Stop starting new rounds this long before the Lambda timeout, so the answer always gets out.
ANSWER_MARGIN_SECONDS = 60


def handle(event: dict[str, Any], context: Any = None) -> None:
    props = event.get("ResourceProperties", {})
    bucket = props.get("BucketName", "")
    physical_id = event.get("PhysicalResourceId") or bucket
    try:
        if event["RequestType"] == "Delete":
            quiet = float(props.get("QuietSeconds", "60"))
            remaining = context.get_remaining_time_in_millis() / 1000 if context else 900.0
            drain_and_delete(bucket, quiet_seconds=quiet, deadline=time.monotonic() + remaining - ANSWER_MARGIN_SECONDS)
        respond(event, "SUCCESS", bucket if event["RequestType"] != "Delete" else physical_id, reason="")
    except Exception as exc:  # noqa: BLE001 - CloudFormation must always get an answer, or it waits an hour
        reason = f"access-log bucket {bucket}: {' '.join(str(exc).split())}"
        LOG.error(reason)
        respond(event, "FAILED", physical_id, reason=reason)


def drain_and_delete(bucket: str, *, quiet_seconds: float, deadline: float) -> int:
    """Empty, wait for stragglers, repeat until a quiet period passes with nothing new, then delete the
    bucket. Returns how many objects (versions and markers) were removed."""
    s3 = boto3.client("s3", config=_CONFIG)
    removed = 0
    while True:
        try:
            removed += _empty(s3, bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "NoSuchBucket":
                return removed
            raise
        time.sleep(quiet_seconds)
        if _has_objects(s3, bucket):
            LOG.info("new log deliveries arrived in %s; emptying again", bucket)
        else:
            try:
                s3.delete_bucket(Bucket=bucket)
                LOG.info("deleted %s after removing %d objects", bucket, removed)
                return removed
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code == "NoSuchBucket":
                    return removed
                if code != "BucketNotEmpty":
                    raise
        if time.monotonic() + quiet_seconds > deadline:
            raise RuntimeError(
                f"still receiving log deliveries after removing {removed} objects; delete the stack again "
                "in a few minutes"
            )


def _empty(s3, bucket: str) -> int:
    removed = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        keys = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            errors = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True}).get("Errors", [])
            if errors:
                first = errors[0]
                raise RuntimeError(f"could not delete {first.get('Key')}: {first.get('Code')} {first.get('Message')}")
            removed += len(batch)
    return removed


def _has_objects(s3, bucket: str) -> bool:
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=1)
    return bool(page.get("Versions") or page.get("DeleteMarkers"))


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
