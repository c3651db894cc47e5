"""``python -m post_deploy preflight``: before ``cdk deploy``, with the deploying credentials and the same
config, find what CloudFormation would otherwise report an hour in (quotas, capacity, training plans,
subnet sizes, bootstrap, EKS versions, existing resources, GuardDuty leftovers).

Reads only (no Create/Update/Delete call). Each problem is one line with its fix; the exit code says
whether the deploy is blocked (11) or only warned about (12). The checks are in
``post_deploy/preflight_checks.py``; the address arithmetic in ``post_deploy/address_budget.py``.
"""

from __future__ import annotations

import argparse
import functools

from config import pricing
from post_deploy.common import AWS_RETRY_CONFIG, StepError, aws_session, emit_json, say
from post_deploy.exit_codes import ExitCode
from post_deploy.preflight_checks import (
    BLOCKED,
    CHECKS,
    DEFAULT_QUALIFIER,
    OK,
    WARNING,
    Clients,
    Finding,
    Target,
    guarded,
    resolve_az_ids,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preflight",
        help="before deploying: quotas, capacity, training plans, subnet sizes, bootstrap, EKS versions, existing resources",
        description="Checks, with the deploying credentials and the config `cdk deploy` would use, what "
        "would make the deployment fail: SageMaker quotas for cluster usage, instance types offered in the "
        "HyperPod AZ ids, training plans, free addresses in the HyperPod subnets, the CDK bootstrap version, "
        "EKS and add-on versions, existing VPC/cluster/bucket, and GuardDuty leftovers at destroy. Read-only.",
    )
    parser.add_argument(
        "-c",
        "--cdk-context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="CDK context, as `cdk -c` (e.g. config=prod.yaml or hyperpod.instance_groups[0].instance_count=4)",
    )
    parser.add_argument("--profile", help="AWS profile (default: the usual credential chain)")
    parser.add_argument(
        "--qualifier", default=DEFAULT_QUALIFIER, help=f"CDK bootstrap qualifier (default {DEFAULT_QUALIFIER})"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    parser.set_defaults(func=run)


def load_deploy_config(pairs: list[str]):
    """The config exactly as ``cdk`` loads it: cdk.json's context, then the same ``-c`` pairs."""
    from config import ConfigError, names

    try:
        return names.load_as_cdk_does(pairs)
    except ConfigError as exc:
        raise StepError(ExitCode.USAGE, str(exc)) from None


def run_checks(clients: Clients, target: Target) -> list[Finding]:
    """Every check; one whose AWS call is refused becomes a warning naming the call."""
    findings = guarded(
        "az-ids", "ec2:DescribeAvailabilityZones / DescribeSubnets", lambda: resolve_az_ids(clients, target)
    )
    for name, calls, check in CHECKS:
        findings += guarded(name, calls, functools.partial(check, clients, target))
    return findings


def cost_lines(cost: pricing.CostEstimate) -> list[str]:
    """The itemized estimate, then where each known price came from and when it was read."""
    sources = sorted({(i.unit_price.source, i.unit_price.read_on) for i in cost.items if i.unit_price})
    return [*cost.lines(), *(f"  price source (read {read_on}): {source}" for source, read_on in sources)]


def exit_code(findings: list[Finding]) -> ExitCode:
    levels = {f.level for f in findings}
    if BLOCKED in levels:
        return ExitCode.PREFLIGHT_BLOCKED
    if WARNING in levels:
        return ExitCode.PREFLIGHT_WARNINGS
    return ExitCode.OK


def run(args: argparse.Namespace, clients: Clients | None = None) -> int:
    """``clients``: the tests' stubbed clients; otherwise one session with ``--profile``."""
    config = load_deploy_config(args.cdk_context)
    clients = clients or Clients(aws_session(args.profile, config.region), AWS_RETRY_CONFIG)
    account = clients("sts").get_caller_identity()["Account"]
    if config.account and config.account != account:
        raise StepError(
            ExitCode.USAGE,
            f"these credentials are for account {account} but the config says {config.account}: use the deploying credentials",
        )
    target = Target(config=config, account=account, qualifier=args.qualifier)
    say(f"preflight: account {account}, region {config.region}, cluster {config.hyperpod.cluster_name}")
    findings = run_checks(clients, target)
    for finding in findings:
        say(finding.line())
    code = exit_code(findings)
    counts = {level: sum(f.level == level for f in findings) for level in (BLOCKED, WARNING, OK)}
    verdict = {ExitCode.OK: "ready to deploy", ExitCode.PREFLIGHT_WARNINGS: "deployable, with warnings"}.get(
        code, "BLOCKED: fix the lines above before `make deploy`"
    )
    cost = pricing.estimate_hourly(config)
    for line in cost_lines(cost):
        say(line)
    say(f"preflight: {counts[BLOCKED]} blocked, {counts[WARNING]} warnings, {counts[OK]} ok: {verdict}")
    emit_json(
        args,
        {
            "step": "preflight",
            "ok": code == ExitCode.OK,
            "exit_code": int(code),
            "account": account,
            "region": config.region,
            "az_ids": list(target.az_ids),
            "findings": [f.as_dict() for f in findings],
            "cost": {
                "on": cost.on.isoformat(),
                "known_hourly_usd": round(cost.known_hourly_usd, 4),
                "lower_bound": bool(cost.unknown),
                "items": [
                    {
                        "what": i.what,
                        "hourly_usd": i.hourly_usd,
                        "source": i.unit_price.source if i.unit_price else None,
                        "read_on": i.unit_price.read_on if i.unit_price else None,
                    }
                    for i in cost.items
                ],
            },
        },
    )
    return int(code)
