"""The WaitCondition poller: one check per call, and the exact signal CloudFormation receives.

The handle is a loopback HTTP server standing in for the presigned S3 URL; the tests assert the PUT body
CloudFormation documents (Status/Reason/UniqueId/Data) and that no content type is sent.
"""

from __future__ import annotations

import json
import time

import pytest

from constructs.hyperpod_cluster.runtime import poller, wait_handle
from tests.hyperpod_cluster.conftest import HandleServer, cluster_request, described, group, nodes

REQUEST = cluster_request(groups=[group(), group("cpu", instance_type="ml.m5.xlarge", count=1)])
TARGETS = {"workers": 2, "cpu": 1}


def task(handle_url: str, **extra) -> dict:
    return {
        "ClusterName": "hp-test",
        "WaitHandleUrl": handle_url,
        "UniqueId": "hp-test",
        "Operation": "Create",
        "DeadlineEpoch": time.time() + 3600,
        "TargetCounts": TARGETS,
        **extra,
    }


def test_creating_cluster_means_wait_and_no_signal(stubs, handle):
    stubs.sagemaker.add_response(
        "describe_cluster",
        described(REQUEST, status="Creating", current={"workers": 0, "cpu": 0}),
        expected_params={"ClusterName": "hp-test"},
    )
    result = poller.handle(task(handle.url))
    assert result == {
        "Outcome": "WAIT",
        "Status": "Creating",
        "Reason": "Creating; nodes cpu 0/1, workers 0/2",
        "RolledBack": False,
    }
    assert handle.requests == []
    stubs.assert_done()


def test_in_service_with_all_nodes_running_signals_success(stubs, handle):
    stubs.sagemaker.add_response("describe_cluster", described(REQUEST))
    stubs.sagemaker.add_response(
        "list_cluster_nodes", nodes(TARGETS), expected_params={"ClusterName": "hp-test", "MaxResults": 100}
    )

    result = poller.handle(task(handle.url))

    assert result["Outcome"] == "SUCCESS"
    (put,) = handle.requests
    assert put["path"] == "/waitcondition/abc?Expires=1&Signature=x"
    assert put["headers"].get("Content-Type", "") == ""
    body = json.loads(put["body"])
    assert body == {
        "Status": "SUCCESS",
        "Reason": "HyperPod cluster hp-test is InService with every node Running: cpu 1/1, workers 2/2",
        "UniqueId": "hp-test",
        "Data": json.dumps(
            {
                "ClusterName": "hp-test",
                "Status": "InService",
                "ClusterArn": "arn:aws:sagemaker:us-east-1:123456789012:cluster/abc123def456",
                "Running": {"cpu": 1, "workers": 2},
            }
        ),
    }
    stubs.assert_done()


def test_in_service_before_nodes_run_keeps_waiting(stubs, handle):
    """NodeProvisioningMode=Continuous: InService and counts reached, but a node is still Pending."""
    stubs.sagemaker.add_response("describe_cluster", described(REQUEST))
    stubs.sagemaker.add_response(
        "list_cluster_nodes",
        {
            "ClusterNodeSummaries": nodes({"workers": 1, "cpu": 1})["ClusterNodeSummaries"]
            + nodes({"workers": 1}, status="Pending")["ClusterNodeSummaries"]
        },
    )
    result = poller.handle(task(handle.url))
    assert (
        result["Outcome"] == "WAIT" and result["Reason"] == "InService; nodes not all Running yet: workers 1/2 Running"
    )
    assert handle.requests == []


def test_in_service_below_target_waits_without_listing_nodes(stubs, handle):
    stubs.sagemaker.add_response("describe_cluster", described(REQUEST, current={"workers": 1}))
    result = poller.handle(task(handle.url))
    assert result["Outcome"] == "WAIT"
    stubs.assert_done()  # no ListClusterNodes was scripted, so none was made


