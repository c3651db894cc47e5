"""The HyperPod owner tag is the same whether the stacks are deployed directly or by the pipeline's Stage,
and the values earlier versions wrote (``<stack name>/<node.addr>``) are recomputed exactly."""

from __future__ import annotations

import aws_cdk as cdk

from config.names import pipeline_stack_name, stack_names
from constructs import Construct
from constructs.hyperpod_cluster.ownership import address_of, owner_tag_value
from stacks.infrastructure import HYPERPOD_CLUSTER_ID, PIPELINE_STAGE_ID, legacy_owner_tag_values
from tests.conftest import make_config

CONFIG = make_config(prefix="team-a")
HYPERPOD = stack_names(CONFIG)["hyperpod"]


def trees() -> tuple[Construct, Construct]:
    """The cluster construct at its place in both trees: the app root, and the pipeline's deployment Stage."""
    direct_app = cdk.App()
    direct = Construct(cdk.Stack(direct_app, HYPERPOD, stack_name=HYPERPOD), HYPERPOD_CLUSTER_ID)
    pipeline_app = cdk.App()
    stage = cdk.Stage(cdk.Stack(pipeline_app, pipeline_stack_name(CONFIG)), PIPELINE_STAGE_ID)
    in_stage = Construct(cdk.Stack(stage, HYPERPOD, stack_name=HYPERPOD), HYPERPOD_CLUSTER_ID)
    return direct, in_stage


def test_owner_value_is_identical_for_direct_and_pipeline_trees():
    direct, in_stage = trees()
    assert direct.node.path != in_stage.node.path
    assert owner_tag_value(direct) == owner_tag_value(in_stage) == "team-a-hyperpod/Cluster"


def test_legacy_values_are_the_node_addr_based_values_earlier_versions_wrote_in_each_tree():
    direct, in_stage = trees()
    assert direct.node.addr != in_stage.node.addr  # why the old value locked the other path out
    assert legacy_owner_tag_values(CONFIG) == [f"{HYPERPOD}/{direct.node.addr}", f"{HYPERPOD}/{in_stage.node.addr}"]


def test_address_of_matches_constructs_own_addr_including_default_ids():
    app = cdk.App()
    nested = Construct(Construct(cdk.Stack(app, "S"), "Default"), "Leaf")
    assert address_of(["S", "Default", "Leaf"]) == nested.node.addr
