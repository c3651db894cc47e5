"""Handler paths moto cannot play: UpdateCluster, status sequences, service errors, refusals, validation.

Stubber validates every request against botocore's SageMaker model and fails on any call that was not
scripted, so "nothing else was called" is asserted by ``assert_done`` plus the absence of stray calls.
"""

from __future__ import annotations

import json

import pytest

from constructs.hyperpod_cluster.runtime import handler
from tests.hyperpod_cluster.conftest import (
    EKS_ARN,
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


def not_found(stubs, operation="describe_cluster"):
    stubs.sagemaker.add_client_error(
        operation,
        service_error_code="ResourceNotFound",
        service_message="Cluster hp-test not found",
        http_status_code=400,
    )


# --- Create ---------------------------------------------------------------------------------------


def test_create_starts_the_poller_before_create_cluster_and_sends_the_request_unchanged(stubs, handle):
    request = cluster_request()
    props = properties(request, handle=handle.url, timeout=7200)
    not_found(stubs)
    stubs.sfn.add_response(
        "start_execution", {"executionArn": f"{STATE_MACHINE}:x", "startDate": "2026-01-01T00:00:00Z"}
    )
    stubs.sagemaker.add_response("create_cluster", {"ClusterArn": ARN}, expected_params=request)

    result = handler.on_event(event("Create", props))

    assert result == {"PhysicalResourceId": "hp-test", "Data": {"ClusterArn": ARN, "ClusterName": "hp-test"}}
    stubs.assert_done()
    # CreateCluster last: a poller that failed to start must leave no cluster behind.
    assert stubs.calls == ["sagemaker.DescribeCluster", "stepfunctions.StartExecution", "sagemaker.CreateCluster"]


def test_a_poller_that_cannot_start_leaves_no_cluster(stubs, handle):
    props = properties(cluster_request(), handle=handle.url, timeout=7200)
    not_found(stubs)
    stubs.sfn.add_client_error("start_execution", service_error_code="AccessDeniedException", http_status_code=400)

    with pytest.raises(Exception, match="AccessDenied"):
        handler.on_event(event("Create", props))
    stubs.assert_done()
    assert "sagemaker.CreateCluster" not in stubs.calls


def test_poller_input_names_the_handle_targets_and_deadline(stubs, handle, monkeypatch):
    monkeypatch.setattr(handler.time, "time", lambda: 1_000_000.0)
    props = properties(
        cluster_request(groups=[group(), group("cpu", instance_type="ml.m5.xlarge", count=1)]),
        handle=handle.url,
        timeout=7200,
    )
    not_found(stubs)
    stubs.sfn.add_response(
        "start_execution",
        {"executionArn": f"{STATE_MACHINE}:x", "startDate": "2026-01-01T00:00:00Z"},
        expected_params={
            "stateMachineArn": STATE_MACHINE,
            "name": "hp-test-" + __import__("hashlib").sha256(b"req-create-1").hexdigest()[:16],
            "input": json.dumps(
                {
                    "ClusterName": "hp-test",
                    "WaitHandleUrl": handle.url,
                    "UniqueId": "hp-test",
                    "Operation": "Create",
                    "DeadlineEpoch": 1_000_000 + 7200 - handler.DEADLINE_MARGIN_SECONDS,
                    "TargetCounts": {"workers": 2, "cpu": 1},
                }
            ),
        },
    )
    stubs.sagemaker.add_response("create_cluster", {"ClusterArn": ARN})

    handler.on_event(event("Create", props))
    stubs.assert_done()


def test_create_failure_from_sagemaker_is_one_line_with_the_operation(stubs):
    not_found(stubs)
    stubs.sagemaker.add_client_error(
        "create_cluster",
        service_error_code="ResourceLimitExceeded",
        service_message="account-level service limit 'ml.p5.48xlarge for cluster usage' is 0",
    )
    with pytest.raises(handler.HandlerError) as failure:
        handler.on_event(event("Create", properties()))
    assert str(failure.value) == (
        "CreateCluster failed for HyperPod cluster hp-test: ResourceLimitExceeded: "
        "account-level service limit 'ml.p5.48xlarge for cluster usage' is 0"
    )


def test_is_complete_after_create_fails_at_once_with_the_failure_message(stubs):
    stubs.sagemaker.add_response(
        "describe_cluster",
        described(cluster_request(), status="Failed", failure="Lifecycle scripts did not run successfully"),
    )
    with pytest.raises(
        handler.HandlerError, match="HyperPod cluster hp-test failed: Lifecycle scripts did not run successfully"
    ):
        handler.is_complete(event("Create", properties(), physical_id="hp-test"))


def test_is_complete_after_create_accepts_a_creating_cluster(stubs):
    stubs.sagemaker.add_response(
        "describe_cluster", described(cluster_request(), status="Creating", current={"workers": 0})
    )
    assert handler.is_complete(event("Create", properties(), physical_id="hp-test")) == {
        "IsComplete": True,
        "Data": {"ClusterStatus": "Creating"},
    }


# --- Validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda r: r["InstanceGroups"][0].update(InstanceCount="two"),
            r"invalid CreateCluster request: Invalid type for parameter InstanceGroups\[0\]\.InstanceCount",
        ),
        (lambda r: r.pop("VpcConfig"), "VpcConfig is required"),
        (lambda r: r["InstanceGroups"].append(group()), "InstanceGroupName repeated: workers"),
        (lambda r: r["InstanceGroups"][0].pop("ThreadsPerCore"), "instance group workers has no ThreadsPerCore"),
        (lambda r: r.update(ClusterName="bad_name"), r"ClusterRequest\.ClusterName = 'bad_name' does not match"),
        (
            lambda r: r["InstanceGroups"][0]["KubernetesConfig"]["Labels"].update(
                {"skypilot.co/accelerator": "X" * 64}
            ),
            r"Labels\['skypilot.co/accelerator'\] = 'XXXX.*is longer than 63 characters",
        ),
        (
            lambda r: r["InstanceGroups"][0].update(InstanceType="ml.p99.huge"),
            r"InstanceGroups\[0\]\.InstanceType = 'ml.p99.huge' is not one of the \d+ values SageMaker accepts",
        ),
    ],
)
def test_invalid_requests_fail_before_any_api_call(stubs, mutate, message):
    request = cluster_request()
    mutate(request)
    with pytest.raises(handler.HandlerError, match=message):
        handler.on_event(event("Create", properties(request)))
    stubs.assert_done()  # nothing was scripted, and nothing was called


