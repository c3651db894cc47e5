"""Every name both the CDK app and the post-deploy CLI need, derived from the config in one place.

The stacks create resources under these names and ``post_deploy`` (``teardown``, ``make pipeline``)
finds them by the same names, so this module imports neither aws_cdk nor jsii: a CLI that only needs
a stack name must not start Node. ``physical_names`` lists every fixed physical name the app builds
from config, with the AWS limit of its kind; ``AppConfig`` refuses a config whose names would not fit
(``check_lengths``), because synth cannot: the account is a token there, and CloudFormation would
only fail mid-deploy, after earlier stacks exist. Names CloudFormation generates itself (Lambda
functions, unnamed roles) are cut to fit by CloudFormation and are not listed.

``python -m config.names pipeline-stack -c config=deploy/prod.yaml`` prints one name, loading the
config exactly as ``cdk`` does (cdk.json plus the same ``-c`` pairs); ``make pipeline`` uses it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.model import AppConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Infrastructure stacks by role, in creation order (``stacks/infrastructure.py`` builds them so).
STACK_ROLES = ("network", "lifecycle_bucket", "eks", "hyperpod")
_STACK_SUFFIX = {"network": "network", "lifecycle_bucket": "lifecycle", "eks": "eks", "hyperpod": "hyperpod"}

# What a name looks like before the account is known: an account id always has 12 digits.
ACCOUNT_PLACEHOLDER = "000000000000"


def stack_names(config: AppConfig) -> dict[str, str]:
    """Role (network, lifecycle_bucket, eks, hyperpod) -> CloudFormation stack name."""
    return {role: f"{config.prefix}-{_STACK_SUFFIX[role]}" for role in STACK_ROLES}


def pipeline_stack_name(config: AppConfig) -> str:
    return f"{config.prefix}-pipeline"


def pipeline_name(config: AppConfig) -> str:
    """The CodePipeline itself."""
    return config.prefix


def pipeline_artifact_key_alias(config: AppConfig) -> str:
    return f"alias/{config.prefix}-pipeline-artifacts"


def eks_cluster_name(config: AppConfig) -> str:
    """The EKS cluster, which is also the kubeconfig context the ``kubeconfig`` step writes (an existing
    cluster keeps its own name)."""
    if config.eks.existing:
        return config.eks.existing.cluster_name
    return f"{config.prefix}-eks"


def eks_control_plane_log_group(config: AppConfig) -> str:
    """The group EKS writes control-plane logs to; the EKS stack owns it (retention, deletion)."""
    return f"/aws/eks/{eks_cluster_name(config)}/cluster"


def lifecycle_bucket_name(config: AppConfig, account: str, region: str) -> str:
    """``sagemaker-*``: the managed AmazonSageMakerClusterInstanceRolePolicy only reads such buckets.
    The stack passes CloudFormation's account/region tokens; checks pass concrete values. An existing
    bucket (``lifecycle_bucket.existing_bucket_name``) keeps its own name."""
    if config.lifecycle_bucket.existing_bucket_name:
        return config.lifecycle_bucket.existing_bucket_name
    return f"sagemaker-{config.prefix}-lifecycle-{account}-{region}"


def post_deploy_role_name(config: AppConfig) -> str:
    """The workload-account role the pipeline's post-deploy step assumes (fixed, so the pipeline can name it)."""
    return f"{config.prefix}-post-deploy-{config.region}"


def post_deploy_codebuild_role_name(config: AppConfig) -> str:
    """The pipeline-account CodeBuild role of the post-deploy step (fixed, so the trust can name it)."""
    return f"{config.prefix}-post-deploy-cb-{config.pipeline.pipeline_region or config.region}"


# ----- lengths --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhysicalName:
    """One fixed name: what it names, the value, the AWS limit, and the config key that decides it."""

    what: str
    value: str
    limit: int
    key: str  # the config key to blame when it is too long

    @property
    def too_long(self) -> bool:
        return len(self.value) > self.limit


