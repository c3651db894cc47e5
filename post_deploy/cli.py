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

from post_deploy.exit_codes import ExitCode

# In the order a first-time user runs them (`preflight` before `cdk deploy`); `teardown` undoes it all; `token` is the kubeconfig's
# exec plugin.
STEP_MODULES = (
    "post_deploy.preflight",
    "post_deploy.kubeconfig",
    "post_deploy.nodes",
    "post_deploy.labels",
    "post_deploy.skypilot_check",
    "post_deploy.submit",
    "post_deploy.pipeline_run",
    "post_deploy.teardown",
    "post_deploy.eks_token",
)

EXIT_CODE_HELP: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.UNEXPECTED: "unexpected error (a bug or an unclassified failure; rerun with --debug)",
    ExitCode.USAGE: "bad arguments, or an unreadable/incomplete outputs file or kubeconfig",
    ExitCode.AWS_API: "an AWS call failed after retries (credentials, permissions, not found)",
    ExitCode.CLUSTER_NOT_READY: "the EKS/HyperPod cluster is not ready (creating, updating or failed)",
    ExitCode.NODES_TIMEOUT: "nodes did not become Ready/schedulable in time",
    ExitCode.NODES_UNHEALTHY: "nodes failed health checks or were marked unschedulable by HyperPod",
    ExitCode.KUBERNETES_API: "the Kubernetes API refused or failed a request after retries",
    ExitCode.SKYPILOT_CHECK: "SkyPilot does not see the context or the expected GPUs",
    ExitCode.TASK_INVALID: "a SkyPilot task YAML failed validation",
    ExitCode.LAUNCH_FAILED: "SkyPilot could not provision, submit, follow or tear down the task",
    ExitCode.PREFLIGHT_BLOCKED: "preflight: the deployment would fail; each blocked line says the fix",
    ExitCode.PREFLIGHT_WARNINGS: "preflight: deployable, with warnings to read",
}


def exit_codes_epilog() -> str:
    lines = ["exit codes:"]
    lines += [f"  {int(code):>3}  {EXIT_CODE_HELP[code]}" for code in ExitCode]
    lines.append(
        "  100+ submit/run: the SkyPilot job's own exit code, passed through "
        "(100 failed, 101 not finished, 102 not found, 103 cancelled)"
    )
    lines.append("  130  interrupted (Ctrl-C)")
    return "\n".join(lines)


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
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns escapes into exit codes
        code, message = classify(exc)
        print(f"error: {message}", file=sys.stderr)
        if args.debug:
            traceback.print_exc()
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
