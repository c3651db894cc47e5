"""``teardown``: delete everything in the one order in which every deletion can finish.

``cdk destroy --all`` deletes the stacks in reverse dependency order and, from a healthy deployed
state, finishes on its own (every resource has a removal policy that lets its stack delete). Three
things CloudFormation cannot see make it fail or leak in practice, and this command deals with them:

1. **SkyPilot clusters** on the EKS context. Once EKS is gone SkyPilot can no longer reach them:
   its state keeps ghost clusters, and a ``LoadBalancer`` Service it created leaves a load balancer
   (with ENIs) in the VPC. They are listed with ``sky.status`` and torn down with ``sky.down`` first.
   Without a kubeconfig context for the cluster there is nothing SkyPilot could reach: skipped, said.
2. ``cdk destroy`` of the HyperPod stack, then storage, EKS, then the lifecycle bucket, one at a time
   (``--exclusively``), each waiting for CloudFormation, with the real ``cdk`` CLI. When the config
   enables the pipeline, its stack goes first (a live pipeline would redeploy the rest); a pipeline
   in another account cannot be reached with these credentials and is only named. After the storage
   stack it says what happened to the FSx file system (``storage.fsx.removal_policy``): the final
   backup's id, retained (then it stops before the network stack, which the file system's interfaces
   keep from deleting), deleted, or an existing file system left alone.
3. **What services leave in the VPC** (``network_cleanup``): network interfaces of Lambda, HyperPod,
   EFA and EKS are waited for or deleted, unattributable ones stop the teardown with their ids; then
   the cluster security group EKS left behind, if any, is deleted.
4. ``cdk destroy`` of the network stack.

Rerunning is safe: a stack that is already gone is a no-op for ``cdk destroy``, an empty SkyPilot
status downs nothing.

What stays behind on purpose, or needs a person (also printed at the end):
- with ``lifecycle_bucket.removal_policy=retain`` the lifecycle and access-log buckets are kept;
- GuardDuty Runtime Monitoring's automated agent creates a ``guardduty-data`` VPC endpoint and a
  ``GuardDutyManagedSecurityGroup-*`` in the VPC: they block VPC deletion and are reported in step 3
  (delete the endpoint, then the security group, or exclude the VPC in GuardDuty first);
- CloudWatch log groups that services create themselves after the stacks are gone (e.g. Lambda's
  own ``/aws/lambda/...`` groups written during deletion) are not owned by any stack.

Before anything is deleted, the plan (stack names from ``config.names`` for the config given with
``-c``, as ``cdk`` loads it) must match the outputs file: its stacks, region and cluster names. An
outputs file of another deployment would make every ``cdk destroy`` a no-op on stacks that do not
exist, and the GPU cluster would keep running after "done".

Exit codes: ``STEP_MEANINGS`` below, one per step, printed by ``--help``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from post_deploy.common import AWS_RETRY_CONFIG, StepError, add_common_args, aws_session, emit_json, first_line, say
from post_deploy.exit_codes import ExitCode, exit_codes_epilog
from post_deploy.network_cleanup import (
    STEP_NETWORK_INTERFACES,
    clear_network_interfaces,
    delete_eks_cluster_security_groups,
    delete_eks_cluster_security_groups_in,
)
from post_deploy.outputs import OutputsError, StackOutputs, read_outputs

PROJECT_ROOT = Path(__file__).resolve().parent.parent

STEP_SKYPILOT = ExitCode.LAUNCH_FAILED
STEP_WORKLOAD_STACKS = ExitCode.CLUSTER_NOT_READY
STEP_NETWORK_STACK = ExitCode.AWS_API

# Workload stacks in the order they are destroyed (reverse of creation; each depends on the next).
# The storage stack exists only when the config enables storage (make_plan drops it otherwise).
WORKLOAD_ORDER = ("hyperpod", "storage", "eks", "lifecycle_bucket")

# The tag the storage stack's final-backup handler puts on the backup it takes (its value: the file
# system id); constructs/fsx_lustre/runtime/fsx_lustre_runtime/handler.py, kept equal by a test.
FINAL_BACKUP_TAG = "hyperpod-sky:final-backup-of"

DEFAULT_ENI_TIMEOUT_MINUTES = 60  # AWS cites up to ~45 min for Lambda to delete a VPC function's ENIs
DEFAULT_POLL_SECONDS = 15.0
DEFAULT_STACK_TIMEOUT_MINUTES = 180
_CDK_TAIL_LINES = 15

# What each code means for this command: one code per step, so a caller can tell which one failed.
STEP_MEANINGS = {
    ExitCode.OK: "everything deleted",
    ExitCode.USAGE: "bad arguments, config error, outputs file of another deployment than the config's, "
    "or not confirmed (nothing was deleted)",
    STEP_SKYPILOT: "step 1: a SkyPilot cluster could not be listed or torn down (use --skip-skypilot to go on)",
    STEP_WORKLOAD_STACKS: "step 2: cdk destroy of the pipeline, hyperpod, eks or lifecycle stack failed",
    STEP_NETWORK_INTERFACES: "step 3: network interfaces still in use at the deadline, ones this teardown cannot "
    "attribute (listed with id and description), a left-over EKS security group still referenced, "
    "or the EC2 calls failed",
    STEP_NETWORK_STACK: "step 4: cdk destroy of the network stack failed",
}
_FOOTER = "Rerunning after fixing the cause is safe: deleted stacks are skipped by cdk destroy."


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "teardown",
        help="down SkyPilot clusters, cdk destroy hyperpod/eks/lifecycle, clear left-over ENIs, destroy the network",
        description="Delete everything this app created, in the order in which every deletion can finish: "
        "SkyPilot clusters on the EKS context, then `cdk destroy` of the hyperpod, eks and lifecycle "
        "stacks, then wait for/delete the network interfaces HyperPod, EFA and Lambda leave in the VPC, "
        "then `cdk destroy` of the network stack.",
        epilog=exit_codes_epilog(STEP_MEANINGS, job_codes=False, footer=_FOOTER),
    )
    add_common_args(parser)
    parser.add_argument(
        "--outputs",
        metavar="FILE",
        help="cdk deploy --outputs-file JSON (EksClusterName names the SkyPilot context); "
        "a missing file only skips what it would have told us",
    )
    parser.add_argument(
        "-c",
        "--cdk-context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="CDK context, as `cdk -c`: selects the config (e.g. config=prod.yaml or "
        "prefix=team-a) and is passed to every cdk destroy",
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--profile", help="AWS profile for the EC2/CloudFormation calls and cdk destroy")
    parser.add_argument(
        "--skip-skypilot",
        action="store_true",
        help="do not tear down SkyPilot clusters (e.g. the cluster is already unreachable)",
    )
    parser.add_argument(
        "--eni-timeout-minutes",
        type=float,
        default=DEFAULT_ENI_TIMEOUT_MINUTES,
        help=f"how long to wait for in-use ENIs to be released (default {DEFAULT_ENI_TIMEOUT_MINUTES})",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        help=f"seconds between ENI checks (default {DEFAULT_POLL_SECONDS:g})",
    )
    parser.add_argument(
        "--stack-timeout-minutes",
        type=float,
        default=DEFAULT_STACK_TIMEOUT_MINUTES,
        help=f"give up on one cdk destroy after this long (default {DEFAULT_STACK_TIMEOUT_MINUTES})",
    )
    parser.add_argument(
        "--cdk", metavar="PATH", help="cdk executable (default: `cdk` on PATH, else the one beside this Python)"
    )
    parser.add_argument(
        "--app",
        metavar="DIR",
        help="a cloud assembly (cdk.out) synthesized from the same config, passed to every cdk destroy "
        "instead of synthesizing the app once per stack; it must hold every stack of the plan",
    )
    parser.set_defaults(func=run)


# ----- plan ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What will be deleted, decided before anything is."""

    prefix: str
    region: str
    stacks: Mapping[str, str]  # role (network, lifecycle_bucket, eks, hyperpod) -> stack name
    cdk_context: tuple[str, ...]
    kube_context: str | None
    retained_buckets: bool
    outputs: StackOutputs
    # The pipeline stack when it lives in this account (destroyed first: it would redeploy the rest);
    # a pipeline in another account is only named, it must be destroyed there.
    pipeline_stack: str | None = None
    foreign_pipeline: str | None = None
    eks_cluster_name: str = ""  # also what teardown looks for in the VPC's left-over security groups
    # What deleting the storage stack does to the FSx file system: snapshot, retain, destroy, existing
    # (None: no file system).
    fsx_removal: str | None = None
    cdk_app: str | None = None  # `cdk destroy --app`: an assembly synthesized from the same config
    # network.existing with an EKS cluster this app created: the VPC EKS put its cluster group in.
    existing_vpc_with_our_cluster: str | None = None
    # Existing resources the config points at (network.existing, eks.existing, an existing bucket): never
    # deleted, and said so. With an existing VPC there is no network stack in ``stacks``.
    kept: tuple[str, ...] = ()


