"""The access-log bucket's cleanup against moto's S3: log deliveries that arrive after the bucket was first
emptied (aws/aws-cdk issue 21776) are drained, and the bucket is deleted only when they have stopped."""

from __future__ import annotations

import importlib.util
import threading
import time

import boto3
import pytest
from moto import mock_aws

from constructs.access_log_bucket.infrastructure import RUNTIME_DIR
from tests.hyperpod_cluster.conftest import HandleServer

LOGS = "team-a-lifecycle-accesslogs"


def load_handler():
    spec = importlib.util.spec_from_file_location("access_log_bucket_handler", RUNTIME_DIR / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


handler = load_handler()


class Context:
    def __init__(self, seconds: float):
        self.until = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.until - time.monotonic()) * 1000)


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=LOGS)
        client.put_bucket_versioning(Bucket=LOGS, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def cloudformation():
    server = HandleServer()
    yield server
    server.close()


def delete_event(url: str, quiet: float) -> dict:
    return {
        "RequestType": "Delete",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/team-a-lifecycle/1",
        "RequestId": "req-delete",
        "LogicalResourceId": "AccessLogsCleanup",
        "PhysicalResourceId": LOGS,
        "ResourceType": "Custom::AccessLogBucketCleanup",
        "ResourceProperties": {"BucketName": LOGS, "QuietSeconds": str(quiet)},
    }


def deliver(s3, count: int, every: float) -> threading.Thread:
    """S3 log delivery, late: ``count`` log objects, one every ``every`` seconds, starting now."""

    def run():
        for i in range(count):
            s3.put_object(Bucket=LOGS, Key=f"lifecycle-bucket/2026-12-02-16-{i:02d}-late", Body=b"REST.DELETE.OBJECT")
            time.sleep(every)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def bucket_exists(s3) -> bool:
    return LOGS in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_late_deliveries_are_drained_and_the_bucket_deleted_once_they_stop(s3, cloudformation):
    for i in range(3):  # logs of the stack's life, with an old version and a delete marker
        s3.put_object(Bucket=LOGS, Key=f"lifecycle-bucket/old-{i}", Body=b"x")
    s3.delete_object(Bucket=LOGS, Key="lifecycle-bucket/old-0")
    late = deliver(s3, count=4, every=0.15)  # the source bucket's final deletions, logged after the fact

    handler.handle(delete_event(cloudformation.url, quiet=0.4), Context(handler.ANSWER_MARGIN_SECONDS + 30))
    late.join()

    (answer,) = cloudformation.bodies()
    assert answer["Status"] == "SUCCESS" and answer["PhysicalResourceId"] == LOGS
    assert not bucket_exists(s3)


def test_what_cdks_auto_delete_does_fails_on_the_same_late_deliveries(s3):
    """The race itself: empty once, then the late logs land, and DeleteBucket refuses."""
    s3.put_object(Bucket=LOGS, Key="lifecycle-bucket/old", Body=b"x")
    handler._empty(s3, LOGS)
    deliver(s3, count=1, every=0).join()
    with pytest.raises(s3.exceptions.ClientError, match="BucketNotEmpty"):
        s3.delete_bucket(Bucket=LOGS)


def test_deliveries_that_never_stop_are_answered_failed_in_one_line_before_the_timeout(s3, cloudformation):
    stop = threading.Event()

    def flood():
        i = 0
        while not stop.is_set():
            s3.put_object(Bucket=LOGS, Key=f"flood-{i}", Body=b"x")
            i += 1
            time.sleep(0.02)

    threading.Thread(target=flood, daemon=True).start()
    started = time.monotonic()
    try:
        handler.handle(delete_event(cloudformation.url, quiet=0.2), Context(handler.ANSWER_MARGIN_SECONDS + 1.5))
    finally:
        stop.set()
    (answer,) = cloudformation.bodies()
    assert time.monotonic() - started < 5
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith(f"access-log bucket {LOGS}: still receiving log deliveries after removing ")
    assert "\n" not in answer["Reason"] and bucket_exists(s3)


def test_a_bucket_already_gone_is_success(s3, cloudformation):
    s3.delete_bucket(Bucket=LOGS)
    handler.handle(delete_event(cloudformation.url, quiet=0), Context(handler.ANSWER_MARGIN_SECONDS + 30))
    assert cloudformation.bodies()[0]["Status"] == "SUCCESS"


def test_create_and_update_touch_nothing(s3, cloudformation):
    s3.put_object(Bucket=LOGS, Key="kept", Body=b"x")
    for kind in ("Create", "Update"):
        handler.handle(
            {**delete_event(cloudformation.url, quiet=0), "RequestType": kind},
            Context(handler.ANSWER_MARGIN_SECONDS + 30),
        )
    assert [b["Status"] for b in cloudformation.bodies()] == ["SUCCESS", "SUCCESS"]
    assert s3.list_objects_v2(Bucket=LOGS)["KeyCount"] == 1
