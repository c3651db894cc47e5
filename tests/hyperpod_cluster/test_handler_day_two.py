"""Day-two paths of the handler: updates that meet a busy cluster, rollbacks, the handler's own deadlines,
and clusters tagged by earlier versions of the construct.

The Provider framework hands ``is_complete`` the event merged with ``on_event``'s result (the rehearsal's
``tests/rehearsal/provider.py`` does the same), so ``framework_event`` builds exactly that.
"""

from __future__ import annotations

import pytest

from constructs.hyperpod_cluster.runtime import handler, poller
from tests.hyperpod_cluster.conftest import (
    OWNER,
    OWNER_KEY,
    STATE_MACHINE,
    cluster_request,
    described,
    event,
    group,
    properties,
)

ARN = "arn:aws:sagemaker:us-east-1:123456789012:cluster/abc123def456"
TAGS = {"Tags": [{"Key": OWNER_KEY, "Value": OWNER}, {"Key": "project", "Value": "hp"}]}
LEGACY = "HyperPodStack/c8legacyaddr0123456789abcdef0123456789abcd"
OLD = cluster_request()
NEW = cluster_request(groups=[group(count=3)])


def framework_event(cfn_event: dict, on_event_result: dict) -> dict:
    """What the Provider framework passes to is_complete: the request plus on_event's result."""
    return {**cfn_event, **on_event_result}


def started(stubs) -> None:
    stubs.sfn.add_response(
        "start_execution", {"executionArn": f"{STATE_MACHINE}:u", "startDate": "2026-01-01T00:00:00Z"}
    )


def update_of(new: dict, old: dict, handle=None) -> dict:
    url = handle.url if handle else None
    return event("Update", properties(new, handle=url), physical_id="hp-test", old=properties(old, handle=url))


# --- an update that meets a busy cluster is deferred, not failed ------------------------------------


@pytest.mark.parametrize("status", ["Updating", "SystemUpdating", "RollingBack"])
def test_update_while_hyperpod_is_busy_changes_nothing_and_is_deferred(stubs, monkeypatch, status):
    monkeypatch.setattr(handler.time, "time", lambda: 1_000_000.0)
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status=status))

    result = handler.on_event(update_of(NEW, OLD))

    assert result["PhysicalResourceId"] == "hp-test"
    assert result[handler.DEFERRED_KEY] == {"Until": 1_000_000 + handler.HANDLER_DEADLINE_SECONDS, "Status": status}
    stubs.assert_done()  # one DescribeCluster; no poller, no UpdateCluster, no tagging


def test_deferred_update_waits_while_busy_then_applies_once_in_service(stubs, handle):
    cfn = update_of(NEW, OLD, handle)
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="SystemUpdating"))
    pending = framework_event(cfn, handler.on_event(cfn))

    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="SystemUpdating"))
    assert handler.is_complete(pending) == {"IsComplete": False}

    stubs.sagemaker.add_response("describe_cluster", described(OLD))
    stubs.sagemaker.add_response("list_tags", TAGS)
    started(stubs)
    stubs.sagemaker.add_response(
        "update_cluster",
        {"ClusterArn": ARN},
        expected_params={
            "ClusterName": "hp-test",
            "InstanceGroups": NEW["InstanceGroups"],
            "NodeRecovery": "Automatic",
        },
    )
    assert handler.is_complete(pending) == {"IsComplete": True, "Data": {"ClusterStatus": "InService"}}
    assert handle.requests == []  # the poller (started above) signals the WaitCondition, not the handler
    stubs.assert_done()


def test_rollback_while_hyperpod_rolls_back_the_failed_update_succeeds(stubs, handle):
    """The failed spec (3 nodes) was sent; HyperPod rolls it back while CloudFormation sends the old spec
    back. The rollback waits for InService, then restores the old spec: it must not fail."""
    rollback = update_of(OLD, NEW, handle)  # desired = the old spec, previous = the failed one
    stubs.sagemaker.add_response(
        "describe_cluster", described(OLD, status="RollingBack", failure="InsufficientCapacity", target={"workers": 3})
    )
    pending = framework_event(rollback, handler.on_event(rollback))
    assert pending[handler.DEFERRED_KEY]["Status"] == "RollingBack"

    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="RollingBack", target={"workers": 3}))
    assert handler.is_complete(pending) == {"IsComplete": False}
    stubs.sagemaker.add_response("describe_cluster", described(OLD))
    stubs.sagemaker.add_response("list_tags", TAGS)
    started(stubs)
    stubs.sagemaker.add_response("update_cluster", {"ClusterArn": ARN})
    assert handler.is_complete(pending)["IsComplete"] is True
    stubs.assert_done()


