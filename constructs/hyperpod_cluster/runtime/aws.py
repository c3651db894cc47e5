"""boto3 clients with one retry policy, and the error classes every handler reacts to.

Adaptive retries back off on throttling and also rate-limit the client itself, which matters when many
stacks poll HyperPod in the same account. Two budgets: custom-resource events may spend tens of seconds
retrying; the poller runs inside a fixed polling interval and must give up quickly.
"""

from __future__ import annotations

import re
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

BUDGETS = {
    # on_event / is_complete: up to 6 attempts, well inside the 2-minute Lambda timeout.
    "event": Config(
        retries={"mode": "adaptive", "max_attempts": 6},
        connect_timeout=5, read_timeout=30, user_agent_extra=USER_AGENT,
    ),
    # poller: the whole check must fit in its Lambda timeout (see infrastructure.POLL_TIMEOUT).
    "poll": Config(
        retries={"mode": "adaptive", "max_attempts": 3},
        connect_timeout=2, read_timeout=4, user_agent_extra=USER_AGENT,
    ),
}

_THROTTLING = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "SlowDown",
    "ProvisionedThroughputExceededException", "LimitExceededException", "PriorRequestNotComplete",
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