def test_properties_without_owner_tag_or_json_are_refused(stubs):
    props = properties()
    props["OwnerTagKey"] = "missing"
    with pytest.raises(handler.HandlerError, match="OwnerTagKey = 'missing' must name one of the request's Tags"):
        handler.on_event(event("Create", props))
    props = properties()
    props["ClusterRequest"] = "{not json"
    with pytest.raises(handler.HandlerError, match="ClusterRequest is not valid JSON"):
        handler.on_event(event("Create", props))


def test_wait_timeout_outside_waitcondition_limits_is_refused(stubs, handle):
    with pytest.raises(handler.HandlerError, match="WaitTimeoutSeconds = 50000 must be 60..43200"):
        handler.on_event(event("Create", properties(handle=handle.url, timeout=50000)))


# --- Update ---------------------------------------------------------------------------------------


def test_update_sends_the_full_group_list_and_deletes_removed_groups(stubs, handle):
    old = cluster_request(groups=[group(), group("old-cpu", instance_type="ml.m5.xlarge", count=1)])
    new = cluster_request(
        groups=[
            group(count=4, OnStartDeepHealthChecks=["InstanceStress"]),
            group("extra", instance_type="ml.g5.12xlarge", count=1),
        ],
        NodeRecovery="None",
    )
    stubs.sagemaker.add_response("describe_cluster", described(old))
    stubs.sagemaker.add_response("list_tags", TAGS, expected_params={"ResourceArn": ARN})
    stubs.sfn.add_response(
        "start_execution", {"executionArn": f"{STATE_MACHINE}:u", "startDate": "2026-01-01T00:00:00Z"}
    )
    stubs.sagemaker.add_response(
        "update_cluster",
        {"ClusterArn": ARN},
        expected_params={
            "ClusterName": "hp-test",
            "InstanceGroups": new["InstanceGroups"],
            "InstanceGroupsToDelete": ["old-cpu"],
            "NodeRecovery": "None",
        },
    )

    result = handler.on_event(
        event(
            "Update", properties(new, handle=handle.url), physical_id="hp-test", old=properties(old, handle=handle.url)
        )
    )

    assert result["PhysicalResourceId"] == "hp-test"
    stubs.assert_done()


