"""boto3 clients with one retry policy, and the error classes every handler reacts to.

Custom-resource events use adaptive retries: they back off on throttling and also rate-limit the client
itself, which matters when many stacks call HyperPod in one account, and may spend tens of seconds doing so.
The poller uses standard retries with a small budget: its whole check must fit in a fixed polling interval
(adaptive mode's client-side rate limiter can add sleeps of its own), and a check that runs out of budget
simply waits for the next interval.
"""

from __future__ import annotations

import re
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

USER_AGENT = "hyperpod-cluster-cr/1"

POLL_MAX_ATTEMPTS = 2
BUDGETS = {
    # on_event / is_complete: each call at most worst_case_seconds("event"); the Lambda timeouts in
    # infrastructure.py cover the most calls either function makes.
    "event": Config(
        retries={"mode": "adaptive", "total_max_attempts": 4},
        connect_timeout=3,
        read_timeout=8,
        user_agent_extra=USER_AGENT,
    ),
    # poller: 2 attempts per call (total_max_attempts counts the first one). A check that runs out of
    # attempts is not a failure: it waits for the next interval (poller.py), so retrying long here buys nothing.
    "poll": Config(
        retries={"mode": "standard", "total_max_attempts": POLL_MAX_ATTEMPTS},
        connect_timeout=2,
        read_timeout=4,
        user_agent_extra=USER_AGENT,
    ),
}
# botocore's ExponentialBackoff: throttling delays start at 1 s and double, capped at 20 s; an
# x-amz-retry-after header may raise one by at most 5 s.
_FIRST_BACKOFF, _MAX_BACKOFF, _RETRY_AFTER_EXTRA = 1, 20, 5


def worst_case_seconds(budget: str) -> float:
    """Upper bound of one call through every retry of ``budget``: each attempt's connect and read timeouts
    plus the largest backoff between attempts. (Adaptive mode's client-side rate limiter and a response
    trickling in slower than one read timeout per read are not bounded here.)"""
    config = BUDGETS[budget]
    attempts = config.retries["total_max_attempts"]
    backoff = sum(min(_FIRST_BACKOFF * 2**i, _MAX_BACKOFF) + _RETRY_AFTER_EXTRA for i in range(attempts - 1))
    return attempts * (config.connect_timeout + config.read_timeout) + backoff


_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "PriorRequestNotComplete",
}
_NETWORK = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
# moto and some SageMaker paths answer a missing cluster with ValidationException instead of ResourceNotFound.
_NOT_FOUND_TEXT = re.compile(r"could not find|not found|does not exist", re.IGNORECASE)


_CLIENTS: dict = {}


def client(service: str, budget: str = "event"):
    """One cached client per service and budget (Lambda containers are reused between invocations)."""
    key = (service, budget)
    if key not in _CLIENTS:
        _CLIENTS[key] = boto3.client(service, config=BUDGETS[budget])
    return _CLIENTS[key]


def reset_clients() -> None:
    """Forget cached clients (tests swap endpoints and mocks between cases)."""
    _CLIENTS.clear()


def error_code(err: BaseException) -> str:
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return type(err).__name__


def is_not_found(err: BaseException) -> bool:
    if not isinstance(err, ClientError):
        return False
    code = error_code(err)
    message = str(err.response.get("Error", {}).get("Message", ""))
    return code in ("ResourceNotFound", "ResourceNotFoundException") or (
        code == "ValidationException" and bool(_NOT_FOUND_TEXT.search(message))
    )


def is_transient(err: BaseException) -> bool:
    """Errors that remain after botocore's own retries and are still worth trying again later."""
    if isinstance(err, _NETWORK):
        return True
    if isinstance(err, ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(err) in _THROTTLING or status >= 500
    return False


def describe(err: BaseException) -> str:
    """``Code: message`` on one line, for CloudFormation reasons and logs."""
    if isinstance(err, ClientError):
        info = err.response.get("Error", {})
        text = f"{info.get('Code', 'Error')}: {info.get('Message', '')}".strip()
    else:
        text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())


def sagemaker_tags(sagemaker, arn: str) -> dict[str, str]:
    """Every tag of a SageMaker resource (ListTags pages at 50), as a mapping."""
    tags: dict[str, str] = {}
    kwargs: dict[str, Any] = {"ResourceArn": arn}
    while True:
        page = sagemaker.list_tags(**kwargs)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        if not page.get("NextToken"):
            return tags
        kwargs["NextToken"] = page["NextToken"]
