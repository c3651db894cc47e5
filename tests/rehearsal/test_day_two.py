"""Day two, rehearsed: the ``team-a`` config deployed directly into moto, then driven from the pipeline
Stage's templates, then a HyperPod update that meets a busy cluster, fails in HyperPod and is rolled back.
The handlers and the poller run from their ``cdk.out`` assets in child interpreters, as in the day-one
rehearsal (``rehearsal.py``); ``day_two.py`` says what stands in for HyperPod's own behaviour over time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import outputs as keys
from constructs.hyperpod_cluster.ownership import address_of
from constructs.hyperpod_cluster.request import OWNER_TAG_KEY
from tests.app.conftest import day_two_cdk_out  # noqa: F401 - the session's day-two synth
from tests.rehearsal.assembly import CloudAssembly
from tests.rehearsal.day_two import (
    HyperPodLifecycle,
    State,
    counts_of,
    create_custom_resource,
    resolved_properties,
    update_custom_resource,
    wait_for_signals,
    with_request,
)
from tests.rehearsal.rehearsal import ACCOUNT, Rehearsal

pytestmark = pytest.mark.slow
INFRASTRUCTURE = {"team-a-network", "team-a-lifecycle", "team-a-eks", "team-a-hyperpod"}


@pytest.fixture
def deployed(day_two_cdk_out: Path, sky_tools_bin: Path, tmp_path: Path) -> Iterator[Rehearsal]:  # noqa: F811
    with Rehearsal(day_two_cdk_out, tmp_path / "rehearsal", sky_tools_bin) as run:
        run.deploy(only=INFRASTRUCTURE)
        yield run


@pytest.fixture
def stage(day_two_cdk_out: Path) -> CloudAssembly:  # noqa: F811
    (folder,) = [p for p in day_two_cdk_out.glob("assembly-*") if p.is_dir()]
    return CloudAssembly(folder)


def owner_tag(r: Rehearsal, cluster: str) -> str:
    sagemaker = r.aws("sagemaker")
    arn = sagemaker.describe_cluster(ClusterName=cluster)["ClusterArn"]
    return {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}[OWNER_TAG_KEY]


def test_the_custom_prefix_names_every_stack_and_the_cluster(deployed: Rehearsal):
    r = deployed
    assert set(r.outputs) == INFRASTRUCTURE
    name = r.output(keys.HYPERPOD_CLUSTER_NAME)
    assert name == "team-a-training" and r.output(keys.EKS_CLUSTER_NAME) == "team-a-eks"
    assert r.output(keys.LIFECYCLE_BUCKET_NAME).startswith("sagemaker-team-a-lifecycle-")
    assert owner_tag(r, name) == "team-a-hyperpod/Cluster"


def test_the_pipeline_stage_takes_over_the_directly_deployed_cluster(deployed: Rehearsal, stage: CloudAssembly):
    r = deployed
    stack, logical_id = r.hyperpod_resource
    direct = r.stacks.physical[(stack, logical_id)].details
    from_stage = resolved_properties(r.stacks, stage, stack, logical_id)

    # Same properties: CloudFormation sends the custom resource no Update when the pipeline deploys.
    assert from_stage == direct
    # And the handler accepts the Stage's request on the live cluster: a Create (a retried one, or the stack
    # built again by the pipeline) adopts it instead of refusing a cluster "not created by this stack".
    adopted = create_custom_resource(r.stacks, stack, logical_id, from_stage)
    assert adopted["PhysicalResourceId"] == r.output(keys.HYPERPOD_CLUSTER_NAME)
    assert len(r.aws("sagemaker").list_clusters()["ClusterSummaries"]) == 1


def test_a_cluster_tagged_by_an_earlier_version_from_either_path_is_adopted(deployed: Rehearsal, stage: CloudAssembly):
    r = deployed
    stack, logical_id = r.hyperpod_resource
    name = r.output(keys.HYPERPOD_CLUSTER_NAME)
    sagemaker = r.aws("sagemaker")
    arn = sagemaker.describe_cluster(ClusterName=name)["ClusterArn"]
    # What the old <stack>/<node.addr> tag was when the cluster came from `cdk deploy --all`:
    direct_addr = f"{stack}/{address_of([stack, 'Cluster'])}"
    sagemaker.delete_tags(ResourceArn=arn, TagKeys=[OWNER_TAG_KEY])
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": OWNER_TAG_KEY, "Value": direct_addr}])

    from_stage = resolved_properties(r.stacks, stage, stack, logical_id)
    assert direct_addr in from_stage["LegacyOwnerTagValues"]
    adopted = create_custom_resource(r.stacks, stack, logical_id, from_stage)
    assert adopted["PhysicalResourceId"] == name


def test_an_update_meeting_a_busy_cluster_then_timing_out_is_rolled_back_cleanly(deployed: Rehearsal, monkeypatch):
    r = deployed
    stack, logical_id = r.hyperpod_resource
    name = r.output(keys.HYPERPOD_CLUSTER_NAME)
    hyperpod = HyperPodLifecycle(ACCOUNT, r.region).install(monkeypatch)
    before = r.stacks.physical[(stack, logical_id)].details
    original = counts_of(before)
    grown = {group: count + 1 for group, count in original.items()}

    # --- the update arrives while HyperPod patches the cluster (SystemUpdating): it waits, then applies ------
    new_handle = r._new_handle("team-a-hyperpod/InServiceHandle<new spec>")
    # A spec change gets a new WaitCondition handle; its wait limit is made 60 s here so that the poller's
    # deadline (limit minus the handler's 5-minute margin) has passed when HyperPod is still Updating.
    spec_change = {**with_request(before, counts=grown, handle=new_handle.url), "WaitTimeoutSeconds": "60"}
    hyperpod.script(name, State("SystemUpdating"), State("SystemUpdating"), State("InService"))
    hyperpod.after_update[name] = [State("Updating")]  # and HyperPod stays Updating
    update_custom_resource(r.stacks, stack, logical_id, spec_change)
    assert [counts_of({"ClusterRequest": json.dumps(u)}) for u in hyperpod.updates] == [grown]

    # The new WaitCondition: the poller meets its deadline while the cluster is Updating.
    wait_for_signals(r.stacks)
    (signal,) = new_handle.bodies()
    assert signal["Status"] == "FAILURE"
    assert "was not ready before the deployment's wait limit" in signal["Reason"]
    assert "last state: Updating" in signal["Reason"], signal

    # --- CloudFormation rolls back: the previous spec, while HyperPod is still Updating ---------------------
    hyperpod.script(name, State("Updating"), State("Updating"), State("InService", grown))
    hyperpod.after_update[name] = [State("InService")]
    rollback = update_custom_resource(r.stacks, stack, logical_id, before)  # old properties: spec_change
    assert rollback["PhysicalResourceId"] == name  # UPDATE_ROLLBACK_COMPLETE, not UPDATE_ROLLBACK_FAILED
    assert [counts_of({"ClusterRequest": json.dumps(u)}) for u in hyperpod.updates] == [grown, original]
    wait_for_signals(r.stacks)  # the rollback's poller, on the old (already released) handle
    assert r.stacks.handles[before["WaitHandleUrl"]].bodies()[-1]["Status"] == "SUCCESS"
    assert hyperpod.targets(name) == original
    assert r.aws("sagemaker").describe_cluster(ClusterName=name)["ClusterStatus"] == "InService"


def test_the_stand_in_refuses_update_cluster_on_a_busy_cluster_as_hyperpod_does(deployed: Rehearsal, monkeypatch):
    """What makes the test above meaningful: sent while SystemUpdating, the update would have been refused."""
    r = deployed
    name = r.output(keys.HYPERPOD_CLUSTER_NAME)
    hyperpod = HyperPodLifecycle(ACCOUNT, r.region).install(monkeypatch)
    hyperpod.apply(name, State("SystemUpdating"))
    request = json.loads(r.stacks.physical[r.hyperpod_resource].details["ClusterRequest"])
    sagemaker = r.aws("sagemaker")
    with pytest.raises(sagemaker.exceptions.ClientError, match="is SystemUpdating"):
        sagemaker.update_cluster(ClusterName=name, InstanceGroups=request["InstanceGroups"])
    assert hyperpod.targets(name) == counts_of(r.stacks.physical[r.hyperpod_resource].details)
