"""``canary``: the cheapest real deployment, every post-deploy step and a CPU SkyPilot task, then destroy.

Why: a platform team validates IAM, SCPs, quotas and networking in its own account in under an hour,
before committing GPU capacity. The canary deploys ``examples/canary.yaml`` (one CPU HyperPod node,
one small system node) with the same stacks ``make deploy`` creates, runs ``run`` (kubeconfig,
wait-nodes, label-gpus, check, submit of ``sky_tasks/canary/cpu.yaml``), always destroys what it
deployed with ``teardown`` (also after a failed phase or Ctrl-C), then looks for anything still
carrying the config's tags, its stacks or its HyperPod cluster. It prints the estimated hourly cost
first (``config.pricing``; unknown prices say so) and asks before creating anything (``--yes`` or
``YES=1`` skips the question).

Phases run in order and each is timed: deploy (``cdk deploy --all``), post-deploy (in-process, the
same steps as ``run``), destroy (``python -m post_deploy teardown --yes``), leftovers (AWS calls).
The exit code is the first failing phase's (a failed cdk deploy or teardown counts as AWS_API, a
post-deploy step keeps its own code), else CANARY_LEFTOVERS when something was left behind, else 0.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from config import pricing
from post_deploy.common import AWS_RETRY_CONFIG, StepError, add_common_args, aws_session, emit_json, say
from post_deploy.exit_codes import ExitCode

DEFAULT_CONFIG = "examples/canary.yaml"
DEFAULT_TASK = "sky_tasks/canary/cpu.yaml"
DEFAULT_OUTPUTS = "cdk-outputs.canary.json"
DEFAULT_NODE_TIMEOUT_S = 3600.0
PHASES = ("deploy", "post-deploy", "destroy", "leftovers")

# Runs one command in the current directory (the repository root, where cdk.json is and relative config
# paths resolve, as for `make`); output goes to the user (stderr), the return value is the exit code.
# Tests pass a recorder.
Runner = Callable[[Sequence[str]], int]


def subprocess_runner(argv: Sequence[str]) -> int:
    say(f"canary: $ {' '.join(argv)}")
    return subprocess.run(list(argv), stdout=sys.stderr, check=False).returncode


@dataclass
class Phase:
    name: str
    exit_code: int | None = None  # None: not run
    seconds: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class CanaryReport:
    phases: list[Phase] = field(default_factory=lambda: [Phase(name) for name in PHASES])
    left_behind: list[str] = field(default_factory=list)
    estimate: list[str] = field(default_factory=list)

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    @property
    def exit_code(self) -> int:
        for phase in self.phases:
            if phase.exit_code not in (None, 0):
                return phase.exit_code
        return int(ExitCode.CANARY_LEFTOVERS) if self.left_behind else int(ExitCode.OK)

    def lines(self) -> list[str]:
        out = ["canary: phase         result      seconds"]
        for p in self.phases:
            result = "not run" if p.exit_code is None else ("ok" if p.ok else f"exit {p.exit_code}")
            out.append(f"canary: {p.name:<13} {result:<10} {p.seconds:8.1f}" + (f"  {p.detail}" if p.detail else ""))
        total = sum(p.seconds for p in self.phases)
        out.append(f"canary: total                   {total:8.1f}")
        out += [f"canary: left behind: {item}" for item in self.left_behind]
        if not self.left_behind and self.phase("leftovers").ok:
            out.append("canary: nothing left behind")
        return out


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "canary",
        help="deploy the cheapest HyperPod cluster, run every step and a CPU task, destroy it, report",
        description=(
            "Validate an account before committing GPU capacity: print the estimated hourly cost, ask, then "
            f"deploy {DEFAULT_CONFIG} (one CPU HyperPod node, one small system node), run every post-deploy "
            f"step and {DEFAULT_TASK}, destroy everything (also after a failure), and report each phase's "
            "duration and anything still tagged as the canary's. Exit 13 when something was left behind."
        ),
    )
    add_common_args(parser, context_help="context to write and use (default: the EKS cluster name)")
    parser.add_argument(
        "-c",
        "--cdk-context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"CDK context, as `cdk -c` (default config={DEFAULT_CONFIG}); passed to deploy and destroy",
    )
    parser.add_argument("--outputs", default=DEFAULT_OUTPUTS, metavar="FILE", help="cdk --outputs-file to write")
    parser.add_argument("--task", default=DEFAULT_TASK, metavar="TASK.yaml", help="the SkyPilot task to submit")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (also: YES=1)")
    parser.add_argument("--profile", help="AWS profile for every AWS call, cdk and teardown")
    parser.add_argument("--cdk", metavar="PATH", help="cdk executable (default: `cdk` on PATH or beside Python)")
    parser.add_argument(
        "--node-timeout",
        type=float,
        default=DEFAULT_NODE_TIMEOUT_S,
        metavar="SECONDS",
        help=f"wait-nodes --timeout (default {DEFAULT_NODE_TIMEOUT_S:g})",
    )
    parser.set_defaults(func=run)


def context_pairs(args: argparse.Namespace) -> list[str]:
    pairs = list(args.cdk_context)
    if not any(p.partition("=")[0].strip() == "config" for p in pairs):
        pairs.insert(0, f"config={DEFAULT_CONFIG}")
    return pairs


def confirm(assume_yes: bool, stdin=None) -> None:
    if assume_yes or os.environ.get("YES") == "1":
        return
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        raise StepError(ExitCode.USAGE, "not confirmed: pass --yes or YES=1 (stdin is not a terminal to ask on)")
    print("Type 'deploy' to create the canary (it is destroyed at the end): ", end="", file=sys.stderr, flush=True)
    if stdin.readline().strip() != "deploy":
        raise StepError(ExitCode.USAGE, "not confirmed; nothing was created")


def admin_pairs(config, session) -> list[str]:
    """Whoever runs the canary needs kubectl access for the post-deploy steps: when the config names no
    admin, the caller's IAM role (from its STS identity) becomes the one access entry."""
    if config.eks.admin_principal_arns:
        return []
    arn = session.client("sts", config=AWS_RETRY_CONFIG).get_caller_identity()["Arn"]
    assumed = re.fullmatch(r"arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/.+", arn)
    if assumed:
        arn = f"arn:{assumed[1]}:iam::{assumed[2]}:role/{assumed[3]}"
    say(f"canary: granting the caller {arn} cluster-admin access (eks.admin_principal_arns)")
    return [f"eks.admin_principal_arns=[{arn}]"]


