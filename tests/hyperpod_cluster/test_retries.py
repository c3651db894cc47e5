"""Throttling goes through botocore's real retry loop (Stubber responses bypass it), so these tests point the
handlers' own clients at a loopback endpoint that throttles a scripted number of times."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.retries.standard import ExponentialBackoff

from constructs.hyperpod_cluster.runtime import aws, handler, poller
from tests.hyperpod_cluster.conftest import HandleServer, cluster_request, described, event, properties


class ThrottlingSageMaker:
    """Answers the first ``throttle`` calls with ThrottlingException, then with ``responses[target]``."""

    def __init__(self, throttle: int, responses: dict[str, dict]) -> None:
        self.calls: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers["X-Amz-Target"]
                outer.calls.append(target)
                if len(outer.calls) <= throttle:
                    status, body = 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
                else:
                    status, body = 200, responses[target]
                payload = json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(monkeypatch):
    # Same retry loop, shorter sleeps: scale botocore's throttling backoff from 1 s down to 10 ms.
    monkeypatch.setitem(ExponentialBackoff._DEFAULT_BACKOFF_CONFIG, "throttling_base_scale", 0.01)
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


def test_delete_cluster_is_retried_through_throttling(endpoint):
    server = endpoint(
        1, {"SageMaker.DeleteCluster": {"ClusterArn": "arn:aws:sagemaker:us-east-1:123456789012:cluster/x"}}
    )
    assert set(handler.on_event(event("Delete", properties(), physical_id="hp-test"))) == {handler.DELETE_DEADLINE_KEY}
    assert server.calls == ["SageMaker.DeleteCluster"] * 2


def test_describe_is_retried_through_throttling_in_is_complete(endpoint):
    response = described(cluster_request(), status="Creating")
    server = endpoint(2, {"SageMaker.DescribeCluster": response})
    assert handler.is_complete(event("Create", properties(), physical_id="hp-test"))["IsComplete"] is True
    assert server.calls == ["SageMaker.DescribeCluster"] * 3


def test_poller_gives_up_after_its_small_budget_and_waits(endpoint):
    server = endpoint(10, {})
    handle = HandleServer()
    try:
        result = poller.handle(
            {
                "ClusterName": "hp-test",
                "WaitHandleUrl": handle.url,
                "UniqueId": "hp-test",
                "DeadlineEpoch": time.time() + 600,
                "TargetCounts": {"workers": 2},
            }
        )
    finally:
        handle.close()
    assert result["Outcome"] == "WAIT" and "ThrottlingException" in result["Reason"]
    assert server.calls == ["SageMaker.DescribeCluster"] * aws.POLL_MAX_ATTEMPTS
    assert handle.requests == []
