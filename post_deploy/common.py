"""Pieces every post-deploy step shares: the common flags, the error type a step raises to end with
a chosen exit code, AWS client settings, and how a step reports its result.

Steps print human lines to stderr and, with ``--json``, exactly one JSON object to stdout, so a
pipeline can parse stdout without scraping logs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from post_deploy.exit_codes import ExitCode

# Throttling and transient 5xx are retried by botocore itself; "standard" mode adds jittered
# backoff and a retry quota, so a burst of steps cannot hammer a throttled API.
AWS_RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=30)


class StepError(Exception):
    """A failure already phrased as the one line the user sees, with the exit code it maps to."""

    def __init__(self, code: ExitCode, message: str):
        super().__init__(message)
        self.code = ExitCode(code)
        self.message = message


def add_common_args(
    parser: argparse.ArgumentParser, context_help: str = "kubeconfig context (default: current-context)"
) -> None:
    """``--kubeconfig``, ``--context`` and ``--json``: the same meaning in every step."""
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig file (default: first path of $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument("--context", metavar="NAME", help=context_help)
    parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout")


def aws_failure(what: str, exc: Exception) -> StepError:
    """One line for an AWS call that failed after botocore's retries: the API's own code and message."""
    error = exc.response.get("Error", {}) if isinstance(exc, ClientError) else {}
    detail = f"{error.get('Code')}: {error.get('Message')}" if error else str(exc)
    return StepError(ExitCode.AWS_API, f"{what}: {detail}")


def aws_session(profile: str | None = None, region: str | None = None) -> boto3.Session:
    """A session honouring ``--profile``/``--region`` and, through botocore, ``AWS_ENDPOINT_URL``."""
    return boto3.Session(profile_name=profile or None, region_name=region or None)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException) -> str:
    """``Type: first non-empty line`` of an exception, without terminal colours: SDK errors (SkyPilot's
    especially) often carry pages of detail and ANSI codes."""
    text = next((line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def say(message: str) -> None:
    """Progress for humans; stderr so ``--json`` output on stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)


def emit_json(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    """Print the step's summary as one JSON line when ``--json`` was given."""
    if getattr(args, "json", False):
        print(json.dumps(summary, sort_keys=True, default=str), flush=True)
