"""Regions an AWS service has an endpoint in, read from botocore's endpoint data (``endpoints.json``).

Amazon Managed Service for Prometheus (``amp``) and Amazon Managed Grafana (``grafana``) are not in
every region HyperPod is; the config refuses a switch whose service the region lacks, before synth,
instead of letting CloudFormation fail halfway through a deploy.
"""

from __future__ import annotations

from functools import cache

import botocore.session


@cache
def regions(service: str, partition: str = "aws") -> tuple[str, ...]:
    return tuple(botocore.session.get_session().get_available_regions(service, partition_name=partition))


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def has_service(service: str, region: str) -> bool:
    return region in regions(service, partition_of(region))