def test_update_of_labels_only_calls_update_cluster(stubs):
    old = cluster_request()
    new = cluster_request(
        groups=[group(KubernetesConfig={"Labels": {"skypilot.co/accelerator": "a10g", "team": "ml"}})]
    )
    stubs.sagemaker.add_response("describe_cluster", described(old))
    stubs.sagemaker.add_response("list_tags", TAGS)
    stubs.sagemaker.add_response(
        "update_cluster",
        {"ClusterArn": ARN},
        expected_params={
            "ClusterName": "hp-test",
            "InstanceGroups": new["InstanceGroups"],
            "NodeRecovery": "Automatic",
        },
    )
    handler.on_event(event("Update", properties(new), physical_id="hp-test", old=properties(old)))
    stubs.assert_done()


def test_update_of_tags_only_retags_without_update_cluster(stubs):
    old = cluster_request()
    new = cluster_request(Tags=[{"Key": OWNER_KEY, "Value": OWNER}, {"Key": "cost-center", "Value": "42"}])
    stubs.sagemaker.add_response("describe_cluster", described(old))
    stubs.sagemaker.add_response(
        "list_tags", {"Tags": TAGS["Tags"] + [{"Key": "aws:cloudformation:stack-name", "Value": "s"}]}
    )
    stubs.sagemaker.add_response(
        "add_tags",
        {"Tags": []},
        expected_params={
            "ResourceArn": ARN,
            "Tags": [{"Key": "cost-center", "Value": "42"}],
        },
    )
    stubs.sagemaker.add_response("delete_tags", {}, expected_params={"ResourceArn": ARN, "TagKeys": ["project"]})
    handler.on_event(event("Update", properties(new), physical_id="hp-test", old=properties(old)))
    stubs.assert_done()


@pytest.mark.parametrize(
    "change, field",
    [
        (
            dict(groups=[group(instance_type="ml.g5.12xlarge")]),
            "instance group workers: InstanceType ml.g5.8xlarge -> ml.g5.12xlarge",
        ),
        (
            dict(groups=[group(ExecutionRole="arn:aws:iam::123456789012:role/other")]),
            "instance group workers: ExecutionRole",
        ),
        (dict(groups=[group(ThreadsPerCore=2)]), "instance group workers: ThreadsPerCore 1 -> 2"),
        (
            dict(groups=[group(InstanceStorageConfigs=[{"EbsVolumeConfig": {"VolumeSizeInGB": 1000}}])]),
            "instance group workers: InstanceStorageConfigs",
        ),
        (
            dict(VpcConfig={"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0fedcba9876543210"]}),
            "VpcConfig.Subnets",
        ),
        (dict(Orchestrator={"Eks": {"ClusterArn": EKS_ARN + "-2"}}), "Orchestrator.Eks.ClusterArn"),
    ],
)
def test_changes_hyperpod_cannot_apply_in_place_are_refused_before_any_change(stubs, change, field):
    old = cluster_request()
    new = cluster_request(**change)
    stubs.sagemaker.add_response("describe_cluster", described(old))

    with pytest.raises(handler.HandlerError) as refused:
        handler.on_event(event("Update", properties(new), physical_id="hp-test", old=properties(old)))

    message = str(refused.value)
    assert field in message
    assert "Nothing was changed" in message and "change hyperpod.cluster_name to replace the cluster" in message
    stubs.assert_done()  # only the read; no StartExecution, UpdateCluster or tagging


def test_rollback_to_the_previous_spec_is_not_refused_and_changes_nothing(stubs):
    """After a refused update CloudFormation sends the old spec back; the live cluster already matches it,
    so the handler neither refuses nor calls UpdateCluster."""
    live = cluster_request()
    refused = cluster_request(groups=[group(instance_type="ml.g5.12xlarge")])
    stubs.sagemaker.add_response("describe_cluster", described(live))
    stubs.sagemaker.add_response("list_tags", TAGS)
    handler.on_event(event("Update", properties(live), physical_id="hp-test", old=properties(refused)))
    stubs.assert_done()


