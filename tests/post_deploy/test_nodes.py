"""wait-nodes: DescribeCluster sequences through botocore's Stubber (requests and responses checked
against the SageMaker API model) and node sequences through the Kubernetes API double, on a fake
clock so an hour-long wait runs in milliseconds."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable

import boto3
import pytest
from botocore.stub import Stubber
from rich.console import Console

from post_deploy import nodes
from post_deploy.exit_codes import ExitCode
from tests.k8s_double import seed

CLUSTER = "hp-test"
ARN = f"arn:aws:sagemaker:us-west-2:123456789012:cluster/{CLUSTER}"


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps; events fire as it passes them."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._events: list[tuple[float, Callable[[], None]]] = []

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._events.append((when, action))
        self._events.sort(key=lambda e: e[0])

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        while self._events and self._events[0][0] <= self.now:
            self._events.pop(0)[1]()


def _cluster(
    status: str, *, current: int = 0, target: int = 2, failure: str | None = None, group_status: str = "Creating"
) -> dict:
    response = {
        "ClusterArn": ARN,
        "ClusterName": CLUSTER,
        "ClusterStatus": status,
        "InstanceGroups": [
            {
                "InstanceGroupName": "worker-group-1",
                "InstanceType": "ml.p5.48xlarge",
                "CurrentCount": current,
                "TargetCount": target,
                "Status": group_status,
            }
        ],
    }
    if failure:
        response["FailureMessage"] = failure
    return response


@pytest.fixture
def sagemaker(aws_env):
    client = boto3.client("sagemaker", region_name="us-west-2")
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client


def _script(sagemaker, *responses: dict) -> None:
    for response in responses:
        sagemaker.stubber.add_response("describe_cluster", response, {"ClusterName": CLUSTER})


def _wait(k8s_api_client, sagemaker, clock: FakeClock, **kwargs) -> nodes.WaitResult:
    kwargs.setdefault("timeout", 600)
    kwargs.setdefault("poll_interval", 15)
    return nodes.wait_for_nodes(k8s_api_client, sagemaker, CLUSTER, clock=clock, sleep=clock.sleep, **kwargs)


def test_waits_through_creation_registration_and_health_checks(k8s_double, k8s_api_client, sagemaker):
    clock = FakeClock()
    _script(sagemaker, _cluster("Creating"), _cluster("Creating"), *[_cluster("InService", current=2)] * 4)
    first = seed.hyperpod_node(ready=False, deep_health="InProgress")
    second = seed.hyperpod_node(deep_health="InProgress")
    clock.at(20, lambda: k8s_double.add_node(first))
    clock.at(40, lambda: k8s_double.add_node(second))
    clock.at(50, lambda: k8s_double.update_node(first["metadata"]["name"], _ready))
    clock.at(70, lambda: [k8s_double.update_node(n["metadata"]["name"], _passed) for n in (first, second)])
    k8s_double.add_node(seed.hyperpod_node(cluster="someone-else"))  # never counted

    result = _wait(k8s_api_client, sagemaker, clock)

    assert result.code == ExitCode.OK, result.message
    assert result.elapsed == 75 and clock.sleeps == [15] * 5
    assert result.message == f"2 of 2 expected nodes of '{CLUSTER}' are Ready and schedulable"
    sagemaker.stubber.assert_no_pending_responses()


def _ready(node: dict) -> None:
    node["status"]["conditions"][0].update(status="True", reason="KubeletReady")


def _passed(node: dict) -> None:
    node["metadata"]["labels"][seed.DEEP_HEALTH_LABEL] = "Passed"


def test_failed_cluster_stops_at_once_with_its_failure_message(k8s_api_client, sagemaker):
    clock = FakeClock()
    _script(
        sagemaker,
        _cluster("Creating"),
        _cluster(
            "Failed", failure="Lifecycle scripts did not run successfully on instance i-0abc", group_status="Failed"
        ),
    )

    result = _wait(k8s_api_client, sagemaker, clock)

    assert result.code == ExitCode.CLUSTER_NOT_READY
    assert result.message == (
        f"HyperPod cluster '{CLUSTER}' is Failed: Lifecycle scripts did not run successfully on instance i-0abc"
    )
    assert result.elapsed == 15


def test_cluster_still_creating_at_the_deadline_is_not_ready(k8s_api_client, sagemaker):
    clock = FakeClock()
    _script(sagemaker, *[_cluster("Creating", current=1)] * 5)

    result = _wait(k8s_api_client, sagemaker, clock, timeout=60)

    assert result.code == ExitCode.CLUSTER_NOT_READY
    assert result.message.startswith(f"HyperPod cluster '{CLUSTER}' still Creating after 60 s")
    assert "worker-group-1: 1/2 ml.p5.48xlarge (Creating)" in result.message
    assert clock.sleeps == [15, 15, 15, 15] and result.elapsed == 60


def test_missing_nodes_at_the_deadline_time_out(k8s_double, k8s_api_client, sagemaker):
    clock = FakeClock()
    _script(sagemaker, *[_cluster("InService", current=2)] * 4)
    present = k8s_double.add_node(seed.hyperpod_node())
    waiting = k8s_double.add_node(seed.hyperpod_node(deep_health="InProgress"))

    result = _wait(k8s_api_client, sagemaker, clock, timeout=25, poll_interval=10)

    assert result.code == ExitCode.NODES_TIMEOUT
    assert result.message == (
        "timed out after 25 s: 2 of 2 nodes registered, 1 ready and schedulable; "
        f"not ready: {waiting['metadata']['name']}: sagemaker.amazonaws.com/deep-health-check-status=InProgress"
    )
    assert clock.sleeps == [10, 10, 5]
    assert present["metadata"]["name"] not in result.message


def test_unhealthy_nodes_at_the_deadline_are_reported_as_unhealthy(k8s_double, k8s_api_client, sagemaker):
    clock = FakeClock()
    _script(sagemaker, *[_cluster("InService", current=2)] * 2)
    k8s_double.add_node(seed.hyperpod_node())
    bad = k8s_double.add_node(seed.hyperpod_node(deep_health="Failed", health="UnschedulablePendingReplacement"))

    result = _wait(k8s_api_client, sagemaker, clock, timeout=15)

    assert result.code == ExitCode.NODES_UNHEALTHY
    assert result.message == (
        f"1 node(s) of '{CLUSTER}' marked unhealthy by HyperPod: {bad['metadata']['name']} (ml.p5.48xlarge): "
        "sagemaker.amazonaws.com/node-health-status=UnschedulablePendingReplacement, "
        "sagemaker.amazonaws.com/deep-health-check-status=Failed"
    )


def test_fail_fast_stops_at_the_first_unhealthy_node(k8s_double, k8s_api_client, sagemaker):
    clock = FakeClock()
    _script(sagemaker, _cluster("InService", current=2))
    k8s_double.add_node(seed.hyperpod_node(health="Unschedulable"))

    result = _wait(k8s_api_client, sagemaker, clock, fail_fast=True)

    assert result.code == ExitCode.NODES_UNHEALTHY and clock.sleeps == []


def test_a_node_hyperpod_replaces_in_time_does_not_fail_the_wait(k8s_double, k8s_api_client, sagemaker):
    clock = FakeClock()
    _script(sagemaker, *[_cluster("InService", current=2)] * 3)
    k8s_double.add_node(seed.hyperpod_node())
    bad = k8s_double.add_node(seed.hyperpod_node(health="UnschedulablePendingReplacement"))
    clock.at(15, lambda: k8s_double.remove_node(bad["metadata"]["name"]))
    clock.at(30, lambda: k8s_double.add_node(seed.hyperpod_node()))

    result = _wait(k8s_api_client, sagemaker, clock)

    assert result.code == ExitCode.OK and result.elapsed == 30


def test_cordoned_nodes_do_not_count_and_expected_overrides_target(k8s_double, k8s_api_client, sagemaker):
    clock = FakeClock()
    _script(sagemaker, *[_cluster("InService", current=2, target=8)] * 2)
    k8s_double.add_node(seed.hyperpod_node())
    cordoned = seed.hyperpod_node()
    cordoned["spec"]["unschedulable"] = True
    k8s_double.add_node(cordoned)

    result = _wait(k8s_api_client, sagemaker, clock, expected=2, timeout=10, poll_interval=10)

    assert result.code == ExitCode.NODES_TIMEOUT
    assert f"{cordoned['metadata']['name']}: cordoned" in result.message
    assert "2 of 2 nodes registered, 1 ready" in result.message


def test_unknown_cluster_is_an_aws_error(k8s_api_client, sagemaker):
    sagemaker.stubber.add_client_error(
        "describe_cluster",
        service_error_code="ResourceNotFound",
        service_message=f"Cluster {CLUSTER} not found",
        http_status_code=400,
        expected_params={"ClusterName": CLUSTER},
    )

    with pytest.raises(nodes.StepError) as err:
        _wait(k8s_api_client, sagemaker, FakeClock())

    assert err.value.code == ExitCode.AWS_API
    assert err.value.message == f"DescribeCluster '{CLUSTER}' failed: ResourceNotFound: Cluster {CLUSTER} not found"


def test_node_list_failure_is_a_kubernetes_error(k8s_double, k8s_api_client, sagemaker):
    _script(sagemaker, _cluster("InService"))
    k8s_double.inject_fault("GET", "^/api/v1/nodes$", status=403, times=None)

    with pytest.raises(nodes.StepError) as err:
        _wait(k8s_api_client, sagemaker, FakeClock())

    assert err.value.code == ExitCode.KUBERNETES_API and "HTTP 403 Forbidden" in err.value.message


def _args(kubeconfig, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    nodes.register(parser.add_subparsers())
    return parser.parse_args(
        [
            "wait-nodes",
            "--kubeconfig",
            str(kubeconfig.path),
            "--context",
            kubeconfig.context,
            "--cluster-name",
            CLUSTER,
            *extra,
        ]
    )


def test_cli_logs_plain_lines_when_not_a_terminal_and_prints_json(k8s_double, kubeconfig_for_double, sagemaker, capsys):
    clock = FakeClock()
    _script(sagemaker, _cluster("Creating"), _cluster("Creating"), _cluster("InService", current=2))
    clock.at(30, lambda: [k8s_double.add_node(seed.hyperpod_node()) for _ in range(2)])
    args = _args(kubeconfig_for_double, "--json", "--poll-interval", "15")

    code = nodes.run(
        args,
        sagemaker=sagemaker,
        clock=clock,
        sleep=clock.sleep,
        console=Console(file=io.StringIO(), force_terminal=False),
    )

    assert code == ExitCode.OK
    captured = capsys.readouterr()
    progress = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert progress == [  # one line per change, not per poll
        "[     0s] cluster Creating; nodes registered 0/2, ready 0/2, unhealthy 0",
        "[    30s] cluster InService; nodes registered 2/2, ready 2/2, unhealthy 0",
    ]
    summary = json.loads(captured.out)
    assert summary["ok"] is True and summary["exit_code"] == 0 and summary["expected"] == 2
    assert len(summary["nodes"]) == 2 and all(n["usable"] for n in summary["nodes"])


def test_cli_draws_a_live_table_on_a_terminal(k8s_double, kubeconfig_for_double, sagemaker):
    clock = FakeClock()
    _script(sagemaker, _cluster("InService", current=2, target=1))
    node = k8s_double.add_node(seed.hyperpod_node())
    screen = io.StringIO()

    code = nodes.run(
        _args(kubeconfig_for_double),
        sagemaker=sagemaker,
        clock=clock,
        sleep=clock.sleep,
        console=Console(file=screen, force_terminal=True, width=160),
    )

    assert code == ExitCode.OK
    assert node["metadata"]["name"] in screen.getvalue() and "ml.p5.48xlarge" in screen.getvalue()


def test_cli_reports_a_rolled_back_cluster_with_its_reason(kubeconfig_for_double, sagemaker, capsys):
    _script(sagemaker, _cluster("RollingBack", failure="InsufficientInstanceCapacity for ml.p5.48xlarge"))
    code = nodes.run(
        _args(kubeconfig_for_double), sagemaker=sagemaker, clock=FakeClock(), console=Console(file=io.StringIO())
    )
    assert code == ExitCode.CLUSTER_NOT_READY
    assert "is RollingBack: InsufficientInstanceCapacity for ml.p5.48xlarge" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--timeout", "0", "--timeout must be positive, got 0"),
        ("--poll-interval", "-1", "--poll-interval must be positive, got -1"),
        ("--expected", "-2", "--expected must be 0 or more, got -2"),
    ],
)
def test_bad_numbers_are_usage_errors(kubeconfig_for_double, capsys, flag, value, message):
    assert nodes.run(_args(kubeconfig_for_double, flag, value)) == ExitCode.USAGE
    assert capsys.readouterr().err.strip() == message


def test_cli_against_moto_hyperpod_reads_the_target_count_from_describe_cluster(
    k8s_double, kubeconfig_for_double, aws_env, capsys
):
    from moto import mock_aws

    with mock_aws():
        boto3.client("sagemaker", region_name="us-west-2").create_cluster(
            ClusterName=CLUSTER,
            InstanceGroups=[
                {
                    "InstanceGroupName": "worker-group-1",
                    "InstanceType": "ml.p5.48xlarge",
                    "InstanceCount": 3,
                    "LifeCycleConfig": {"SourceS3Uri": "s3://sagemaker-lifecycle/scripts", "OnCreate": "on_create.sh"},
                    "ExecutionRole": "arn:aws:iam::123456789012:role/hyperpod-exec",
                    "ThreadsPerCore": 1,
                }
            ],
            Orchestrator={"Eks": {"ClusterArn": "arn:aws:eks:us-west-2:123456789012:cluster/eks"}},
            VpcConfig={"SecurityGroupIds": ["sg-12345678"], "Subnets": ["subnet-12345678"]},
        )
        for _ in range(2):
            k8s_double.add_node(seed.hyperpod_node())
        clock = FakeClock()
        clock.at(30, lambda: k8s_double.add_node(seed.hyperpod_node()))

        code = nodes.run(
            _args(kubeconfig_for_double, "--region", "us-west-2", "--json"),
            clock=clock,
            sleep=clock.sleep,
            console=Console(file=io.StringIO()),
        )

    assert code == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["expected"] == 3 and summary["elapsed_seconds"] == 30