def destroy_order(plan: Plan) -> tuple[str, ...]:
    """Stack roles in the order teardown destroys them (no network stack with an existing VPC)."""
    workload = tuple(r for r in WORKLOAD_ORDER if r in plan.stacks)  # no storage stack when storage is off
    return (*workload, *(("network",) if "network" in plan.stacks else ()))


def kept_resources(config) -> tuple[str, ...]:
    """What the config names but the app did not create, so teardown leaves it alone."""
    kept = []
    if config.network.existing:
        n = config.network.existing
        kept.append(
            f"VPC {n.vpc_id}, its subnets ({', '.join(dict.fromkeys((*n.hyperpod_subnet_ids, *n.eks_subnet_ids)))}) "
            f"and security group {n.security_group_id} (network.existing; the app's rules on them go with the eks stack)"
        )
    if config.eks.existing:
        kept.append(
            f"EKS cluster {config.eks.existing.cluster_name} (eks.existing; only the app's chart, access entries and "
            "security-group rules go with the eks stack)"
        )
    bucket = config.lifecycle_bucket.existing_bucket_name
    if bucket:
        scripts = f"s3://{bucket}/{config.prefix}/lifecycle_scripts/"
        kept.append(
            f"bucket {bucket} (lifecycle_bucket.existing_bucket_name; "
            + (
                f"{scripts} is kept too: removal_policy retain)"
                if config.lifecycle_bucket.removal_policy == "retain"
                else f"only {scripts} is deleted)"
            )
        )
    return tuple(kept)


