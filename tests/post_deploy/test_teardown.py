"""``teardown``: SkyPilot first, then the workload stacks in order, then the VPC's left-over ENIs, then
the network stack; each step's failure stops the ones after it with its own exit code.

Boundaries: EC2 and CloudFormation are moto (in-process); SkyPilot is the real SDK against the
loopback API double; the ``cdk`` CLI is a tiny recording executable put first on PATH, which logs
its arguments and can be told to fail for one stack. That fake is used for the cdk boundary only:
what ``cdk destroy`` does to CloudFormation is CDK's, and a real one needs AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import time
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws

from post_deploy import network_cleanup, teardown
from post_deploy.exit_codes import ExitCode
from tests.conftest import make_config

REGION = "us-east-1"  # the default config's region
STACKS = {
    "network": "hyperpod-sky-network",
    "lifecycle_bucket": "hyperpod-sky-lifecycle",
    "eks": "hyperpod-sky-eks",
    "hyperpod": "hyperpod-sky-hyperpod",
}
CONTEXT = "hyperpod-sky-eks"  # the kubeconfig step names the context after the EKS cluster

# The network stack as moto's CloudFormation builds it: VPC, a HyperPod and an EKS subnet, the
# shared security group and an S3 gateway endpoint (its id stands for the stack's own endpoints).
NETWORK_TEMPLATE = {
    "Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.192.0.0/16"}},
        "HyperPodSubnet": {
            "Type": "AWS::EC2::Subnet",
            "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.192.0.0/18", "AvailabilityZone": "us-east-1a"},
        },
        "EksSubnet": {
            "Type": "AWS::EC2::Subnet",
            "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.192.64.0/24", "AvailabilityZone": "us-east-1b"},
        },
        "HyperPodSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {"GroupDescription": "shared", "VpcId": {"Ref": "Vpc"}},
        },
        "RouteTable": {"Type": "AWS::EC2::RouteTable", "Properties": {"VpcId": {"Ref": "Vpc"}}},
        "S3Endpoint": {
            "Type": "AWS::EC2::VPCEndpoint",
            "Properties": {
                "VpcId": {"Ref": "Vpc"},
                "ServiceName": f"com.amazonaws.{REGION}.s3",
                "VpcEndpointType": "Gateway",
                "RouteTableIds": [{"Ref": "RouteTable"}],
            },
        },
    }
}


# ----- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def cdk_recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `cdk` first on PATH: appends its working directory and argv (tab-separated, one call per
    line) to a log; exits 1 when an argument equals CDK_FAIL_STACK."""
    bin_dir = tmp_path / "recorder-bin"
    bin_dir.mkdir()
    log = tmp_path / "cdk-calls.tsv"
    script = bin_dir / "cdk"
    script.write_text(
        "#!/bin/sh\n"
        '{ printf \'%s\' "$PWD"; for arg in "$@"; do printf \'\\t%s\' "$arg"; done; echo; } >> "$CDK_RECORD"\n'
        'echo "$2: destroying... (recorder)"\n'
        'for arg in "$@"; do\n'
        '  if [ -n "$CDK_FAIL_STACK" ] && [ "$arg" = "$CDK_FAIL_STACK" ]; then\n'
        '    echo "$2 failed: DELETE_FAILED (recorder)"; exit 1\n'
        "  fi\n"
        "done\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CDK_RECORD", str(log))
    monkeypatch.delenv("CDK_FAIL_STACK", raising=False)
    return log


def cdk_calls(log: Path) -> list[list[str]]:
    return [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []


def destroyed_stacks(log: Path) -> list[str]:
    calls = cdk_calls(log)
    assert all(call[1] == "destroy" for call in calls), calls
    return [call[2] for call in calls]


@pytest.fixture
def aws(aws_env):
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION), boto3.client("cloudformation", region_name=REGION)


