"""Fixtures for the HyperPod cluster unit: requests, stubbed clients, a loopback WaitCondition handle."""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from constructs.hyperpod_cluster.runtime import aws

ACCOUNT = "123456789012"
REGION = "us-east-1"
OWNER_KEY = "hyperpod-cluster:owner"
OWNER = "HyperPodStack/c8abcdef"
EXEC_ROLE = f"arn:aws:iam::{ACCOUNT}:role/hyperpod-exec"
EKS_ARN = f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/hyperpod-eks"
STATE_MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:poller"


def group(name: str = "workers", *, instance_type: str = "ml.g5.8xlarge", count: int = 2, **extra: Any) -> dict:
    spec = {
        "InstanceGroupName": name,
        "InstanceType": instance_type,
        "InstanceCount": count,
        "LifeCycleConfig": {
            "SourceS3Uri": "s3://sagemaker-hp-lifecycle/lifecycle_scripts/",
            "OnCreate": "on_create.sh",
        },
        "ExecutionRole": EXEC_ROLE,
        "ThreadsPerCore": 1,
        "InstanceStorageConfigs": [{"EbsVolumeConfig": {"VolumeSizeInGB": 500}}],
        "KubernetesConfig": {"Labels": {"skypilot.co/accelerator": "a10g"}},
    }
    spec.update(extra)
    return spec


def cluster_request(name: str = "hp-test", groups: list | None = None, **extra: Any) -> dict:
    request = {
        "ClusterName": name,
        "InstanceGroups": groups if groups is not None else [group()],
        "VpcConfig": {"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0123456789abcdef0"]},
        "Orchestrator": {"Eks": {"ClusterArn": EKS_ARN}},
        "NodeRecovery": "Automatic",
        "Tags": [{"Key": OWNER_KEY, "Value": OWNER}, {"Key": "project", "Value": "hp"}],
    }
    request.update(extra)
    return request


def properties(
    request: dict | None = None, *, handle: str | None = None, timeout: int = 43200, karpenter: list | None = None
) -> dict:
    props = {
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:framework",
        "ClusterRequest": json.dumps(request if request is not None else cluster_request()),
        "OwnerTagKey": OWNER_KEY,
    }
    if karpenter:
        props["KarpenterGroups"] = json.dumps(karpenter)
    if handle:
        props["WaitHandleUrl"] = handle
        props["WaitTimeoutSeconds"] = str(timeout)
    return props


def event(kind: str, props: dict, *, physical_id: str | None = None, old: dict | None = None) -> dict:
    evt = {
        "RequestType": kind,
        "RequestId": f"req-{kind.lower()}-1",
        "StackId": "arn:aws:cloudformation:stack",
        "LogicalResourceId": "HyperPodCluster",
        "ResourceType": "Custom::HyperPodCluster",
        "ResourceProperties": props,
    }
    if physical_id is not None:
        evt["PhysicalResourceId"] = physical_id
    if old is not None:
        evt["OldResourceProperties"] = old
    return evt


def described(
    request: dict,
    *,
    status: str = "InService",
    current: dict | None = None,
    target: dict | None = None,
    failure: str = "",
    **extra: Any,
) -> dict:
    """A DescribeCluster response for ``request``, as HyperPod would shape it."""
    groups = []
    for g in request["InstanceGroups"]:
        detail = {
            k: copy.deepcopy(v)
            for k, v in g.items()
            if k not in ("InstanceCount", "KubernetesConfig", "MinInstanceCount")
        }
        if "MinInstanceCount" in g:
            detail["MinCount"] = g["MinInstanceCount"]  # DescribeCluster's name for it
        detail["TargetCount"] = (target or {}).get(g["InstanceGroupName"], g["InstanceCount"])
        detail["CurrentCount"] = (current or {}).get(g["InstanceGroupName"], detail["TargetCount"])
        detail["Status"] = "InService" if status == "InService" else "Creating"
        groups.append(detail)
    response = {
        "ClusterArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:cluster/abc123def456",
        "ClusterName": request["ClusterName"],
        "ClusterStatus": status,
        "InstanceGroups": groups,
        "VpcConfig": copy.deepcopy(request["VpcConfig"]),
        "Orchestrator": copy.deepcopy(request["Orchestrator"]),
        "NodeRecovery": request.get("NodeRecovery", "Automatic"),
    }
    if failure:
        response["FailureMessage"] = failure
    response.update(extra)
    return response


def nodes(counts: dict[str, int], status: str = "Running", message: str = "") -> dict:
    summaries = []
    for name, count in counts.items():
        for i in range(count):
            summaries.append(
                {
                    "InstanceGroupName": name,
                    "InstanceId": f"i-{name}-{i}",
                    "InstanceType": "ml.g5.8xlarge",
                    "LaunchTime": "2026-01-01T00:00:00Z",
                    "InstanceStatus": {"Status": status, **({"Message": message} if message else {})},
                }
            )
    return {"ClusterNodeSummaries": summaries}


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset_clients()
    yield
    aws.reset_clients()


class Stubs:
    """Real botocore clients with Stubbers; the handlers get them through ``aws.client``."""

    def __init__(self) -> None:
        config = Config(retries={"mode": "standard", "max_attempts": 1})
        self.clients = {s: boto3.client(s, region_name=REGION, config=config) for s in ("sagemaker", "stepfunctions")}
        self.stubbers = {s: Stubber(c) for s, c in self.clients.items()}
        for stubber in self.stubbers.values():
            stubber.activate()
        # Each Stubber keeps its own queue, so the order across services is recorded here, in the
        # order the handler made the calls (every call builds its parameters first, stubbed or not).
        self.calls: list[str] = []
        for service, client in self.clients.items():
            client.meta.events.register(
                "before-parameter-build.*.*",
                lambda model, _service=service, **_: self.calls.append(f"{_service}.{model.name}"),
            )

    @property
    def sagemaker(self) -> Stubber:
        return self.stubbers["sagemaker"]

    @property
    def sfn(self) -> Stubber:
        return self.stubbers["stepfunctions"]

    def assert_done(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


@pytest.fixture
def stubs(monkeypatch) -> Stubs:
    stubs = Stubs()
    monkeypatch.setattr(aws, "client", lambda service, budget="event": stubs.clients[service])
    monkeypatch.setenv("POLLER_STATE_MACHINE_ARN", STATE_MACHINE)
    return stubs


class HandleServer:
    """A loopback stand-in for a WaitConditionHandle's presigned S3 URL: records each PUT."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):  # noqa: N802 - http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        host, port = self.server.server_address
        self.url = f"http://{host}:{port}/waitcondition/abc?Expires=1&Signature=x"

    def bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def handle():
    server = HandleServer()
    yield server
    server.close()
