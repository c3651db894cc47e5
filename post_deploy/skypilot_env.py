"""The process environment SkyPilot runs in, shared by ``check``, ``submit`` and ``teardown``.

Two ways of using SkyPilot need two set-ups: the SDK client (``submit``, ``teardown``'s ``sky down``)
talks to an API server, which gets KUBECONFIG from this process (``skypilot_environment``; a local
server this command started is stopped again, ``local_api_server_lifecycle``); ``check`` runs
SkyPilot's checks in this very process (``skypilot_session``). In both, stdout stays for ``--json``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from post_deploy.common import say


@contextlib.contextmanager
def skypilot_environment(kubeconfig: str | None) -> Iterator[None]:
    """SkyPilot reads these from the process environment; a local API server inherits them and a
    running one receives KUBECONFIG with each request."""
    saved = {k: os.environ.get(k) for k in ("SKYPILOT_DISABLE_USAGE_COLLECTION", "KUBECONFIG")}
    os.environ["SKYPILOT_DISABLE_USAGE_COLLECTION"] = "1"
    if kubeconfig:
        os.environ["KUBECONFIG"] = str(Path(kubeconfig).expanduser().resolve())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def local_api_server_lifecycle() -> Iterator[None]:
    """Stop the local SkyPilot API server afterwards if (and only if) this command started it."""
    import sky
    from sky.server import common as server_common

    local = server_common.is_api_server_local()
    was_running = local and server_common.get_api_server_status().status == server_common.ApiServerStatus.HEALTHY
    try:
        yield
    finally:
        if local and not was_running:
            with contextlib.redirect_stdout(sys.stderr):
                try:
                    sky.api_stop()
                except Exception as exc:  # noqa: BLE001 - report, the job's result still stands
                    say(f"warning: could not stop the local SkyPilot API server: {exc} (run: sky api stop)")


def sky_stream() -> Any:
    """Where SkyPilot streams logs: stderr, as it is now (tests and ``--json`` swap it). SkyPilot annotates
    ``io.TextIOBase``, which ``sys.stderr`` (a ``TextIO``) satisfies at run time."""
    return sys.stderr


@contextlib.contextmanager
def sky_output_to_stderr() -> Iterator[None]:
    """SkyPilot's SDK prints progress to stdout, which belongs to ``--json``."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _swap_stream(handler: logging.StreamHandler, stream: Any) -> None:
    """Like ``setStream`` without flushing the old stream, which may already be closed."""
    with handler.lock or contextlib.nullcontext():
        handler.stream = stream


@contextlib.contextmanager
def skypilot_session(kubeconfig: str) -> Iterator[None]:
    """Point SkyPilot at our kubeconfig and start from empty per-request caches, as its server does.

    The kubernetes package reads ``$KUBECONFIG`` once, at import, as its default file, and SkyPilot
    relies on that default in places (its exec-auth probe calls ``load_kube_config()``); it is
    pointed at the same file for the duration, as if this process had started with
    ``KUBECONFIG=<path>`` like a SkyPilot API server does.

    stdout belongs to ``--json``: SkyPilot's log handlers (bound to stdout when ``sky`` is
    imported) are pointed at stderr, and its status spinners' control payloads are dropped.
    """
    from kubernetes.config import kube_config
    from sky import sky_logging  # noqa: F401 - creates SkyPilot's handlers, so they can be redirected
    from sky.utils import annotations

    previous = os.environ.get("KUBECONFIG")
    previous_default = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    os.environ["KUBECONFIG"] = kubeconfig
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = kubeconfig
    os.environ.setdefault("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
    annotations.clear_request_level_cache()
    sky_loggers = [
        logger
        for name, logger in logging.root.manager.loggerDict.items()
        if (name == "sky" or name.startswith("sky.")) and isinstance(logger, logging.Logger)
    ]
    streams = {
        h: h.stream
        for logger in sky_loggers
        for h in logger.handlers  # SkyPilot's own handlers only
        if isinstance(h, logging.StreamHandler) and type(h).__module__.startswith("sky.")
    }
    try:
        for handler in streams:
            _swap_stream(handler, sys.stderr)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for handler, stream in streams.items():
            _swap_stream(handler, stream)
        annotations.clear_request_level_cache()
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = previous_default
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
