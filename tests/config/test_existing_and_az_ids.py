"""Existing VPC / EKS cluster / bucket and AZ ids: valid values pass, each bad one stops synth with one
line naming the key and value."""

from __future__ import annotations

import pytest

from config import ConfigError
from config.model import region_az_id_code
from tests.conftest import make_config

VPC = "vpc-0123456789abcdef0"
SUBNETS = "[subnet-0123456789abcdef0]"
EKS_SUBNETS = "[subnet-0123456789abcdef1, subnet-0123456789abcdef2]"
SG = "sg-0123456789abcdef0"

EXISTING_NETWORK = {
    "network.existing.vpc_id": VPC,
    "network.existing.hyperpod_subnet_ids": SUBNETS,
    "network.existing.eks_subnet_ids": EKS_SUBNETS,
    "network.existing.security_group_id": SG,
}
EXISTING_EKS = {
    "eks.existing.cluster_name": "team-cluster",
    "eks.existing.cluster_security_group_id": "sg-0123456789abcdef9",
}


def _error(**overrides) -> str:
    with pytest.raises(ConfigError) as info:
        make_config(**overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_existing_network_eks_and_bucket_are_accepted_together():
    config = make_config(
        **EXISTING_NETWORK,
        **EXISTING_EKS,
        **{
            "lifecycle_bucket.existing_bucket_name": "sagemaker-team-scripts",
            "hyperpod.availability_zone_ids": "[use1-az2]",
        },
    )
    assert config.network.existing.vpc_id == VPC
    assert config.network.existing.eks_subnet_ids == ("subnet-0123456789abcdef1", "subnet-0123456789abcdef2")
    assert config.eks.existing.cluster_name == "team-cluster"
    assert config.lifecycle_bucket.existing_bucket_name == "sagemaker-team-scripts"
    assert config.hyperpod.availability_zone_ids == ("use1-az2",)


def test_absent_existing_sections_keep_todays_behaviour():
    config = make_config()
    assert config.network.existing is None and config.eks.existing is None
    assert config.lifecycle_bucket.existing_bucket_name is None and config.hyperpod.availability_zone_ids == ()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("network.existing.vpc_id", "vpc-123", 'network.existing.vpc_id = "vpc-123": is not a VPC id'),
        (
            "network.existing.security_group_id",
            "sg-xyz",
            'network.existing.security_group_id = "sg-xyz": is not a security',
        ),
        ("network.existing.hyperpod_subnet_ids", "[subnet-nothex]", "network.existing.hyperpod_subnet_ids = "),
        ("network.existing.eks_subnet_ids", "[subnet-0123456789abcdef1]", "at least 2"),
        (
            "network.existing.eks_subnet_ids",
            "[subnet-0123456789abcdef1, subnet-0123456789abcdef1]",
            "lists an id twice",
        ),
    ],
)
def test_bad_existing_network_values_name_the_key(key, value, expected):
    assert expected in _error(**{**EXISTING_NETWORK, key: value})


def test_existing_network_needs_every_id():
    overrides = dict(EXISTING_NETWORK)
    del overrides["network.existing.security_group_id"]
    assert _error(**overrides) == "config error: network.existing.security_group_id = (not set): is required"


def test_existing_eks_cluster_needs_an_existing_network():
    message = _error(**EXISTING_EKS)
    assert message.startswith('config error: eks.existing.cluster_name = "team-cluster": needs network.existing')


def test_existing_eks_cluster_name_is_checked():
    message = _error(**EXISTING_NETWORK, **{**EXISTING_EKS, "eks.existing.cluster_name": "-bad"})
    assert message.startswith('config error: eks.existing.cluster_name = "-bad": is not an EKS cluster name')


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("team-scripts", "must start with sagemaker-"),
        ("sagemaker-Team", "is not an S3 bucket name"),
        ("sagemaker-a..b", "is not an S3 bucket name"),
    ],
)
def test_existing_bucket_name_rules(name, expected):
    message = _error(**{"lifecycle_bucket.existing_bucket_name": name})
    assert message.startswith(f'config error: lifecycle_bucket.existing_bucket_name = "{name}": {expected}')


@pytest.mark.parametrize(
    ("region", "code"),
    [
        ("us-east-1", "use1"),
        ("us-west-2", "usw2"),
        ("ap-southeast-2", "apse2"),
        ("ap-northeast-1", "apne1"),
        ("eu-central-1", "euc1"),
        ("us-gov-west-1", "usgw1"),
        ("sa-east-1", "sae1"),
    ],
)
def test_region_az_id_codes_match_ec2s_spelling(region, code):
    assert region_az_id_code(region) == code


def test_az_id_of_another_region_is_refused():
    message = _error(**{"hyperpod.availability_zone_ids": "[usw2-az1]"})
    assert message == (
        'config error: hyperpod.availability_zone_ids[0] = "usw2-az1": is not an AZ id of region us-east-1 '
        "(those look like use1-az1)"
    )


def test_az_id_that_is_not_an_id_is_refused():
    assert "is not an id like use1-az2" in _error(**{"hyperpod.availability_zone_ids": "[us-east-1a]"})


def test_created_subnets_need_one_az_id_per_hyperpod_az():
    message = _error(**{"hyperpod.availability_zone_ids": "[use1-az1, use1-az2]"})
    # EFA groups already need one AZ, so use a CPU group to reach the count rule.
    assert "hyperpod.availability_zone_ids" in message
    cpu = {
        "hyperpod.instance_groups[0].instance_type": "ml.m5.xlarge",
        "hyperpod.instance_groups[0].deep_health_checks": "[]",
    }
    message = _error(**cpu, **{"hyperpod.availability_zone_ids": "[use1-az1, use1-az2]"})
    assert message.startswith('config error: hyperpod.availability_zone_ids = ["use1-az1", "use1-az2"]: needs one id')


def test_two_az_ids_with_an_efa_group_are_refused_like_two_az_names():
    message = _error(
        **EXISTING_NETWORK,
        **{"hyperpod.availability_zone_ids": "[use1-az1, use1-az2]"},
    )
    assert message.startswith('config error: hyperpod.availability_zone_ids = ["use1-az1", "use1-az2"]: instance group')
    assert "EFA traffic does not cross" in message
