"""Day two, the last step: ``make destroy`` with a custom config destroys exactly the stacks that config
deployed, and refuses, before deleting anything, when the outputs file is of another deployment.

Everything from ``make`` down is the real thing: the Makefile target, ``python -m post_deploy
teardown`` and the real CDK CLI's ``cdk destroy`` (on an assembly synthesized from the custom config),
all talking to moto_server over HTTP (``AWS_ENDPOINT_URL``). What stands in for the deployment, in
moto's CloudFormation:

- the network stack as the synthesized template's VPC, subnets and security groups (moto's
  CloudFormation cannot delete the template's NAT gateway and route tables in order, so they are
  left out; what teardown looks at is the VPC, its subnets and the groups);
- the lifecycle, EKS and HyperPod stacks as stacks of those names holding one wait-condition handle
  (their custom resources and EKS cluster are the deploy rehearsal's, ``test_rehearsal.py``);
- what services leave after ``cdk destroy`` of those stacks: an available Lambda ENI in a HyperPod
  subnet and the cluster security group EKS creates (``eks-cluster-sg-<cluster>-*``);
- another deployment in the same account and region (the default prefix), with its own EKS cluster
  security group, which must survive.

moto deletes a VPC with subnets, interfaces or groups left in it; AWS does not. So the test asserts
that teardown itself removed the leftovers before the network stack, not merely that the stack went.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import aws_cdk as cdk
import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from config import load_config, names
from stacks.infrastructure import add_infrastructure
from tests.conftest import REPO, cdk_context

pytestmark = pytest.mark.slow

REGION = "us-east-1"
BOOTSTRAP_VERSION = "/cdk-bootstrap/hnb659fds/version"
NETWORK_KINDS = ("AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::SecurityGroup")
STAND_IN = {"Resources": {"StandIn": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}


@pytest.fixture(scope="module")
def team_a(tmp_path_factory) -> tuple[Path, Path]:
    """(config file, cloud assembly synthesized from it): a prefix and a HyperPod cluster name of its own."""
    folder = tmp_path_factory.mktemp("team-a")
    config_file = folder / "team-a.yaml"
    config_file.write_text("prefix: team-a\nhyperpod:\n  cluster_name: team-a-gpus\n")
    app = cdk.App(context={**cdk_context(), "config": str(config_file)}, outdir=str(folder / "cdk.out"))
    add_infrastructure(app, load_config(app.node.get_all_context()))
    app.synth()
    return config_file, folder / "cdk.out"


@pytest.fixture
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's backends are process-wide: start from nothing, leave nothing.
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    client(endpoint, "ssm").put_parameter(Name=BOOTSTRAP_VERSION, Value="27", Type="String")  # `cdk bootstrap`
    try:
        yield endpoint
    finally:
        requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
        server.stop()


def client(endpoint: str, service: str):
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def network_stand_in(assembly: Path, config) -> dict:
    template = json.loads((assembly / f"{names.stack_names(config)['network']}.template.json").read_text())
    return {
        "Parameters": template["Parameters"],
        "Resources": {k: r for k, r in template["Resources"].items() if r["Type"] in NETWORK_KINDS},
    }


class Deployment:
    """One deployment's stacks in moto's CloudFormation, plus what services leave behind in its VPC."""

    def __init__(self, endpoint: str, config, network_template: dict):
        self.cfn, self.ec2 = client(endpoint, "cloudformation"), client(endpoint, "ec2")
        self.stacks = names.stack_names(config)
        self.eks_cluster = names.eks_cluster_name(config)
        with warnings.catch_warnings():  # moto: "no CloudFormation support for" the stand-in handle
            warnings.simplefilter("ignore")
            self.cfn.create_stack(StackName=self.stacks["network"], TemplateBody=json.dumps(network_template))
            for role in ("lifecycle_bucket", "eks", "hyperpod"):
                self.cfn.create_stack(StackName=self.stacks[role], TemplateBody=json.dumps(STAND_IN))
        resources = self.cfn.describe_stack_resources(StackName=self.stacks["network"])["StackResources"]
        self.vpc = next(r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::EC2::VPC")
        subnet = next(r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::EC2::Subnet")
        self.lambda_eni = self.ec2.create_network_interface(
            SubnetId=subnet, Description=f"AWS Lambda VPC ENI-{self.stacks['eks']}-HelmChartHandler"
        )["NetworkInterface"]["NetworkInterfaceId"]
        self.cluster_sg = self.ec2.create_security_group(
            GroupName=f"eks-cluster-sg-{self.eks_cluster}-1234567890",
            Description="EKS created security group applied to ENI that is attached to EKS Control Plane master nodes",
            VpcId=self.vpc,
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": [{"Key": "aws:eks:cluster-name", "Value": self.eks_cluster}]}
            ],
        )["GroupId"]

    def stack_status(self) -> dict[str, str]:
        summaries = self.cfn.list_stacks()["StackSummaries"]
        latest: dict[str, str] = {}
        for s in sorted(summaries, key=lambda s: s["CreationTime"]):
            latest[s["StackName"]] = s["StackStatus"]
        return {name: latest.get(name, "absent") for name in self.stacks.values()}

    def leftovers(self) -> dict[str, bool]:
        enis = self.ec2.describe_network_interfaces(
            Filters=[{"Name": "network-interface-id", "Values": [self.lambda_eni]}]
        )["NetworkInterfaces"]
        groups = self.ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [self.cluster_sg]}])[
            "SecurityGroups"
        ]
        return {"lambda eni": bool(enis), "eks cluster sg": bool(groups)}


def outputs_of(config, path: Path) -> Path:
    """What `cdk deploy --all --outputs-file` writes for this config's stacks (keys from config.outputs)."""
    stacks = names.stack_names(config)
    account = "123456789012"
    path.write_text(
        json.dumps(
            {
                stacks["lifecycle_bucket"]: {
                    "LifecycleBucketName": names.lifecycle_bucket_name(config, account, REGION)
                },
                stacks["eks"]: {
                    "EksClusterName": names.eks_cluster_name(config),
                    "EksClusterArn": f"arn:aws:eks:{REGION}:{account}:cluster/{names.eks_cluster_name(config)}",
                    "Region": REGION,
                },
                stacks["hyperpod"]: {
                    "HyperPodClusterName": config.hyperpod.cluster_name,
                    "HyperPodClusterArn": f"arn:aws:sagemaker:{REGION}:{account}:cluster/abcdef123456",
                },
            },
            indent=1,
        )
    )
    return path


