"""Throttling goes through botocore's real retry loop (Stubber responses bypass it), so these tests point
the handler's own client at a loopback endpoint that throttles a scripted number of times."""

from __future__ import annotations

import pytest
from botocore.retries import bucket
from botocore.retries.standard import ExponentialBackoff

from constructs.task_governance.runtime import aws, handler
from tests.hyperpod_cluster.test_retries import ThrottlingSageMaker
from tests.task_governance.conftest import QUOTA_ARN, QUOTA_ID, described, event, properties, quota_request


@pytest.fixture
def endpoint(monkeypatch):
    # Same retry loop, shorter sleeps: botocore's throttling backoff from 1 s to 10 ms, and the adaptive
    # mode's client-side rate limiter never slower than 50 instead of 0.5 requests per second.
    monkeypatch.setitem(ExponentialBackoff._DEFAULT_BACKOFF_CONFIG, "throttling_base_scale", 0.01)
    real_init = bucket.TokenBucket.__init__
    monkeypatch.setattr(
        bucket.TokenBucket,
        "__init__",
        lambda self, max_rate, clock, min_rate=50: real_init(self, max_rate, clock, min_rate),
    )
    servers = []

    def start(throttle: int, responses: dict) -> ThrottlingSageMaker:
        server = ThrottlingSageMaker(throttle, responses)
        servers.append(server)
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        aws.reset_clients()
        return server

    yield start
    for server in servers:
        server.close()


def test_create_is_retried_through_throttling(endpoint):
    server = endpoint(
        2,
        {
            "SageMaker.ListComputeQuotas": {"ComputeQuotaSummaries": []},
            "SageMaker.CreateComputeQuota": {"ComputeQuotaArn": QUOTA_ARN, "ComputeQuotaId": QUOTA_ID},
        },
    )
    assert handler.on_event(event("Create", properties()))["PhysicalResourceId"] == QUOTA_ID
    assert server.calls == ["SageMaker.ListComputeQuotas"] * 3 + ["SageMaker.CreateComputeQuota"]


def test_throttling_that_outlasts_the_retry_budget_means_poll_again_in_is_complete(endpoint):
    server = endpoint(100, {"SageMaker.DescribeComputeQuota": described(quota_request())})
    assert handler.is_complete(event("Create", properties(), physical_id=QUOTA_ID)) == {"IsComplete": False}
    # every attempt the shared "event" budget allows (total_max_attempts counts the first one), no more
    assert len(server.calls) == aws.BUDGETS["event"].retries["total_max_attempts"]


def test_delete_is_retried_through_throttling(endpoint):
    server = endpoint(
        1, {"SageMaker.DescribeComputeQuota": described(quota_request()), "SageMaker.DeleteComputeQuota": {}}
    )
    assert handler.on_event(event("Delete", properties(), physical_id=QUOTA_ID)) == {}
    assert server.calls == ["SageMaker.DescribeComputeQuota"] * 2 + ["SageMaker.DeleteComputeQuota"]
