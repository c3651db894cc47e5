"""On-demand hourly prices and an itemized hourly estimate for one ``AppConfig``.

Why: the canary (and the preflight check) print what a deployment will cost per hour *before* anything
is created, so a platform team knows what it is confirming. CDK-free, so ``post_deploy`` can import it.

Every price carries the page it was read from and the date it was read. Nothing here could reach
AWS's pricing pages or the Price List API (the development machine is offline); each figure below was
read in stored copies of public pages, cited per price. A price no source gave is NOT in the table,
and the estimate reports that line as unknown (``hourly_usd is None``) instead of guessing; the known
total then says it is a lower bound. Notably no page we could read lists SageMaker HyperPod's own
per-instance rates (they differ from EC2's), so every ``ml.*`` line is unknown until a row is added
here with its source. Prices are us-east-1 list prices (Linux, on-demand); other regions are unknown.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only; keeps this module importable without pydantic models
    from config.model import AppConfig

HOURS_PER_MONTH = 730  # AWS's pricing pages convert monthly rates with 730 hours

_EKS_PRICING_BLOG = (
    "https://aws.amazon.com/blogs/containers/amazon-eks-extended-support-for-kubernetes-versions-pricing/"
)
_EKS_CALENDAR = (
    "https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html (release calendar; as "
    "transcribed on https://aws-samples.github.io/sample-apex-skills/docs/skills/eks-operation-review/"
    "references/cluster-lifecycle, verified 2026-04-24)"
)
_NAT_PRICING = (
    "https://aws.amazon.com/vpc/pricing/ (us-east-1 NAT gateway hour and public IPv4 hour, as quoted on "
    "https://cloudburn.io/blog/aws-nat-gateway-pricing, 2026-02-24)"
)
_EC2_T3 = (
    "https://aws.amazon.com/ec2/pricing/on-demand/ (as quoted on "
    "https://hacecuentas.com/en/costo-servidor-cloud-aws-ec2-mensual, reviewed 2026-04-17)"
)
_EC2_JUNE_2026 = (
    "https://aws.amazon.com/ec2/pricing/on-demand/ (us-east-1, as quoted on "
    "https://www.factualminds.com/blog/amazon-ec2-on-demand-pricing-instance-families-2026/, 2026-06-17)"
)
_GRAFANA_PRICING = (
    "https://aws.amazon.com/grafana/pricing/ (stored copies of the page: USD 9 per active editor or admin user "
    "per workspace per month, USD 5 per viewer; every workspace needs at least one editor licence)"
)
_FSX_PRICING = (
    "https://aws.amazon.com/fsx/lustre/pricing/ (Persistent SSD 125 MB/s/TiB, as quoted on "
    "https://c3x.dev/resources/aws/aws_fsx_lustre_file_system/)"
)


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str  # "hour", "GB-month" or "month"
    source: str
    read_on: str  # ISO date the figure was read (or the page's own date)


# --- EKS control plane (per cluster) --------------------------------------------------------------
EKS_STANDARD = Price(0.10, "hour", _EKS_PRICING_BLOG, "2024-04-01")
EKS_EXTENDED = Price(0.60, "hour", _EKS_PRICING_BLOG, "2024-04-01")  # total, not on top of standard

# Extended support starts the day AFTER the end-of-standard-support date (14 months after release).
EKS_END_OF_STANDARD_SUPPORT: dict[str, _dt.date] = {
    "1.31": _dt.date(2025, 11, 26),
    "1.32": _dt.date(2026, 3, 23),
    "1.33": _dt.date(2026, 7, 29),
    "1.34": _dt.date(2026, 12, 2),
    "1.35": _dt.date(2027, 3, 27),
}

# --- per region ------------------------------------------------------------------------------------
NAT_GATEWAY_HOURLY: dict[str, Price] = {"us-east-1": Price(0.045, "hour", _NAT_PRICING, "2026-02-24")}
# Every NAT gateway holds one Elastic IP, billed as a public IPv4 address.
PUBLIC_IPV4_HOURLY: dict[str, Price] = {"us-east-1": Price(0.005, "hour", _NAT_PRICING, "2026-02-24")}

# EC2 (system node group), Linux on-demand.
EC2_HOURLY: dict[str, dict[str, Price]] = {
    "us-east-1": {
        "t3.medium": Price(0.0416, "hour", _EC2_T3, "2026-04-17"),
        "t3.large": Price(0.0832, "hour", _EC2_T3, "2026-04-17"),
        "m7g.large": Price(0.0816, "hour", _EC2_JUNE_2026, "2026-06-17"),
        "g5.xlarge": Price(1.006, "hour", _EC2_JUNE_2026, "2026-06-17"),
    }
}

# SageMaker HyperPod instances (``ml.*``): no readable source gave these; see the module docstring.
HYPERPOD_HOURLY: dict[str, dict[str, Price]] = {"us-east-1": {}}

# FSx for Lustre PERSISTENT_2 (SSD), per GiB-month of storage capacity, by MB/s/TiB of throughput.
FSX_LUSTRE_PERSISTENT_2_GB_MONTH: dict[str, dict[int, Price]] = {
    "us-east-1": {125: Price(0.145, "GB-month", _FSX_PRICING, "2026-11")},
}

# Amazon Managed Grafana: the one editor licence every workspace needs, even with nobody signed in.
GRAFANA_EDITOR_MONTHLY: dict[str, Price] = {"us-east-1": Price(9.0, "month", _GRAFANA_PRICING, "2026-12-02")}


@dataclass(frozen=True)
class LineItem:
    """One thing the deployment pays for by the hour; ``hourly_usd`` None means the price is unknown."""

    what: str
    quantity: float
    unit_price: Price | None

    @property
    def hourly_usd(self) -> float | None:
        if self.unit_price is None:
            return None
        monthly = self.unit_price.unit in ("GB-month", "month")
        per_hour = self.unit_price.usd / HOURS_PER_MONTH if monthly else self.unit_price.usd
        return per_hour * self.quantity


@dataclass(frozen=True)
class CostEstimate:
    region: str
    on: _dt.date
    items: tuple[LineItem, ...]

    @property
    def known_hourly_usd(self) -> float:
        return sum(i.hourly_usd for i in self.items if i.hourly_usd is not None)

    @property
    def unknown(self) -> tuple[LineItem, ...]:
        return tuple(i for i in self.items if i.hourly_usd is None)

    def lines(self) -> list[str]:
        """Human-readable breakdown, one item a line, then the total (a lower bound if anything is unknown)."""
        out = [f"Estimated on-demand cost in {self.region} on {self.on.isoformat()} (USD per hour):"]
        for item in self.items:
            cost = "unknown" if item.hourly_usd is None else f"{item.hourly_usd:9.4f}"
            out.append(f"  {cost:>9}  {item.what}")
        total = f"{self.known_hourly_usd:.4f}"
        if self.unknown:
            names = ", ".join(i.what for i in self.unknown)
            out.append(f"  total at least {total} per hour; not included (price unknown): {names}")
        else:
            out.append(f"  total {total} per hour")
        return out


def eks_support_tier(version: str, on: _dt.date) -> str | None:
    """``standard`` or ``extended`` for a Kubernetes version on a date; None if the calendar lacks it."""
    end = EKS_END_OF_STANDARD_SUPPORT.get(version)
    if end is None:
        return None
    return "extended" if on > end else "standard"


def eks_control_plane(version: str, on: _dt.date, region: str = "us-east-1") -> LineItem:
    """The per-cluster fee; the China regions bill in CNY at other rates, so they stay unknown."""
    tier = eks_support_tier(version, on)
    price = None if region.startswith("cn-") else {"standard": EKS_STANDARD, "extended": EKS_EXTENDED}.get(tier or "")
    label = f"EKS control plane, Kubernetes {version} ({tier or 'support calendar unknown'} support)"
    return LineItem(label, 1, price)


def fsx_lustre_persistent_2(region: str, capacity_gib: int, throughput_mb_s_tib: int) -> LineItem:
    """An FSx for Lustre PERSISTENT_2 file system, priced per GiB-month (shown per hour)."""
    price = FSX_LUSTRE_PERSISTENT_2_GB_MONTH.get(region, {}).get(throughput_mb_s_tib)
    label = f"FSx for Lustre PERSISTENT_2, {capacity_gib} GiB at {throughput_mb_s_tib} MB/s/TiB"
    return LineItem(label, capacity_gib, price)


def estimate_hourly(config: AppConfig, on: _dt.date | None = None) -> CostEstimate:
    """Itemized hourly on-demand cost of what ``config`` deploys, as far as prices are known.

    Counted (leaving out what an existing VPC or EKS cluster already pays for): the EKS control plane (standard or extended support on ``on``), NAT gateways and their
    public IPv4 addresses, the system node group, the FSx for Lustre file system the app creates, every HyperPod
    instance group, and the interface
    endpoints when enabled (no price known: one line, unknown), and the Grafana workspace's minimum
    editor licence (``observability.grafana``). Not counted: Amazon Managed Service for Prometheus
    (billed per sample ingested, stored and queried), data transfer, NAT data
    processing, EBS volumes, CloudWatch Logs, S3, KMS and Lambda/Step Functions usage, which depend on
    traffic and time rather than on the configuration alone.
    """
    on = on or _dt.datetime.now(_dt.UTC).date()
    region = config.region
    # An existing cluster or VPC is already billed to its owner: only what the app adds is counted.
    items: list[LineItem] = [] if config.eks.existing else [eks_control_plane(config.eks.version, on, region)]

    net = config.network
    if not net.existing:
        nat_count = 1 if net.nat_gateways == "single" else len(net.availability_zones)
        items.append(LineItem(f"NAT gateway x {nat_count}", nat_count, NAT_GATEWAY_HOURLY.get(region)))
        items.append(
            LineItem(f"public IPv4 address x {nat_count} (NAT gateways)", nat_count, PUBLIC_IPV4_HOURLY.get(region))
        )
        if net.interface_endpoints:
            items.append(LineItem("interface VPC endpoints (network.interface_endpoints)", 1, None))

    nodes = config.eks.system_node_group
    if nodes.desired_size and not config.eks.existing:
        items.append(
            LineItem(
                f"system nodes {nodes.instance_type} x {nodes.desired_size}",
                nodes.desired_size,
                EC2_HOURLY.get(region, {}).get(nodes.instance_type),
            )
        )
    fsx = config.storage.fsx
    if fsx.enabled and not fsx.existing_file_system_id:  # an existing file system is billed to its owner
        items.append(fsx_lustre_persistent_2(region, fsx.storage_capacity_gib, fsx.throughput_per_unit_mib))
    if config.observability.grafana:
        items.append(
            LineItem("Amazon Managed Grafana workspace (one editor licence)", 1, GRAFANA_EDITOR_MONTHLY.get(region))
        )
    for group in config.hyperpod.instance_groups:
        items.append(
            LineItem(
                f"HyperPod {group.instance_type} x {group.instance_count} (group {group.name})",
                group.instance_count,
                HYPERPOD_HOURLY.get(region, {}).get(group.instance_type),
            )
        )
    return CostEstimate(region=region, on=on, items=tuple(items))
