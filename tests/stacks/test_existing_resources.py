"""Existing VPC, EKS cluster and bucket: for each combination the app creates none of what is given, wires
the given ids through, and still synthesizes offline (real ``cdk synth --no-lookups``, cdk-nag and cfn-lint clean);
AZ ids place the HyperPod subnets the app creates."""

from __future__ import annotations

import json
import subprocess

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.infrastructure import add_infrastructure
from tests.app.conftest import BIN, run_cdk_synth
from tests.conftest import make_config

VPC = "vpc-0123456789abcdef0"
HYPERPOD_SUBNET = "subnet-0123456789abcdef0"
EKS_SUBNETS = ["subnet-0123456789abcdef1", "subnet-0123456789abcdef2"]
SG = "sg-0123456789abcdef0"
CLUSTER_SG = "sg-0123456789abcdef9"
BUCKET = "sagemaker-team-scripts"

NETWORK = {
    "network.existing.vpc_id": VPC,
    "network.existing.hyperpod_subnet_ids": f"[{HYPERPOD_SUBNET}]",
    "network.existing.eks_subnet_ids": f"[{', '.join(EKS_SUBNETS)}]",
    "network.existing.security_group_id": SG,
}
CLUSTER = {"eks.existing.cluster_name": "team-cluster", "eks.existing.cluster_security_group_id": CLUSTER_SG}
BUCKET_CFG = {"lifecycle_bucket.existing_bucket_name": BUCKET}

NETWORK_TYPES = {"AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::NatGateway", "AWS::EC2::SecurityGroup"}
CLUSTER_TYPES = {"AWS::EKS::Cluster", "AWS::EKS::Addon", "AWS::EKS::Nodegroup", "AWS::KMS::Key"}


def _templates(**overrides) -> dict[str, dict]:
    app = cdk.App()
    stacks = add_infrastructure(app, make_config(**overrides))
    return {s.stack_name.removeprefix("hyperpod-sky-"): Template.from_stack(s).to_json() for s in stacks.all()}


def _types(templates: dict[str, dict]) -> set[str]:
    return {r["Type"] for t in templates.values() for r in t["Resources"].values()}


def _of_type(template: dict, kind: str) -> list[dict]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def _cluster_request(templates: dict[str, dict]) -> str:
    [props] = _of_type(templates["hyperpod"], "Custom::HyperPodCluster")
    return json.dumps(props["ClusterRequest"])


def test_existing_network_creates_no_network_and_wires_its_ids():
    templates = _templates(**NETWORK)
    assert "network" not in templates
    assert not _types(templates) & NETWORK_TYPES
    [cluster] = _of_type(templates["eks"], "AWS::EKS::Cluster")
    assert cluster["ResourcesVpcConfig"]["SubnetIds"] == EKS_SUBNETS
    assert cluster["ResourcesVpcConfig"]["SecurityGroupIds"] == [SG]
    request = _cluster_request(templates)
    assert f'\\"SecurityGroupIds\\":[\\"{SG}\\"],\\"Subnets\\":[\\"{HYPERPOD_SUBNET}\\"]' in request
    [installer] = [f for f in _of_type(templates["eks"], "AWS::Lambda::Function") if "VpcConfig" in f]
    assert installer["VpcConfig"] == {"SecurityGroupIds": [SG], "SubnetIds": EKS_SUBNETS}
    # The node-kind rules go on the existing group as separate resources; the group itself is not changed.
    ingress = _of_type(templates["eks"], "AWS::EC2::SecurityGroupIngress")
    assert {"GroupId": SG, "IpProtocol": "-1"}.items() <= next(r for r in ingress if r["GroupId"] == SG).items()