def test_failed_cluster_signals_failure_with_hyperpod_message(stubs, handle):
    stubs.sagemaker.add_response(
        "describe_cluster",
        described(REQUEST, status="Failed", failure="Insufficient capacity for ml.g5.8xlarge in us-east-1a"),
    )
    result = poller.handle(task(handle.url))
    assert result["Outcome"] == "FAILURE"
    (body,) = handle.bodies()
    assert body["Status"] == "FAILURE"
    assert body["Reason"] == "HyperPod cluster hp-test failed: Insufficient capacity for ml.g5.8xlarge in us-east-1a"
    assert body["UniqueId"] == "hp-test"
    assert json.loads(body["Data"])["Status"] == "Failed"


def test_failed_instance_group_signals_failure_with_node_messages(stubs, handle):
    response = described(REQUEST, current={"workers": 0})
    response["InstanceGroups"][0]["Status"] = "Failed"
    stubs.sagemaker.add_response("describe_cluster", response)
    stubs.sagemaker.add_response(
        "list_cluster_nodes", nodes({"workers": 1}, status="Failure", message="EFA health check failed")
    )
    poller.handle(task(handle.url))
    (body,) = handle.bodies()
    assert body["Status"] == "FAILURE"
    assert body["Reason"] == (
        "HyperPod cluster hp-test: instance group(s) workers failed; workers/i-workers-0: EFA health check failed"
    )


def test_rolled_back_update_is_reported_once_the_cluster_settles(stubs, handle):
    stubs.sagemaker.add_response("describe_cluster", described(REQUEST, status="RollingBack", target={"workers": 2}))
    first = poller.handle(task(handle.url, Operation="Update", TargetCounts={"workers": 4, "cpu": 1}))
    assert first["Outcome"] == "WAIT" and first["RolledBack"] is True

    stubs.sagemaker.add_response("describe_cluster", described(REQUEST))  # back to InService at the old counts
    second = poller.handle(task(handle.url, Operation="Update", TargetCounts={"workers": 4, "cpu": 1}, Check=first))
    assert second["Outcome"] == "FAILURE"
    (body,) = handle.bodies()
    assert body["Reason"].startswith("HyperPod cluster hp-test rolled back the update")


def test_new_targets_not_yet_taken_are_waited_for(stubs, handle):
    stubs.sagemaker.add_response("describe_cluster", described(REQUEST))
    result = poller.handle(task(handle.url, Operation="Update", TargetCounts={"workers": 4, "cpu": 1}))
    assert result["Outcome"] == "WAIT" and "waiting for HyperPod to take the new targets of workers" in result["Reason"]


def test_removed_group_still_present_is_waited_for(stubs, handle):
    stubs.sagemaker.add_response("describe_cluster", described(REQUEST))
    result = poller.handle(task(handle.url, Operation="Update", TargetCounts={"workers": 2}))
    assert result["Outcome"] == "WAIT" and "new targets of cpu" in result["Reason"]


def test_deadline_reached_signals_failure_with_the_last_status(stubs, handle):
    stubs.sagemaker.add_response(
        "describe_cluster", described(REQUEST, status="Creating", current={"workers": 1, "cpu": 0})
    )
    poller.handle(task(handle.url, DeadlineEpoch=time.time() - 1))
    (body,) = handle.bodies()
    assert body["Status"] == "FAILURE"
    assert body["Reason"] == (
        "HyperPod cluster hp-test was not ready before the deployment's wait limit "
        "(hyperpod.creation_timeout_hours); last state: Creating; nodes cpu 0/1, workers 1/2"
    )


def test_cluster_deleted_while_waiting_signals_failure(stubs, handle):
    stubs.sagemaker.add_client_error(
        "describe_cluster", service_error_code="ResourceNotFound", service_message="not found"
    )
    poller.handle(task(handle.url))
    assert (
        handle.bodies()[0]["Reason"]
        == "HyperPod cluster hp-test no longer exists (deleted while CloudFormation waited)"
    )


