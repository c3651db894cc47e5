"""The infrastructure stacks in dependency order. Both ``app.py`` (``cdk deploy --all``) and the
pipeline's deployment stage call this, so the two paths cannot drift."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aspects, Environment, Stack, Stage, Tags

from config import AppConfig, ConfigError
from config.names import stack_names
from constructs import Construct
from constructs.checkov_skips import CheckovSkips
from stacks.eks import EksStack
from stacks.hyperpod import HyperPodStack
from stacks.lifecycle_bucket import LifecycleBucketStack
from stacks.network import NetworkStack


@dataclass(frozen=True)
class InfrastructureStacks:
    network: NetworkStack
    lifecycle_bucket: LifecycleBucketStack
    eks: EksStack
    hyperpod: HyperPodStack

    def all(self) -> list[Stack]:
        return [self.network, self.lifecycle_bucket, self.eks, self.hyperpod]


def add_infrastructure(scope: Construct, config: AppConfig) -> InfrastructureStacks:
    # Until the stacks wire existing resources and AZ ids in, refuse them rather than ignore them.
    for key, value in (
        ("network.existing", config.network.existing),
        ("eks.existing", config.eks.existing),
        ("lifecycle_bucket.existing_bucket_name", config.lifecycle_bucket.existing_bucket_name),
        ("hyperpod.availability_zone_ids", config.hyperpod.availability_zone_ids),
    ):
        if value:
            raise ConfigError(f"config error: {key}: checked by `make preflight`, not yet deployed by the stacks")
    env = Environment(account=config.account, region=config.region)
    names = stack_names(config)
    # stack_name pinned: inside a Stage (the pipeline) CDK would otherwise prefix the stage name, and
    # the pipeline and `cdk deploy --all` must manage the very same CloudFormation stacks.
    network = NetworkStack(scope, names["network"], config=config, env=env, stack_name=names["network"])
    bucket = LifecycleBucketStack(
        scope,
        names["lifecycle_bucket"],
        config=config,
        env=env,
        stack_name=names["lifecycle_bucket"],
    )
    eks = EksStack(
        scope,
        names["eks"],
        config=config,
        env=env,
        stack_name=names["eks"],
        vpc=network.vpc,
        control_plane_subnets=network.eks_subnets,
        node_subnets=network.eks_subnets,
        security_group=network.security_group,
    )
    hyperpod = HyperPodStack(
        scope,
        names["hyperpod"],
        config=config,
        env=env,
        stack_name=names["hyperpod"],
        eks_stack=eks,
        vpc=network.vpc,
        subnets=network.hyperpod_subnets,
        security_group=network.security_group,
        lifecycle_bucket=bucket.deployed_bucket,
        lifecycle_prefix=bucket.lifecycle_prefix,
    )
    stacks = InfrastructureStacks(network, bucket, eks, hyperpod)
    for stack in stacks.all():
        for key, value in config.tags.items():
            Tags.of(stack).add(key, value)
        Aspects.of(stack).add(CheckovSkips())
    return stacks


# ----- pipeline deployment stage (stacks/pipeline.py) ---------------------------------------------
class HyperPodStage(Stage):
    """What the pipeline deploys: ``add_infrastructure`` itself, into the workload account/region."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, env=Environment(account=config.account, region=config.region), **kwargs)
        self.stacks = add_infrastructure(self, config)
