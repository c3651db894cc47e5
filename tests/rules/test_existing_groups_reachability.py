"""With an existing VPC and EKS cluster, every flow the cluster needs is still allowed, given what the app
assumes of the existing groups (and ``make preflight`` checks); and it is not without those assumptions."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.infrastructure import add_infrastructure
from tests.conftest import make_config
from tests.rules import network

SG = "sg-0123456789abcdef0"
CLUSTER_SG = "sg-0123456789abcdef9"
NETWORK = {
    "network.existing.vpc_id": "vpc-0123456789abcdef0",
    "network.existing.hyperpod_subnet_ids": "[subnet-0123456789abcdef0]",
    "network.existing.eks_subnet_ids": "[subnet-0123456789abcdef1, subnet-0123456789abcdef2]",
    "network.existing.security_group_id": SG,
}
CLUSTER = {"eks.existing.cluster_name": "team-cluster", "eks.existing.cluster_security_group_id": CLUSTER_SG}


def _templates(**overrides) -> dict[str, dict]:
    app = cdk.App()
    return {
        s.stack_name: Template.from_stack(s).to_json() for s in add_infrastructure(app, make_config(**overrides)).all()
    }


@pytest.fixture(scope="module")
def existing_vpc() -> dict[str, dict]:
    return _templates(**NETWORK)


@pytest.fixture(scope="module")
def existing_vpc_and_cluster() -> dict[str, dict]:
    return _templates(**NETWORK, **CLUSTER)


def test_every_flow_is_allowed_in_an_existing_vpc_with_the_checked_group(existing_vpc):
    assert network.check(existing_vpc, existing_groups={SG: network.existing_security_group(SG)}) == []


def test_every_flow_is_allowed_in_an_existing_cluster_through_its_cluster_group(existing_vpc_and_cluster):
    problems = network.check(
        existing_vpc_and_cluster,
        existing_groups={SG: network.existing_security_group(SG)},
        existing_cluster_sg=CLUSTER_SG,
    )
    assert problems == []


def test_an_existing_group_with_only_self_rules_cuts_nodes_off_the_api_server(existing_vpc_and_cluster):
    # What preflight blocks: a group without all-egress (only its EFA self rules).
    me = network.existing_group(SG)
    self_only = ([network.Rule(network.ALL, (0, 65535), peer_group=me)],) * 2
    problems = network.check(existing_vpc_and_cluster, existing_groups={SG: self_only}, existing_cluster_sg=CLUSTER_SG)
    assert any(
        p.startswith("HyperPod nodes reach the API server (tcp/443)") and "no egress rule" in p for p in problems
    )


def test_without_the_node_kind_rules_hyperpod_pods_cannot_reach_the_clusters_coredns(existing_vpc_and_cluster):
    eks = existing_vpc_and_cluster["hyperpod-sky-eks"]["Resources"]
    without = {
        **existing_vpc_and_cluster,
        "hyperpod-sky-eks": {
            **existing_vpc_and_cluster["hyperpod-sky-eks"],
            "Resources": {k: v for k, v in eks.items() if v["Type"] != "AWS::EC2::SecurityGroupIngress"},
        },
    }
    problems = network.check(
        without, existing_groups={SG: network.existing_security_group(SG)}, existing_cluster_sg=CLUSTER_SG
    )
    assert any(
        p.startswith("HyperPod pods resolve names at coredns on system nodes (udp/53)")
        and "existing cluster managed nodes" in p
        for p in problems
    )


def test_an_existing_group_nobody_described_is_refused_not_guessed(existing_vpc):
    with pytest.raises(LookupError, match=f"existing group {SG} has no assumed rules"):
        network.check(existing_vpc)
