"""The pipeline's post-deploy step reaches EKS from CodeBuild outside the VPC, through the public endpoint:
configs that close that path are refused with one line before anything is synthesized."""

from __future__ import annotations

import pytest

from config import ConfigError
from tests.conftest import make_config

PIPELINE_ON = {"pipeline.enabled": "true", "pipeline.source": "codecommit"}


def refusal(**overrides) -> str:
    with pytest.raises(ConfigError) as err:
        make_config(**{**PIPELINE_ON, **overrides})
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_private_endpoint_with_the_pipeline_is_refused_naming_the_key():
    assert refusal(**{"eks.endpoint_access": "private"}).startswith(
        'config error: eks.endpoint_access = "private": the pipeline\'s post-deploy step runs in CodeBuild '
        "outside the VPC and cannot reach a private endpoint"
    )


def test_public_cidrs_that_would_exclude_codebuild_are_refused_unless_the_user_says_they_include_it():
    cidrs = {"eks.public_access_cidrs": "[203.0.113.0/24]"}
    assert refusal(**cidrs).startswith(
        'config error: eks.public_access_cidrs = ["203.0.113.0/24"]: would lock out the pipeline\'s post-deploy '
        "step, which reaches EKS from CodeBuild's public IP ranges in us-east-1; include them and set "
        "pipeline.public_access_cidrs_include_codebuild: true"
    )
    confirmed = make_config(**PIPELINE_ON, **cidrs, **{"pipeline.public_access_cidrs_include_codebuild": "true"})
    assert confirmed.eks.public_access_cidrs == ("203.0.113.0/24",)


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # public_and_private, no CIDR restriction
        {"eks.endpoint_access": "public"},
        {"eks.public_access_cidrs": "[0.0.0.0/0]"},
    ],
)
def test_endpoints_codebuild_can_reach_are_accepted(overrides):
    assert make_config(**PIPELINE_ON, **overrides).pipeline.enabled is True


def test_without_the_pipeline_a_private_endpoint_and_narrow_cidrs_are_fine():
    assert make_config(**{"eks.endpoint_access": "private"}).eks.endpoint_access == "private"
    assert make_config(**{"eks.public_access_cidrs": "[203.0.113.0/24]"}).eks.public_access_cidrs
