"""Rules read from botocore's SageMaker API model, so validation tracks the API, not a hand-kept list."""

from __future__ import annotations

import re
from functools import lru_cache

import botocore.session


@lru_cache(maxsize=1)
def _model():
    return botocore.session.get_session().get_service_model("sagemaker")


def _shape(name: str):
    return _model().shape_for(name)


@lru_cache(maxsize=1)
def cluster_instance_types() -> tuple[str, ...]:
    """Every ``ml.*`` type CreateCluster accepts (``ClusterInstanceType`` enum)."""
    return tuple(_shape("ClusterInstanceType").enum)


def enum_values(shape_name: str) -> tuple[str, ...]:
    return tuple(_shape(shape_name).enum)


def limits(shape_name: str) -> tuple[int | None, int | None]:
    meta = _shape(shape_name).metadata
    return meta.get("min"), meta.get("max")


def full_match(shape_name: str, value: str) -> bool:
    """True if ``value`` satisfies the shape's pattern and length limits."""
    meta = _shape(shape_name).metadata
    lo, hi = meta.get("min", 0), meta.get("max")
    if len(value) < lo or (hi is not None and len(value) > hi):
        return False
    pattern = meta.get("pattern")
    return pattern is None or re.fullmatch(pattern, value) is not None


def pattern(shape_name: str) -> str:
    return _shape(shape_name).metadata["pattern"]


@lru_cache(maxsize=1)
def compute_quota_instance_types() -> tuple[str, ...]:
    """The ``ml.*`` types a compute quota may name (``ComputeQuotaResourceConfig.InstanceType`` enum)."""
    return tuple(_shape("ComputeQuotaResourceConfig").members["InstanceType"].enum)


def list_limits(structure: str, member: str) -> tuple[int | None, int | None]:
    """Length limits of a list member of a structure (e.g. at most 10 ``SchedulerConfig.PriorityClasses``)."""
    meta = _shape(structure).members[member].metadata
    return meta.get("min"), meta.get("max")