def physical_names(config: AppConfig, account: str | None = None) -> list[PhysicalName]:
    """Every fixed physical name built from ``config``, for ``account`` (default: the configured one,
    else a 12-digit placeholder) and the configured region (every stack's region is concrete).

    Limits: S3 bucket 63 (S3 bucket naming rules), IAM role 64 (IAM quotas), EKS cluster 100
    (CreateCluster ``name``), CloudFormation stack 128, CloudWatch log group 512, CodePipeline 100,
    KMS alias 256, HyperPod cluster 63 (botocore ``ClusterName`` pattern, also checked by its field).
    """
    account = account or config.account or ACCOUNT_PLACEHOLDER
    names = [PhysicalName(f"{role} stack", name, 128, "prefix") for role, name in stack_names(config).items()]
    names += [
        PhysicalName("lifecycle bucket", lifecycle_bucket_name(config, account, config.region), 63, "prefix"),
        PhysicalName("EKS cluster", eks_cluster_name(config), 100, "prefix"),
        PhysicalName("EKS control-plane log group", eks_control_plane_log_group(config), 512, "prefix"),
        PhysicalName("HyperPod cluster", config.hyperpod.cluster_name, 63, "hyperpod.cluster_name"),
    ]
    if config.pipeline.enabled:
        names += [
            PhysicalName("pipeline stack", pipeline_stack_name(config), 128, "prefix"),
            PhysicalName("pipeline", pipeline_name(config), 100, "prefix"),
            PhysicalName("pipeline artifact key alias", pipeline_artifact_key_alias(config), 256, "prefix"),
            PhysicalName("post-deploy IAM role", post_deploy_role_name(config), 64, "prefix"),
            PhysicalName("post-deploy CodeBuild IAM role", post_deploy_codebuild_role_name(config), 64, "prefix"),
        ]
    return names


def first_too_long(config: AppConfig, account: str | None = None) -> PhysicalName | None:
    return next((n for n in physical_names(config, account) if n.too_long), None)


def too_long_message(name: PhysicalName) -> str:
    return (
        f"makes the {name.what} name {name.value!r} {len(name.value)} characters; "
        f"AWS allows at most {name.limit} (shorten it by {len(name.value) - name.limit})"
    )


# ----- the command line -----------------------------------------------------------------------------
def load_as_cdk_does(pairs: Sequence[str], root: Path = PROJECT_ROOT) -> AppConfig:
    """The config ``cdk`` would build from cdk.json's context plus these ``-c KEY=VALUE`` pairs."""
    from config.loader import load_config

    context: dict[str, Any] = json.loads((root / "cdk.json").read_text()).get("context", {})
    return load_config({**context, **parse_context_pairs(pairs)})


def parse_context_pairs(pairs: Sequence[str]) -> dict[str, str]:
    from config.loader import ConfigError

    context: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"config error: -c {pair!r}: expected KEY=VALUE")
        context[key.strip()] = value
    return context


_COMMANDS: Mapping[str, Any] = {
    "pipeline-stack": pipeline_stack_name,
    "eks-cluster": eks_cluster_name,
    **{f"{role.replace('_', '-')}-stack": (lambda r: lambda c: stack_names(c)[r])(role) for role in STACK_ROLES},
}


def main(argv: Sequence[str] | None = None) -> int:
    from config.loader import ConfigError

    parser = argparse.ArgumentParser(
        prog="python -m config.names",
        description="Print one name the app derives from its config (cdk.json plus the -c pairs).",
    )
    parser.add_argument("name", choices=sorted(_COMMANDS))
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE", help="as `cdk -c`")
    # Other cdk flags in CDK_ARGS (--profile, --require-approval, ...) do not change names.
    args, _ = parser.parse_known_args(argv)
    try:
        config = load_as_cdk_does(args.context)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(_COMMANDS[args.name](config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
