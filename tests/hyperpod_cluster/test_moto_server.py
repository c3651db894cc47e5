"""Out of process: the staged Lambda asset, run by a bare interpreter, against ``moto_server`` on 127.0.0.1.

The handler runs with ``python -I -S -B`` (no .pyc written into the asset) and only the asset folder on ``sys.path``: no site-packages, so it
can only use the boto3/botocore copied into the asset, and importing aws-cdk-lib would fail. The test
drives a full Create -> is_complete -> Delete -> is_complete cycle and checks the results with its own
boto3 client against the same server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from constructs.hyperpod_cluster import asset
from tests.hyperpod_cluster.conftest import REGION, cluster_request, event, properties

DRIVER = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
from hyperpod_cluster_runtime import handler
for line in sys.stdin:
    call = json.loads(line)
    try:
        result = getattr(handler, call["fn"])(call["event"])
    except Exception as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    print("RESULT " + json.dumps(result), flush=True)
print("RESULT " + json.dumps({"aws_cdk_importable": importlib.util.find_spec("aws_cdk") is not None,
                              "botocore_from": __import__("botocore").__file__}), flush=True)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_server():
    port = _free_port()
    binary = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("moto_server did not start within 10 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_asset(endpoint: str, calls: list[dict], env_extra: dict) -> list[dict]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        **env_extra,
    }
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", DRIVER, str(asset.build())],
        input="".join(json.dumps(c) + "\n" for c in calls),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    results = [
        json.loads(line[len("RESULT ") :]) for line in completed.stdout.splitlines() if line.startswith("RESULT ")
    ]
    logs = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    assert logs and all({"time", "level", "message"} <= set(entry) for entry in logs)  # structured JSON logs
    return results


def test_full_cycle_from_the_staged_asset_against_moto_server(moto_server, handle):
    sagemaker = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_server)
    sfn = boto3.client("stepfunctions", region_name=REGION, endpoint_url=moto_server)
    poller = sfn.create_state_machine(
        name="hp-poller",
        roleArn="arn:aws:iam::123456789012:role/poller",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
    )["stateMachineArn"]
    props = properties(cluster_request(name="hp-oop"), handle=handle.url, timeout=3600)

    create, accepted, delete, deleted, environment = run_asset(
        moto_server,
        [
            {"fn": "on_event", "event": event("Create", props)},
            {"fn": "is_complete", "event": event("Create", props, physical_id="hp-oop")},
            {"fn": "on_event", "event": event("Delete", props, physical_id="hp-oop")},
            {"fn": "is_complete", "event": event("Delete", props, physical_id="hp-oop")},
        ],
        {"POLLER_STATE_MACHINE_ARN": poller},
    )

    assert create["PhysicalResourceId"] == "hp-oop"
    assert create["Data"]["ClusterArn"].startswith("arn:aws:sagemaker:us-east-1:123456789012:cluster/")
    assert accepted == {"IsComplete": True, "Data": {"ClusterStatus": "InService"}}
    assert list(delete) == ["DeleteDeadlineEpoch"] and deleted == {"IsComplete": True}
    assert sagemaker.list_clusters()["ClusterSummaries"] == []

    (execution,) = sfn.list_executions(stateMachineArn=poller)["executions"]
    started = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert started["ClusterName"] == "hp-oop" and started["WaitHandleUrl"] == handle.url
    assert started["TargetCounts"] == {"workers": 2}

    assert environment["aws_cdk_importable"] is False
    assert environment["botocore_from"].startswith(str(asset.build()))


def test_describe_between_create_and_delete_sees_the_requested_cluster(moto_server):
    sagemaker = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_server)
    props = properties(cluster_request(name="hp-oop-2"))
    (create,) = run_asset(moto_server, [{"fn": "on_event", "event": event("Create", props)}], {})[:1]
    described = sagemaker.describe_cluster(ClusterName="hp-oop-2")
    assert described["ClusterArn"] == create["Data"]["ClusterArn"]
    assert [g["TargetCount"] for g in described["InstanceGroups"]] == [2]
    (delete,) = run_asset(
        moto_server, [{"fn": "on_event", "event": event("Delete", props, physical_id="hp-oop-2")}], {}
    )[:1]
    assert list(delete) == ["DeleteDeadlineEpoch"]  # handed to is_complete by the Provider framework
    with pytest.raises(sagemaker.exceptions.ClientError):
        sagemaker.describe_cluster(ClusterName="hp-oop-2")