def test_throttled_check_waits_for_the_next_interval(stubs, handle):
    stubs.sagemaker.add_client_error(
        "describe_cluster", service_error_code="ThrottlingException", service_message="Rate exceeded"
    )
    result = poller.handle(task(handle.url, Check={"Status": "Creating"}))
    assert result["Outcome"] == "WAIT" and result["Status"] == "Creating"
    assert handle.requests == []


def timed_out(handle_url: str, **extra) -> dict:
    """The state after CheckCluster's Catch: the Lambda error under $.Error, the last check under $.Check."""
    return task(
        handle_url,
        Check={"Outcome": "WAIT", "Status": "Creating", "Reason": "Creating; nodes", "RolledBack": True},
        Error={"Error": "States.Timeout", "Cause": json.dumps({"errorMessage": "Task timed out after 45.00 seconds"})},
        **extra,
    )


def test_a_failed_check_before_the_deadline_means_wait_and_no_signal(handle):
    state = timed_out(handle.url)
    result = poller.handle(state)

    assert "Error" not in result  # the next CheckCluster must see a normal state, not this error again
    assert {k: v for k, v in result.items() if k != "Check"} == {
        k: v for k, v in state.items() if k not in ("Check", "Error")
    }
    assert result["Check"] == {
        "Outcome": "WAIT",
        "Status": "Creating",
        "RolledBack": True,
        "Errors": 1,
        "Reason": "checking HyperPod cluster hp-test failed (1 in a row), will look again: "
        "States.Timeout: Task timed out after 45.00 seconds",
    }
    assert handle.requests == []
    # A second failure in a row counts on from the carried check.
    assert poller.handle({**result, "Error": timed_out(handle.url)["Error"]})["Check"]["Errors"] == 2


def test_failed_checks_until_the_deadline_signal_failure_with_the_last_error(handle):
    state = timed_out(handle.url, DeadlineEpoch=time.time() - 1)
    state["Check"]["Errors"] = 7

    result = poller.handle(state)

    assert result["Check"]["Outcome"] == "FAILURE"
    (body,) = handle.bodies()
    assert body["Status"] == "FAILURE"
    assert body["Reason"] == (
        "HyperPod cluster hp-test was not confirmed ready before the deployment's wait limit "
        "(hyperpod.creation_timeout_hours); the last 8 check(s) failed: States.Timeout: Task timed out after 45.00 seconds"
    )


@pytest.mark.parametrize("code", ["AccessDeniedException", "InternalFailure", "ValidationException"])
def test_describe_errors_other_than_not_found_mean_wait(stubs, handle, code):
    stubs.sagemaker.add_client_error("describe_cluster", service_error_code=code, service_message="slow day")
    result = poller.handle(task(handle.url, Check={"Status": "Creating"}))
    assert (result["Outcome"], result["Status"]) == ("WAIT", "Creating") and code in result["Reason"]
    assert handle.requests == []


def test_list_nodes_error_at_the_end_means_wait(stubs, handle):
    stubs.sagemaker.add_response("describe_cluster", described(REQUEST))
    stubs.sagemaker.add_client_error(
        "list_cluster_nodes", service_error_code="ThrottlingException", http_status_code=400
    )
    result = poller.handle(task(handle.url))
    assert result["Outcome"] == "WAIT" and "ListClusterNodes not answered yet" in result["Reason"]
    assert handle.requests == []


def test_handle_refusing_the_signal_raises_for_step_functions_to_retry(stubs):
    server = HandleServer(status=403)
    try:
        stubs.sagemaker.add_response("describe_cluster", described(REQUEST, status="Failed", failure="boom"))
        with pytest.raises(wait_handle.SignalError, match="WaitConditionHandle answered HTTP 403"):
            poller.handle(task(server.url))
    finally:
        server.close()


def test_long_reasons_are_cut_to_fit_cloudformation(handle):
    body = wait_handle.send(handle.url, success=False, reason="x" * 5000, unique_id="u", data="{}")
    assert len(body["Reason"]) == wait_handle.MAX_REASON and body["Reason"].endswith("...")
    assert handle.bodies()[0] == body
