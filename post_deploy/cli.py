"""``python -m post_deploy``: one subcommand per post-deploy step, plus ``run`` for all of them.

Each step module exposes ``register(subparsers)`` and ``run(args) -> int``; this module only
builds the parser, runs the chosen step and turns an escaped exception into one line and an exit
code from ``ExitCode`` (a traceback only with ``--debug``), so a pipeline log shows what failed
rather than forty lines of stack.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
import traceback
from collections.abc import Sequence

from post_deploy.exit_codes import INTERRUPTED, ExitCode, exit_codes_epilog

# In the order a first-time user runs them (`preflight` before `cdk deploy`); `teardown` undoes it all; `token` is the kubeconfig's
# exec plugin.
STEP_MODULES = (
    "post_deploy.preflight",
    "post_deploy.canary",
    "post_deploy.kubeconfig",
    "post_deploy.nodes",
    "post_deploy.labels",
    "post_deploy.skypilot_check",
    "post_deploy.submit",
    "post_deploy.pipeline_run",
    "post_deploy.teardown",
    "post_deploy.eks_token",
)

# The kubeconfig's exec plugin runs `token` before every kubectl/SkyPilot API call: importing the
# kubernetes client and SkyPilot for it would add seconds to each, so it gets a parser of its own.
FAST_PATH = {"token": "post_deploy.eks_token"}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m post_deploy",
        description="From deployed stacks to SkyPilot jobs on HyperPod GPUs: write the kubeconfig, wait "
        "for nodes, label GPUs for SkyPilot, check SkyPilot sees them, submit tasks. `run` does all "
        "of it in order.",
        epilog=exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="print tracebacks for unexpected errors")
    subparsers = parser.add_subparsers(dest="command", metavar="STEP", required=True)
    for name in [FAST_PATH[only]] if only else STEP_MODULES:
        importlib.import_module(name).register(subparsers)
    for command in [parser, *subparsers.choices.values()]:
        # Raw formatting keeps the exit-code table aligned; wrap the prose ourselves.
        command.description = textwrap.fill(command.description or "", 100) or None
        command.epilog = command.epilog or exit_codes_epilog()
        command.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=argv[0] if argv and argv[0] in FAST_PATH else None)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place that turns escapes into exit codes
        code, message = classify(exc)
        print(f"error: {message}", file=sys.stderr)
        if args.debug:
            # An explicit limit: SkyPilot's print_exception_no_traceback() sets sys.tracebacklimit = 0 and
            # leaves it so when the exception it wraps propagates (SkyPilot 0.14.1 sky/utils/ux_utils.py).
            traceback.print_exception(exc, limit=1000)
        elif code == ExitCode.UNEXPECTED:
            print("(rerun with --debug for the traceback)", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"step": args.command, "ok": False, "exit_code": int(code), "error": message}))
        return int(code)


def classify(exc: BaseException) -> tuple[ExitCode, str]:
    """The exit code and one-line message for an exception that escaped a step."""
    from botocore.exceptions import BotoCoreError, ClientError

    from post_deploy.common import StepError
    from post_deploy.outputs import OutputsError

    if isinstance(exc, StepError):
        return exc.code, exc.message
    if isinstance(exc, OutputsError):
        return ExitCode.USAGE, str(exc)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return ExitCode.AWS_API, f"AWS {exc.operation_name}: {error.get('Code')}: {error.get('Message')}"
    if isinstance(exc, BotoCoreError):
        return ExitCode.AWS_API, f"AWS: {exc}"
    kubernetes_error = _kubernetes_api_error(exc)
    if kubernetes_error:
        return ExitCode.KUBERNETES_API, kubernetes_error
    first_line = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return ExitCode.UNEXPECTED, f"unexpected {type(exc).__name__}" + (f": {first_line}" if first_line else "")


def _kubernetes_api_error(exc: BaseException) -> str | None:
    try:
        from kubernetes.client.rest import ApiException
    except ImportError:  # pragma: no cover - kubernetes is a pinned dependency
        return None
    if isinstance(exc, ApiException):
        return f"Kubernetes API: {exc.status} {exc.reason}"
    return None
