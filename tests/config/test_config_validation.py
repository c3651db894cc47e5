"""Every invalid value stops synth with one line naming the key, the value and what is allowed."""

from __future__ import annotations

import pytest

from config import ConfigError, load_config
from config.model import PINNED_CHART_COMMIT, PINNED_CHART_FILES_SHA256
from config.sagemaker_api import cluster_instance_types
from tests.conftest import cdk_context, make_config


def test_cdk_json_defaults_are_a_valid_config():
    config = make_config()
    assert config.region == "us-east-1"
    assert config.hyperpod.instance_groups[0].instance_type == "ml.p5.48xlarge"
    assert config.hyperpod_azs == ("us-east-1a",)


def test_dotted_overrides_reach_nested_fields_and_lists():
    config = make_config(
        **{
            "hyperpod.instance_groups[0].instance_count": "4",
            "eks.version": "1.32",
            "network.nat_gateways": "per_az",
            "eks.admin_principal_arns": "[arn:aws:iam::123456789012:role/Admin]",
        }
    )
    assert config.hyperpod.instance_groups[0].instance_count == 4
    assert config.eks.version == "1.32"
    assert config.network.nat_gateways == "per_az"
    assert config.eks.admin_principal_arns == ("arn:aws:iam::123456789012:role/Admin",)


def test_config_file_overrides_defaults_and_is_overridden_by_single_values(tmp_path):
    path = tmp_path / "prod.yaml"
    path.write_text(
        "region: us-west-2\n"
        "network: {availability_zones: [us-west-2a, us-west-2b]}\n"
        "hyperpod:\n  cluster_name: prod\n  availability_zones: [us-west-2b]\n"
    )
    config = make_config(config=str(path), **{"hyperpod.cluster_name": "prod-2"})
    assert config.region == "us-west-2"
    assert config.network.availability_zones == ("us-west-2a", "us-west-2b")
    assert config.hyperpod.cluster_name == "prod-2"
    # Keys the file does not mention keep their cdk.json defaults.
    assert config.hyperpod.instance_groups[0].name == "worker-group-1"


def test_all_botocore_instance_types_are_accepted():
    types = cluster_instance_types()
    assert "ml.p5.48xlarge" in types and len(types) > 100
    for instance_type in ("ml.g5.8xlarge", "ml.trn1.32xlarge", "ml.m5.large"):
        make_config(
            **{
                "hyperpod.instance_groups[0].instance_type": instance_type,
                "hyperpod.instance_groups[0].deep_health_checks": "[]",
            }
        )


def test_a_version_like_value_is_not_read_as_a_float():
    with pytest.raises(ConfigError) as err:
        make_config(**{"eks.version": "1.20"})
    assert '"1.20"' in str(err.value)


INVALID = [
    ("hyperpod.instance_groups[0].instance_type", "ml.p5.48xlarg", "did you mean ml.p5.48xlarge"),
    ("hyperpod.instance_groups[0].instance_type", "p5.48xlarge", "ClusterInstanceType"),
    ("hyperpod.instance_groups[0].instance_count", "-1", "between 0 and 6758"),
    ("hyperpod.instance_groups[0].threads_per_core", "3", "between 1 and 2"),
    ("hyperpod.instance_groups[0].ebs_volume_size_gb", "20000", "between 1 and 16384"),
    ("hyperpod.instance_groups[0].name", "bad_name", "must match"),
    ("hyperpod.instance_groups[0].deep_health_checks", "[InstanceStres]", "InstanceStress"),
    ("hyperpod.instance_groups[0].training_plan_arn", "arn:aws:sagemaker:us-east-1:1:plan", "TrainingPlanArn"),
    ("hyperpod.instance_groups", "[]", "at least 1"),
    ("hyperpod.cluster_name", "-starts-with-dash", "must match"),
    ("hyperpod.node_recovery", "Manual", "'Automatic' or 'None'"),
    ("hyperpod.node_provisioning_mode", "Eager", "Continuous"),
    ("hyperpod.creation_timeout_hours", "13", "less than or equal to 12"),
    ("hyperpod.availability_zones", "[us-east-1c]", "must be one of network.availability_zones"),
    ("hyperpod.colour", "blue", "unknown key"),
    ("region", "moon-1", "AWS region"),
    ("account", "12345", "12-digit"),
    ("prefix", "Has_Upper", "lowercase"),
    ("network.availability_zones", "[us-west-2a, us-west-2b]", "not an AZ of region us-east-1"),
    ("network.availability_zones", "[us-east-1a]", "at least 2"),
    ("network.vpc_cidr", "10.0.0.0/8", "/16 to /20"),
    ("network.vpc_cidr", "10.0.0.1/16", "not an IPv4 CIDR"),
    ("network.nat_gateways", "2", "'single' or 'per_az'"),
    ("network.hyperpod_subnet_cidr_mask", "12", "greater than or equal to 16"),
    ("network.flow_log_retention_days", "31", "one of"),
    ("eks.version", "1.27", "must be one of 1.32, 1.33, 1.34"),
    ("eks.endpoint_access", "open", "'public', 'private' or 'public_and_private'"),
    ("eks.authentication_mode", "CONFIG_MAP", "'API' or 'API_AND_CONFIG_MAP'"),
    ("eks.admin_principal_arns", "[alice]", "not an IAM role or user ARN"),
    ("eks.vpc_cni_version", "v1.18.2-eksbuild.1", "v1.18.3 or newer"),
    ("eks.system_node_group.instance_type", "ml.m5.large", "no ml. prefix"),
    ("eks.system_node_group.desired_size", "-1", "greater than or equal to 0"),
    ("eks.helm_chart.commit", "main", "40-character"),
    ("eks.helm_chart.files_sha256", "abc", "64-character"),
    ("eks.helm_chart.chart_path", "../outside", "must be a relative path"),
    ("eks.helm_chart.chart_path", "/abs/chart", "must be a relative path"),
    ("eks.helm_chart.release_name", "Deps_1", "must be a helm release name"),
    ("eks.helm_chart.release_name", "d" * 54, "at most 53 characters"),
    ("eks.helm_chart.namespace", "kube.system", "must be a Kubernetes namespace name"),
    ("lifecycle_bucket.removal_policy", "keep", "'destroy' or 'retain'"),
    ("pipeline.connection_arn", "arn:aws:iam::123456789012:role/x", "CodeConnections connection ARN"),
    ("pipeline.source", "github", "'codeconnections', 'codecommit' or 's3'"),
    ("pipeline.post_deploy_timeout_minutes", "5", "greater than or equal to 30"),
    ("pipeline.pipeline_account", "tools", "12-digit"),
]


