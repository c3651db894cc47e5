"""The rehearsal into an existing VPC and bucket: created in moto first (someone else's), the app
synthesized with their ids, deployed, its HyperPod cluster deleted; theirs is untouched throughout."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import outputs as keys
from tests.app.conftest import run_cdk_synth
from tests.rehearsal.rehearsal import REPO, Rehearsal

pytestmark = pytest.mark.slow
REGION = "us-east-1"
BUCKET = "sagemaker-team-scripts"
THEIR_OBJECT = "team/readme.txt"


def _their_network(r: Rehearsal) -> dict[str, str]:
    ec2 = r.aws("ec2", REGION)
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    hyperpod = ec2.create_subnet(VpcId=vpc, CidrBlock="10.50.0.0/18", AvailabilityZone="us-east-1a")["Subnet"]
    eks = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.50.{100 + i}.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
        for i, az in enumerate(("us-east-1a", "us-east-1b"))
    ]
    sg = ec2.create_security_group(VpcId=vpc, GroupName="team-efa", Description="team EFA group")["GroupId"]
    pairs = [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": sg}]}]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=pairs)
    ec2.authorize_security_group_egress(GroupId=sg, IpPermissions=pairs)
    return {
        "network.existing.vpc_id": vpc,
        "network.existing.hyperpod_subnet_ids": f"[{hyperpod['SubnetId']}]",
        "network.existing.eks_subnet_ids": f"[{', '.join(eks)}]",
        "network.existing.security_group_id": sg,
    }


def test_rehearsal_into_an_existing_vpc_and_bucket_leaves_theirs_alone(
    synthesized: Path, sky_tools_bin: Path, tmp_path: Path
):
    with Rehearsal(synthesized, tmp_path / "rehearsal", sky_tools_bin) as r:
        network = _their_network(r)
        s3 = r.aws("s3", REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=THEIR_OBJECT, Body=b"not the app's")
        ec2 = r.aws("ec2", REGION)
        before = {
            "vpcs": ec2.describe_vpcs()["Vpcs"],
            "subnets": {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]},
        }

        config = {**network, "lifecycle_bucket.existing_bucket_name": BUCKET}
        out = tmp_path / "cdk.out.existing"
        result = run_cdk_synth(out, *(arg for k, v in config.items() for arg in ("-c", f"{k}={v}")))
        assert result.returncode == 0, result.stderr[-3000:]
        r.use_assembly(out)
        assert not [s for s in r.assembly.stacks if list(s.resources_of_type("AWS::EC2::VPC"))]

        r.deploy()  # also checks HyperPod's inputs exist: lifecycle script, role, subnets, groups, EKS ARN

        # Nothing new in the network: no VPC, no subnet; the app's cluster sits in their subnets and group.
        assert ec2.describe_vpcs()["Vpcs"] == before["vpcs"]
        assert {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]} == before["subnets"]
        eks = r.aws("eks", REGION).describe_cluster(name=r.output(keys.EKS_CLUSTER_NAME))["cluster"]
        assert eks["resourcesVpcConfig"]["subnetIds"] == network["network.existing.eks_subnet_ids"].strip("[]").split(
            ", "
        )
        request = r.cluster_request["VpcConfig"]
        assert request == {
            "SecurityGroupIds": [network["network.existing.security_group_id"]],
            "Subnets": [network["network.existing.hyperpod_subnet_ids"].strip("[]")],
        }

        # The scripts went under the app's own prefix; their object is untouched.
        assert r.output(keys.LIFECYCLE_BUCKET_NAME) == BUCKET
        keys_in_bucket = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
        scripts = {
            f"hyperpod-sky/lifecycle_scripts/{p.relative_to(REPO / 'lifecycle_scripts').as_posix()}"
            for p in (REPO / "lifecycle_scripts").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert keys_in_bucket == scripts | {THEIR_OBJECT}
        assert s3.get_object(Bucket=BUCKET, Key=THEIR_OBJECT)["Body"].read() == b"not the app's"

        r.destroy()
        assert r.aws("sagemaker", REGION).list_clusters()["ClusterSummaries"] == []
        assert ec2.describe_vpcs(VpcIds=[network["network.existing.vpc_id"]])["Vpcs"]
        assert THEIR_OBJECT in {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