def make_plan(args: argparse.Namespace) -> Plan:
    """Config exactly as ``cdk`` would load it (cdk.json + the same ``-c`` pairs), stack names from
    ``config.names`` (the app names its stacks with the same functions), the SkyPilot context from
    the outputs, which must be of this very deployment."""
    from config import ConfigError, names

    try:
        overrides = names.parse_context_pairs(args.cdk_context)
        config = names.load_as_cdk_does(args.cdk_context)
    except ConfigError as exc:
        raise StepError(ExitCode.USAGE, str(exc)) from None

    try:
        outputs = read_outputs(args.outputs) if args.outputs else read_outputs(None)
    except OutputsError as exc:
        say(f"note: {exc}; going on without it")
        outputs = read_outputs(None)
    p = config.pipeline
    foreign = p.enabled and p.pipeline_account is not None and p.pipeline_account != config.account
    fsx = config.storage.fsx
    plan = Plan(
        prefix=config.prefix,
        region=config.region,
        stacks={
            role: name
            for role, name in names.stack_names(config).items()
            if not (role == "network" and config.network.existing)
            and not (role == "storage" and not config.storage.enabled)
        },
        fsx_removal=None if not fsx.enabled else ("existing" if fsx.existing_file_system_id else fsx.removal_policy),
        cdk_context=tuple(f"{k}={v}" for k, v in overrides.items()),
        kube_context=args.context or outputs.eks_cluster_name,
        retained_buckets=config.lifecycle_bucket.removal_policy == "retain"
        and not config.lifecycle_bucket.existing_bucket_name,
        outputs=outputs,
        pipeline_stack=names.pipeline_stack_name(config) if config.pipeline.enabled and not foreign else None,
        foreign_pipeline=f"{names.pipeline_stack_name(config)} in account {p.pipeline_account}" if foreign else None,
        eks_cluster_name=names.eks_cluster_name(config),
        cdk_app=str(Path(args.app).resolve()) if getattr(args, "app", None) else None,
        kept=kept_resources(config),
        existing_vpc_with_our_cluster=(
            config.network.existing.vpc_id if config.network.existing and not config.eks.existing else None
        ),
    )
    mismatch = outputs_mismatch(plan, config.hyperpod.cluster_name, args.outputs) or assembly_mismatch(plan)
    if mismatch:
        raise StepError(
            ExitCode.USAGE, f"{mismatch}: pass the -c config of that deployment (make destroy CDK_ARGS=...)"
        )
    return plan