def find_leftovers(session, config, stacks: dict[str, str]) -> list[str]:
    """What still exists after destroy: resources carrying every one of the config's tags, the stacks, the
    HyperPod cluster. The tagging API can list a resource for a short while after its deletion; a
    second run of this check (or the console) tells the two apart."""
    found: list[str] = []
    tagging = session.client("resourcegroupstaggingapi", config=AWS_RETRY_CONFIG)
    filters = [{"Key": k, "Values": [v]} for k, v in sorted(config.tags.items())]
    for page in tagging.get_paginator("get_resources").paginate(TagFilters=filters):
        found += [f"tagged resource {r['ResourceARN']}" for r in page.get("ResourceTagMappingList", [])]
    cfn = session.client("cloudformation", config=AWS_RETRY_CONFIG)
    for name in stacks.values():
        try:
            (stack,) = cfn.describe_stacks(StackName=name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc):
                continue
            raise
        if stack["StackStatus"] != "DELETE_COMPLETE":
            found.append(f"stack {name} ({stack['StackStatus']})")
    sagemaker = session.client("sagemaker", config=AWS_RETRY_CONFIG)
    try:
        cluster = sagemaker.describe_cluster(ClusterName=config.hyperpod.cluster_name)
        found.append(f"HyperPod cluster {config.hyperpod.cluster_name} ({cluster.get('ClusterStatus')})")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("ResourceNotFound", "ValidationException"):
            raise
    return sorted(set(found))


def _timed(report: CanaryReport, name: str, clock: Callable[[], float], work: Callable[[Phase], int]) -> bool:
    phase = report.phase(name)
    say(f"canary: == {name} ==")
    started = clock()
    try:
        phase.exit_code = int(work(phase))
    except StepError as err:
        phase.exit_code, phase.detail = int(err.code), err.message
    except KeyboardInterrupt:
        phase.exit_code, phase.detail = 130, "interrupted"
        raise
    finally:
        phase.seconds = round(clock() - started, 3)
    return phase.ok


