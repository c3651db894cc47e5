"""Kubernetes client set-up every step that talks to the API shares: which kubeconfig, one client per
context, one line per API failure, and retries of what is transient (429, 5xx, dropped connections).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from post_deploy.common import StepError
from post_deploy.exit_codes import ExitCode

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_TRANSIENT_RETRIES = 6
DEFAULT_POOL_SIZE = 16  # label-gpus' worker count: one connection per worker


def kubeconfig_path(explicit: str | None) -> str:
    """``--kubeconfig``, else ``$KUBECONFIG`` (``:``-separated lists are merged), else ~/.kube/config."""
    return explicit or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def kube_api_client(
    kubeconfig: str | None = None, context: str | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> k8s.ApiClient:
    """An ApiClient for one context, with a connection pool as large as our worker pool.

    Raises StepError(USAGE) naming the file or context when the kubeconfig cannot be used.
    """
    path = kubeconfig_path(kubeconfig)
    if not any(os.path.isfile(p) for p in path.split(os.pathsep) if p):
        raise StepError(
            ExitCode.USAGE,
            f"kubeconfig {path!r} does not exist (run `python -m post_deploy kubeconfig` first, or pass --kubeconfig)",
        )
    configuration = k8s.Configuration()
    try:
        k8s_config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration, persist_config=False
        )
    except ConfigException as err:
        where = f"context {context!r} in " if context else ""
        raise StepError(ExitCode.USAGE, f"cannot use {where}kubeconfig {path!r}: {err}") from None
    configuration.connection_pool_maxsize = max(pool_size, 4)
    return k8s.ApiClient(configuration)


def api_error_text(err: Exception) -> str:
    """One line for an API failure: the Status message when the server sent one."""
    if isinstance(err, ApiException):
        try:
            message = json.loads(err.body or "{}").get("message")
        except (ValueError, AttributeError):
            message = None
        return f"HTTP {err.status} {err.reason}: {message or (err.body or '').strip()[:200]}".rstrip(": ")
    return f"{type(err).__name__}: {err}"


def _is_transient(err: Exception) -> bool:
    if isinstance(err, ApiException):
        return err.status in TRANSIENT_STATUSES
    return isinstance(err, urllib3.exceptions.HTTPError)  # connection reset/refused, read timeout


def _backoff_seconds(err: Exception, attempt: int) -> float:
    retry_after = err.headers.get("Retry-After") if isinstance(err, ApiException) and err.headers else None
    if retry_after is not None:
        try:
            return min(float(retry_after), 30.0)
        except ValueError:
            pass
    return random.uniform(0, min(5.0, 0.2 * 2**attempt))  # full jitter


def call_with_retries(
    call: Callable[[], Any], *, sleep: Callable[[float], None] = time.sleep, attempts: int = MAX_TRANSIENT_RETRIES
) -> Any:
    """Run ``call``, retrying 429/5xx/connection errors with backoff; re-raise the last error."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - filtered right below
            if not _is_transient(err) or attempt == attempts - 1:
                raise
            sleep(_backoff_seconds(err, attempt))
    raise AssertionError("unreachable")


def context_missing(path: str, context: str) -> str | None:
    """Why ``context`` cannot be used from the kubeconfig at ``path`` (one line), or None."""
    files = [p for p in path.split(os.pathsep) if p]
    if not any(os.path.isfile(p) for p in files):
        return f"no kubeconfig at {path}"
    try:
        contexts, _ = k8s_config.list_kube_config_contexts(config_file=path)
    except ConfigException as exc:
        return f"kubeconfig {path} is unusable ({exc})"
    if context not in {c["name"] for c in contexts or []}:
        return f"kubeconfig {path} has no context {context!r}"
    return None