def test_a_root_volume_reported_by_hyperpod_is_not_a_storage_change(stubs):
    request = cluster_request(groups=[group(count=3)])
    live = described(cluster_request())
    live["InstanceGroups"][0]["InstanceStorageConfigs"].append(
        {"EbsVolumeConfig": {"VolumeSizeInGB": 100, "RootVolume": True}}
    )
    stubs.sagemaker.add_response("describe_cluster", live)
    stubs.sagemaker.add_response("list_tags", TAGS)
    stubs.sagemaker.add_response("update_cluster", {"ClusterArn": ARN})
    handler.on_event(event("Update", properties(request), physical_id="hp-test", old=properties(cluster_request())))
    stubs.assert_done()


def test_update_conflict_from_sagemaker_reaches_cloudformation_as_one_line(stubs):
    old = cluster_request()
    new = cluster_request(groups=[group(count=3)])
    stubs.sagemaker.add_response("describe_cluster", described(old))
    stubs.sagemaker.add_response("list_tags", TAGS)
    stubs.sagemaker.add_client_error(
        "update_cluster", service_error_code="ConflictException", service_message="Cluster is in Updating state"
    )
    with pytest.raises(handler.HandlerError) as failure:
        handler.on_event(event("Update", properties(new), physical_id="hp-test", old=properties(old)))
    assert (
        str(failure.value)
        == "UpdateCluster failed for HyperPod cluster hp-test: ConflictException: Cluster is in Updating state"
    )


# --- Delete ---------------------------------------------------------------------------------------


def test_delete_of_a_creating_cluster_waits_through_deleting_until_gone(stubs):
    stubs.sagemaker.add_response("delete_cluster", {"ClusterArn": ARN}, expected_params={"ClusterName": "hp-test"})
    handler.on_event(event("Delete", properties(), physical_id="hp-test"))

    stubs.sagemaker.add_response("describe_cluster", described(cluster_request(), status="Deleting"))
    assert handler.is_complete(event("Delete", properties(), physical_id="hp-test")) == {"IsComplete": False}
    not_found(stubs)
    assert handler.is_complete(event("Delete", properties(), physical_id="hp-test")) == {"IsComplete": True}
    stubs.assert_done()


def test_delete_refused_while_busy_is_asked_again_until_accepted(stubs):
    stubs.sagemaker.add_client_error(
        "delete_cluster", service_error_code="ConflictException", service_message="Cluster is being created"
    )
    handler.on_event(event("Delete", properties(), physical_id="hp-test"))

    stubs.sagemaker.add_response("describe_cluster", described(cluster_request(), status="Creating"))
    stubs.sagemaker.add_response("delete_cluster", {"ClusterArn": ARN})
    assert handler.is_complete(event("Delete", properties(), physical_id="hp-test")) == {"IsComplete": False}
    stubs.assert_done()


def test_delete_of_a_missing_cluster_is_success(stubs):
    not_found(stubs, "delete_cluster")
    assert set(handler.on_event(event("Delete", properties(), physical_id="hp-test"))) == {handler.DELETE_DEADLINE_KEY}
    not_found(stubs)
    assert handler.is_complete(event("Delete", properties(), physical_id="hp-test")) == {"IsComplete": True}
    stubs.assert_done()


def test_delete_denied_reaches_cloudformation_as_one_line(stubs):
    stubs.sagemaker.add_client_error(
        "delete_cluster",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform: sagemaker:DeleteCluster",
        http_status_code=403,
    )
    with pytest.raises(
        handler.HandlerError,
        match=r"^DeleteCluster failed for HyperPod cluster hp-test: AccessDeniedException: not authorized",
    ):
        handler.on_event(event("Delete", properties(), physical_id="hp-test"))


def test_throttling_in_is_complete_means_not_complete_yet(stubs):
    stubs.sagemaker.add_client_error(
        "describe_cluster",
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
        http_status_code=400,
    )
    assert handler.is_complete(event("Delete", properties(), physical_id="hp-test")) == {"IsComplete": False}
    stubs.sagemaker.add_client_error(
        "describe_cluster", service_error_code="InternalFailure", service_message="try again", http_status_code=500
    )
    assert handler.is_complete(event("Create", properties(), physical_id="hp-test")) == {"IsComplete": False}


def test_other_errors_in_is_complete_fail_at_once(stubs):
    stubs.sagemaker.add_client_error(
        "describe_cluster", service_error_code="AccessDeniedException", service_message="denied", http_status_code=403
    )
    with pytest.raises(
        handler.HandlerError, match="DescribeCluster failed for HyperPod cluster hp-test: AccessDeniedException: denied"
    ):
        handler.is_complete(event("Delete", properties(), physical_id="hp-test"))
