"""``teardown``: delete everything in the one order in which every deletion can finish.

``cdk destroy --all`` deletes the stacks in reverse dependency order and, from a healthy deployed
state, finishes on its own (every resource has a removal policy that lets its stack delete). Three
things CloudFormation cannot see make it fail or leak in practice, and this command deals with them:

1. **SkyPilot clusters** on the EKS context. Once EKS is gone SkyPilot can no longer reach them:
   its state keeps ghost clusters, and a ``LoadBalancer`` Service it created leaves a load balancer
   (with ENIs) in the VPC. They are listed with ``sky.status`` and torn down with ``sky.down`` first.
   Without a kubeconfig context for the cluster there is nothing SkyPilot could reach: skipped, said.
2. ``cdk destroy`` of the HyperPod stack, then EKS, then the lifecycle bucket, one at a time
   (``--exclusively``), each waiting for CloudFormation, with the real ``cdk`` CLI. When the config
   enables the pipeline, its stack goes first (a live pipeline would redeploy the rest); a pipeline
   in another account cannot be reached with these credentials and is only named.
3. **Network interfaces left in the VPC.** VPC Lambda functions (the Helm installer) release their
   ENIs up to ~45 minutes after deletion; HyperPod, EFA and the VPC CNI can leave ENIs ``available``.
   Any of them makes subnet deletion fail after CloudFormation's own retries and leaves the network
   stack ``DELETE_FAILED``. So, bounded and with progress: ENIs of those kinds that are in use are
   waited for, ``available`` ones are deleted; ENIs of the network stack itself (NAT gateway, its
   own endpoints) are left to CloudFormation; anything else (a GuardDuty endpoint, a load balancer,
   someone's instance) is reported with its id and description and stops the teardown before the
   network stack, because deleting what we cannot attribute is not ours to do.
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

Exit codes (values of ``ExitCode``, one per step, so a caller can tell which step failed):
  2 USAGE              bad arguments, config error, or not confirmed
 10 LAUNCH_FAILED      step 1: a SkyPilot cluster could not be listed or torn down
  4 CLUSTER_NOT_READY  step 2: ``cdk destroy`` of the pipeline, hyperpod, eks or lifecycle stack failed
  5 NODES_TIMEOUT      step 3: network interfaces still in use at the deadline, unattributed ones
                       present, or the EC2/CloudFormation calls of this step failed
  3 AWS_API            step 4: ``cdk destroy`` of the network stack failed
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from post_deploy.common import AWS_RETRY_CONFIG, StepError, add_common_args, aws_session, emit_json, say
from post_deploy.exit_codes import ExitCode
from post_deploy.outputs import OutputsError, StackOutputs, read_outputs

PROJECT_ROOT = Path(__file__).resolve().parent.parent

STEP_SKYPILOT = ExitCode.LAUNCH_FAILED
STEP_WORKLOAD_STACKS = ExitCode.CLUSTER_NOT_READY
STEP_NETWORK_INTERFACES = ExitCode.NODES_TIMEOUT
STEP_NETWORK_STACK = ExitCode.AWS_API

# Workload stacks in the order they are destroyed (reverse of creation; each depends on the next).
WORKLOAD_ORDER = ("hyperpod", "eks", "lifecycle_bucket")

DEFAULT_ENI_TIMEOUT_MINUTES = 60  # AWS cites up to ~45 min for Lambda to delete a VPC function's ENIs
DEFAULT_POLL_SECONDS = 15.0
DEFAULT_STACK_TIMEOUT_MINUTES = 180
_CDK_TAIL_LINES = 15

_EPILOG = """\
exit codes (one per step):
    0  everything deleted
    2  bad arguments, config error, or not confirmed (nothing was deleted)
   10  step 1: a SkyPilot cluster could not be listed or torn down (use --skip-skypilot to go on)
    4  step 2: cdk destroy of the pipeline, hyperpod, eks or lifecycle stack failed
    5  step 3: network interfaces still in use at the deadline, or ones this teardown cannot
           attribute (listed with id and description), or the EC2 calls failed
    3  step 4: cdk destroy of the network stack failed
  130  interrupted (Ctrl-C)