def assembly_mismatch(plan: Plan) -> str | None:
    """Why ``--app`` cannot destroy the plan (a stack it does not hold), or None."""
    if not plan.cdk_app:
        return None
    manifest = Path(plan.cdk_app) / "manifest.json"
    try:
        artifacts = json.loads(manifest.read_text()).get("artifacts", {})
    except (OSError, ValueError) as exc:
        return f"--app {plan.cdk_app}: not a cloud assembly ({manifest}: {exc})"
    held = {
        a.get("properties", {}).get("stackName") or name
        for name, a in artifacts.items()
        if a.get("type") == "aws:cloudformation:stack"
    }
    planned = [*(plan.stacks[r] for r in destroy_order(plan)), plan.pipeline_stack]
    missing = [s for s in planned if s and s not in held]
    if missing:
        return f"--app {plan.cdk_app}: holds no stack {', '.join(missing)} (synthesized from another config?)"
    return None


def outputs_mismatch(plan: Plan, hyperpod_cluster_name: str, outputs_path: str | None) -> str | None:
    """Why the outputs file is of another deployment than the plan, or None. The file names the stacks
    ``cdk deploy`` wrote and the clusters they made; a plan of other stacks would delete nothing of
    them and report success while the GPU cluster keeps running."""
    outs = plan.outputs
    where = f"outputs file {outputs_path}" if outputs_path else "outputs"
    if outs.region and outs.region != plan.region:
        return f"{where}: region {outs.region}, but the config says {plan.region}"
    planned = set(plan.stacks.values()) | ({plan.pipeline_stack} if plan.pipeline_stack else set())
    foreign_stacks = [s for s in outs.stack_names if s not in planned]
    if foreign_stacks:
        return (
            f"{where}: stack(s) {', '.join(foreign_stacks)} are not in this config's plan "
            f"({', '.join(plan.stacks[r] for r in destroy_order(plan))})"
        )
    for what, found, expected in (
        ("EksClusterName", outs.eks_cluster_name, plan.eks_cluster_name),
        ("HyperPodClusterName", outs.hyperpod_cluster_name, hyperpod_cluster_name),
    ):
        if found and found != expected:
            return f"{where}: {what} {found}, but the config makes {expected}"
    return None


def confirm(plan: Plan, assume_yes: bool, stdin=None) -> None:
    stdin = stdin or sys.stdin
    order = ([plan.pipeline_stack] if plan.pipeline_stack else []) + [plan.stacks[r] for r in destroy_order(plan)]
    say(f"teardown: region {plan.region}; stacks, in order: {', '.join(order)}")
    for line in plan.kept:
        say(f"teardown: not deleted, not created by this app: {line}")
    if plan.foreign_pipeline:
        say(
            f"teardown: WARNING: the pipeline {plan.foreign_pipeline} redeploys these stacks on its next run; "
            "destroy it there first (`cdk destroy` with that account's credentials)"
        )
    if assume_yes:
        return
    if not stdin.isatty():
        raise StepError(ExitCode.USAGE, "not confirmed: pass --yes (stdin is not a terminal to ask on)")
    print(f"Type the prefix {plan.prefix!r} to delete all of it: ", end="", file=sys.stderr, flush=True)
    if stdin.readline().strip() != plan.prefix:
        raise StepError(ExitCode.USAGE, "not confirmed; nothing was deleted")


