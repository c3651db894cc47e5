"""``kubeconfig``: write or merge the kubeconfig entry for the HyperPod cluster's EKS control plane.

What ``aws eks update-kubeconfig`` does, minus the AWS CLI: DescribeCluster gives the endpoint and
CA; the user entry authenticates through the exec plugin ``<this python> -m post_deploy token``
(see ``eks_token``), with PYTHONPATH pinned to this checkout so the plugin works from any working
directory (kubectl, the SkyPilot API server). Other clusters, users and contexts in the file are
kept as they are; the file is replaced atomically and stays private (0600), as it names
credentials.

Entry names follow the AWS CLI (cluster and user named by the cluster ARN) so running either tool
updates the same entries instead of duplicating them; the context is named after the EKS cluster
unless ``--context`` says otherwise, so later steps and SkyPilot can name it predictably.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import BotoCoreError, ClientError

from config import outputs as keys
from post_deploy.common import AWS_RETRY_CONFIG, StepError, add_common_args, aws_failure, aws_session, emit_json, say
from post_deploy.eks_token import EXEC_API_VERSION
from post_deploy.exit_codes import ExitCode
from post_deploy.outputs import OutputsError, read_outputs

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "kubeconfig",
        help="write/merge the kubeconfig entry for the EKS cluster",
        description="Write or merge a kubeconfig context for the EKS cluster behind HyperPod "
        "(DescribeCluster: endpoint + CA; token via `python -m post_deploy token`). "
        "Other entries in the file are kept.",
    )
    add_common_args(parser, context_help="name of the context to write (default: the EKS cluster name)")
    add_cluster_args(parser)
    parser.add_argument(
        "--keep-current-context", action="store_true", help="do not make the new context the current-context"
    )
    parser.set_defaults(func=run)


def add_cluster_args(parser: argparse.ArgumentParser) -> None:
    """Where the EKS cluster's name and region come from (flags, else outputs file, else env)."""
    parser.add_argument(
        "--outputs",
        metavar="FILE",
        help="cdk deploy --outputs-file JSON (EksClusterName, Region; env vars of the same names also work)",
    )
    parser.add_argument("--cluster-name", help="EKS cluster name (default: EksClusterName output)")
    parser.add_argument("--region", help="AWS region (default: Region output, else the AWS config)")
    parser.add_argument("--profile", help="AWS profile (also written into the kubeconfig's exec env)")


def run(args: argparse.Namespace) -> int:
    name, region = resolve_cluster(args)
    result = update_kubeconfig(
        cluster_name=name,
        region=region,
        path=args.kubeconfig,
        context_name=args.context,
        profile=args.profile,
        set_current=not args.keep_current_context,
    )
    say(
        f"kubeconfig: context {result['context']!r} -> {result['endpoint']} written to {result['path']}"
        + ("" if result["current_context"] != result["context"] else " (current-context)")
    )
    say(f"equivalent: {result['aws_cli_equivalent']}")
    emit_json(args, {"step": "kubeconfig", "ok": True, **result})
    return ExitCode.OK


def resolve_cluster(args: argparse.Namespace) -> tuple[str, str]:
    """The EKS cluster name and region from flags, falling back to the stack outputs."""
    name, region = args.cluster_name, args.region
    if not name or not region:
        try:
            outs = read_outputs(args.outputs)
        except OutputsError as exc:
            raise StepError(ExitCode.USAGE, str(exc)) from None
        name = name or outs.eks_cluster_name
        region = region or outs.region
    if not name:
        raise StepError(
            ExitCode.USAGE, f"no EKS cluster name: pass --cluster-name, --outputs FILE, or set {keys.EKS_CLUSTER_NAME}"
        )
    region = region or aws_session(args.profile).region_name
    if not region:
        raise StepError(ExitCode.USAGE, f"no AWS region: pass --region, or set {keys.REGION} or AWS_REGION")
    return name, region


def update_kubeconfig(
    cluster_name: str,
    region: str,
    path: str | os.PathLike | None = None,
    context_name: str | None = None,
    profile: str | None = None,
    set_current: bool = True,
) -> dict[str, Any]:
    cluster = describe_cluster(cluster_name, region, profile)
    context_name = context_name or cluster_name
    target = Path(path) if path else default_kubeconfig_path()
    config = load_kubeconfig_file(target)
    cluster_entry, user_entry, context_entry = kubeconfig_entries(
        cluster_name=cluster_name,
        arn=cluster["arn"],
        endpoint=cluster["endpoint"],
        ca_data=cluster["ca_data"],
        region=region,
        context_name=context_name,
        profile=profile,
    )
    merged = merge_entries(config, cluster_entry, user_entry, context_entry, set_current=set_current)
    try:
        write_kubeconfig(target, merged)
    except OSError as exc:
        raise StepError(ExitCode.USAGE, f"cannot write kubeconfig {str(target)!r}: {exc.strerror or exc}") from None
    return {
        "path": str(target),
        "context": context_name,
        "cluster_arn": cluster["arn"],
        "endpoint": cluster["endpoint"],
        "current_context": merged.get("current-context"),
        "aws_cli_equivalent": aws_cli_equivalent(cluster_name, region, context_name, target, profile),
    }