def run(
    args: argparse.Namespace,
    *,
    runner: Runner = subprocess_runner,
    clock: Callable[[], float] = time.monotonic,
    stdin=None,
) -> int:
    from config.names import stack_names
    from post_deploy.preflight import cost_lines, load_deploy_config
    from post_deploy.teardown import cdk_executable

    pairs = context_pairs(args)
    config = load_deploy_config(pairs)
    report = CanaryReport(estimate=cost_lines(pricing.estimate_hourly(config)))
    for line in report.estimate:
        say(line)
    stacks = stack_names(config)
    say(f"canary: deploys {', '.join(stacks.values())} in {config.region}, runs {args.task}, then destroys them")
    try:
        confirm(args.yes, stdin)
        session = aws_session(args.profile, config.region)
        deploy_pairs = pairs + admin_pairs(config, session)
        cdk = cdk_executable(args.cdk)
    except StepError as err:
        say(f"canary: {err.message}")
        emit_json(args, {"step": "canary", "ok": False, "exit_code": int(err.code), "error": err.message})
        return int(err.code)
    except (ClientError, BotoCoreError) as exc:
        say(f"canary: cannot read the caller's identity: {exc}")
        return int(ExitCode.AWS_API)

    context_flags = [flag for pair in deploy_pairs for flag in ("-c", pair)]
    profile = ["--profile", args.profile] if args.profile else []
    deploy = [cdk, "deploy", "--all", "--require-approval", "never", "--outputs-file", args.outputs]
    try:
        if _timed(report, "deploy", clock, lambda p: _command(p, runner, [*deploy, *context_flags, *profile])):
            _timed(report, "post-deploy", clock, lambda p: _post_deploy(p, args))
    finally:
        teardown = [sys.executable, "-m", "post_deploy", "teardown", "--yes", "--outputs", args.outputs]
        _timed(report, "destroy", clock, lambda p: _command(p, runner, [*teardown, *context_flags, *profile]))
        try:
            _timed(report, "leftovers", clock, lambda p: _record(report, find_leftovers(session, config, stacks)))
        except (ClientError, BotoCoreError) as exc:
            report.phase("leftovers").exit_code, report.phase("leftovers").detail = int(ExitCode.AWS_API), str(exc)
        for line in report.lines():
            say(line)
        emit_json(
            args,
            {
                "step": "canary",
                "ok": report.exit_code == 0,
                "exit_code": report.exit_code,
                "phases": [asdict(p) for p in report.phases],
                "left_behind": report.left_behind,
                "estimate": report.estimate,
            },
        )
    return report.exit_code


def _command(phase: Phase, runner: Runner, argv: list[str]) -> int:
    """A cdk deploy or teardown: its own exit code goes into the report; ours says AWS refused something."""
    code = runner(argv)
    if code:
        phase.detail = f"{Path(argv[0]).name} {argv[1] if argv[1] != '-m' else argv[3]} exited {code}"
        return int(ExitCode.AWS_API)
    return 0


def _record(report: CanaryReport, leftovers: list[str]) -> int:
    report.left_behind = leftovers
    return 0


def _post_deploy(phase: Phase, args: argparse.Namespace) -> int:
    """Every post-deploy step, in-process and exactly as ``run`` runs them; a failing step keeps its code."""
    from post_deploy.cli import build_parser
    from post_deploy.pipeline_run import run_step

    argv = ["run", "--outputs", args.outputs, "--tasks", args.task, "--down", "--node-timeout", str(args.node_timeout)]
    if args.kubeconfig:
        argv += ["--kubeconfig", args.kubeconfig]
    if args.context:
        argv += ["--context", args.context]
    if args.profile:
        argv += ["--profile", args.profile]
    code, summary = run_step(build_parser(), argv)
    failed = [s["step"] for s in (summary or {}).get("steps", []) if s.get("exit_code")]
    if failed:
        phase.detail = f"{failed[0]} failed"
    return code
