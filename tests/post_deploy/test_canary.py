"""``canary``: estimate, confirm, deploy, every post-deploy step with the CPU task, destroy, leftovers.

What is real: the config (``examples/canary.yaml`` through the loader, as cdk loads it), the estimate
(``config.pricing``), every post-deploy step in-process against moto (EKS, SageMaker HyperPod, STS),
the Kubernetes API double (EKS-style token auth) and the SkyPilot API double, exactly as in
``test_run.py``, and the leftovers check (tagging API, CloudFormation, SageMaker) against moto. What is
recorded: the two commands that would need an account, ``cdk deploy --all`` and ``post_deploy
teardown``; the recorder does to moto and the Kubernetes double what they would do (create the
clusters, stacks, nodes and one tagged security group; delete them again, optionally leaving the
security group behind as EKS can).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.eks.models import eks_backends

from config import load_config
from config import outputs as keys
from config.gpu_types import gpu_spec
from post_deploy import canary
from post_deploy.cli import build_parser
from post_deploy.exit_codes import ExitCode
from tests.conftest import cdk_context
from tests.k8s_double import seed
from tests.post_deploy.sky_api_double import Scenario, SkyApiDouble
from tests.post_deploy.test_run import EksAuthK8sDouble, _clear_sdk_caches

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
EKS = "hp-canary-eks"
HYPERPOD = "hp-canary"
STACKS = ["hp-canary-network", "hp-canary-lifecycle", "hp-canary-eks", "hp-canary-hyperpod"]
TAGS = [{"Key": "project", "Value": "hyperpod-skypilot"}, {"Key": "deployment", "Value": "hp-canary"}]
_TEMPLATE = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})


def canary_config():
    return load_config({**cdk_context(), "config": "examples/canary.yaml"})


class RecordedCdk:
    """Stands in for `cdk deploy --all` and `python -m post_deploy teardown`: records each command and
    does to moto and the Kubernetes double what it would do in an account."""

    def __init__(self, api: EksAuthK8sDouble, *, deploy_code: int = 0, leave_behind: bool = False, nodes: int = 1):
        self.api, self.deploy_code, self.leave_behind, self.nodes = api, deploy_code, leave_behind, nodes
        self.calls: list[list[str]] = []

    def __call__(self, argv) -> int:
        argv = list(argv)
        self.calls.append(argv)
        if argv[1] == "deploy":
            return self._deploy(argv[argv.index("--outputs-file") + 1])
        if argv[1:4] == ["-m", "post_deploy", "teardown"]:
            return self._destroy()
        raise AssertionError(f"unexpected command {argv}")

    def _deploy(self, outputs: str) -> int:
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.192.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": TAGS}])
        self.vpc = vpc["Vpc"]["VpcId"]
        # EKS's own cluster security group carries the cluster's tags; nothing in a template deletes it.
        self.sg = ec2.create_security_group(GroupName="eks-cluster-sg-hp-canary", Description="eks", VpcId=self.vpc)
        ec2.create_tags(Resources=[self.sg["GroupId"]], Tags=TAGS)
        cfn = boto3.client("cloudformation", region_name=REGION)
        for name in STACKS:
            cfn.create_stack(StackName=name, TemplateBody=_TEMPLATE, Tags=TAGS)
        boto3.client("eks", region_name=REGION).create_cluster(
            name=EKS,
            roleArn="arn:aws:iam::123456789012:role/eks",
            version="1.34",
            resourcesVpcConfig={"subnetIds": ["subnet-0a"]},
        )
        eks_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[EKS].endpoint = self.api.url
        config = canary_config()
        group = config.hyperpod.instance_groups[0]
        boto3.client("sagemaker", region_name=REGION).create_cluster(
            ClusterName=HYPERPOD,
            InstanceGroups=[
                {
                    "InstanceGroupName": group.name,
                    "InstanceType": group.instance_type,
                    "InstanceCount": group.instance_count,
                    "LifeCycleConfig": {
                        "SourceS3Uri": "s3://sagemaker-hp-canary-lifecycle/",
                        "OnCreate": "on_create.sh",
                    },
                    "ExecutionRole": "arn:aws:iam::123456789012:role/hp-canary-exec",
                    "ThreadsPerCore": group.threads_per_core,
                }
            ],
            Orchestrator={"Eks": {"ClusterArn": f"arn:aws:eks:{REGION}:123456789012:cluster/{EKS}"}},
            VpcConfig={"SecurityGroupIds": [self.sg["GroupId"]], "Subnets": ["subnet-0a"]},
        )
        for i in range(self.nodes):
            self.api.add_node(seed.cpu_hyperpod_node(group.instance_type, cluster=HYPERPOD, name=f"hyperpod-i-0c{i}"))
        self.api.add_node(seed.system_node(config.eks.system_node_group.instance_type))
        Path(outputs).write_text(
            json.dumps(
                {
                    "hp-canary-eks": {keys.EKS_CLUSTER_NAME: EKS, keys.REGION: REGION},
                    "hp-canary-hyperpod": {
                        keys.HYPERPOD_CLUSTER_NAME: HYPERPOD,
                        keys.LIFECYCLE_BUCKET_NAME: "sagemaker-hp-canary-lifecycle",
                    },
                }
            )
        )
        return self.deploy_code

    def _destroy(self) -> int:
        cfn = boto3.client("cloudformation", region_name=REGION)
        for name in reversed(STACKS):
            cfn.delete_stack(StackName=name)
        boto3.client("sagemaker", region_name=REGION).delete_cluster(ClusterName=HYPERPOD)
        boto3.client("eks", region_name=REGION).delete_cluster(name=EKS)
        ec2 = boto3.client("ec2", region_name=REGION)
        if not self.leave_behind:
            ec2.delete_security_group(GroupId=self.sg["GroupId"])
        ec2.delete_vpc(VpcId=self.vpc) if not self.leave_behind else None
        return 0


@pytest.fixture
def account(aws_env, skypilot_env, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("YES", raising=False)
    monkeypatch.chdir(REPO)  # where `make canary` runs it: relative config paths resolve here, as for cdk
    with mock_aws(), EksAuthK8sDouble(EKS) as api, SkyApiDouble() as sky_api:
        monkeypatch.setenv("SKYPILOT_API_SERVER_ENDPOINT", sky_api.url)
        _clear_sdk_caches()
        yield api, sky_api
    _clear_sdk_caches()


def _args(tmp_path: Path, *extra: str):
    return build_parser().parse_args(
        [
            "canary",
            "--outputs",
            str(tmp_path / "cdk-outputs.canary.json"),
            "--kubeconfig",
            str(tmp_path / "canary-kubeconfig"),
            "--task",
            str(REPO / canary.DEFAULT_TASK),
            "--cdk",
            "/opt/cdk/bin/cdk",
            "--node-timeout",
            "5",
            "--json",
            *extra,
        ]
    )


def _summary(capsys) -> tuple[dict, str]:
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return json.loads(lines[-1]), captured.err


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.5
        return self.now


def test_canary_config_is_the_cheapest_hyperpod_eks_shape():
    config = canary_config()
    (group,) = config.hyperpod.instance_groups
    assert (group.instance_type, group.instance_count, group.deep_health_checks) == ("ml.m5.large", 1, ())
    assert gpu_spec(group.instance_type) is None  # no GPU, so no GPU quota is needed
    nodes = config.eks.system_node_group
    assert (nodes.instance_type, nodes.desired_size) == ("t3.medium", 1)
    assert config.network.nat_gateways == "single" and config.tags["deployment"] == "hp-canary"


def test_canary_deploys_runs_every_step_and_the_cpu_task_destroys_and_finds_nothing_left(
    account, tmp_path, capsys, monkeypatch
):
    api, sky_api = account
    monkeypatch.setenv("YES", "1")
    recorder = RecordedCdk(api)

    code = canary.run(_args(tmp_path), runner=recorder, clock=_Clock())

    summary, err = _summary(capsys)
    assert code == ExitCode.OK, err
    assert [p["name"] for p in summary["phases"]] == ["deploy", "post-deploy", "destroy", "leftovers"]
    assert all(p["exit_code"] == 0 and p["seconds"] == 1.5 for p in summary["phases"])
    assert summary["left_behind"] == []
    # The estimate came first, before any command; prices it cannot know are said to be unknown.
    assert err.index("Estimated on-demand cost in us-east-1") < err.index("canary: == deploy ==")
    assert "unknown  HyperPod ml.m5.large x 1 (group canary-cpu)" in err
    deploy, teardown = recorder.calls
    assert deploy[:5] == ["/opt/cdk/bin/cdk", "deploy", "--all", "--require-approval", "never"]
    assert ["-c", "config=examples/canary.yaml"] == deploy[7:9]
    # Nobody was named admin, so the caller gets the access entry the post-deploy steps need.
    assert "eks.admin_principal_arns=[arn:aws:sts::123456789012:user/moto]" in deploy
    assert teardown[1:5] == ["-m", "post_deploy", "teardown", "--yes"] and "config=examples/canary.yaml" in teardown
    # Every step ran against the deployed cluster; the CPU task was launched on it and torn down.
    launch = sky_api.bodies("/launch")[0]
    assert launch["cluster_name"] == "canary"
    assert EKS in launch["override_skypilot_config"]["kubernetes"]["allowed_contexts"]
    assert "CPU-only HyperPod cluster: 1 node(s) without GPUs" in err
    assert "canary: nothing left behind" in err


def test_canary_reports_what_destroy_left_behind(account, tmp_path, capsys, monkeypatch):
    api, _ = account
    recorder = RecordedCdk(api, leave_behind=True)

    code = canary.run(_args(tmp_path, "--yes"), runner=recorder, clock=_Clock())

    summary, err = _summary(capsys)
    assert code == ExitCode.CANARY_LEFTOVERS
    (left,) = [item for item in summary["left_behind"] if "security-group" in item]
    assert left.startswith("tagged resource arn:aws:ec2:us-east-1:123456789012:security-group/sg-")
    assert any("vpc/vpc-" in item for item in summary["left_behind"])
    assert f"canary: left behind: {left}" in err


def test_a_failing_step_still_destroys_everything_and_keeps_its_exit_code(account, tmp_path, capsys):
    api, sky_api = account
    sky_api.scenario = Scenario(job_exit_code=100)  # the canary task's own exit code
    recorder = RecordedCdk(api)

    code = canary.run(_args(tmp_path, "--yes"), runner=recorder, clock=_Clock())

    summary, _ = _summary(capsys)
    assert code == 100
    phases = {p["name"]: p for p in summary["phases"]}
    assert phases["post-deploy"]["exit_code"] == 100 and phases["post-deploy"]["detail"] == "submit failed"
    assert phases["destroy"]["exit_code"] == 0 and summary["left_behind"] == []
    assert [c[1] for c in recorder.calls] == ["deploy", "-m"]


def test_a_failed_deploy_skips_the_steps_but_still_destroys(account, tmp_path, capsys):
    api, _ = account
    recorder = RecordedCdk(api, deploy_code=1)

    code = canary.run(_args(tmp_path, "--yes"), runner=recorder, clock=_Clock())

    summary, _ = _summary(capsys)
    phases = {p["name"]: p for p in summary["phases"]}
    assert code == ExitCode.AWS_API and phases["deploy"]["detail"] == "cdk deploy exited 1"
    assert phases["post-deploy"]["exit_code"] is None
    assert phases["destroy"]["exit_code"] == 0


def test_without_confirmation_nothing_is_created(account, tmp_path, capsys):
    api, _ = account
    recorder = RecordedCdk(api)

    code = canary.run(_args(tmp_path), runner=recorder, stdin=io.StringIO("deploy\n"))

    summary, err = _summary(capsys)
    assert code == ExitCode.USAGE and recorder.calls == []
    assert summary["error"] == "not confirmed: pass --yes or YES=1 (stdin is not a terminal to ask on)"
    assert "Estimated on-demand cost" in err  # the estimate is shown even when nothing is deployed
