"""The control-plane log group's custom resource against moto's CloudWatch Logs, answering a loopback
stand-in for CloudFormation's presigned ResponseURL: a redeploy after EKS recreated the group succeeds."""

from __future__ import annotations

import importlib.util
import json

import boto3
import pytest
from moto import mock_aws

from constructs.control_plane_log_group.infrastructure import RUNTIME_DIR
from tests.hyperpod_cluster.conftest import HandleServer

NAME = "/aws/eks/team-a-eks/cluster"


def load_handler():
    spec = importlib.util.spec_from_file_location("control_plane_log_group_handler", RUNTIME_DIR / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


handler = load_handler()


@pytest.fixture
def logs():
    with mock_aws():
        yield boto3.client("logs", region_name="us-east-1")


@pytest.fixture
def cloudformation():
    server = HandleServer()
    yield server
    server.close()


def request(kind: str, url: str, *, retention: str = "30", removal: str = "destroy", physical: str | None = None):
    event = {
        "RequestType": kind,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/team-a-eks/1",
        "RequestId": f"req-{kind}",
        "LogicalResourceId": "ControlPlaneLogs",
        "ResourceType": "Custom::ServiceLogGroupRetention",
        "ResourceProperties": {"LogGroupName": NAME, "RetentionInDays": retention, "RemovalPolicy": removal},
    }
    if physical:
        event["PhysicalResourceId"] = physical
    return event


def retention_of(logs) -> int | None:
    (group,) = logs.describe_log_groups(logGroupNamePrefix=NAME)["logGroups"]
    return group.get("retentionInDays")


def test_first_deploy_creates_the_group_with_its_retention(logs, cloudformation):
    handler.handle(request("Create", cloudformation.url))
    (answer,) = cloudformation.bodies()
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", NAME)
    assert retention_of(logs) == 30


def test_redeploy_after_destroy_adopts_the_group_eks_recreated(logs, cloudformation):
    handler.handle(request("Create", cloudformation.url))
    handler.handle(request("Delete", cloudformation.url, physical=NAME))
    assert logs.describe_log_groups(logGroupNamePrefix=NAME)["logGroups"] == []
    logs.create_log_group(logGroupName=NAME)  # EKS writing its last control-plane lines, retention unset

    handler.handle(request("Create", cloudformation.url, retention="90"))

    assert [b["Status"] for b in cloudformation.bodies()] == ["SUCCESS", "SUCCESS", "SUCCESS"]
    assert retention_of(logs) == 90


def test_update_changes_the_retention_and_retain_keeps_the_group_on_delete(logs, cloudformation):
    handler.handle(request("Create", cloudformation.url))
    handler.handle(request("Update", cloudformation.url, retention="7", physical=NAME))
    handler.handle(request("Delete", cloudformation.url, removal="retain", physical=NAME))
    assert retention_of(logs) == 7


def test_a_failure_is_answered_as_failed_with_one_line_instead_of_leaving_cloudformation_waiting(logs, cloudformation):
    handler.handle(request("Create", cloudformation.url, retention="thirty"))
    (answer,) = cloudformation.bodies()
    assert answer["Status"] == "FAILED" and answer["Reason"].startswith(f"log group {NAME}: ")
    assert "\n" not in answer["Reason"]


def test_the_answer_carries_what_cloudformation_needs(logs, cloudformation):
    handler.handle(request("Create", cloudformation.url))
    (put,) = cloudformation.requests
    body = json.loads(put["body"])
    assert set(body) == {"Status", "Reason", "PhysicalResourceId", "StackId", "RequestId", "LogicalResourceId"}
    assert put["headers"].get("Content-Type", "") == ""  # the presigned URL is signed without a content type


KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def test_a_group_it_creates_is_encrypted_with_the_key_from_the_start(logs, cloudformation):
    event = request("Create", cloudformation.url)
    event["ResourceProperties"]["KmsKeyArn"] = KEY_ARN
    handler.handle(event)
    (group,) = logs.describe_log_groups(logGroupNamePrefix=NAME)["logGroups"]
    assert group.get("kmsKeyId") == KEY_ARN and group.get("retentionInDays") == 30


def test_an_adopted_group_eks_created_unencrypted_gets_the_key_associated():
    """moto has no AssociateKmsKey: botocore's Stubber pins the call sequence of the adopt path."""
    from botocore.stub import Stubber

    client = boto3.client("logs", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("create_log_group", "ResourceAlreadyExistsException")
        stub.add_response("associate_kms_key", {}, {"logGroupName": NAME, "kmsKeyId": KEY_ARN})
        stub.add_response("put_retention_policy", {}, {"logGroupName": NAME, "retentionInDays": 30})
        handler.apply(NAME, 30, KEY_ARN, logs=client)
        stub.assert_no_pending_responses()
