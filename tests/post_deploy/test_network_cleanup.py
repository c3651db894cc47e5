"""``network_cleanup`` on its own: who left an interface or a security group, by evidence only. The
whole step, in teardown's order against moto, is in ``test_teardown.py``."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from post_deploy import network_cleanup


@pytest.mark.parametrize(
    "eni_fields, kind",
    [
        ({"InterfaceType": "lambda", "Description": "AWS Lambda VPC ENI-fn-1"}, network_cleanup.EniKind.LAMBDA),
        # moto creates every ENI as type "interface", so EFA is only covered here
        ({"InterfaceType": "efa", "Description": ""}, network_cleanup.EniKind.EFA),
        ({"InterfaceType": "efa-only", "Description": ""}, network_cleanup.EniKind.EFA),
        (
            {"InterfaceType": "nat_gateway", "Description": "Interface for NAT Gateway nat-0123456789abcdef0"},
            network_cleanup.EniKind.OWN,
        ),
        (
            {"InterfaceType": "vpc_endpoint", "Description": "VPC Endpoint Interface vpce-0123456789abcdef0"},
            network_cleanup.EniKind.OWN,
        ),
        (
            {"InterfaceType": "vpc_endpoint", "Description": "VPC Endpoint Interface vpce-0fedcba9876543210"},
            network_cleanup.EniKind.UNKNOWN,
        ),
        ({"InterfaceType": "interface", "Description": "Amazon EKS hyperpod-sky-eks"}, network_cleanup.EniKind.EKS),
        ({"InterfaceType": "interface", "Description": "hyperpod-sky bastion"}, network_cleanup.EniKind.UNKNOWN),
        (
            {"InterfaceType": "interface", "Description": "", "Groups": [{"GroupId": "sg-0aaa"}]},
            network_cleanup.EniKind.APP,
        ),
        (
            {"InterfaceType": "network_load_balancer", "Description": "ELB net/k8s-default-svc/0123"},
            network_cleanup.EniKind.UNKNOWN,
        ),
    ],
)
def test_classifier_attributes_by_evidence_only(eni_fields, kind):
    own = frozenset({"nat-0123456789abcdef0", "vpce-0123456789abcdef0", "sg-0aaa"})
    assert network_cleanup.classify_eni({"NetworkInterfaceId": "eni-1", **eni_fields}, own)[0] is kind


def test_only_the_cluster_security_groups_of_this_eks_cluster_are_found(aws_env):
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]

        def group(name: str, tags: dict[str, str] | None = None) -> str:
            extra = {}
            if tags:
                pairs = [{"Key": k, "Value": v} for k, v in tags.items()]
                extra["TagSpecifications"] = [{"ResourceType": "security-group", "Tags": pairs}]
            return ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc, **extra)["GroupId"]

        tagged = group("renamed-by-someone", {"aws:eks:cluster-name": "team-a-eks"})
        named = group("eks-cluster-sg-team-a-eks-0123456789")
        group("eks-cluster-sg-team-a-eks-other-0123456789", {"aws:eks:cluster-name": "team-a-eks-other"})
        group("eks-cluster-sg-team-b-eks-0123456789", {"aws:eks:cluster-name": "team-b-eks"})
        own = group("the network stack's", {"aws:eks:cluster-name": "team-a-eks"})

        found = network_cleanup.eks_cluster_security_groups(ec2, vpc, "team-a-eks", frozenset({own}))
        assert sorted(g["GroupId"] for g in found) == sorted([tagged, named])