def make_destroy(endpoint: str, home: Path, *variables: str) -> subprocess.CompletedProcess:
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        "HOME": str(home),  # no kubeconfig: the SkyPilot step is skipped and says so
        "LANG": "C.UTF-8",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    # -o venv: the shared .venv is installed already; never let a test reinstall it.
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "venv", "destroy", "YES=1", *variables],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_make_destroy_with_the_custom_config_destroys_exactly_its_stacks(team_a, moto_server, tmp_path):
    config_file, assembly = team_a
    ours_config = load_config({**cdk_context(), "config": str(config_file)})
    others_config = load_config(cdk_context())
    network = network_stand_in(assembly, ours_config)  # the other deployment's VPC is shaped the same
    ours = Deployment(moto_server, ours_config, network)
    others = Deployment(moto_server, others_config, network)
    outputs = outputs_of(ours_config, tmp_path / "cdk-outputs.json")

    done = make_destroy(
        moto_server,
        tmp_path / "home",
        f"CDK_ARGS=-c config={config_file}",
        f"OUTPUTS={outputs}",
        f"TEARDOWN_ARGS=--app {assembly} --eni-timeout-minutes 1 --poll-seconds 1 --json",
    )

    assert done.returncode == 0, done.stderr[-4000:]
    assert ours.stack_status() == dict.fromkeys(ours.stacks.values(), "DELETE_COMPLETE")
    assert ours.leftovers() == {"lambda eni": False, "eks cluster sg": False}
    assert others.stack_status() == dict.fromkeys(others.stacks.values(), "CREATE_COMPLETE")
    assert others.leftovers() == {"lambda eni": True, "eks cluster sg": True}
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["destroyed"] == [ours.stacks[r] for r in ("hyperpod", "eks", "lifecycle_bucket", "network")]
    assert summary["network_interfaces"]["deleted"] == [ours.lambda_eni]
    assert summary["security_groups_deleted"] == [ours.cluster_sg]
    assert "skypilot: skipped: no kubeconfig" in done.stderr
    assert done.stderr.count("✅") == 4  # the real CDK CLI, once per stack


def test_make_destroy_without_the_config_of_the_outputs_refuses_and_deletes_nothing(team_a, moto_server, tmp_path):
    config_file, assembly = team_a
    ours_config = load_config({**cdk_context(), "config": str(config_file)})
    others_config = load_config(cdk_context())
    network = network_stand_in(assembly, ours_config)  # the other deployment's VPC is shaped the same
    ours = Deployment(moto_server, ours_config, network)
    others = Deployment(moto_server, others_config, network)
    outputs = outputs_of(ours_config, tmp_path / "cdk-outputs.json")

    done = make_destroy(moto_server, tmp_path / "home", f"OUTPUTS={outputs}")  # CDK_ARGS forgotten

    assert done.returncode != 0
    teardown_lines = [line for line in done.stderr.splitlines() if line.startswith("teardown:")]
    assert teardown_lines[-1].startswith(f"teardown: outputs file {outputs}: stack(s) team-a-lifecycle, team-a-eks")
    assert "pass the -c config of that deployment" in teardown_lines[-1]
    assert "cdk: destroying" not in done.stderr
    assert ours.stack_status() == dict.fromkeys(ours.stacks.values(), "CREATE_COMPLETE")
    assert others.stack_status() == dict.fromkeys(others.stacks.values(), "CREATE_COMPLETE")
    assert ours.leftovers() == others.leftovers() == {"lambda eni": True, "eks cluster sg": True}
