"""Exit codes of ``python -m post_deploy``: one per failure class, so a pipeline can tell them apart,
and the one table of what each means, which every subcommand's ``--help`` prints.

``submit`` passes a finished job's own exit code through unchanged (SkyPilot uses 100 and up for
failed/cancelled jobs), so every code below stays under 100.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1  # a bug or an unclassified error; the message says what
    USAGE = 2  # bad arguments or unreadable outputs file (argparse also uses 2)
    AWS_API = 3  # an AWS call failed after retries (credentials, permissions, not found)
    CLUSTER_NOT_READY = 4  # HyperPod cluster still Creating/Updating, or Failed
    NODES_TIMEOUT = 5  # nodes did not become Ready/schedulable in time
    NODES_UNHEALTHY = 6  # nodes failed deep health checks / marked Unschedulable by HyperPod
    KUBERNETES_API = 7  # the Kubernetes API refused or failed a request after retries
    SKYPILOT_CHECK = 8  # SkyPilot does not see the context or the expected GPUs
    TASK_INVALID = 9  # a task YAML failed offline validation
    LAUNCH_FAILED = 10  # SkyPilot could not provision or submit the task
    PREFLIGHT_BLOCKED = 11  # preflight: the deployment would fail (quota, capacity, plan, network, ...)
    PREFLIGHT_WARNINGS = 12  # preflight: deployable, but with warnings to read
    CANARY_LEFTOVERS = 13  # canary: every phase passed, but something it created still exists


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
    ExitCode.CANARY_LEFTOVERS: "canary: every phase passed, but something it created is still there",
}
JOB_EXIT_CODES = (
    "100+ submit/run: the SkyPilot job's own exit code, passed through "
    "(100 failed, 101 not finished, 102 not found, 103 cancelled)"
)
INTERRUPTED = 130
INTERRUPTED_HELP = f"{INTERRUPTED:>5}  interrupted (Ctrl-C)"


def exit_codes_epilog(
    meanings: Mapping[ExitCode, str] | None = None, *, job_codes: bool = True, footer: str = ""
) -> str:
    """The ``exit codes:`` block of a ``--help``. A subcommand whose codes mean something more specific
    (``teardown``: one code per step) passes ``meanings`` for exactly the codes it can return."""
    table = dict(meanings) if meanings is not None else EXIT_CODE_HELP
    lines = ["exit codes:"]
    lines += [f"  {int(code):>3}  {table[code]}" for code in ExitCode if code in table]
    if job_codes:
        lines.append(f"  {JOB_EXIT_CODES}")
    lines.append(INTERRUPTED_HELP)
    if footer:
        lines.append(footer)
    return "\n".join(lines)
