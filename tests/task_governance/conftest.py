"""Fixtures for the compute-quota custom resource: requests, events and Stubber-backed clients."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from constructs.task_governance.runtime import aws

ACCOUNT = "123456789012"
REGION = "us-east-1"
CLUSTER_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:cluster/abc123def456"
OWNER_KEY = "task-governance:owner"
OWNER = "hyperpod-sky-hyperpod/c8abcdef"
QUOTA_ID = "q1w2e3r4t5y6"
QUOTA_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:compute-quota/{QUOTA_ID}"


def quota_request(team: str = "research", *, count: int = 1, strategy: str = "LendAndBorrow", **extra: Any) -> dict:
    request = {
        "Name": f"hyperpod-sky-{team}",
        "Description": f"HyperPod task governance quota for team {team}",
        "ClusterArn": CLUSTER_ARN,
        "ComputeQuotaConfig": {
            "ComputeQuotaResources": [{"InstanceType": "ml.p5.48xlarge", "Count": count}],
            "ResourceSharingConfig": {"Strategy": strategy},
            "PreemptTeamTasks": "LowerPriority",
        },
        "ComputeQuotaTarget": {"TeamName": team, "FairShareWeight": 1},
        "ActivationState": "Enabled",
        "Tags": [{"Key": OWNER_KEY, "Value": OWNER}, {"Key": "project", "Value": "hp"}],
    }
    request.update(extra)
    return request


def properties(request: dict | None = None) -> dict:
    return {
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:framework",
        "ComputeQuota": json.dumps(request if request is not None else quota_request()),
        "OwnerTagKey": OWNER_KEY,
    }


def event(kind: str, props: dict, *, physical_id: str | None = None, old: dict | None = None, **extra) -> dict:
    evt = {
        "RequestType": kind,
        "RequestId": f"req-{kind.lower()}-1",
        "StackId": "arn:aws:cloudformation:stack",
        "LogicalResourceId": "ResearchQuota",
        "ResourceType": "Custom::ComputeQuota",
        "ResourceProperties": props,
    }
    if physical_id is not None:
        evt["PhysicalResourceId"] = physical_id
    if old is not None:
        evt["OldResourceProperties"] = old
    evt.update(extra)
    return evt


def described(request: dict, *, status: str = "Created", version: int = 1, failure: str = "") -> dict:
    """A DescribeComputeQuota response for ``request``, as SageMaker shapes it."""
    response = {
        "ComputeQuotaArn": QUOTA_ARN,
        "ComputeQuotaId": QUOTA_ID,
        "Name": request["Name"],
        "Description": request.get("Description", ""),
        "ComputeQuotaVersion": version,
        "Status": status,
        "ClusterArn": request["ClusterArn"],
        "ComputeQuotaConfig": copy.deepcopy(request["ComputeQuotaConfig"]),
        "ComputeQuotaTarget": copy.deepcopy(request["ComputeQuotaTarget"]),
        "ActivationState": request.get("ActivationState", "Enabled"),
        "CreationTime": "2026-01-01T00:00:00Z",
    }
    if failure:
        response["FailureReason"] = failure
    return response


def summary(request: dict, *, status: str = "Created", quota_id: str = QUOTA_ID) -> dict:
    return {
        "ComputeQuotaArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:compute-quota/{quota_id}",
        "ComputeQuotaId": quota_id,
        "Name": request["Name"],
        "Status": status,
        "ClusterArn": request["ClusterArn"],
        "ComputeQuotaConfig": copy.deepcopy(request["ComputeQuotaConfig"]),
        "ComputeQuotaTarget": copy.deepcopy(request["ComputeQuotaTarget"]),
        "ActivationState": "Enabled",
        "CreationTime": "2026-01-01T00:00:00Z",
    }


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset_clients()
    yield
    aws.reset_clients()


class Stubs:
    """A real SageMaker client with a Stubber (validates every request against the model)."""

    def __init__(self) -> None:
        self.client = boto3.client("sagemaker", region_name=REGION, config=Config(retries={"max_attempts": 1}))
        self.sagemaker = Stubber(self.client)
        self.sagemaker.activate()

    def assert_done(self) -> None:
        self.sagemaker.assert_no_pending_responses()


@pytest.fixture
def stubs(monkeypatch) -> Stubs:
    stubs = Stubs()
    monkeypatch.setattr(aws, "client", lambda service, budget="event": stubs.client)
    return stubs