Rerunning after fixing the cause is safe: deleted stacks are skipped by cdk destroy."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "teardown",
        help="down SkyPilot clusters, cdk destroy hyperpod/eks/lifecycle, clear left-over ENIs, destroy the network",
        description="Delete everything this app created, in the order in which every deletion can finish: "
        "SkyPilot clusters on the EKS context, then `cdk destroy` of the hyperpod, eks and lifecycle "
        "stacks, then wait for/delete the network interfaces HyperPod, EFA and Lambda leave in the VPC, "
        "then `cdk destroy` of the network stack.",
        epilog=_EPILOG,
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


def parse_cdk_context(pairs: Sequence[str]) -> dict[str, str]:
    context: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise StepError(ExitCode.USAGE, f"--cdk-context {pair!r}: expected KEY=VALUE")
        context[key.strip()] = value
    return context


def make_plan(args: argparse.Namespace) -> Plan:
    """Config exactly as ``cdk`` would load it (cdk.json + the same ``-c`` pairs), stack names from
    ``stacks.infrastructure`` (one source of truth for names), the SkyPilot context from the outputs."""
    from config import ConfigError, load_config

    overrides = parse_cdk_context(args.cdk_context)
    cdk_json = json.loads((PROJECT_ROOT / "cdk.json").read_text())
    try:
        config = load_config({**cdk_json.get("context", {}), **overrides})
    except ConfigError as exc:
        raise StepError(ExitCode.USAGE, str(exc)) from None
    from stacks.infrastructure import stack_names
    from stacks.pipeline import pipeline_stack_name

    try:
        outputs = read_outputs(args.outputs) if args.outputs else read_outputs(None)
    except OutputsError as exc:
        say(f"note: {exc}; going on without it")
        outputs = read_outputs(None)
    p = config.pipeline
    foreign = p.enabled and p.pipeline_account is not None and p.pipeline_account != config.account
    if outputs.region and outputs.region != config.region:
        raise StepError(
            ExitCode.USAGE,
            f"the outputs say region {outputs.region} but the config says "
            f"{config.region}: pass the -c config of that deployment",
        )
    return Plan(
        prefix=config.prefix,
        region=config.region,
        stacks=stack_names(config),
        cdk_context=tuple(f"{k}={v}" for k, v in overrides.items()),
        kube_context=args.context or outputs.eks_cluster_name,
        retained_buckets=config.lifecycle_bucket.removal_policy == "retain",
        outputs=outputs,
        pipeline_stack=pipeline_stack_name(config) if config.pipeline.enabled and not foreign else None,
        foreign_pipeline=f"{pipeline_stack_name(config)} in account {p.pipeline_account}" if foreign else None,
    )