PIPELINE_ON = {"pipeline.enabled": "true", "pipeline.source": "codecommit"}
CONNECTION = "arn:aws:codeconnections:us-east-1:123456789012:connection/12345678-1234-1234-1234-123456789012"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"pipeline.source": "codeconnections"}, "config error: pipeline.connection_arn = (not set): is required"),
        (
            {
                "pipeline.source": "codeconnections",
                "pipeline.connection_arn": CONNECTION,
                "pipeline.repository": "noslash",
            },
            'config error: pipeline.repository = "noslash": must be owner/name',
        ),
        ({"pipeline.source": "s3"}, "config error: pipeline.s3_bucket = (not set): is required"),
        ({"pipeline.pipeline_account": "111111111111"}, "config error: account = (not set): must be set"),
        (
            {"pipeline.pipeline_account": "111111111111", "account": "222222222222"},
            "config error: pipeline.cross_account_keys = false: must be true",
        ),
    ],
)
def test_enabled_pipeline_requires_its_source_and_cross_account_settings(overrides, expected):
    with pytest.raises(ConfigError) as err:
        make_config(**{**PIPELINE_ON, **overrides})
    assert str(err.value).startswith(expected)


def test_disabled_pipeline_needs_no_source_settings():
    assert make_config(**{"pipeline.source": "s3"}).pipeline.enabled is False


@pytest.mark.parametrize(("key", "value", "expected"), INVALID, ids=[f"{k}={v}" for k, v, _ in INVALID])
def test_invalid_value_gives_one_line_naming_key_value_and_rule(key, value, expected):
    with pytest.raises(ConfigError) as err:
        make_config(**{key: value})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("config error: ")
    assert expected in message
    # The key named is the one at fault (or one of its list elements), followed by the value.
    assert message.startswith(f"config error: {key}")
    assert value.strip("[]").split(",")[0] in message


def test_duplicate_instance_group_names_are_refused():
    group = cdk_context()["config_defaults"]["hyperpod"]["instance_groups"][0]
    with pytest.raises(ConfigError, match="repeated: worker-group-1"):
        load_config({**cdk_context(), "hyperpod.instance_groups": [group, group]})


def test_missing_config_file_is_reported_by_name(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml.*file not found"):
        make_config(config=str(tmp_path / "nope.yaml"))


def test_malformed_config_file_is_reported_with_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("region: us-east-1\nnetwork: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*not valid YAML/JSON line"):
        make_config(config=str(path))


def test_public_cidrs_with_private_endpoint_are_refused():
    with pytest.raises(ConfigError, match="public_access_cidrs needs endpoint_access"):
        make_config(**{"eks.endpoint_access": "private", "eks.public_access_cidrs": "[203.0.113.0/24]"})


def test_the_example_config_in_the_readme_is_valid():
    from tests.conftest import REPO

    config = make_config(config=str(REPO / "examples" / "cluster.yaml"))
    assert config.region == "us-west-2" and config.hyperpod_azs == ("us-west-2b",)
    assert [g.name for g in config.hyperpod.instance_groups] == ["gpu", "cpu"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "hyperpd.cluster_name",
            "config error: hyperpd.cluster_name: 'hyperpd' is not a config section; did you mean hyperpod?",
        ),
        (
            "pipelines.enabled",
            "config error: pipelines.enabled: 'pipelines' is not a config section; did you mean pipeline?",
        ),
        ("zzz[0].name", "config error: zzz[0].name: 'zzz' is not a config section; sections are "),
    ],
)
def test_a_dotted_key_outside_every_config_section_is_refused_naming_the_closest(key, expected):
    with pytest.raises(ConfigError) as err:
        make_config(**{key: "x"})
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_cdk_own_context_keys_pass_through_the_config_loader():
    config = make_config(
        **{
            "@aws-cdk/core:newStyleStackSynthesis": "true",
            "aws:cdk:enable-path-metadata": "true",
            "availability-zones:account=123456789012:region=us-east-1": ["us-east-1a"],
            "assume-role-duration": "3600",
        }
    )
    assert config.prefix == make_config().prefix


def test_the_chart_digest_is_pinned_by_default():
    chart = make_config().eks.helm_chart
    assert chart.files_sha256 == PINNED_CHART_FILES_SHA256 and chart.commit == PINNED_CHART_COMMIT


def test_a_new_chart_commit_with_the_old_digest_is_refused_naming_the_digest_key():
    with pytest.raises(ConfigError) as err:
        make_config(**{"eks.helm_chart.commit": "a" * 40})
    assert str(err.value).startswith(f'config error: eks.helm_chart.files_sha256 = "{PINNED_CHART_FILES_SHA256}": ')
    assert make_config(**{"eks.helm_chart.commit": "a" * 40, "eks.helm_chart.files_sha256": ""})