def test_deferred_update_still_busy_at_the_deadline_changes_nothing_and_fails_only_the_wait_condition(
    stubs, handle, monkeypatch
):
    cfn = update_of(NEW, OLD, handle)
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="Updating"))
    pending = framework_event(cfn, handler.on_event(cfn))
    monkeypatch.setattr(handler.time, "time", lambda: pending[handler.DEFERRED_KEY]["Until"] + 1)

    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="Updating"))
    assert handler.is_complete(pending) == {"IsComplete": True, "Data": {"ClusterStatus": "Updating"}}

    (signal,) = handle.bodies()
    assert signal["Status"] == "FAILURE" and signal["UniqueId"] == "hp-test"
    assert signal["Reason"] == (
        f"HyperPod cluster hp-test is still Updating after {handler.HANDLER_DEADLINE_SECONDS // 60} minutes; "
        "UpdateCluster needs it InService. Nothing was changed; deploy again once it is InService"
    )
    stubs.assert_done()  # no UpdateCluster, no poller


def test_update_of_a_failed_cluster_changes_nothing_and_reports_hyperpods_message(stubs, handle):
    cfn = update_of(NEW, OLD, handle)
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="Failed", failure="EFA health check"))
    pending = framework_event(cfn, handler.on_event(cfn))
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="Failed", failure="EFA health check"))

    assert handler.is_complete(pending)["IsComplete"] is True  # at once: a Failed cluster will not recover
    assert handle.bodies()[0]["Reason"].startswith("HyperPod cluster hp-test is Failed (EFA health check);")
    stubs.assert_done()


def test_without_a_wait_condition_the_deadline_fails_an_unapplied_update(stubs, monkeypatch):
    cfn = update_of(NEW, OLD)
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="Updating"))
    pending = framework_event(cfn, handler.on_event(cfn))
    monkeypatch.setattr(handler.time, "time", lambda: pending[handler.DEFERRED_KEY]["Until"] + 1)
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="Updating"))

    with pytest.raises(handler.HandlerError, match="hp-test is still Updating after 45 minutes.*Nothing was changed"):
        handler.is_complete(pending)


def test_without_a_wait_condition_a_rollback_the_cluster_already_matches_succeeds_at_the_deadline(stubs, monkeypatch):
    rollback = update_of(OLD, NEW)
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="SystemUpdating"))
    pending = framework_event(rollback, handler.on_event(rollback))
    monkeypatch.setattr(handler.time, "time", lambda: pending[handler.DEFERRED_KEY]["Until"] + 1)
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="SystemUpdating"))

    assert handler.is_complete(pending) == {"IsComplete": True, "Data": {"ClusterStatus": "SystemUpdating"}}


def test_poller_deadline_during_an_update_then_the_rollback_succeeds(stubs, handle, monkeypatch):
    """The update was sent; HyperPod is still Updating at the WaitCondition's deadline, so the poller fails
    the wait; CloudFormation's rollback then meets the same busy cluster and must complete."""
    updating = described(NEW, status="Updating", current={"workers": 2})
    stubs.sagemaker.add_response("describe_cluster", updating)
    outcome = poller.handle(
        {
            "ClusterName": "hp-test",
            "WaitHandleUrl": handle.url,
            "UniqueId": "hp-test",
            "Operation": "Update",
            "DeadlineEpoch": 0,
            "TargetCounts": {"workers": 3},
        }
    )
    assert outcome["Outcome"] == "FAILURE" and "last state: Updating; nodes workers 2/3" in outcome["Reason"]

    rollback = update_of(OLD, NEW, handle)
    stubs.sagemaker.add_response("describe_cluster", updating)
    pending = framework_event(rollback, handler.on_event(rollback))
    stubs.sagemaker.add_response("describe_cluster", updating)
    assert handler.is_complete(pending) == {"IsComplete": False}

    monkeypatch.setattr(handler.time, "time", lambda: pending[handler.DEFERRED_KEY]["Until"] + 1)
    stubs.sagemaker.add_response("describe_cluster", updating)
    assert handler.is_complete(pending)["IsComplete"] is True  # UPDATE_ROLLBACK_COMPLETE, not _FAILED
    stubs.assert_done()  # and nothing was sent to HyperPod while it was busy