def describe_cluster(name: str, region: str, profile: str | None = None, eks=None) -> dict[str, str]:
    eks = eks or aws_session(profile, region).client("eks", config=AWS_RETRY_CONFIG)
    try:
        cluster = eks.describe_cluster(name=name)["cluster"]
    except (ClientError, BotoCoreError) as exc:
        raise aws_failure(f"eks:DescribeCluster {name!r} in {region}", exc) from None
    status = cluster.get("status")
    endpoint = cluster.get("endpoint")
    ca_data = (cluster.get("certificateAuthority") or {}).get("data")
    if status != "ACTIVE" or not endpoint or not ca_data:
        raise StepError(
            ExitCode.CLUSTER_NOT_READY,
            f"EKS cluster {name!r} is {status} (endpoint/CA not available yet); retry when ACTIVE",
        )
    return {"arn": cluster["arn"], "endpoint": endpoint, "ca_data": ca_data}


def kubeconfig_entries(
    cluster_name: str, arn: str, endpoint: str, ca_data: str, region: str, context_name: str, profile: str | None = None
) -> tuple[dict, dict, dict]:
    env = [{"name": "PYTHONPATH", "value": str(PROJECT_ROOT)}]
    if profile:
        env.append({"name": "AWS_PROFILE", "value": profile})
    cluster_entry = {"name": arn, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}
    user_entry = {
        "name": arn,
        "user": {
            "exec": {
                "apiVersion": EXEC_API_VERSION,
                "command": sys.executable,
                "args": ["-m", "post_deploy", "token", "--cluster-name", cluster_name, "--region", region],
                "env": env,
                "interactiveMode": "Never",
                "provideClusterInfo": False,
            }
        },
    }
    context_entry = {"name": context_name, "context": {"cluster": arn, "user": arn}}
    return cluster_entry, user_entry, context_entry


def merge_entries(config: dict, cluster: dict, user: dict, context: dict, set_current: bool = True) -> dict:
    """Replace same-named entries, keep every other one, optionally switch current-context."""
    merged = dict(config)
    merged.setdefault("apiVersion", "v1")
    merged.setdefault("kind", "Config")
    merged.setdefault("preferences", {})
    for section, entry in (("clusters", cluster), ("users", user), ("contexts", context)):
        existing = [e for e in (merged.get(section) or []) if e.get("name") != entry["name"]]
        merged[section] = existing + [entry]
    if set_current or not merged.get("current-context"):
        merged["current-context"] = context["name"]
    return merged


def default_kubeconfig_path() -> Path:
    """Where kubectl would write: the first path of $KUBECONFIG, else ~/.kube/config."""
    first = next((p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p), None)
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


def load_kubeconfig_file(path: Path) -> dict:
    if not path.exists() or path.stat().st_size == 0:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise StepError(
            ExitCode.USAGE, f"kubeconfig {str(path)!r} cannot be read as YAML: {str(exc).splitlines()[0]}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(data.get(s) or [], list) for s in ("clusters", "users", "contexts")
    ):
        raise StepError(
            ExitCode.USAGE,
            f"kubeconfig {str(path)!r} is not a kubeconfig (expected a mapping with clusters/users/contexts lists)",
        )
    return data


def write_kubeconfig(path: Path, config: dict) -> None:
    """Atomic replace (readers never see half a file) with owner-only permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kubeconfig-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(config, handle, default_flow_style=False, sort_keys=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def aws_cli_equivalent(
    cluster_name: str, region: str, context_name: str, path: Path, profile: str | None = None
) -> str:
    """The AWS CLI line producing the same context (with the CLI's own token plugin)."""
    parts = ["aws", "eks", "update-kubeconfig", "--name", cluster_name, "--region", region, "--alias", context_name]
    if path != Path.home() / ".kube" / "config":
        parts += ["--kubeconfig", str(path)]
    if profile:
        parts += ["--profile", profile]
    return shlex.join(parts)
