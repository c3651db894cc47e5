"""Karpenter autoscaling through the custom resource: turning it on and off with UpdateCluster, keeping the
node counts Karpenter owns, and the poller waiting for HyperPod's autoscaling to be InService.

Every UpdateCluster is checked by botocore's Stubber against the SageMaker model (so ``AutoScaling`` and
``ClusterRole`` are real request fields) and against the exact parameters expected.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from constructs.hyperpod_cluster.runtime import handler, poller
from constructs.hyperpod_cluster.runtime.spec import Properties, SpecError
from tests.hyperpod_cluster.conftest import (
    ACCOUNT,
    OWNER,
    OWNER_KEY,
    STATE_MACHINE,
    cluster_request,
    described,
    event,
    group,
    nodes,
    properties,
)

ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:cluster/abc123def456"
TAGS = {"Tags": [{"Key": OWNER_KEY, "Value": OWNER}, {"Key": "project", "Value": "hp"}]}
CLUSTER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/hyperpod-cluster-role"
ENABLE = {"Mode": "Enable", "AutoScalerType": "Karpenter"}
STATIC = group("system", instance_type="ml.m5.xlarge", count=1)
SCALED = group("gpu-auto", count=0)


def autoscaled_request(**extra) -> dict:
    fields = {"NodeProvisioningMode": "Continuous", "ClusterRole": CLUSTER_ROLE, "AutoScaling": ENABLE, **extra}
    return cluster_request(groups=[STATIC, SCALED], **fields)


def static_request(*, continuous: bool = True) -> dict:
    extra = {"NodeProvisioningMode": "Continuous"} if continuous else {}
    return cluster_request(groups=[STATIC, SCALED], **extra)


def live(request: dict, *, autoscaling: dict | None = None, target: dict | None = None, **extra) -> dict:
    """DescribeCluster for ``request`` with HyperPod's view of autoscaling (or none)."""
    top = {k: request[k] for k in ("NodeProvisioningMode", "ClusterRole") if k in request}
    if autoscaling is not None:
        top["AutoScaling"] = autoscaling
    return described(request, target=target, **top, **extra)


def update(stubs, new_props, old_props):
    stubs.sfn.add_response(
        "start_execution", {"executionArn": f"{STATE_MACHINE}:u", "startDate": "2026-01-01T00:00:00Z"}
    )
    return handler.on_event(event("Update", new_props, physical_id="hp-test", old=old_props))


def with_count(g: dict, count: int) -> dict:
    return {**g, "InstanceCount": count}


# --- turning autoscaling on and off ---------------------------------------------------------------


def test_turning_autoscaling_on_sends_autoscaling_and_the_cluster_role(stubs, handle):
    old, new = static_request(), autoscaled_request()
    stubs.sagemaker.add_response("describe_cluster", live(old))
    stubs.sagemaker.add_response("list_tags", TAGS)
    stubs.sagemaker.add_response(
        "update_cluster",
        {"ClusterArn": ARN},
        expected_params={
            "ClusterName": "hp-test",
            "InstanceGroups": new["InstanceGroups"],
            "NodeRecovery": "Automatic",
            "NodeProvisioningMode": "Continuous",
            "AutoScaling": ENABLE,
            "ClusterRole": CLUSTER_ROLE,
        },
    )
    update(
        stubs,
        properties(new, handle=handle.url, karpenter=["gpu-auto"]),
        properties(old, handle=handle.url),
    )
    stubs.assert_done()


def test_turning_autoscaling_off_disables_it_and_returns_the_groups_to_their_configured_counts(stubs, handle):
    old, new = autoscaled_request(), static_request()
    # Karpenter had added three nodes; the config now says the group is a fixed 0.
    stubs.sagemaker.add_response(
        "describe_cluster", live(old, autoscaling={**ENABLE, "Status": "InService"}, target={"gpu-auto": 3})
    )
    stubs.sagemaker.add_response("list_tags", TAGS)
    stubs.sagemaker.add_response(
        "update_cluster",
        {"ClusterArn": ARN},
        expected_params={
            "ClusterName": "hp-test",
            "InstanceGroups": new["InstanceGroups"],
            "NodeRecovery": "Automatic",
            "NodeProvisioningMode": "Continuous",
            "AutoScaling": {"Mode": "Disable"},
        },
    )
    update(stubs, properties(new, handle=handle.url), properties(old, handle=handle.url, karpenter=["gpu-auto"]))
    stubs.assert_done()


def test_update_while_autoscaling_keeps_the_counts_karpenter_set(stubs, handle):
    """A redeploy that changes a fixed group must not reset Karpenter's group to the config's 0."""
    old = autoscaled_request()
    new = autoscaled_request()
    new["InstanceGroups"] = [with_count(STATIC, 2), SCALED]
    stubs.sagemaker.add_response(
        "describe_cluster", live(old, autoscaling={**ENABLE, "Status": "InService"}, target={"gpu-auto": 5})
    )
    stubs.sagemaker.add_response("list_tags", TAGS)
    stubs.sagemaker.add_response(
        "update_cluster",
        {"ClusterArn": ARN},
        expected_params={
            "ClusterName": "hp-test",
            "InstanceGroups": [with_count(STATIC, 2), with_count(SCALED, 5)],
            "NodeRecovery": "Automatic",
            "NodeProvisioningMode": "Continuous",
        },
    )
    update(
        stubs,
        properties(new, handle=handle.url, karpenter=["gpu-auto"]),
        properties(old, handle=handle.url, karpenter=["gpu-auto"]),
    )
    stubs.assert_done()