def test_existing_cluster_creates_no_cluster_addon_or_nodes_and_keeps_chart_and_access_entries():
    templates = _templates(
        **NETWORK, **CLUSTER, **{"eks.admin_principal_arns": "[arn:aws:iam::123456789012:role/Admin]"}
    )
    assert not _types(templates) & (CLUSTER_TYPES | NETWORK_TYPES)
    eks = templates["eks"]
    entries = _of_type(eks, "AWS::EKS::AccessEntry")
    assert {e["ClusterName"] for e in entries} == {"team-cluster"}
    assert "arn:aws:iam::123456789012:role/Admin" in [e["PrincipalArn"] for e in entries]
    assert len(entries) == 2  # the admin and the chart installer
    [chart] = _of_type(eks, "Custom::HyperPodHelmChart")
    assert chart["ClusterName"] == "team-cluster"
    rules = {(r["GroupId"], r["SourceSecurityGroupId"]) for r in _of_type(eks, "AWS::EC2::SecurityGroupIngress")}
    assert rules == {(CLUSTER_SG, SG), (SG, CLUSTER_SG)}
    assert ':cluster/team-cluster\\"' in _cluster_request(templates)
    outputs = {k: v["Value"] for k, v in eks["Outputs"].items()}
    assert outputs["EksClusterName"] == "team-cluster"


def test_existing_bucket_creates_no_bucket_and_uploads_under_the_apps_own_prefix():
    templates = _templates(**BUCKET_CFG)
    lifecycle = templates["lifecycle"]
    assert not _of_type(lifecycle, "AWS::S3::Bucket")
    [upload] = _of_type(lifecycle, "Custom::CDKBucketDeployment")
    assert upload["DestinationBucketName"] == BUCKET
    assert upload["DestinationBucketKeyPrefix"] == "hyperpod-sky/lifecycle_scripts"
    assert upload["Prune"] is True and upload.get("RetainOnDelete") is False  # only the app's prefix goes
    # The bucket name reaches HyperPod through the upload's DestinationBucketArn (so it waits for the upload).
    assert '/hyperpod-sky/lifecycle_scripts/\\",\\"OnCreate' in _cluster_request(templates)


def test_existing_bucket_with_retain_keeps_the_scripts_at_delete():
    [upload] = _of_type(
        _templates(**BUCKET_CFG, **{"lifecycle_bucket.removal_policy": "retain"})["lifecycle"],
        "Custom::CDKBucketDeployment",
    )
    assert upload["RetainOnDelete"] is True


def test_hyperpod_subnets_are_placed_by_az_id_when_given():
    network = _templates(**{"hyperpod.availability_zone_ids": "[use1-az4]"})["network"]
    subnets = _of_type(network, "AWS::EC2::Subnet")
    by_id = [s for s in subnets if "AvailabilityZoneId" in s]
    assert [s["AvailabilityZoneId"] for s in by_id] == ["use1-az4"]
    assert "AvailabilityZone" not in by_id[0]
    assert by_id[0]["CidrBlock"].endswith("/18")  # the HyperPod subnet, not an EKS or public one
    assert all("AvailabilityZone" in s for s in subnets if s is not by_id[0])


def test_default_config_keeps_creating_everything():
    templates = _templates()
    assert NETWORK_TYPES <= _types(templates) and CLUSTER_TYPES <= _types(templates)
    assert _of_type(templates["lifecycle"], "AWS::S3::Bucket")


@pytest.mark.parametrize(
    "combination",
    [pytest.param({**NETWORK, **CLUSTER, **BUCKET_CFG}, id="vpc+cluster+bucket")],
)
def test_existing_resources_synthesize_offline_without_credentials_and_nag_findings(tmp_path, combination):
    args = [arg for key, value in combination.items() for arg in ("-c", f"{key}={value}")]
    result = run_cdk_synth(tmp_path / "cdk.out", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    files = sorted((tmp_path / "cdk.out").glob("*.template.json"))
    assert {p.name for p in files} == {f"hyperpod-sky-{n}.template.json" for n in ("lifecycle", "eks", "hyperpod")}
    lint = subprocess.run(
        [str(BIN / "cfn-lint"), "--format", "parseable", "--ignore-checks", "W3005", "--", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
