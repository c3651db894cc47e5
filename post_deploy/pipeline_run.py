"""``run``: every post-deploy step in order, from the stack outputs to a finished SkyPilot job.

kubeconfig -> wait-nodes -> label-gpus -> check -> submit (only when ``--tasks`` are given). Each
step is run through the same parser and ``run(args)`` as its own subcommand, so ``run`` cannot
drift from what the steps do alone; it stops at the first failing step and exits with that
step's code. Every step is idempotent, so rerunning ``run`` after fixing the cause is the retry.

Inputs are the deployed stacks' outputs (``config.outputs`` keys) from ``--outputs`` and/or
environment variables of the same names; the latter is how the pipeline's post-deploy CodeBuild
step receives them (``env_from_cfn_outputs``).

With ``--json``, stdout carries one object: the overall result and each step's own summary.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from typing import Any

from config import outputs as keys
from post_deploy.common import StepError, add_common_args, emit_json, say
from post_deploy.exit_codes import ExitCode
from post_deploy.kubeconfig import default_kubeconfig_path
from post_deploy.outputs import OutputsError, read_outputs

STEPS = ("kubeconfig", "wait-nodes", "label-gpus", "check", "submit")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="all steps in order: kubeconfig, wait-nodes, label-gpus, check, submit (if --tasks)",
        description="Read the stack outputs (--outputs FILE and/or env vars EksClusterName, Region, "
        "HyperPodClusterName, ...), then run kubeconfig -> wait-nodes -> label-gpus -> check -> submit. "
        "Stops at the first failing step with its exit code. Safe to rerun.",
    )
    add_common_args(parser, context_help="context to write and use (default: the EKS cluster name)")
    parser.add_argument("--outputs", metavar="FILE", help="cdk deploy --outputs-file JSON (else env vars)")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=[],
        metavar="TASK.yaml",
        help="SkyPilot tasks to submit after the checks pass (default: none)",
    )
    parser.add_argument("--profile", help="AWS profile")
    parser.add_argument(
        "--node-timeout", type=float, metavar="SECONDS", help="wait-nodes --timeout (default: the step's own)"
    )
    parser.add_argument(
        "--expected-nodes", type=int, metavar="N", help="wait-nodes --expected (default: from DescribeCluster)"
    )
    parser.add_argument("--down", action="store_true", help="submit --down: tear SkyPilot clusters down afterwards")
    parser.add_argument("--managed", action="store_true", help="submit --managed: run tasks as managed jobs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        outs = read_outputs(args.outputs)
        outs.require(keys.REGION, keys.EKS_CLUSTER_NAME, keys.HYPERPOD_CLUSTER_NAME)
    except OutputsError as exc:
        raise StepError(ExitCode.USAGE, str(exc)) from None
    kubeconfig = args.kubeconfig or str(default_kubeconfig_path())
    context = str(args.context or outs.eks_cluster_name)  # required above
    plan = step_argv(args, outs, kubeconfig, context)
    say(
        f"run: EKS {outs.eks_cluster_name} / HyperPod {outs.hyperpod_cluster_name} in {outs.region}; "
        f"context {context!r} in {kubeconfig}; steps: {', '.join(name for name, _ in plan)}"
    )

    from post_deploy.cli import build_parser  # the same parser the subcommands use

    parser = build_parser()
    results: list[dict[str, Any]] = []
    code: int = ExitCode.OK
    for name, argv in plan:
        say(f"run: == {name} ==")
        started = time.monotonic()
        code, summary = run_step(parser, [name, *argv])
        results.append(
            {"step": name, "exit_code": int(code), "seconds": round(time.monotonic() - started, 3), "summary": summary}
        )
        if code != 0:
            say(f"run: {name} failed with exit code {int(code)}; stopping")
            break
    emit_json(
        args,
        {
            "step": "run",
            "ok": code == 0,
            "exit_code": int(code),
            "outputs": outs.as_dict(),
            "kubeconfig": kubeconfig,
            "context": context,
            "steps": results,
        },
    )
    return int(code)


def step_argv(args: argparse.Namespace, outs, kubeconfig: str, context: str) -> list[tuple[str, list[str]]]:
    """Each step's command line, as a user would type it."""
    common = ["--kubeconfig", kubeconfig, "--context", context]
    aws = ["--region", outs.region] + (["--profile", args.profile] if args.profile else [])
    wait = ["--cluster-name", outs.hyperpod_cluster_name, *aws]
    if args.node_timeout is not None:
        wait += ["--timeout", str(args.node_timeout)]
    if args.expected_nodes is not None:
        wait += ["--expected", str(args.expected_nodes)]
    # With Karpenter autoscaling, its groups at 0 are normal and SkyPilot must wait for their nodes.
    scaled = ["--karpenter-groups", ",".join(outs.karpenter_groups)] if outs.karpenter_groups else []
    offered = ["--cluster-accelerators", outs.hyperpod_accelerators] if scaled and outs.hyperpod_accelerators else []
    plan = [
        ("kubeconfig", [*common, "--cluster-name", outs.eks_cluster_name, *aws]),
        ("wait-nodes", [*common, *wait, *scaled]),
        ("label-gpus", [*common, "--cluster-name", outs.hyperpod_cluster_name]),
        # check also shows each task-governance team's queue (from the same outputs file or env vars).
        (
            "check",
            [
                *common,
                "--cluster-name",
                outs.hyperpod_cluster_name,
                *(["--outputs", args.outputs] if args.outputs else []),
                *scaled,
                *storage_args(outs),
            ],
        ),
    ]
    if args.tasks:
        plan.append(
            (
                "submit",
                [
                    *common,
                    *(["--down"] if args.down else []),
                    *(["--managed"] if args.managed else []),
                    *scaled,
                    *offered,
                    *args.tasks,
                ],
            )
        )
    return plan


def storage_args(outs) -> list[str]:
    """What ``check`` verifies of the storage stack, from its outputs (nothing when it is not deployed)."""
    args = []
    if outs.fsx_pvc_name:
        args += ["--fsx-claim", f"{outs.fsx_pvc_namespace or 'default'}/{outs.fsx_pvc_name}"]
    if outs.default_storage_class:
        args += ["--storage-class", outs.default_storage_class]
    return args


def run_step(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[int, dict | None]:
    """Run one step in-process with ``--json``; its human output still streams to stderr."""
    from post_deploy.cli import classify

    captured = io.StringIO()
    try:
        step_args = parser.parse_args([*argv, "--json"])
    except SystemExit as exc:  # argparse already printed the usage error
        return (ExitCode.USAGE if exc.code else ExitCode.OK), None
    try:
        with contextlib.redirect_stdout(captured):
            code = int(step_args.func(step_args))
    except StepError as exc:
        say(f"error: {exc.message}")
        code = exc.code
    except Exception as exc:  # noqa: BLE001 - same mapping as the subcommand would get from cli.main
        code, message = classify(exc)
        say(f"error: {message}")
    return code, _summary(captured.getvalue())


def _summary(stdout: str) -> dict | None:
    """The step's JSON summary (its last JSON line); anything else it printed goes to stderr."""
    summary = None
    for line in stdout.splitlines():
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            print(line, file=sys.stderr)
            continue
        if isinstance(parsed, dict):
            summary = parsed
    return summary