@pytest.fixture
def network(aws) -> dict[str, str]:
    """Deploys the network stack into moto; returns its physical ids by logical id."""
    _, cfn = aws
    cfn.create_stack(StackName=STACKS["network"], TemplateBody=json.dumps(NETWORK_TEMPLATE))
    return {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName=STACKS["network"])["StackResources"]
    }


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps; ``on_sleep(n)`` runs after
    the n-th sleep, which is how a test makes AWS change state 'while' the code waits."""

    def __init__(self, on_sleep=lambda n: None):
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep(len(self.sleeps))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    teardown.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["teardown", *argv])


def run_teardown(*argv: str, clock: FakeClock | None = None, tmp_path: Path | None = None) -> int:
    clock = clock or FakeClock()
    extra = ["--kubeconfig", str(tmp_path / "no-kubeconfig")] if tmp_path else []
    return teardown.run(parse("--yes", *extra, *argv), clock=clock, sleep=clock.sleep)


def eni(ec2, subnet: str, description: str, *, groups=(), interface_type=None, tags=None) -> str:
    kwargs = {"SubnetId": subnet, "Description": description}
    if groups:
        kwargs["Groups"] = list(groups)
    if interface_type:
        kwargs["InterfaceType"] = interface_type
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "network-interface", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    return ec2.create_network_interface(**kwargs)["NetworkInterface"]["NetworkInterfaceId"]


def attach_to_instance_elsewhere(ec2, eni_id: str) -> str:
    """Make ``eni_id`` in-use: attach it to an instance whose own primary ENI lives in another VPC,
    so that the only ENI of the instance in our VPC is the one under test."""
    other_vpc = ec2.create_vpc(CidrBlock="172.31.0.0/16")["Vpc"]["VpcId"]
    other_subnet = ec2.create_subnet(VpcId=other_vpc, CidrBlock="172.31.0.0/24")["Subnet"]["SubnetId"]
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=other_subnet)
    ec2.attach_network_interface(
        NetworkInterfaceId=eni_id, InstanceId=instance["Instances"][0]["InstanceId"], DeviceIndex=1
    )
    return status_of(ec2, eni_id)["Attachment"]["AttachmentId"]


def status_of(ec2, eni_id: str) -> dict:
    return ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]


def enis_in(ec2, vpc: str) -> set[str]:
    found = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"]
    return {e["NetworkInterfaceId"] for e in found}


# ----- the whole order ----------------------------------------------------------------------------
def test_stacks_are_destroyed_hyperpod_eks_lifecycle_then_network_each_exclusively(
    cdk_recorder, network, tmp_path, capsys
):
    assert run_teardown("-c", "prefix=hyperpod-sky", tmp_path=tmp_path) == ExitCode.OK
    calls = cdk_calls(cdk_recorder)
    assert [c[2] for c in calls] == [STACKS["hyperpod"], STACKS["eks"], STACKS["lifecycle_bucket"], STACKS["network"]]
    for call in calls:
        assert call[0] == str(teardown.PROJECT_ROOT)  # cdk.json (the app) is found there
        assert call[1:] == ["destroy", call[2], "--exclusively", "--force", "-c", "prefix=hyperpod-sky"]
    err = capsys.readouterr().err
    assert "skypilot: skipped: no EKS context known" in err
    assert "network interfaces: clear in" in err


def test_stack_names_come_from_the_same_function_the_app_uses(cdk_recorder, network, tmp_path):
    from config.names import stack_names

    assert run_teardown(tmp_path=tmp_path) == ExitCode.OK
    expected = stack_names(make_config())
    assert destroyed_stacks(cdk_recorder) == [expected[r] for r in ("hyperpod", "eks", "lifecycle_bucket", "network")]


def test_another_prefix_destroys_that_deployment_only(cdk_recorder, aws, tmp_path):
    assert run_teardown("-c", "prefix=team-a", tmp_path=tmp_path) == ExitCode.OK
    assert destroyed_stacks(cdk_recorder) == ["team-a-hyperpod", "team-a-eks", "team-a-lifecycle", "team-a-network"]


PIPELINE = [
    "-c",
    "pipeline.enabled=true",
    "-c",
    "pipeline.connection_arn=arn:aws:codeconnections:us-east-1:111111111111:connection/12345678-1234-1234-1234-123456789012",
]


def test_a_pipeline_in_this_account_is_destroyed_first(cdk_recorder, network, tmp_path):
    assert run_teardown(*PIPELINE, tmp_path=tmp_path) == ExitCode.OK
    assert destroyed_stacks(cdk_recorder) == [
        "hyperpod-sky-pipeline",
        *(STACKS[r] for r in ("hyperpod", "eks", "lifecycle_bucket", "network")),
    ]


def test_a_pipeline_in_another_account_is_named_not_destroyed(cdk_recorder, network, tmp_path, capsys):
    cross = [
        *PIPELINE,
        "-c",
        "account=123456789012",
        "-c",
        "pipeline.pipeline_account=111111111111",
        "-c",
        "pipeline.cross_account_keys=true",
    ]
    assert run_teardown(*cross, tmp_path=tmp_path) == ExitCode.OK
    assert "hyperpod-sky-pipeline" not in destroyed_stacks(cdk_recorder)
    assert (
        "the pipeline hyperpod-sky-pipeline in account 111111111111 redeploys these stacks" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "failing, code, expected_calls",
    [
        ("hyperpod", ExitCode.CLUSTER_NOT_READY, ["hyperpod"]),
        ("eks", ExitCode.CLUSTER_NOT_READY, ["hyperpod", "eks"]),
        ("lifecycle_bucket", ExitCode.CLUSTER_NOT_READY, ["hyperpod", "eks", "lifecycle_bucket"]),
        ("network", ExitCode.AWS_API, ["hyperpod", "eks", "lifecycle_bucket", "network"]),
    ],
)
def test_a_failed_cdk_destroy_stops_the_later_ones_with_its_step_code(
    failing, code, expected_calls, cdk_recorder, network, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CDK_FAIL_STACK", STACKS[failing])
    assert run_teardown(tmp_path=tmp_path) == code
    assert destroyed_stacks(cdk_recorder) == [STACKS[r] for r in expected_calls]
    err = capsys.readouterr().err
    # the CLI's own output is relayed, and its tail is in the one-line error
    assert f"teardown: cdk destroy {STACKS[failing]} failed (exit 1): " in err
    assert f"{STACKS[failing]} failed: DELETE_FAILED (recorder)" in err.splitlines()[-1]


def test_json_summary_is_the_only_stdout(cdk_recorder, network, tmp_path, capsys):
    assert run_teardown("--json", tmp_path=tmp_path) == ExitCode.OK
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    summary = json.loads(out[0])
    assert summary["ok"] is True
    assert summary["destroyed"] == [STACKS[r] for r in ("hyperpod", "eks", "lifecycle_bucket", "network")]
    assert summary["network_interfaces"]["vpc_id"] == network["Vpc"]


# ----- step 3: network interfaces -----------------------------------------------------------------
def test_in_use_lambda_eni_is_waited_for_then_deleted_once_available(cdk_recorder, aws, network, tmp_path, capsys):
    ec2, _ = aws
    lambda_eni = eni(ec2, network["HyperPodSubnet"], "AWS Lambda VPC ENI-hyperpod-sky-eks-HelmHandler-abc")
    attachment = attach_to_instance_elsewhere(ec2, lambda_eni)
    destroyed_before_release: list[list[str]] = []

    def release_after_three_polls(n: int) -> None:
        if n == 3:  # Lambda lets go of its ENI while we wait
            destroyed_before_release.extend(destroyed_stacks(cdk_recorder))
            ec2.detach_network_interface(AttachmentId=attachment)

    clock = FakeClock(release_after_three_polls)
    assert run_teardown("--poll-seconds", "20", clock=clock, tmp_path=tmp_path) == ExitCode.OK
    assert clock.sleeps == [20, 20, 20]
    assert lambda_eni not in enis_in(ec2, network["Vpc"])
    # waited after the workload stacks were gone and before the network stack was touched
    assert destroyed_before_release == [STACKS["hyperpod"], STACKS["eks"], STACKS["lifecycle_bucket"]]
    assert destroyed_stacks(cdk_recorder)[-1] == STACKS["network"]
    err = capsys.readouterr().err
    assert err.count("network interfaces: waiting for 1 in use") == 3
    assert "0s of 3600s" in err and "40s of 3600s" in err  # progress with elapsed and bound
    assert f"deleted {lambda_eni} (lambda" in err


def test_available_hyperpod_cni_and_app_sg_enis_are_deleted_without_waiting(
    cdk_recorder, aws, network, tmp_path, capsys
):
    ec2, _ = aws
    subnet = network["HyperPodSubnet"]
    left = {
        eni(ec2, subnet, "SageMaker HyperPod cluster hyperpod-sky node i-0abc"): "hyperpod",
        eni(
            ec2, subnet, "aws-K8S-i-0123456789abcdef0", tags={"cluster.k8s.amazonaws.com/name": "hyperpod-sky-eks"}
        ): "eks",
        eni(ec2, subnet, "", groups=[network["HyperPodSecurityGroup"]]): "app security group",
    }
    clock = FakeClock()
    assert run_teardown(clock=clock, tmp_path=tmp_path) == ExitCode.OK
    assert clock.sleeps == []
    assert not set(left) & enis_in(ec2, network["Vpc"])
    err = capsys.readouterr().err
    for eni_id, kind in left.items():
        assert f"deleted {eni_id} ({kind}:" in err


def test_enis_of_the_network_stack_itself_are_left_to_cloudformation(cdk_recorder, aws, network, tmp_path):
    ec2, _ = aws
    # What an interface endpoint of the stack looks like: requester-managed, named after the endpoint.
    own = eni(ec2, network["EksSubnet"], f"VPC Endpoint Interface {network['S3Endpoint']}")
    assert run_teardown(tmp_path=tmp_path) == ExitCode.OK
    assert own in enis_in(ec2, network["Vpc"])
    assert destroyed_stacks(cdk_recorder)[-1] == STACKS["network"]


def test_unattributable_eni_is_reported_with_id_and_description_and_the_network_is_kept(
    cdk_recorder, aws, network, tmp_path, capsys
):
    ec2, _ = aws
    theirs = eni(ec2, network["EksSubnet"], "debugging box of alice")
    hyperpod = eni(ec2, network["HyperPodSubnet"], "SageMaker HyperPod node i-0def")
    assert run_teardown(tmp_path=tmp_path) == ExitCode.NODES_TIMEOUT
    assert theirs in enis_in(ec2, network["Vpc"])  # never deleted
    assert hyperpod not in enis_in(ec2, network["Vpc"])  # ours still cleaned
    assert STACKS["network"] not in destroyed_stacks(cdk_recorder)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert theirs in last and "'debugging box of alice'" in last and network["EksSubnet"] in last
    assert "rerun teardown" in last


def test_a_guardduty_endpoint_is_named_as_such(cdk_recorder, aws, network, tmp_path, capsys):
    ec2, _ = aws
    endpoint = ec2.create_vpc_endpoint(
        VpcId=network["Vpc"],
        ServiceName=f"com.amazonaws.{REGION}.guardduty-data",
        VpcEndpointType="Interface",
        SubnetIds=[network["EksSubnet"]],
    )["VpcEndpoint"]["VpcEndpointId"]
    eni(ec2, network["EksSubnet"], f"VPC Endpoint Interface {endpoint}")
    assert run_teardown(tmp_path=tmp_path) == ExitCode.NODES_TIMEOUT
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"endpoint service com.amazonaws.{REGION}.guardduty-data" in last
    assert "GuardDutyManagedSecurityGroup" in last


def test_eni_still_in_use_at_the_deadline_ends_the_step_after_bounded_polls(
    cdk_recorder, aws, network, tmp_path, capsys
):
    ec2, _ = aws
    stuck = eni(ec2, network["HyperPodSubnet"], "AWS Lambda VPC ENI-stuck")
    attach_to_instance_elsewhere(ec2, stuck)
    clock = FakeClock()
    code = run_teardown("--eni-timeout-minutes", "1", "--poll-seconds", "25", clock=clock, tmp_path=tmp_path)
    assert code == ExitCode.NODES_TIMEOUT
    assert clock.sleeps == [25, 25, 10]  # never sleeps past the deadline
    assert stuck in enis_in(ec2, network["Vpc"])
    assert STACKS["network"] not in destroyed_stacks(cdk_recorder)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"still in use in {network['Vpc']} after 1 min: {stuck} (lambda, in-use)" in last


def test_a_network_stack_that_is_already_gone_skips_the_wait(cdk_recorder, aws, tmp_path, capsys):
    assert run_teardown(tmp_path=tmp_path) == ExitCode.OK
    assert destroyed_stacks(cdk_recorder)[-1] == STACKS["network"]  # a no-op for cdk, kept for idempotence
    assert f"skipped: stack {STACKS['network']} (or its VPC) does not exist" in capsys.readouterr().err


def test_ec2_permission_errors_end_step_three_with_its_code(cdk_recorder, network, tmp_path, capsys, monkeypatch):
    from botocore.exceptions import ClientError

    def denied(ec2, vpc_id):
        raise ClientError(
            {"Error": {"Code": "UnauthorizedOperation", "Message": "not allowed"}}, "DescribeNetworkInterfaces"
        )

    monkeypatch.setattr(network_cleanup, "_enis_in_vpc", denied)
    assert run_teardown(tmp_path=tmp_path) == ExitCode.NODES_TIMEOUT
    assert STACKS["network"] not in destroyed_stacks(cdk_recorder)
    assert "DescribeNetworkInterfaces: UnauthorizedOperation: not allowed" in capsys.readouterr().err


# ----- step 1: SkyPilot ---------------------------------------------------------------------------
def _status_record(name: str, cloud: str, region: str):
    from sky.schemas.api import responses
    from sky.utils import status_lib

    return responses.StatusResponse(
        name=name,
        launched_at=int(time.time()),
        handle=None,
        status=status_lib.ClusterStatus.UP,
        autostop=-1,
        to_down=False,
        cluster_hash="h-" + name,
        cluster_ever_up=True,
        user_hash="u1",
        user_name="alice",
        workspace="default",
        is_managed=False,
        nodes=1,
        cloud=cloud,
        region=region,
    )


@pytest.fixture
def sky_double(monkeypatch, tmp_path):
    """The loopback SkyPilot API double taught ``/status`` (its cluster table, with each cluster's infra)."""
    from sky import core
    from sky.server.requests import payloads

    from tests.post_deploy import sky_api_double as module

    class StatusDouble(module.SkyApiDouble):
        def _run_status(self, body: payloads.StatusBody):
            assert body.all_users, "teardown must see every user's clusters on the context"
            return [_status_record(name, *c["infra"]) for name, c in self.clusters.items()], []

    monkeypatch.setitem(module._ENDPOINTS, "/status", (payloads.StatusBody, "status", core.status))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    from sky.server import common as server_common

    with StatusDouble() as double:
        monkeypatch.setenv("SKYPILOT_API_SERVER_ENDPOINT", double.url)
        server_common.get_server_url.cache_clear()  # SkyPilot caches the endpoint per process
        yield double
    server_common.get_server_url.cache_clear()


def write_kubeconfig(path: Path, context: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": context,
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    return path


def outputs_file(tmp_path: Path) -> Path:
    path = tmp_path / "cdk-outputs.json"
    path.write_text(json.dumps({STACKS["eks"]: {"EksClusterName": CONTEXT, "Region": REGION}}))
    return path


def test_skypilot_clusters_on_the_eks_context_are_downed_before_any_stack(
    sky_double, cdk_recorder, network, tmp_path, capsys
):
    sky_double.clusters.update(
        {
            "train": {"jobs": {}, "infra": ("Kubernetes", CONTEXT)},
            "dev": {"jobs": {}, "infra": ("Kubernetes", CONTEXT)},
            "elsewhere": {"jobs": {}, "infra": ("Kubernetes", "some-other-context")},
            "vm": {"jobs": {}, "infra": ("AWS", "us-east-1")},
        }
    )
    kubeconfig = write_kubeconfig(tmp_path / "kube" / "config", CONTEXT)
    args = parse("--yes", "--outputs", str(outputs_file(tmp_path)), "--kubeconfig", str(kubeconfig))
    clock = FakeClock()
    assert teardown.run(args, clock=clock, sleep=clock.sleep) == ExitCode.OK
    assert sorted(body["cluster_name"] for body in sky_double.bodies("/down")) == ["dev", "train"]
    assert set(sky_double.clusters) == {"elsewhere", "vm"}
    assert destroyed_stacks(cdk_recorder)[0] == STACKS["hyperpod"]
    err = capsys.readouterr().err
    assert err.index("skypilot: sky down") < err.index(f"cdk: destroying {STACKS['hyperpod']}")
    assert "leaving 2 cluster(s) on other infra: elsewhere, vm" in err


def test_a_failed_sky_down_stops_before_any_stack_is_touched(sky_double, cdk_recorder, network, tmp_path, capsys):
    from sky import exceptions

    sky_double.scenario.down_error = exceptions.NotSupportedError("managed jobs are still running")
    sky_double.clusters["train"] = {"jobs": {}, "infra": ("Kubernetes", CONTEXT)}
    kubeconfig = write_kubeconfig(tmp_path / "kube" / "config", CONTEXT)
    args = parse("--yes", "--outputs", str(outputs_file(tmp_path)), "--kubeconfig", str(kubeconfig))
    assert teardown.run(args, clock=FakeClock(), sleep=FakeClock().sleep) == ExitCode.LAUNCH_FAILED
    assert cdk_calls(cdk_recorder) == []
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "could not tear down train: " in last and "managed jobs are still running" in last
    assert "--skip-skypilot" in last


def test_without_the_context_in_the_kubeconfig_skypilot_is_skipped_with_a_reason(
    sky_double, cdk_recorder, network, tmp_path, capsys
):
    sky_double.clusters["train"] = {"jobs": {}, "infra": ("Kubernetes", CONTEXT)}
    kubeconfig = write_kubeconfig(tmp_path / "kube" / "config", "some-other-context")
    args = parse("--yes", "--outputs", str(outputs_file(tmp_path)), "--kubeconfig", str(kubeconfig))
    assert teardown.run(args, clock=FakeClock(), sleep=FakeClock().sleep) == ExitCode.OK
    assert sky_double.calls == []  # SkyPilot was not even asked
    assert f"has no context '{CONTEXT}'" in capsys.readouterr().err
    assert len(cdk_calls(cdk_recorder)) == 4


# ----- before anything is deleted -----------------------------------------------------------------
def test_without_yes_and_without_a_terminal_nothing_is_deleted(cdk_recorder, network, tmp_path, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("hyperpod-sky\n"))
    args = parse("--kubeconfig", str(tmp_path / "none"))
    assert teardown.run(args) == ExitCode.USAGE
    assert cdk_calls(cdk_recorder) == []
    assert "not confirmed: pass --yes" in capsys.readouterr().err


def test_typing_the_prefix_confirms_and_anything_else_does_not(network, tmp_path):
    class Tty:
        def __init__(self, line):
            self.line = line

        def isatty(self):
            return True

        def readline(self):
            return self.line

    plan = teardown.make_plan(parse("--kubeconfig", str(tmp_path / "none")))
    teardown.confirm(plan, assume_yes=False, stdin=Tty("hyperpod-sky\n"))
    with pytest.raises(teardown.StepError) as err:
        teardown.confirm(plan, assume_yes=False, stdin=Tty("yes\n"))
    assert err.value.code == ExitCode.USAGE


def test_a_bad_config_override_is_one_line_and_deletes_nothing(cdk_recorder, tmp_path, capsys):
    assert run_teardown("-c", "prefix=Bad_Prefix", tmp_path=tmp_path) == ExitCode.USAGE
    assert cdk_calls(cdk_recorder) == []
    assert 'config error: prefix = "Bad_Prefix"' in capsys.readouterr().err


def test_outputs_from_another_region_are_refused(cdk_recorder, tmp_path, capsys):
    path = tmp_path / "cdk-outputs.json"
    path.write_text(json.dumps({STACKS["eks"]: {"EksClusterName": CONTEXT, "Region": "eu-west-1"}}))
    assert run_teardown("--outputs", str(path), tmp_path=tmp_path) == ExitCode.USAGE
    assert cdk_calls(cdk_recorder) == []
    assert f"outputs file {path}: region eu-west-1, but the config says us-east-1" in capsys.readouterr().err


def write_outputs(tmp_path: Path, outputs: dict) -> Path:
    path = tmp_path / "cdk-outputs.json"
    path.write_text(json.dumps(outputs))
    return path


TEAM_A_OUTPUTS = {
    "team-a-lifecycle": {"LifecycleBucketName": "sagemaker-team-a-lifecycle-123456789012-us-east-1"},
    "team-a-eks": {"EksClusterName": "team-a-eks", "Region": REGION},
    "team-a-hyperpod": {"HyperPodClusterName": "hyperpod-sky"},
}


def test_outputs_of_another_deployment_are_refused_before_anything_is_deleted(cdk_recorder, tmp_path, capsys):
    # Deployed with prefix team-a, destroyed without its config: the plan would be hyperpod-sky-*.
    path = write_outputs(tmp_path, TEAM_A_OUTPUTS)
    assert run_teardown("--outputs", str(path), tmp_path=tmp_path) == ExitCode.USAGE
    assert cdk_calls(cdk_recorder) == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"teardown: outputs file {path}: stack(s) team-a-lifecycle, team-a-eks, team-a-hyperpod are not in this "
        f"config's plan ({', '.join(STACKS[r] for r in ('hyperpod', 'eks', 'lifecycle_bucket', 'network'))}): "
        "pass the -c config of that deployment (make destroy CDK_ARGS=...)"
    )


def test_the_same_outputs_with_their_config_are_destroyed(cdk_recorder, aws, tmp_path):
    path = write_outputs(tmp_path, TEAM_A_OUTPUTS)
    assert run_teardown("--outputs", str(path), "-c", "prefix=team-a", tmp_path=tmp_path) == ExitCode.OK
    assert destroyed_stacks(cdk_recorder) == ["team-a-hyperpod", "team-a-eks", "team-a-lifecycle", "team-a-network"]


@pytest.mark.parametrize(
    "outputs, message",
    [
        (
            {STACKS["eks"]: {"EksClusterName": "someone-elses-eks"}},
            "EksClusterName someone-elses-eks, but the config makes hyperpod-sky-eks",
        ),
        (
            {STACKS["hyperpod"]: {"HyperPodClusterName": "prod-gpus"}},
            "HyperPodClusterName prod-gpus, but the config makes hyperpod-sky",
        ),
    ],
)
def test_outputs_naming_other_clusters_are_refused(outputs, message, cdk_recorder, tmp_path, capsys):
    path = write_outputs(tmp_path, outputs)
    assert run_teardown("--outputs", str(path), tmp_path=tmp_path) == ExitCode.USAGE
    assert cdk_calls(cdk_recorder) == []
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_missing_outputs_file_does_not_block_teardown(cdk_recorder, network, tmp_path, capsys):
    assert run_teardown("--outputs", str(tmp_path / "gone.json"), tmp_path=tmp_path) == ExitCode.OK
    assert "going on without it" in capsys.readouterr().err


def test_retained_buckets_are_reported_as_left_behind(cdk_recorder, network, tmp_path, capsys):
    assert run_teardown("-c", "lifecycle_bucket.removal_policy=retain", tmp_path=tmp_path) == ExitCode.OK
    err = capsys.readouterr().err
    assert "left behind: lifecycle_bucket.removal_policy=retain kept bucket sagemaker-hyperpod-sky-lifecycle-" in err


# ----- `cdk destroy --all` alone, from a deployed state -------------------------------------------
# Teardown adds ordering and ENI clearing; the stacks themselves must still be deletable on their
# own: no resource kept by a Retain policy unless the config asks for it, and every bucket that is
# deleted empties itself first (CloudFormation cannot delete a non-empty bucket).
@pytest.fixture(scope="module")
def infrastructure_templates(tmp_path_factory):
    import aws_cdk as cdk

    from config import load_config
    from stacks.infrastructure import add_infrastructure
    from tests.conftest import cdk_context

    def synth(name: str, **overrides) -> dict[str, dict]:
        outdir = tmp_path_factory.mktemp(name)
        app = cdk.App(context={**cdk_context(), **overrides}, outdir=str(outdir))
        add_infrastructure(app, load_config(app.node.get_all_context()))
        app.synth()
        return {
            p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in outdir.glob("*.template.json")
        }

    return {"default": synth("default"), "retain": synth("retain", **{"lifecycle_bucket.removal_policy": "retain"})}


def kept_resources(templates: dict[str, dict]) -> dict[str, str]:
    return {
        f"{stack}/{logical_id}": resource["Type"]
        for stack, template in templates.items()
        for logical_id, resource in template["Resources"].items()
        if resource.get("DeletionPolicy", "Delete") != "Delete"
        or resource.get("UpdateReplacePolicy", "Delete") != "Delete"
    }


def test_default_config_retains_no_resource_in_any_stack(infrastructure_templates):
    templates = infrastructure_templates["default"]
    assert set(templates) == set(STACKS.values())
    assert kept_resources(templates) == {}


def test_removal_policy_retain_keeps_exactly_the_two_buckets(infrastructure_templates):
    lifecycle = infrastructure_templates["retain"][STACKS["lifecycle_bucket"]]["Resources"]
    buckets = {
        f"{STACKS['lifecycle_bucket']}/{k}": "AWS::S3::Bucket"
        for k, r in lifecycle.items()
        if r["Type"] == "AWS::S3::Bucket"
    }
    assert len(buckets) == 2
    assert kept_resources(infrastructure_templates["retain"]) == buckets
    assert not [r for r in lifecycle.values() if r["Type"] == "Custom::S3AutoDeleteObjects"]


def test_every_bucket_that_is_deleted_empties_itself_first(infrastructure_templates):
    for stack, template in infrastructure_templates["default"].items():
        resources = template["Resources"]
        buckets = {k for k, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
        # aws-cdk-lib's auto-delete for the buckets, constructs/access_log_bucket's cleanup for the log
        # buckets (it drains them after their sources are gone, then deletes them).
        emptied = {
            r["Properties"]["BucketName"]["Ref"]
            for r in resources.values()
            if r["Type"] in ("Custom::S3AutoDeleteObjects", "Custom::AccessLogBucketCleanup")
        }
        assert buckets == emptied, stack


def test_custom_resources_are_the_known_ones_whose_delete_paths_were_reviewed(infrastructure_templates):
    # Custom::HyperPodCluster: DeleteCluster, then the provider's is_complete polls until it is gone
    # (constructs/hyperpod_cluster/runtime/handler.py); Custom::HyperPodHelmChart: `helm uninstall`,
    # an absent release or cluster counting as success (hyperpod_helm_chart runtime handler.py);
    # BucketDeployment with RetainOnDelete false deletes the uploaded scripts; S3AutoDeleteObjects
    # empties its bucket. A new custom resource type fails here until its Delete path is reviewed.
    found = {
        r["Type"]: r
        for t in infrastructure_templates["default"].values()
        for r in t["Resources"].values()
        if r["Type"].startswith("Custom::") or r["Type"] == "AWS::CloudFormation::CustomResource"
    }
    # Custom::AccessLogBucketCleanup: drains and deletes the access-log bucket after its sources
    # (constructs/access_log_bucket/runtime/handler.py, tests/access_log_bucket/); Custom::ServiceLogGroupRetention:
    # deletes the EKS control-plane log group when the removal policy says so (tests/control_plane_log_group/).
    assert set(found) == {
        "Custom::HyperPodCluster",
        "Custom::HyperPodHelmChart",
        "Custom::CDKBucketDeployment",
        "Custom::S3AutoDeleteObjects",
        "Custom::AccessLogBucketCleanup",
        "Custom::ServiceLogGroupRetention",
    }
    assert found["Custom::CDKBucketDeployment"]["Properties"].get("RetainOnDelete") is False


# ----- step 3: the cluster security group EKS leaves behind -----------------------------------------
def eks_cluster_sg(ec2, vpc: str, cluster: str) -> str:
    """What EKS creates for a cluster: its name pattern and the aws:eks:cluster-name tag."""
    return ec2.create_security_group(
        GroupName=f"eks-cluster-sg-{cluster}-1234567890",
        Description="EKS created security group applied to ENI that is attached to EKS Control Plane master nodes",
        VpcId=vpc,
        TagSpecifications=[
            {
                "ResourceType": "security-group",
                "Tags": [
                    {"Key": "aws:eks:cluster-name", "Value": cluster},
                    {"Key": f"kubernetes.io/cluster/{cluster}", "Value": "owned"},
                ],
            }
        ],
    )["GroupId"]


def groups_in(ec2, vpc: str) -> set[str]:
    found = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    return {g["GroupId"] for g in found}


def test_the_cluster_security_group_eks_left_behind_is_deleted_before_the_network_stack(
    cdk_recorder, aws, network, tmp_path, capsys, monkeypatch
):
    ec2, _ = aws
    left = eks_cluster_sg(ec2, network["Vpc"], CONTEXT)
    # the interface that kept EKS from deleting it, released by now
    eni(ec2, network["EksSubnet"], "Amazon EKS hyperpod-sky-eks", groups=[left])
    destroyed_at_deletion: list[list[str]] = []
    real_delete = network_cleanup.delete_eks_cluster_security_groups

    def recording(*args, **kwargs):
        destroyed_at_deletion.append(destroyed_stacks(cdk_recorder))
        return real_delete(*args, **kwargs)

    monkeypatch.setattr(teardown, "delete_eks_cluster_security_groups", recording)
    assert run_teardown(tmp_path=tmp_path) == ExitCode.OK
    assert left not in groups_in(ec2, network["Vpc"])
    assert destroyed_at_deletion == [[STACKS[r] for r in ("hyperpod", "eks", "lifecycle_bucket")]]
    assert destroyed_stacks(cdk_recorder)[-1] == STACKS["network"]
    assert f"security groups: deleted {left} (eks-cluster-sg-{CONTEXT}-1234567890)" in capsys.readouterr().err


def test_another_clusters_security_group_is_not_touched(cdk_recorder, aws, network, tmp_path):
    ec2, _ = aws
    theirs = eks_cluster_sg(ec2, network["Vpc"], "someone-elses-eks")
    assert run_teardown(tmp_path=tmp_path) == ExitCode.OK
    assert theirs in groups_in(ec2, network["Vpc"])


def test_a_cluster_security_group_still_referenced_stops_before_the_network_stack(
    cdk_recorder, aws, network, tmp_path, capsys
):
    ec2, _ = aws
    left = eks_cluster_sg(ec2, network["Vpc"], CONTEXT)
    other = ec2.create_security_group(GroupName="bastion", Description="someone's", VpcId=network["Vpc"])["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=other, IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": left}]}]
    )
    assert run_teardown(tmp_path=tmp_path) == ExitCode.NODES_TIMEOUT
    assert left in groups_in(ec2, network["Vpc"])
    assert STACKS["network"] not in destroyed_stacks(cdk_recorder)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"security group {left}" in last and f"by rules of {other}" in last and "rerun teardown" in last


