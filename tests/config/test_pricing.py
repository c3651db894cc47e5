"""config/pricing.py: an itemized hourly estimate from cited prices; unknown prices stay unknown."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys

import pytest

from config import pricing
from config.model import SUPPORTED_EKS_VERSIONS
from tests.conftest import REPO, make_config


def _item(estimate: pricing.CostEstimate, prefix: str) -> pricing.LineItem:
    (found,) = [i for i in estimate.items if i.what.startswith(prefix)]
    return found


def test_every_price_names_its_source_page_and_the_date_it_was_read():
    prices = [pricing.EKS_STANDARD, pricing.EKS_EXTENDED]
    for table in (pricing.NAT_GATEWAY_HOURLY, pricing.PUBLIC_IPV4_HOURLY):
        prices += table.values()
    for table in (pricing.EC2_HOURLY, pricing.HYPERPOD_HOURLY, pricing.FSX_LUSTRE_PERSISTENT_2_GB_MONTH):
        for per_region in table.values():
            prices += per_region.values()
    assert len(prices) >= 9
    for price in prices:
        assert re.search(r"https://\S+", price.source), price
        assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", price.read_on), price
        assert price.usd > 0 and price.unit in ("hour", "GB-month")


def test_every_eks_version_the_config_accepts_has_a_support_calendar_entry():
    for version in SUPPORTED_EKS_VERSIONS:
        assert version in pricing.EKS_END_OF_STANDARD_SUPPORT


def test_extended_support_price_starts_the_day_after_the_end_of_standard_support():
    config = make_config(**{"eks.version": "1.33"})
    end = pricing.EKS_END_OF_STANDARD_SUPPORT["1.33"]
    on_end = _item(pricing.estimate_hourly(config, on=end), "EKS control plane")
    after = _item(pricing.estimate_hourly(config, on=end + dt.timedelta(days=1)), "EKS control plane")
    assert on_end.hourly_usd == pytest.approx(0.10) and "standard" in on_end.what
    assert after.hourly_usd == pytest.approx(0.60) and "extended" in after.what


def test_nat_gateways_per_az_are_counted_with_their_public_addresses():
    config = make_config(
        **{"network.nat_gateways": "per_az", "network.availability_zones": ["us-east-1a", "us-east-1b", "us-east-1c"]}
    )
    estimate = pricing.estimate_hourly(config, on=dt.date(2026, 1, 1))
    assert _item(estimate, "NAT gateway").hourly_usd == pytest.approx(3 * 0.045)
    assert _item(estimate, "public IPv4").hourly_usd == pytest.approx(3 * 0.005)


def test_hyperpod_instances_without_a_cited_price_are_reported_unknown_not_guessed():
    config = make_config(
        **{"eks.system_node_group.instance_type": "t3.medium", "eks.system_node_group.desired_size": 2}
    )
    estimate = pricing.estimate_hourly(config, on=dt.date(2026, 1, 1))
    hyperpod = _item(estimate, "HyperPod ml.p5.48xlarge")
    assert hyperpod.hourly_usd is None and hyperpod in estimate.unknown
    nodes = _item(estimate, "system nodes t3.medium x 2")
    assert nodes.hourly_usd == pytest.approx(2 * 0.0416)
    assert estimate.known_hourly_usd == pytest.approx(0.10 + 0.045 + 0.005 + 2 * 0.0416)
    text = "\n".join(estimate.lines())
    assert "total at least 0.2332 per hour" in text
    (unknown_line,) = [line for line in text.splitlines() if "not included (price unknown): " in line]
    # FSx at the default 250 MB/s/TiB has no cited price either
    assert "HyperPod ml.p5.48xlarge x 2" in unknown_line and "FSx for Lustre PERSISTENT_2, 1200 GiB" in unknown_line


def test_a_region_without_prices_reports_every_regional_line_unknown():
    config = make_config(
        region="eu-west-1",
        **{"network.availability_zones": ["eu-west-1a", "eu-west-1b"], "hyperpod.availability_zones": ["eu-west-1a"]},
    )
    estimate = pricing.estimate_hourly(config, on=dt.date(2026, 1, 1))
    assert [i.what.split(" ")[0] for i in estimate.unknown] == ["NAT", "public", "system", "FSx", "HyperPod"]
    assert estimate.known_hourly_usd == pytest.approx(0.10)  # EKS's fee is per cluster, not per region (blog)


def test_interface_endpoints_are_an_unknown_line_when_enabled():
    config = make_config(**{"network.interface_endpoints": True})
    estimate = pricing.estimate_hourly(config, on=dt.date(2026, 1, 1))
    assert _item(estimate, "interface VPC endpoints").hourly_usd is None


def test_fsx_persistent_2_is_priced_per_gib_month_and_unknown_tiers_stay_unknown():
    item = pricing.fsx_lustre_persistent_2("us-east-1", 1200, 125)
    assert item.hourly_usd == pytest.approx(1200 * 0.145 / 730)
    assert pricing.fsx_lustre_persistent_2("us-east-1", 1200, 1000).hourly_usd is None


def test_pricing_imports_without_cdk_so_post_deploy_can_use_it():
    code = "import sys, config.pricing; sys.exit(1 if any(m.startswith('aws_cdk') for m in sys.modules) else 0)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_the_file_system_the_app_creates_is_in_the_estimate_and_an_existing_one_is_not():
    fsx_lines = lambda config: [i for i in pricing.estimate_hourly(config).items if i.what.startswith("FSx for Lustre")]  # noqa: E731
    (line,) = fsx_lines(make_config(**{"storage.fsx.throughput_per_unit_mib": "125"}))
    assert line.quantity == 1200 and line.unit_price is not None
    assert fsx_lines(make_config(**{"storage.fsx.existing_file_system_id": "fs-0123456789abcdef0"})) == []
    assert fsx_lines(make_config(**{"storage.fsx.enabled": "false"})) == []
