"""The infrastructure stacks in dependency order. Both ``app.py`` (``cdk deploy --all``) and the
pipeline's deployment stage call this, so the two paths cannot drift."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Environment, Stack, Tags
from constructs import Construct

from config import AppConfig
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


def stack_names(config: AppConfig) -> dict[str, str]:
    p = config.prefix
    return {"network": f"{p}-network", "lifecycle_bucket": f"{p}-lifecycle", "eks": f"{p}-eks", "hyperpod": f"{p}-hyperpod"}


def add_infrastructure(scope: Construct, config: AppConfig) -> InfrastructureStacks:
    env = Environment(account=config.account, region=config.region)
    names = stack_names(config)
    network = NetworkStack(scope, names["network"], config=config, env=env)
    bucket = LifecycleBucketStack(scope, names["lifecycle_bucket"], config=config, env=env)
    eks = EksStack(
        scope, names["eks"], config=config, env=env, vpc=network.vpc,
        control_plane_subnets=network.eks_subnets, node_subnets=network.eks_subnets,
        security_group=network.security_group,
    )
    hyperpod = HyperPodStack(
        scope, names["hyperpod"], config=config, env=env, eks_stack=eks, vpc=network.vpc,
        subnets=network.hyperpod_subnets, security_group=network.security_group,
        lifecycle_bucket=bucket.deployed_bucket, lifecycle_prefix=bucket.lifecycle_prefix,
    )
    stacks = InfrastructureStacks(network, bucket, eks, hyperpod)
    for stack in stacks.all():
        for key, value in config.tags.items():
            Tags.of(stack).add(key, value)
    return stacks