# ----- existing resources -------------------------------------------------------------------------
EXISTING = [
    "-c",
    "network.existing.vpc_id=vpc-0123456789abcdef0",
    "-c",
    "network.existing.hyperpod_subnet_ids=[subnet-0123456789abcdef0]",
    "-c",
    "network.existing.eks_subnet_ids=[subnet-0123456789abcdef1, subnet-0123456789abcdef2]",
    "-c",
    "network.existing.security_group_id=sg-0123456789abcdef0",
    "-c",
    "eks.existing.cluster_name=team-cluster",
    "-c",
    "eks.existing.cluster_security_group_id=sg-0123456789abcdef9",
    "-c",
    "lifecycle_bucket.existing_bucket_name=sagemaker-team-scripts",
]


def test_existing_vpc_cluster_and_bucket_are_never_deleted_and_teardown_says_so(cdk_recorder, aws, tmp_path, capsys):
    ec2, _ = aws
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.0.0/24")["Subnet"]["SubnetId"]
    theirs = eni(ec2, subnet, "someone else's interface")
    assert run_teardown(*EXISTING, tmp_path=tmp_path) == ExitCode.OK
    # The three workload stacks only: there is no network stack, and nothing in any VPC is touched.
    assert destroyed_stacks(cdk_recorder) == [STACKS[r] for r in ("hyperpod", "eks", "lifecycle_bucket")]
    assert theirs in enis_in(ec2, vpc)
    err = capsys.readouterr().err
    assert "network: existing VPC (network.existing): no network stack to destroy" in err
    for kept in (
        "kept, not created by this app: VPC vpc-0123456789abcdef0",
        "kept, not created by this app: EKS cluster team-cluster",
        "kept, not created by this app: bucket sagemaker-team-scripts (lifecycle_bucket.existing_bucket_name; "
        "only s3://sagemaker-team-scripts/hyperpod-sky/lifecycle_scripts/ is deleted)",
    ):
        assert kept in err
    assert "left behind: lifecycle_bucket.removal_policy=retain" not in err


