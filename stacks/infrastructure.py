"""The infrastructure stacks in dependency order. Both ``app.py`` (``cdk deploy --all``) and the
pipeline's deployment stage call this, so the two paths cannot drift."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aspects, Environment, Stack, Stage, Tags

from config import AppConfig
from config.names import pipeline_stack_name, stack_names
from constructs import Construct
from constructs.checkov_skips import CheckovSkips
from constructs.hyperpod_cluster.ownership import legacy_owner_tag_value
from stacks.eks import EksStack
from stacks.existing_network import created_network
from stacks.hyperpod import HyperPodStack
from stacks.lifecycle_bucket import LifecycleBucketStack
from stacks.network import NetworkStack
from stacks.storage import StorageStack


@dataclass(frozen=True)
class InfrastructureStacks:
    network: NetworkStack | None  # None: network.existing
    lifecycle_bucket: LifecycleBucketStack
    eks: EksStack
    storage: StorageStack | None  # None when storage.fsx and storage.ebs_csi are both off
    hyperpod: HyperPodStack

    def all(self) -> list[Stack]:
        return [
            s for s in (self.network, self.lifecycle_bucket, self.eks, self.storage, self.hyperpod) if s is not None
        ]


# The pipeline stack's construct id and its deployment Stage's: the second tree the stacks are built in.
PIPELINE_STAGE_ID = "Deploy"
HYPERPOD_CLUSTER_ID = "Cluster"


def legacy_owner_tag_values(config: AppConfig) -> list[str]:
    """The HyperPod owner tag values versions before the path-based one wrote (``ownership.py``): one per
    tree the HyperPod stack was built in, direct (``cdk deploy --all``) and inside the pipeline's Stage."""
    name = stack_names(config)["hyperpod"]
    return [
        legacy_owner_tag_value(name, [name, HYPERPOD_CLUSTER_ID]),
        legacy_owner_tag_value(name, [pipeline_stack_name(config), PIPELINE_STAGE_ID, name, HYPERPOD_CLUSTER_ID]),
    ]


def add_infrastructure(scope: Construct, config: AppConfig) -> InfrastructureStacks:
    env = Environment(account=config.account, region=config.region)
    names = stack_names(config)
    # stack_name pinned: inside a Stage (the pipeline) CDK would otherwise prefix the stage name, and
    # the pipeline and `cdk deploy --all` must manage the very same CloudFormation stacks.
    # An existing VPC gets no network stack: the EKS and HyperPod stacks import its ids themselves.
    network = (
        None
        if config.network.existing
        else NetworkStack(scope, names["network"], config=config, env=env, stack_name=names["network"])
    )
    network_refs = created_network(network) if network else None
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
        network=network_refs,
    )
    storage = None
    if config.storage.enabled:
        storage = StorageStack(
            scope,
            names["storage"],
            config=config,
            env=env,
            stack_name=names["storage"],
            eks_stack=eks,
            network=network_refs,
        )
    hyperpod = HyperPodStack(
        scope,
        names["hyperpod"],
        config=config,
        env=env,
        stack_name=names["hyperpod"],
        eks_stack=eks,
        network=network_refs,
        lifecycle_bucket=bucket.deployed_bucket,
        lifecycle_prefix=bucket.lifecycle_prefix,
        cluster_id=HYPERPOD_CLUSTER_ID,
        legacy_owner_tag_values=legacy_owner_tag_values(config),
    )
    if storage is not None:
        # Deleted before the storage stack: no HyperPod pod mounts the claim when it is released.
        hyperpod.add_dependency(storage)
    stacks = InfrastructureStacks(network, bucket, eks, storage, hyperpod)
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