def test_a_refused_change_found_when_the_deferred_update_applies_still_fails_with_the_refusal(stubs):
    wider = cluster_request(groups=[group(instance_type="ml.g5.12xlarge")])
    cfn = update_of(NEW, OLD)
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="Updating"))
    pending = framework_event(cfn, handler.on_event(cfn))
    stubs.sagemaker.add_response("describe_cluster", described(wider))  # changed outside CloudFormation meanwhile
    with pytest.raises(handler.HandlerError, match="cannot be changed in place: instance group workers: InstanceType"):
        handler.is_complete(pending)


# --- delete: the handler's deadline comes before the Provider's and CloudFormation's -----------------


def test_delete_still_running_at_the_handler_deadline_fails_with_one_line(stubs, monkeypatch):
    stubs.sagemaker.add_response("delete_cluster", {"ClusterArn": ARN})
    cfn = event("Delete", properties(), physical_id="hp-test")
    pending = framework_event(cfn, handler.on_event(cfn))
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="Deleting"))
    assert handler.is_complete(pending) == {"IsComplete": False}

    monkeypatch.setattr(handler.time, "time", lambda: pending[handler.DELETE_DEADLINE_KEY])
    stubs.sagemaker.add_response("describe_cluster", described(OLD, status="Deleting"))
    with pytest.raises(handler.HandlerError) as failure:
        handler.is_complete(pending)
    assert str(failure.value) == (
        "HyperPod cluster hp-test was still being deleted after 45 minutes; CloudFormation stops waiting here. "
        "Delete the stack again once DescribeCluster reports it gone (the deletion goes on)"
    )
    stubs.assert_done()


# --- clusters tagged by earlier versions -----------------------------------------------------------


def with_legacy(props: dict) -> dict:
    return {**props, "LegacyOwnerTagValues": [LEGACY]}


def test_create_adopts_a_cluster_an_earlier_version_tagged_and_the_next_update_retags_it(stubs, handle):
    props = with_legacy(properties(handle=handle.url))
    legacy_tags = {"Tags": [{"Key": OWNER_KEY, "Value": LEGACY}, {"Key": "project", "Value": "hp"}]}
    stubs.sagemaker.add_response("describe_cluster", described(OLD))
    stubs.sagemaker.add_response("list_tags", legacy_tags)
    started(stubs)

    adopted = handler.on_event(event("Create", props))
    assert adopted["Data"] == {"ClusterArn": ARN, "ClusterName": "hp-test"}  # no CreateCluster was stubbed

    stubs.sagemaker.add_response("describe_cluster", described(OLD))
    stubs.sagemaker.add_response("list_tags", legacy_tags)
    started(stubs)
    stubs.sagemaker.add_response(
        "add_tags", {"Tags": []}, expected_params={"ResourceArn": ARN, "Tags": [{"Key": OWNER_KEY, "Value": OWNER}]}
    )
    handler.on_event(event("Update", props, physical_id="hp-test", old=props))
    stubs.assert_done()


def test_a_cluster_with_an_owner_value_neither_current_nor_legacy_is_not_adopted(stubs):
    stubs.sagemaker.add_response("describe_cluster", described(OLD))
    stubs.sagemaker.add_response("list_tags", {"Tags": [{"Key": OWNER_KEY, "Value": "other-stack/Cluster"}]})
    with pytest.raises(handler.HandlerError, match="was not created by this stack"):
        handler.on_event(event("Create", with_legacy(properties())))


def test_legacy_owner_values_must_be_a_list_of_strings(stubs):
    with pytest.raises(handler.HandlerError, match="LegacyOwnerTagValues = 'x' must be a list"):
        handler.on_event(event("Create", {**properties(), "LegacyOwnerTagValues": "x"}))
    stubs.assert_done()  # refused before any call
