"""The observability and training-operator sections: off by default, and each impossible combination
stops synth with one line naming the key (the region rules come from botocore's endpoint data)."""

from __future__ import annotations

import pytest

from config import ConfigError, service_regions
from tests.conftest import make_config

CHINA = {
    "region": "cn-north-1",
    "network.availability_zones": "[cn-north-1a,cn-north-1b]",
    "hyperpod.availability_zones": "[cn-north-1a]",
}
STOCKHOLM = {
    "region": "eu-north-1",
    "network.availability_zones": "[eu-north-1a,eu-north-1b]",
    "hyperpod.availability_zones": "[eu-north-1a]",
}


def test_both_capabilities_are_off_by_default():
    config = make_config()
    assert not config.observability.enabled and not config.observability.grafana and not config.observability.logging
    assert config.observability.removal_policy == "destroy"
    assert not config.training_operator.enabled


def test_switches_are_read_from_dotted_overrides():
    config = make_config(
        **{
            "observability.enabled": "true",
            "observability.grafana": "true",
            "observability.removal_policy": "retain",
            "training_operator.enabled": "true",
        }
    )
    assert config.observability.grafana and config.observability.removal_policy == "retain"
    assert config.training_operator.enabled


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            {"observability.grafana": "true"},
            "config error: observability.grafana = true: needs observability.enabled true "
            "(Grafana reads its Prometheus workspace)",
        ),
        (
            {"observability.logging": "true"},
            "config error: observability.logging = true: needs observability.enabled true",
        ),
        (
            {"observability.enabled": "true", "observability.removal_policy": "keep"},
            "config error: observability.removal_policy = \"keep\": Input should be 'destroy' or 'retain'",
        ),
        (
            {"training_operator.enabled": "true", "training_operator.version": "1"},
            'config error: training_operator.version = "1": unknown key',
        ),
    ],
)
def test_impossible_combinations_stop_with_one_line(overrides, line):
    with pytest.raises(ConfigError) as err:
        make_config(**overrides)
    assert str(err.value) == line


def test_grafana_is_refused_where_botocore_lists_no_managed_grafana_endpoint():
    assert service_regions.has_service("amp", "eu-north-1")
    assert not service_regions.has_service("grafana", "eu-north-1")
    make_config(**STOCKHOLM, **{"observability.enabled": "true"})  # Prometheus alone is fine there
    with pytest.raises(ConfigError) as err:
        make_config(**STOCKHOLM, **{"observability.enabled": "true", "observability.grafana": "true"})
    assert str(err.value).startswith(
        "config error: observability.grafana = true: Amazon Managed Grafana has no endpoint in region eu-north-1 "
        "(botocore lists ap-northeast-1, "
    )


def test_observability_is_refused_where_botocore_lists_no_prometheus_endpoint():
    make_config(**CHINA)
    with pytest.raises(ConfigError) as err:
        make_config(**CHINA, **{"observability.enabled": "true"})
    assert str(err.value) == (
        "config error: observability.enabled = true: Amazon Managed Service for Prometheus has no endpoint "
        "in region cn-north-1 (botocore lists none)"
    )


def test_the_cost_estimate_counts_the_grafana_workspaces_minimum_editor_licence():
    from config.pricing import HOURS_PER_MONTH, estimate_hourly

    def grafana_lines(config):
        return [i for i in estimate_hourly(config).items if "Grafana" in i.what]

    assert grafana_lines(make_config(**{"observability.enabled": "true"})) == []
    (line,) = grafana_lines(make_config(**{"observability.enabled": "true", "observability.grafana": "true"}))
    assert line.hourly_usd == pytest.approx(9.0 / HOURS_PER_MONTH)
    (unknown,) = grafana_lines(
        make_config(
            **{
                "observability.enabled": "true",
                "observability.grafana": "true",
                **{
                    "region": "eu-west-1",
                    "network.availability_zones": "[eu-west-1a,eu-west-1b]",
                    "hyperpod.availability_zones": "[eu-west-1a]",
                },
            }
        )
    )
    assert unknown.hourly_usd is None  # no source for other regions: reported unknown, not guessed