def test_nodes_karpenter_added_are_not_drift_so_an_unchanged_redeploy_calls_no_update(stubs):
    request = autoscaled_request()
    stubs.sagemaker.add_response(
        "describe_cluster", live(request, autoscaling={**ENABLE, "Status": "InService"}, target={"gpu-auto": 4})
    )
    stubs.sagemaker.add_response("list_tags", TAGS)
    props = properties(request, karpenter=["gpu-auto"])
    handler.on_event(event("Update", props, physical_id="hp-test", old=props))
    stubs.assert_done()  # no update_cluster scripted: Stubber would fail on one


def test_autoscaling_on_a_cluster_created_without_continuous_provisioning_is_refused(stubs):
    old, new = static_request(continuous=False), autoscaled_request()
    stubs.sagemaker.add_response("describe_cluster", live(old))
    with pytest.raises(handler.HandlerError) as failure:
        handler.on_event(
            event("Update", properties(new, karpenter=["gpu-auto"]), physical_id="hp-test", old=properties(old))
        )
    message = str(failure.value)
    assert "cannot be changed in place" in message and "Nothing was changed" in message
    assert "deploy once with hyperpod.node_provisioning_mode: Continuous, then turn on hyperpod.autoscaling" in message
    stubs.assert_done()


def test_continuous_provisioning_can_be_turned_on_in_place(stubs):
    old, new = static_request(continuous=False), static_request()
    stubs.sagemaker.add_response("describe_cluster", live(old))
    stubs.sagemaker.add_response("list_tags", TAGS)
    stubs.sagemaker.add_response(
        "update_cluster",
        {"ClusterArn": ARN},
        expected_params={
            "ClusterName": "hp-test",
            "InstanceGroups": new["InstanceGroups"],
            "NodeRecovery": "Automatic",
            "NodeProvisioningMode": "Continuous",
        },
    )
    handler.on_event(event("Update", properties(new), physical_id="hp-test", old=properties(old)))
    stubs.assert_done()


def test_continuous_provisioning_cannot_be_turned_off_and_the_message_says_what_to_keep(stubs):
    old, new = static_request(), static_request(continuous=False)
    stubs.sagemaker.add_response("describe_cluster", live(old))
    with pytest.raises(handler.HandlerError, match="keep hyperpod.node_provisioning_mode: Continuous"):
        handler.on_event(event("Update", properties(new), physical_id="hp-test", old=properties(old)))
    stubs.assert_done()


def test_a_different_cluster_role_while_autoscaling_is_enabled_is_refused(stubs):
    old = autoscaled_request()
    new = autoscaled_request(ClusterRole=f"arn:aws:iam::{ACCOUNT}:role/another-role")
    stubs.sagemaker.add_response("describe_cluster", live(old, autoscaling={**ENABLE, "Status": "InService"}))
    with pytest.raises(handler.HandlerError, match="cannot change while autoscaling is enabled"):
        handler.on_event(
            event(
                "Update",
                properties(new, karpenter=["gpu-auto"]),
                physical_id="hp-test",
                old=properties(old, karpenter=["gpu-auto"]),
            )
        )
    stubs.assert_done()


def test_retried_create_adopts_an_autoscaled_cluster_whatever_karpenter_scaled_it_to(stubs, handle):
    request = autoscaled_request()
    stubs.sagemaker.add_response(
        "describe_cluster", live(request, autoscaling={**ENABLE, "Status": "InService"}, target={"gpu-auto": 2})
    )
    stubs.sagemaker.add_response("list_tags", TAGS)
    stubs.sfn.add_response(
        "start_execution", {"executionArn": f"{STATE_MACHINE}:c", "startDate": "2026-01-01T00:00:00Z"}
    )
    result = handler.on_event(event("Create", properties(request, handle=handle.url, karpenter=["gpu-auto"])))
    assert result["PhysicalResourceId"] == "hp-test"
    stubs.assert_done()


