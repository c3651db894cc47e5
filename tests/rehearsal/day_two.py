"""Day two on top of the rehearsal: the pipeline's templates taking over a directly deployed cluster, and a
HyperPod update that fails and is rolled back by CloudFormation.

What moto cannot play, and what stands in for it (small, in this process, over the same HTTP server):

- ``UpdateCluster`` (moto has none): ``HyperPodLifecycle`` answers it as HyperPod does, taking the new
  target counts and going Updating;
- HyperPod's status over time (moto reports InService at once, forever): a script of states per cluster,
  one consumed by each DescribeCluster call, e.g. SystemUpdating, SystemUpdating, then InService. No clock is
  involved, so the handlers and the poller see exactly the sequence the test wrote.

CloudFormation's side of an update is ``update_custom_resource``: one Update request through the replayed
Provider framework with the new and the previous properties, as CloudFormation sends it.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse

from tests.rehearsal.assembly import CloudAssembly
from tests.rehearsal.moto_stacks import MotoStacks, Physical
from tests.rehearsal.provider import ProviderFramework, run_started_executions


@dataclass
class State:
    """One HyperPod status as DescribeCluster reports it; ``targets`` (group -> count) changes TargetCount."""

    status: str
    targets: dict[str, int] | None = None
    failure: str = ""


@dataclass
class HyperPodLifecycle:
    """Scripted HyperPod status and an UpdateCluster for moto's SageMaker (installed on the response class)."""

    account: str
    region: str
    scripts: dict[str, deque[State]] = field(default_factory=dict)
    after_update: dict[str, list[State]] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)

    def install(self, monkeypatch) -> HyperPodLifecycle:
        lifecycle = self
        describe = SageMakerResponse.describe_cluster

        def describe_cluster(response: SageMakerResponse):
            lifecycle.advance(response._get_param("ClusterName"))
            return describe(response)

        def update_cluster(response: SageMakerResponse):
            request = json.loads(response.body)
            lifecycle.updates.append(request)
            cluster = lifecycle.cluster(request["ClusterName"])
            if cluster.status != "InService":
                raise ValidationError(message=f"Cluster {cluster.cluster_name} is {cluster.status}")
            wanted = {g["InstanceGroupName"]: g["InstanceCount"] for g in request["InstanceGroups"]}
            lifecycle.apply(request["ClusterName"], State("Updating", wanted))
            lifecycle.script(request["ClusterName"], *lifecycle.after_update.pop(request["ClusterName"], []))
            return json.dumps({"ClusterArn": cluster.arn})

        monkeypatch.setattr(SageMakerResponse, "describe_cluster", describe_cluster)
        monkeypatch.setattr(SageMakerResponse, "update_cluster", update_cluster, raising=False)
        return self

    def cluster(self, name: str):
        return sagemaker_backends[self.account][self.region].clusters[name]

    def script(self, name: str, *states: State) -> None:
        self.scripts.setdefault(name, deque()).extend(states)

    def apply(self, name: str, state: State) -> None:
        cluster = self.cluster(name)
        cluster.status, cluster.failure_message = state.status, state.failure
        for group in cluster.instance_groups:
            if state.targets and group["InstanceGroupName"] in state.targets:
                group["TargetCount"] = state.targets[group["InstanceGroupName"]]

    def advance(self, name: str) -> None:
        queue = self.scripts.get(name)
        if queue:
            self.apply(name, queue.popleft())

    def targets(self, name: str) -> dict[str, int]:
        return {g["InstanceGroupName"]: g["TargetCount"] for g in self.cluster(name).instance_groups}


def resolved_properties(stacks: MotoStacks, assembly: CloudAssembly, stack_name: str, logical_id: str) -> dict:
    """A resource's properties from ``assembly``'s template, resolved against what is deployed (the same stack
    names, so the same physical resources: what CloudFormation would compare on an update)."""
    stack = assembly.stack(stack_name)
    resource = stack.resources[logical_id]
    previous, stacks.assembly = stacks.assembly, assembly
    try:
        return stacks.resolve(stack, resource["Properties"], f"Resources.{logical_id}.Properties")
    finally:
        stacks.assembly = previous


def update_custom_resource(
    stacks: MotoStacks, stack_name: str, logical_id: str, properties: dict[str, Any]
) -> dict[str, Any]:
    """CloudFormation's Update of a provider-backed custom resource: new and previous properties."""
    physical = stacks.physical[(stack_name, logical_id)]
    stack = stacks.assembly.stack(stack_name)
    framework = ProviderFramework(stacks, stack, properties["ServiceToken"])
    response = framework.request(
        "Update",
        logical_id,
        physical.type,
        properties,
        physical_id=physical.ref,
        old_properties=physical.details,
    )
    stacks.physical[(stack_name, logical_id)] = Physical(
        physical.type, response["PhysicalResourceId"], dict(response.get("Data") or {}), properties
    )
    return response


def create_custom_resource(stacks: MotoStacks, stack_name: str, logical_id: str, properties: dict[str, Any]) -> dict:
    """A Create of the resource with ``properties`` (a retried create, or the stack built again elsewhere)."""
    physical = stacks.physical[(stack_name, logical_id)]
    framework = ProviderFramework(stacks, stacks.assembly.stack(stack_name), properties["ServiceToken"])
    return framework.request("Create", logical_id, physical.type, properties)


def with_request(properties: dict[str, Any], *, counts: dict[str, int] | None = None, handle: str | None = None):
    """``properties`` with other instance counts in its ClusterRequest and another WaitHandleUrl: the template
    CloudFormation would get for a spec change (the handle's logical id hashes the spec)."""
    request = json.loads(properties["ClusterRequest"])
    for group in request["InstanceGroups"]:
        if counts and group["InstanceGroupName"] in counts:
            group["InstanceCount"] = counts[group["InstanceGroupName"]]
    changed = {**properties, "ClusterRequest": json.dumps(request)}
    if handle is not None:
        changed["WaitHandleUrl"] = handle
    return changed


def wait_for_signals(stacks: MotoStacks) -> list[dict[str, Any]]:
    """The new WaitCondition's wait: replay every poller execution started since, as CloudFormation waits."""
    return run_started_executions(stacks)


def counts_of(properties: dict[str, Any]) -> dict[str, int]:
    return {
        g["InstanceGroupName"]: g["InstanceCount"] for g in json.loads(properties["ClusterRequest"])["InstanceGroups"]
    }