# ----- step 1: SkyPilot ---------------------------------------------------------------------------
def down_skypilot_clusters(kube_context: str | None, kubeconfig: str | None) -> dict[str, Any]:
    """Down every SkyPilot cluster whose infra is this Kubernetes context; others are left alone."""
    from post_deploy.kube import context_missing, kubeconfig_path

    if not kube_context:
        say("skypilot: skipped: no EKS context known (no EksClusterName output, no --context)")
        return {"skipped": "no context"}
    path = kubeconfig_path(kubeconfig)
    reason = context_missing(path, kube_context)
    if reason:
        say(
            f"skypilot: skipped: {reason}; clusters launched from another machine must be downed there "
            "(`sky down <name>`)"
        )
        return {"skipped": reason}

    import sky

    from post_deploy.skypilot_env import local_api_server_lifecycle, sky_stream, skypilot_environment

    downed: list[str] = []
    failed: dict[str, str] = {}
    with skypilot_environment(kubeconfig), local_api_server_lifecycle():
        try:
            records = sky.get(sky.status(all_users=True))
        except Exception as exc:  # noqa: BLE001 - any SDK failure ends this step with its code
            raise StepError(
                STEP_SKYPILOT,
                f"skypilot: cannot list clusters: {first_line(exc)} (rerun with --skip-skypilot to go on without)",
            ) from None
        ours = [r for r in records if _runs_on(r, kube_context)]
        others = [r["name"] for r in records if not _runs_on(r, kube_context)]
        if others:
            say(f"skypilot: leaving {len(others)} cluster(s) on other infra: {', '.join(others)}")
        if not ours:
            say(f"skypilot: no clusters on context {kube_context}")
        for record in ours:
            name = record["name"]
            say(f"skypilot: sky down {name} ({_status_text(record)}, {record.get('user_name', '?')}) on {kube_context}")
            try:
                sky.stream_and_get(sky.down(name), output_stream=sky_stream())
            except Exception as exc:  # noqa: BLE001 - collected, reported together below
                failed[name] = first_line(exc)
                say(f"skypilot: sky down {name} FAILED: {failed[name]}")
            else:
                downed.append(name)
    if failed:
        raise StepError(
            STEP_SKYPILOT,
            "skypilot: could not tear down "
            + "; ".join(f"{n}: {e}" for n, e in failed.items())
            + " (managed jobs? `sky jobs cancel -a` first; "
            "or rerun with --skip-skypilot to go on without)",
        )
    return {"context": kube_context, "downed": downed, "left_on_other_infra": others}


def _runs_on(record: Any, kube_context: str) -> bool:
    # SkyPilot's region for Kubernetes is the kubeconfig context name.
    return str(record.get("cloud") or "").lower() == "kubernetes" and record.get("region") == kube_context


def _status_text(record: Any) -> str:
    status = record.get("status")
    return getattr(status, "value", None) or str(status)


# ----- steps 2 and 4: cdk destroy -----------------------------------------------------------------
def cdk_executable(explicit: str | None) -> str:
    """``--cdk``, else ``cdk`` on PATH (``make`` puts the venv first), else the venv's own."""
    if explicit:
        return explicit
    found = shutil.which("cdk") or shutil.which("cdk", path=str(Path(sys.executable).parent))
    if not found:
        raise StepError(ExitCode.USAGE, "no `cdk` executable on PATH or beside this Python (make venv installs it)")
    return found


def _relay(stream, tail: deque[str]) -> None:
    for line in stream:
        tail.append(line.rstrip())
        say(line.rstrip())


def cdk_destroy(cdk: str, stack: str, plan: Plan, *, profile: str | None, timeout_s: float, code: ExitCode) -> None:
    """One ``cdk destroy`` in the project root; its output relayed to stderr, its tail kept for the error."""
    cmd = [cdk, "destroy", stack, "--exclusively", "--force"]
    if plan.cdk_app:
        cmd += ["--app", plan.cdk_app]
    for pair in plan.cdk_context:
        cmd += ["-c", pair]
    if profile:
        cmd += ["--profile", profile]
    env = {**os.environ, "CDK_DISABLE_VERSION_CHECK": "true", "CDK_CLI_NOTICES": "false"}
    say(f"cdk: destroying {stack}")
    tail: deque[str] = deque(maxlen=_CDK_TAIL_LINES)
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise StepError(code, f"cdk destroy {stack}: cannot run {cdk}: {exc}") from None
    relay = threading.Thread(target=_relay, args=(proc.stdout, tail), daemon=True)
    relay.start()
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise StepError(
            code,
            f"cdk destroy {stack}: still running after {timeout_s / 60:g} min; stopped it "
            "(CloudFormation goes on: check the stack's events, then rerun)",
        ) from None
    finally:
        relay.join(timeout=5)
    if rc != 0:
        raise StepError(
            code,
            f"cdk destroy {stack} failed (exit {rc}): " + " | ".join(line for line in tail if line.strip())[-1500:],
        )
    say(f"cdk: {stack} destroyed")