def test_poller_input_leaves_karpenter_groups_out_of_the_targets(stubs, handle, monkeypatch):
    monkeypatch.setattr(handler.time, "time", lambda: 1_000_000.0)
    request = autoscaled_request()
    request["InstanceGroups"] = [{**STATIC, "MinInstanceCount": 1}, SCALED]
    stubs.sagemaker.add_client_error("describe_cluster", service_error_code="ResourceNotFound", http_status_code=400)
    stubs.sfn.add_response(
        "start_execution",
        {"executionArn": f"{STATE_MACHINE}:c", "startDate": "2026-01-01T00:00:00Z"},
        expected_params={
            "stateMachineArn": STATE_MACHINE,
            "name": "hp-test-" + hashlib.sha256(b"req-create-1").hexdigest()[:16],
            "input": json.dumps(
                {
                    "ClusterName": "hp-test",
                    "WaitHandleUrl": handle.url,
                    "UniqueId": "hp-test",
                    "Operation": "Create",
                    "DeadlineEpoch": 1_000_000 + 7200 - handler.DEADLINE_MARGIN_SECONDS,
                    "TargetCounts": {"system": 1},
                    "MinCounts": {"system": 1},
                    "KarpenterGroups": ["gpu-auto"],
                    "AutoScaling": True,
                }
            ),
        },
    )
    stubs.sagemaker.add_response("create_cluster", {"ClusterArn": ARN}, expected_params=request)
    handler.on_event(event("Create", properties(request, handle=handle.url, timeout=7200, karpenter=["gpu-auto"])))
    stubs.assert_done()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not a JSON list"),
        (json.dumps(["nope"]), "names groups the request does not have: nope"),
    ],
)
def test_bad_karpenter_groups_property_is_refused(raw, message):
    props = properties(autoscaled_request())
    props["KarpenterGroups"] = raw
    with pytest.raises(SpecError, match=message):
        Properties.parse(props)


def test_karpenter_groups_without_autoscaling_in_the_request_are_refused():
    with pytest.raises(SpecError, match="does not enable AutoScaling"):
        Properties.parse(properties(static_request(), karpenter=["gpu-auto"]))


# --- the poller ----------------------------------------------------------------------------------


def task(handle_url: str, **extra) -> dict:
    return {
        "ClusterName": "hp-test",
        "WaitHandleUrl": handle_url,
        "UniqueId": "hp-test",
        "Operation": "Create",
        "DeadlineEpoch": time.time() + 3600,
        "TargetCounts": {"system": 1},
        "KarpenterGroups": ["gpu-auto"],
        "AutoScaling": True,
        **extra,
    }


def test_poller_waits_until_hyperpod_reports_autoscaling_in_service(stubs, handle):
    request = autoscaled_request()
    stubs.sagemaker.add_response("describe_cluster", live(request, autoscaling={**ENABLE, "Status": "Creating"}))
    result = poller.handle(task(handle.url))
    assert result["Outcome"] == "WAIT"
    assert result["Reason"] == "InService; autoscaling Enable/Creating; nodes system 1/1"
    assert handle.requests == []
    stubs.assert_done()


def test_poller_succeeds_with_karpenter_groups_at_any_count(stubs, handle):
    request = autoscaled_request()
    stubs.sagemaker.add_response(
        "describe_cluster",
        live(request, autoscaling={**ENABLE, "Status": "InService"}, target={"gpu-auto": 2}, current={"gpu-auto": 1}),
    )
    stubs.sagemaker.add_response("list_cluster_nodes", nodes({"system": 1, "gpu-auto": 1}))
    result = poller.handle(task(handle.url))
    assert result["Outcome"] == "SUCCESS"
    (body,) = handle.bodies()
    assert body["Reason"] == (
        "HyperPod cluster hp-test is InService with every node Running: system 1/1; Karpenter scales gpu-auto"
    )
    stubs.assert_done()


def test_poller_fails_with_hyperpods_message_when_autoscaling_fails(stubs, handle):
    request = autoscaled_request()
    stubs.sagemaker.add_response(
        "describe_cluster",
        live(
            request,
            autoscaling={**ENABLE, "Status": "Failed", "FailureMessage": "ClusterRole cannot be assumed by HyperPod"},
        ),
    )
    result = poller.handle(task(handle.url))
    assert result["Outcome"] == "FAILURE"
    (body,) = handle.bodies()
    assert body["Status"] == "FAILURE"
    assert body["Reason"] == "HyperPod cluster hp-test: autoscaling failed: ClusterRole cannot be assumed by HyperPod"


def test_poller_is_done_once_a_group_reaches_its_min_instance_count(stubs, handle):
    request = static_request()
    request["InstanceGroups"] = [{**with_count(STATIC, 4), "MinInstanceCount": 2}]
    stubs.sagemaker.add_response("describe_cluster", described(request, current={"system": 2}))
    stubs.sagemaker.add_response("list_cluster_nodes", nodes({"system": 2}))
    result = poller.handle(
        task(handle.url, TargetCounts={"system": 4}, MinCounts={"system": 2}, KarpenterGroups=[], AutoScaling=False)
    )
    assert result["Outcome"] == "SUCCESS"
    stubs.assert_done()


def test_a_fixed_group_at_zero_is_ready_with_no_nodes(stubs, handle):
    request = static_request()
    stubs.sagemaker.add_response("describe_cluster", described(request))
    stubs.sagemaker.add_response("list_cluster_nodes", nodes({"system": 1}))
    result = poller.handle(
        task(handle.url, TargetCounts={"system": 1, "gpu-auto": 0}, KarpenterGroups=[], AutoScaling=False)
    )
    assert result["Outcome"] == "SUCCESS"
    (body,) = handle.bodies()
    assert json.loads(body["Data"])["Running"] == {"gpu-auto": 0, "system": 1}