def confirm(plan: Plan, assume_yes: bool, stdin=None) -> None:
    stdin = stdin or sys.stdin
    order = ([plan.pipeline_stack] if plan.pipeline_stack else []) + [
        plan.stacks[r] for r in (*WORKLOAD_ORDER, "network")
    ]
    say(f"teardown: region {plan.region}; stacks, in order: {', '.join(order)}")
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
    from post_deploy.labels import kubeconfig_path

    if not kube_context:
        say("skypilot: skipped: no EKS context known (no EksClusterName output, no --context)")
        return {"skipped": "no context"}
    path = kubeconfig_path(kubeconfig)
    reason = _context_missing(path, kube_context)
    if reason:
        say(
            f"skypilot: skipped: {reason}; clusters launched from another machine must be downed there "
            "(`sky down <name>`)"
        )
        return {"skipped": reason}

    import sky

    from post_deploy.submit import local_api_server_lifecycle, skypilot_environment

    downed: list[str] = []
    failed: dict[str, str] = {}
    with skypilot_environment(kubeconfig), local_api_server_lifecycle():
        try:
            records = sky.get(sky.status(all_users=True))
        except Exception as exc:  # noqa: BLE001 - any SDK failure ends this step with its code
            raise StepError(
                STEP_SKYPILOT,
                f"skypilot: cannot list clusters: {_first_line(exc)} (rerun with --skip-skypilot to go on without)",
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
                sky.stream_and_get(sky.down(name), output_stream=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - collected, reported together below
                failed[name] = _first_line(exc)
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


def _context_missing(path: str, context: str) -> str | None:
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

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


def _runs_on(record: Mapping[str, Any], kube_context: str) -> bool:
    # SkyPilot's region for Kubernetes is the kubeconfig context name.
    return str(record.get("cloud") or "").lower() == "kubernetes" and record.get("region") == kube_context


def _status_text(record: Mapping[str, Any]) -> str:
    status = record.get("status")
    return getattr(status, "value", None) or str(status)


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


# ----- step 3: network interfaces -----------------------------------------------------------------
class EniKind(StrEnum):
    OWN = "network stack"  # NAT gateway / the stack's own endpoints: CloudFormation deletes them
    LAMBDA = "lambda"
    EFA = "efa"
    HYPERPOD = "hyperpod"
    EKS = "eks"  # EKS control-plane ENIs and VPC CNI ENIs on (HyperPod or system) nodes
    APP = "app security group"  # created for a service we pointed at the network stack's security group
    UNKNOWN = "unknown"


# Kinds this teardown waits for while in use and deletes once available.
CLEARED_KINDS = frozenset({EniKind.LAMBDA, EniKind.EFA, EniKind.HYPERPOD, EniKind.EKS, EniKind.APP})
_BUSY_STATUSES = frozenset({"in-use", "attaching", "detaching", "associated"})
_RESOURCE_ID = re.compile(r"\b(?:vpce|nat|i|eni)-[0-9a-f]{8,17}\b")


def classify_eni(eni: Mapping[str, Any], own_ids: frozenset[str]) -> tuple[EniKind, str]:
    """Who left this ENI, and the evidence. Only what the evidence attributes is ever deleted.

    ``own_ids`` are the network stack's physical resource ids. The signals: the description's
    resource id (NAT gateway / endpoint ENIs name theirs), the interface type (``lambda``, ``efa``),
    the texts HyperPod/EKS/the VPC CNI put in descriptions and tags, and, last, the network stack's
    security group, which only services this app configured (EKS, HyperPod, the in-VPC Lambda) use.
    """
    description = eni.get("Description") or ""
    interface_type = eni.get("InterfaceType") or ""
    tags = {t["Key"]: t.get("Value", "") for t in eni.get("TagSet") or []}
    requester = (eni.get("RequesterId") or "").lower()
    mentioned = set(_RESOURCE_ID.findall(description)) & own_ids
    if mentioned:
        return EniKind.OWN, f"belongs to {', '.join(sorted(mentioned))} of the network stack"
    if interface_type == "lambda" or description.startswith("AWS Lambda VPC ENI"):
        return EniKind.LAMBDA, "Lambda VPC ENI"
    if interface_type in ("efa", "efa-only"):
        return EniKind.EFA, f"interface type {interface_type}"
    if description.startswith("aws-K8S-") or "cluster.k8s.amazonaws.com/name" in tags:
        return EniKind.EKS, "VPC CNI ENI of an EKS/HyperPod node"
    if description.startswith("Amazon EKS "):
        return EniKind.EKS, "EKS control-plane ENI"
    # Not "hyperpod" alone: the default prefix (hyperpod-sky) is in names people give their own things.
    if "sagemaker" in description.lower() or "sagemaker" in requester or any("sagemaker" in k.lower() for k in tags):
        return EniKind.HYPERPOD, "SageMaker (HyperPod) ENI"
    groups = {g.get("GroupId") for g in eni.get("Groups") or []} & own_ids
    if groups:
        return EniKind.APP, f"uses the network stack's security group {', '.join(sorted(groups))}"
    return EniKind.UNKNOWN, "not attributable to this app"


@dataclass
class EniReport:
    vpc_id: str | None = None
    deleted: list[str] = field(default_factory=list)
    waited_seconds: float = 0.0
    polls: int = 0
    left_to_cloudformation: list[str] = field(default_factory=list)
    unknown: list[dict[str, str]] = field(default_factory=list)
    skipped: str | None = None


def network_stack_ids(cfn, stack: str) -> tuple[str | None, frozenset[str]]:
    """The VPC id and every physical id of the network stack; (None, {}) if the stack is gone."""
    try:
        resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationError" and "does not exist" in (error.get("Message") or ""):
            return None, frozenset()
        raise
    ids = frozenset(r["PhysicalResourceId"] for r in resources if r.get("PhysicalResourceId"))
    vpcs = [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::EC2::VPC"]
    return (vpcs[0] if vpcs else None), ids


def clear_network_interfaces(
    ec2,
    cfn,
    network_stack: str,
    *,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> EniReport:
    """Wait (bounded) until no HyperPod/EFA/Lambda/EKS ENI is in use in the network stack's VPC,
    deleting those that are ``available``; unattributable ENIs end the step with their details."""
    report = EniReport()
    try:
        vpc_id, own_ids = network_stack_ids(cfn, network_stack)
        if vpc_id is None:
            report.skipped = f"stack {network_stack} (or its VPC) does not exist"
            say(f"network interfaces: skipped: {report.skipped}")
            return report
        report.vpc_id = vpc_id
        start = clock()
        deadline = start + timeout_s
        announced: set[str] = set()
        while True:
            report.polls += 1
            waiting: list[tuple[dict, EniKind, str]] = []
            unknown: list[dict[str, str]] = []
            own: list[str] = []
            for eni in _enis_in_vpc(ec2, vpc_id):
                eni_id = eni["NetworkInterfaceId"]
                kind, why = classify_eni(eni, own_ids)
                status = eni.get("Status", "")
                if kind is EniKind.OWN:
                    own.append(eni_id)
                elif kind is EniKind.UNKNOWN:
                    unknown.append(_describe_unknown(ec2, eni))
                elif status == "available":
                    if _delete_eni(ec2, eni_id):
                        report.deleted.append(eni_id)
                        say(f"network interfaces: deleted {eni_id} ({kind.value}: {why}; was available)")
                    else:
                        waiting.append((eni, kind, why))
                elif status in _BUSY_STATUSES:
                    waiting.append((eni, kind, why))
            for item in unknown:
                if item["id"] not in announced:
                    announced.add(item["id"])
                    say(f"network interfaces: NOT OURS: {_format_unknown(item)}")
            report.unknown = unknown
            report.left_to_cloudformation = own
            now = clock()
            report.waited_seconds = now - start
            if not waiting:
                break
            if now >= deadline:
                listing = "; ".join(
                    f"{e['NetworkInterfaceId']} ({k.value}, {e.get('Status')}): {e.get('Description') or '-'}"
                    for e, k, _ in waiting
                )
                raise StepError(
                    STEP_NETWORK_INTERFACES,
                    f"network interfaces still in use in {vpc_id} after {timeout_s / 60:g} min: "
                    f"{listing}. Rerun later (or with a longer --eni-timeout-minutes)",
                )
            counts: dict[str, int] = {}
            for _, kind, _ in waiting:
                counts[kind.value] = counts.get(kind.value, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            say(
                f"network interfaces: waiting for {len(waiting)} in use in {vpc_id} ({summary}); "
                f"{now - start:.0f}s of {timeout_s:.0f}s"
            )
            sleep(max(0.0, min(poll_s, deadline - now)))
    except (ClientError, BotoCoreError) as exc:
        raise StepError(STEP_NETWORK_INTERFACES, f"network interfaces: AWS call failed: {_aws_error(exc)}") from None
    if report.unknown:
        ids = " ".join(u["id"] for u in report.unknown)
        raise StepError(
            STEP_NETWORK_INTERFACES,
            f"{len(report.unknown)} network interface(s) in {vpc_id} that this app did not create would block "
            f"deleting its subnets: "
            + "; ".join(_format_unknown(u) for u in report.unknown)
            + f". Delete them or their owners (for bare ENIs: `aws ec2 delete-network-interface "
            f"--network-interface-id <id>`; ids: {ids}), then rerun teardown.",
        )
    say(
        f"network interfaces: clear in {vpc_id} after {report.polls} check(s), {len(report.deleted)} deleted"
        + (
            f"; {len(report.left_to_cloudformation)} of the network stack itself left to CloudFormation"
            if report.left_to_cloudformation
            else ""
        )
    )
    return report


def _enis_in_vpc(ec2, vpc_id: str) -> Iterable[dict]:
    for page in ec2.get_paginator("describe_network_interfaces").paginate(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
    ):
        yield from page.get("NetworkInterfaces", [])


def _delete_eni(ec2, eni_id: str) -> bool:
    """True when deleted or already gone; False when it was attached again meanwhile."""
    try:
        ec2.delete_network_interface(NetworkInterfaceId=eni_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "InvalidNetworkInterfaceID.NotFound":
            return True
        if code == "InvalidNetworkInterface.InUse":
            return False
        raise
    return True


def _describe_unknown(ec2, eni: Mapping[str, Any]) -> dict[str, str]:
    item = {
        "id": eni["NetworkInterfaceId"],
        "status": eni.get("Status", ""),
        "type": eni.get("InterfaceType", ""),
        "description": eni.get("Description") or "",
        "requester": eni.get("RequesterId") or "",
        "subnet": eni.get("SubnetId", ""),
    }
    endpoints = [m for m in _RESOURCE_ID.findall(item["description"]) if m.startswith("vpce-")]
    if endpoints:
        try:
            found = ec2.describe_vpc_endpoints(VpcEndpointIds=endpoints[:1]).get("VpcEndpoints", [])
        except ClientError:
            found = []
        if found:
            item["endpoint_service"] = found[0].get("ServiceName", "")
    return item


def _format_unknown(item: Mapping[str, str]) -> str:
    text = (
        f"{item['id']} ({item['status']}, type {item['type'] or '-'}, subnet {item['subnet']}): "
        f"{item['description'] or 'no description'!r}, requester {item['requester'] or '-'}"
    )
    service = item.get("endpoint_service")
    if service:
        text += f", endpoint service {service}"
        if "guardduty" in service:
            text += (
                " (GuardDuty Runtime Monitoring's endpoint: delete it and the GuardDutyManagedSecurityGroup "
                "of this VPC, or exclude the VPC in GuardDuty)"
            )
    return text


def _aws_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{exc.operation_name}: {error.get('Code')}: {error.get('Message')}"
    return str(exc)


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
        for role in WORKLOAD_ORDER:
            cdk_destroy(
                cdk, plan.stacks[role], plan, profile=args.profile, timeout_s=stack_timeout, code=STEP_WORKLOAD_STACKS
            )
            summary["destroyed"].append(plan.stacks[role])

        session = aws_session(args.profile, plan.region)
        report = clear_network_interfaces(
            session.client("ec2", config=AWS_RETRY_CONFIG),
            session.client("cloudformation", config=AWS_RETRY_CONFIG),
            plan.stacks["network"],
            timeout_s=args.eni_timeout_minutes * 60,
            poll_s=args.poll_seconds,
            clock=clock,
            sleep=sleep,
        )
        summary["network_interfaces"] = report.__dict__

        cdk_destroy(
            cdk, plan.stacks["network"], plan, profile=args.profile, timeout_s=stack_timeout, code=STEP_NETWORK_STACK
        )
        summary["destroyed"].append(plan.stacks["network"])
    except StepError as err:
        say(f"teardown: {err.message}")
        emit_json(args, {**summary, "exit_code": int(err.code), "error": err.message})
        return int(err.code)

    leftovers = left_behind(plan)
    for line in leftovers:
        say(f"teardown: left behind: {line}")
    say("teardown: done")
    emit_json(args, {**summary, "ok": True, "left_behind": leftovers})
    return ExitCode.OK


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