def test_in_an_existing_vpc_only_the_cluster_group_of_the_eks_cluster_this_app_made_is_deleted(
    cdk_recorder, aws, tmp_path, capsys
):
    ec2, _ = aws
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.0.0/24")["Subnet"]["SubnetId"]
    theirs = eni(ec2, subnet, "someone else's interface")
    ours = eks_cluster_sg(ec2, vpc, CONTEXT)  # EKS made it for hyperpod-sky-eks, which the eks stack created
    someone_elses = eks_cluster_sg(ec2, vpc, "their-own-eks")
    network_only = [arg.replace("vpc-0123456789abcdef0", vpc) for arg in EXISTING[:8]]
    assert run_teardown(*network_only, tmp_path=tmp_path) == ExitCode.OK
    assert groups_in(ec2, vpc) & {ours, someone_elses} == {someone_elses}
    assert theirs in enis_in(ec2, vpc)
    assert f"security groups: deleted {ours}" in capsys.readouterr().err


def test_with_an_existing_eks_cluster_its_groups_are_left_alone(cdk_recorder, aws, tmp_path):
    ec2, _ = aws
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    theirs = eks_cluster_sg(ec2, vpc, "team-cluster")
    assert run_teardown(*[arg.replace("vpc-0123456789abcdef0", vpc) for arg in EXISTING], tmp_path=tmp_path) == 0
    assert theirs in groups_in(ec2, vpc)