# ----- the command --------------------------------------------------------------------------------
def run(
    args: argparse.Namespace,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    summary: dict[str, Any] = {"step": "teardown", "ok": False, "destroyed": []}
    try:
        _validate_args(args)
        plan = make_plan(args)
        summary["stacks"] = dict(plan.stacks)
        confirm(plan, args.yes)
        cdk = cdk_executable(args.cdk)

        if args.skip_skypilot:
            say("skypilot: skipped (--skip-skypilot)")
            summary["skypilot"] = {"skipped": "--skip-skypilot"}
        else:
            summary["skypilot"] = down_skypilot_clusters(plan.kube_context, args.kubeconfig)

        stack_timeout = args.stack_timeout_minutes * 60
        if plan.pipeline_stack:  # first: a live pipeline would redeploy what follows
            cdk_destroy(
                cdk, plan.pipeline_stack, plan, profile=args.profile, timeout_s=stack_timeout, code=STEP_WORKLOAD_STACKS
            )
            summary["destroyed"].append(plan.pipeline_stack)
        session = aws_session(args.profile, plan.region)
        for role in WORKLOAD_ORDER:
            if role not in plan.stacks:
                continue
            cdk_destroy(
                cdk, plan.stacks[role], plan, profile=args.profile, timeout_s=stack_timeout, code=STEP_WORKLOAD_STACKS
            )
            summary["destroyed"].append(plan.stacks[role])
            if role == "storage":
                summary["file_system"] = file_system_outcome(session.client("fsx", config=AWS_RETRY_CONFIG), plan)

        summary["kept"] = list(plan.kept)
        if "network" not in plan.stacks:
            # Network interfaces in someone else's VPC are not ours to wait for or delete.
            say("network: existing VPC (network.existing): no network stack to destroy, interfaces left alone")
            if plan.existing_vpc_with_our_cluster:
                # The cluster group EKS made for the cluster this app created is ours, even in their VPC.
                session = aws_session(args.profile, plan.region)
                summary["security_groups_deleted"] = delete_eks_cluster_security_groups_in(
                    session.client("ec2", config=AWS_RETRY_CONFIG),
                    plan.existing_vpc_with_our_cluster,
                    plan.eks_cluster_name,
                )
        else:
            ec2 = session.client("ec2", config=AWS_RETRY_CONFIG)
            cfn = session.client("cloudformation", config=AWS_RETRY_CONFIG)
            report = clear_network_interfaces(
                ec2,
                cfn,
                plan.stacks["network"],
                timeout_s=args.eni_timeout_minutes * 60,
                poll_s=args.poll_seconds,
                clock=clock,
                sleep=sleep,
            )
            summary["network_interfaces"] = report.__dict__
            summary["security_groups_deleted"] = delete_eks_cluster_security_groups(
                ec2, cfn, plan.stacks["network"], plan.eks_cluster_name
            )

            cdk_destroy(
                cdk,
                plan.stacks["network"],
                plan,
                profile=args.profile,
                timeout_s=stack_timeout,
                code=STEP_NETWORK_STACK,
            )
            summary["destroyed"].append(plan.stacks["network"])
    except StepError as err:
        say(f"teardown: {err.message}")
        emit_json(args, {**summary, "exit_code": int(err.code), "error": err.message})
        return int(err.code)

    leftovers = left_behind(plan)
    for line in leftovers:
        say(f"teardown: left behind: {line}")
    for line in plan.kept:
        say(f"teardown: kept, not created by this app: {line}")
    say("teardown: done")
    emit_json(args, {**summary, "ok": True, "left_behind": leftovers})
    return ExitCode.OK


def file_system_outcome(fsx, plan: Plan) -> dict[str, Any]:
    """Say what deleting the storage stack did to the FSx file system, by asking FSx.

    ``snapshot``: the final backup the stack's custom resource took (found by its tag); ``retain``: the
    file system, still there, and why the network stack then cannot go (its interfaces stay in the VPC);
    ``destroy``: gone; ``existing``: not ours, untouched. A retained file system stops the teardown
    before the network stack with that reason instead of waiting an hour on interfaces that stay.
    """
    from botocore.exceptions import ClientError

    fs_id = plan.outputs.fsx_file_system_id
    outcome: dict[str, Any] = {"policy": plan.fsx_removal, "file_system_id": fs_id}
    if plan.fsx_removal is None:
        return outcome
    if not fs_id:
        say(f"storage: file system id unknown (no FsxFileSystemId output); removal policy was {plan.fsx_removal}")
        return outcome
    try:
        found = fsx.describe_file_systems(FileSystemIds=[fs_id]).get("FileSystems", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "FileSystemNotFound":
            error = exc.response.get("Error", {})
            raise StepError(
                STEP_WORKLOAD_STACKS, f"storage: cannot describe {fs_id}: {error.get('Code')}: {error.get('Message')}"
            ) from None
        found = []
    if plan.fsx_removal == "snapshot":
        backups = [
            b
            for page in fsx.get_paginator("describe_backups").paginate(
                Filters=[{"Name": "file-system-id", "Values": [fs_id]}]
            )
            for b in page.get("Backups", [])
            if {t["Key"]: t["Value"] for t in b.get("Tags", [])}.get(FINAL_BACKUP_TAG) == fs_id
        ]
        if backups:
            latest = max(backups, key=lambda b: str(b.get("CreationTime", "")))
            outcome["final_backup_id"] = latest["BackupId"]
            say(
                f"storage: file system {fs_id} deleted after final backup {latest['BackupId']} "
                f"({latest.get('Lifecycle')}); restore it with `aws fsx create-file-system-from-backup "
                f"--backup-id {latest['BackupId']} ...`"
            )
        else:
            say(f"storage: WARNING: no final backup of {fs_id} found (tag {FINAL_BACKUP_TAG})")
    elif plan.fsx_removal == "retain" and found:
        enis = found[0].get("NetworkInterfaceIds") or []
        outcome["network_interfaces"] = enis
        say(f"storage: file system {fs_id} retained ({found[0].get('Lifecycle')})")
        raise StepError(
            STEP_NETWORK_INTERFACES,
            f"storage: the retained file system {fs_id} keeps network interfaces {', '.join(enis) or '(none listed)'} "
            f"in the VPC, so the network stack {plan.stacks['network']} cannot be deleted while it exists: delete it "
            f"when its data is safe (`aws fsx delete-file-system --file-system-id {fs_id}`), then rerun teardown",
        )
    elif plan.fsx_removal == "existing":
        say(f"storage: file system {fs_id} is not this app's (storage.fsx.existing_file_system_id); left as it was")
    else:
        say(f"storage: file system {fs_id} {'deleted' if not found else 'still ' + str(found[0].get('Lifecycle'))}")
    return outcome


def _validate_args(args: argparse.Namespace) -> None:
    for name in ("eni_timeout_minutes", "poll_seconds", "stack_timeout_minutes"):
        if getattr(args, name) <= 0:
            raise StepError(ExitCode.USAGE, f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")


def left_behind(plan: Plan) -> list[str]:
    """What a person still owns after a successful teardown, said rather than silently kept."""
    notes = []
    if plan.retained_buckets:
        bucket = plan.outputs.lifecycle_bucket_name or f"sagemaker-{plan.prefix}-lifecycle-<account>-{plan.region}"
        notes.append(
            f"lifecycle_bucket.removal_policy=retain kept bucket {bucket} and the access-log bucket of stack "
            f"{plan.stacks['lifecycle_bucket']}; both are versioned: empty every object version, then delete them. "
            "The lifecycle bucket's name is fixed, so a new deploy with this prefix fails until it is gone"
        )
    return notes
