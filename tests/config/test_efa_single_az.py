"""A HyperPod instance group whose instance type has EFA gets one Availability Zone: EFA traffic does
not cross AZs, so a multi-AZ spread would turn multi-node NCCL into TCP (issue 10, finding 4)."""

from __future__ import annotations

import pytest

from config import ConfigError
from tests.conftest import make_config

TWO_AZS = "[us-east-1a, us-east-1b]"


def test_more_than_one_az_for_a_group_with_efa_is_refused_with_one_line_naming_the_key():
    with pytest.raises(ConfigError) as err:
        make_config(**{"hyperpod.availability_zones": TWO_AZS})
    message = str(err.value)
    assert message.startswith('config error: hyperpod.availability_zones = ["us-east-1a", "us-east-1b"]: ')
    assert "'worker-group-1' (ml.p5.48xlarge, 32 EFA interfaces" in message
    assert "\n" not in message


def test_groups_without_efa_may_span_several_azs():
    config = make_config(
        **{
            "hyperpod.availability_zones": TWO_AZS,
            "hyperpod.instance_groups[0].instance_type": "ml.g5.xlarge",  # 0 EFA interfaces
            # InstanceConnectivity needs EFA (config/compatibility.py)
            "hyperpod.instance_groups[0].deep_health_checks": "[InstanceStress]",
        }
    )
    assert config.hyperpod_azs == ("us-east-1a", "us-east-1b")


def test_one_az_with_efa_is_accepted():
    config = make_config(**{"hyperpod.availability_zones": "[us-east-1b]"})
    assert config.hyperpod_azs == ("us-east-1b",)
