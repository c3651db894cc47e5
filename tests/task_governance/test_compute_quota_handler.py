"""The compute-quota custom resource through its whole life: create, update, replacement, delete,
delete-missing, SageMaker's asynchronous statuses, validation errors and adoption of a retried Create.

Stubber validates every request against botocore's SageMaker model and fails on any call that was not
scripted, so "nothing else was called" is what ``assert_done`` plus the absence of stray calls proves.
moto 5.2 has no compute quotas, hence Stubber here and a throttling loopback endpoint in test_retries.
"""

from __future__ import annotations

import json

import pytest

from constructs.task_governance.runtime import handler
from tests.task_governance.conftest import (
    OWNER,
    OWNER_KEY,
    QUOTA_ARN,
    QUOTA_ID,
    described,
    event,
    properties,
    quota_request,
    summary,
)

TAGS = {"Tags": [{"Key": OWNER_KEY, "Value": OWNER}, {"Key": "project", "Value": "hp"}]}


def nothing_listed(stubs, request):
    stubs.sagemaker.add_response(
        "list_compute_quotas",
        {"ComputeQuotaSummaries": []},
        expected_params={"ClusterArn": request["ClusterArn"], "NameContains": request["Name"]},
    )


# --- Create ---------------------------------------------------------------------------------------


def test_create_sends_the_request_unchanged_and_returns_the_quota_id(stubs):
    request = quota_request()
    nothing_listed(stubs, request)
    stubs.sagemaker.add_response(
        "create_compute_quota", {"ComputeQuotaArn": QUOTA_ARN, "ComputeQuotaId": QUOTA_ID}, expected_params=request
    )

    result = handler.on_event(event("Create", properties(request)))

    assert result["PhysicalResourceId"] == QUOTA_ID
    assert result["Data"]["ComputeQuotaArn"] == QUOTA_ARN
    stubs.assert_done()


def test_create_waits_through_creating_until_created(stubs):
    request = quota_request()
    stubs.sagemaker.add_response("describe_compute_quota", described(request, status="Creating"))
    stubs.sagemaker.add_response("describe_compute_quota", described(request, status="Created"))
    evt = event("Create", properties(request), physical_id=QUOTA_ID, Data={"ComputeQuotaVersion": "0"})

    assert handler.is_complete(evt) == {"IsComplete": False}
    assert handler.is_complete(evt) == {"IsComplete": True, "Data": {"Status": "Created"}}
    stubs.assert_done()


def test_create_failed_reports_sagemakers_failure_reason_in_one_line(stubs):
    request = quota_request()
    stubs.sagemaker.add_response(
        "describe_compute_quota",
        described(request, status="CreateFailed", failure="Quota exceeds the cluster's available\ncapacity"),
    )
    with pytest.raises(handler.HandlerError) as err:
        handler.is_complete(event("Create", properties(request), physical_id=QUOTA_ID))
    assert str(err.value).startswith("compute quota hyperpod-sky-research (team research) is CreateFailed: Quota")


def test_a_validation_error_from_sagemaker_names_the_quota_team_and_operation(stubs):
    request = quota_request()
    nothing_listed(stubs, request)
    stubs.sagemaker.add_client_error(
        "create_compute_quota",
        service_error_code="ValidationException",
        service_message="Instance type ml.p5.48xlarge is not present in cluster",
        http_status_code=400,
    )
    with pytest.raises(handler.HandlerError) as err:
        handler.on_event(event("Create", properties(request)))
    assert str(err.value) == (
        "CreateComputeQuota failed for compute quota hyperpod-sky-research (team research): "
        "ValidationException: Instance type ml.p5.48xlarge is not present in cluster"
    )


def test_a_request_the_api_model_rejects_fails_before_any_call(stubs):
    bad = quota_request(ComputeQuotaTarget={"TeamName": "research", "FairShareWeight": 1, "Extra": 1})
    with pytest.raises(handler.HandlerError, match=r"request does not match the SageMaker API: .*Extra"):
        handler.on_event(event("Create", properties(bad)))
    stubs.assert_done()  # no call was scripted and none was made


def test_a_retried_create_adopts_the_quota_this_stack_created(stubs):
    request = quota_request(count=2)
    stubs.sagemaker.add_response("list_compute_quotas", {"ComputeQuotaSummaries": [summary(quota_request())]})
    stubs.sagemaker.add_response("list_tags", TAGS, expected_params={"ResourceArn": QUOTA_ARN})
    stubs.sagemaker.add_response("describe_compute_quota", described(quota_request(), version=3))
    stubs.sagemaker.add_response("list_tags", TAGS)
    stubs.sagemaker.add_response(
        "update_compute_quota",
        {"ComputeQuotaArn": QUOTA_ARN, "ComputeQuotaVersion": 4},
        expected_params={
            "ComputeQuotaId": QUOTA_ID,
            "TargetVersion": 3,
            "ComputeQuotaConfig": request["ComputeQuotaConfig"],
            "ComputeQuotaTarget": request["ComputeQuotaTarget"],
            "ActivationState": "Enabled",
            "Description": request["Description"],
        },
    )
    result = handler.on_event(event("Create", properties(request)))
    assert result["PhysicalResourceId"] == QUOTA_ID
    assert result["Data"]["ComputeQuotaVersion"] == "4"
    stubs.assert_done()


def test_create_refuses_a_same_named_quota_another_owner_made(stubs):
    request = quota_request()
    stubs.sagemaker.add_response("list_compute_quotas", {"ComputeQuotaSummaries": [summary(request)]})
    stubs.sagemaker.add_response("list_tags", {"Tags": [{"Key": OWNER_KEY, "Value": "someone-else/123"}]})
    with pytest.raises(handler.HandlerError) as err:
        handler.on_event(event("Create", properties(request)))
    assert "already exists on the cluster (status Created) and was not created by this stack" in str(err.value)
    assert f"--compute-quota-id {QUOTA_ID}" in str(err.value)
    stubs.assert_done()


def test_create_ignores_deleted_quotas_of_the_same_name(stubs):
    request = quota_request()
    stubs.sagemaker.add_response(
        "list_compute_quotas",
        {"ComputeQuotaSummaries": [summary(request, status="Deleted", quota_id="old000000000")]},
    )
    stubs.sagemaker.add_response("create_compute_quota", {"ComputeQuotaArn": QUOTA_ARN, "ComputeQuotaId": QUOTA_ID})
    assert handler.on_event(event("Create", properties(request)))["PhysicalResourceId"] == QUOTA_ID
    stubs.assert_done()


# --- Update ---------------------------------------------------------------------------------------


def update_event(new: dict, old: dict, **extra) -> dict:
    return event("Update", properties(new), physical_id=QUOTA_ID, old=properties(old), **extra)


def test_update_sends_the_new_spec_against_the_version_it_read(stubs):
    old, new = quota_request(count=1), quota_request(count=2, strategy="DontLend")
    stubs.sagemaker.add_response("describe_compute_quota", described(old, version=2))
    stubs.sagemaker.add_response("describe_compute_quota", described(old, version=2))
    stubs.sagemaker.add_response("list_tags", TAGS)
    stubs.sagemaker.add_response(
        "update_compute_quota",
        {"ComputeQuotaArn": QUOTA_ARN, "ComputeQuotaVersion": 3},
        expected_params={
            "ComputeQuotaId": QUOTA_ID,
            "TargetVersion": 2,
            "ComputeQuotaConfig": new["ComputeQuotaConfig"],
            "ComputeQuotaTarget": new["ComputeQuotaTarget"],
            "ActivationState": "Enabled",
            "Description": new["Description"],
        },
    )
    result = handler.on_event(update_event(new, old))
    assert result == {
        "PhysicalResourceId": QUOTA_ID,
        "Data": {"ComputeQuotaId": QUOTA_ID, "ComputeQuotaArn": QUOTA_ARN, "ComputeQuotaVersion": "3"},
    }
    stubs.assert_done()


def test_update_completes_only_once_the_new_version_is_settled(stubs):
    new = quota_request(count=2)
    # Right after UpdateComputeQuota the old version may still read Created: not the outcome yet.
    stubs.sagemaker.add_response("describe_compute_quota", described(quota_request(), status="Created", version=2))
    stubs.sagemaker.add_response("describe_compute_quota", described(new, status="Updating", version=3))
    stubs.sagemaker.add_response("describe_compute_quota", described(new, status="Updated", version=3))
    evt = update_event(new, quota_request(), Data={"ComputeQuotaVersion": "3"})
    assert [handler.is_complete(evt)["IsComplete"] for _ in range(3)] == [False, False, True]
    stubs.assert_done()


def test_update_failed_reports_the_reason(stubs):
    new = quota_request(count=2)
    stubs.sagemaker.add_response(
        "describe_compute_quota", described(new, status="UpdateFailed", version=3, failure="Borrow limit invalid")
    )
    with pytest.raises(handler.HandlerError, match="is UpdateFailed: Borrow limit invalid"):
        handler.is_complete(update_event(new, quota_request(), Data={"ComputeQuotaVersion": "3"}))


def test_update_refuses_while_the_quota_is_busy_and_changes_nothing(stubs):
    old, new = quota_request(), quota_request(count=2)
    stubs.sagemaker.add_response("describe_compute_quota", described(old, status="Updating"))
    stubs.sagemaker.add_response("describe_compute_quota", described(old, status="Updating"))
    with pytest.raises(handler.HandlerError, match="is Updating; UpdateComputeQuota needs it settled. Nothing was"):
        handler.on_event(update_event(new, old))
    stubs.assert_done()


def test_update_with_only_tag_changes_rewrites_tags_and_skips_update_compute_quota(stubs):
    old = quota_request()
    new = quota_request(Tags=[{"Key": OWNER_KEY, "Value": OWNER}, {"Key": "cost-center", "Value": "42"}])
    stubs.sagemaker.add_response("describe_compute_quota", described(old, version=5))
    stubs.sagemaker.add_response("describe_compute_quota", described(old, version=5))
    stubs.sagemaker.add_response("list_tags", TAGS)
    stubs.sagemaker.add_response(
        "add_tags",
        {"Tags": [{"Key": "cost-center", "Value": "42"}]},
        expected_params={"ResourceArn": QUOTA_ARN, "Tags": [{"Key": "cost-center", "Value": "42"}]},
    )
    stubs.sagemaker.add_response("delete_tags", {}, expected_params={"ResourceArn": QUOTA_ARN, "TagKeys": ["project"]})
    result = handler.on_event(update_event(new, old))
    assert result["Data"]["ComputeQuotaVersion"] == "5"
    stubs.assert_done()


def test_renaming_a_team_creates_a_new_quota_and_leaves_the_old_one_to_cloudformations_delete(stubs):
    old, new = quota_request("research"), quota_request("science")
    nothing_listed(stubs, new)
    stubs.sagemaker.add_response(
        "create_compute_quota", {"ComputeQuotaArn": QUOTA_ARN, "ComputeQuotaId": "n3wn3wn3wn3w"}, expected_params=new
    )
    result = handler.on_event(update_event(new, old))
    assert result["PhysicalResourceId"] == "n3wn3wn3wn3w"  # a new id: CloudFormation deletes QUOTA_ID next
    stubs.assert_done()


def test_update_of_a_quota_deleted_outside_cloudformation_creates_it_again(stubs):
    old, new = quota_request(), quota_request(count=2)
    stubs.sagemaker.add_client_error(
        "describe_compute_quota",
        service_error_code="ResourceNotFound",
        service_message="not found",
        http_status_code=400,
    )
    nothing_listed(stubs, new)
    stubs.sagemaker.add_response(
        "create_compute_quota", {"ComputeQuotaArn": QUOTA_ARN, "ComputeQuotaId": "n3wn3wn3wn3w"}
    )
    assert handler.on_event(update_event(new, old))["PhysicalResourceId"] == "n3wn3wn3wn3w"
    stubs.assert_done()


# --- Delete ---------------------------------------------------------------------------------------


def test_delete_asks_once_then_waits_until_the_quota_is_gone(stubs):
    stubs.sagemaker.add_response("describe_compute_quota", described(quota_request()))
    stubs.sagemaker.add_response("delete_compute_quota", {}, expected_params={"ComputeQuotaId": QUOTA_ID})
    assert handler.on_event(event("Delete", properties(), physical_id=QUOTA_ID)) == {}
    stubs.sagemaker.add_response("describe_compute_quota", described(quota_request(), status="Deleting"))
    stubs.sagemaker.add_client_error(
        "describe_compute_quota",
        service_error_code="ResourceNotFound",
        service_message="not found",
        http_status_code=400,
    )
    evt = event("Delete", properties(), physical_id=QUOTA_ID)
    assert [handler.is_complete(evt)["IsComplete"] for _ in range(2)] == [False, True]
    stubs.assert_done()


def test_deleting_a_missing_quota_succeeds_without_calling_delete(stubs):
    stubs.sagemaker.add_client_error(
        "describe_compute_quota",
        service_error_code="ResourceNotFound",
        service_message=f"Compute quota {QUOTA_ID} does not exist",
        http_status_code=400,
    )
    assert handler.on_event(event("Delete", properties(), physical_id=QUOTA_ID)) == {}
    stubs.sagemaker.add_response("describe_compute_quota", described(quota_request(), status="Deleted"))
    assert handler.is_complete(event("Delete", properties(), physical_id=QUOTA_ID)) == {"IsComplete": True}
    stubs.assert_done()


def test_delete_of_a_create_that_never_returned_an_id_calls_nothing(stubs):
    # A failed Create leaves CloudFormation's generated physical id; there is no quota to delete.
    physical = "hyperpod-sky-hyperpod-ResearchQuota-1A2B3C"
    assert handler.on_event(event("Delete", properties(), physical_id=physical)) == {}
    assert handler.is_complete(event("Delete", properties(), physical_id=physical)) == {"IsComplete": True}
    stubs.assert_done()


def test_a_quota_that_vanishes_between_describe_and_delete_is_deleted(stubs):
    stubs.sagemaker.add_response("describe_compute_quota", described(quota_request()))
    stubs.sagemaker.add_client_error(
        "delete_compute_quota", service_error_code="ResourceNotFound", service_message="not found", http_status_code=400
    )
    assert handler.on_event(event("Delete", properties(), physical_id=QUOTA_ID)) == {}
    stubs.assert_done()


def test_a_delete_refused_while_busy_is_asked_again_until_it_is_deleting(stubs):
    stubs.sagemaker.add_response("describe_compute_quota", described(quota_request(), status="Updating"))
    stubs.sagemaker.add_client_error(
        "delete_compute_quota", service_error_code="ConflictException", service_message="busy", http_status_code=400
    )
    assert handler.on_event(event("Delete", properties(), physical_id=QUOTA_ID)) == {}
    stubs.sagemaker.add_response("describe_compute_quota", described(quota_request(), status="Updated"))
    stubs.sagemaker.add_response("delete_compute_quota", {}, expected_params={"ComputeQuotaId": QUOTA_ID})
    assert handler.is_complete(event("Delete", properties(), physical_id=QUOTA_ID)) == {"IsComplete": False}
    stubs.assert_done()


def test_delete_failed_is_reported_with_its_reason(stubs):
    stubs.sagemaker.add_response(
        "describe_compute_quota", described(quota_request(), status="DeleteFailed", failure="Kueue webhook unavailable")
    )
    with pytest.raises(handler.HandlerError, match=r"could not be deleted \(DeleteFailed\): Kueue webhook unavailable"):
        handler.is_complete(event("Delete", properties(), physical_id=QUOTA_ID))


def test_a_non_transient_error_in_is_complete_fails_at_once_with_one_line(stubs):
    stubs.sagemaker.add_client_error(
        "describe_compute_quota", service_error_code="AccessDeniedException", service_message="no", http_status_code=400
    )
    with pytest.raises(
        handler.HandlerError, match="^DescribeComputeQuota failed for compute quota q1w2e3r4t5y6: Access"
    ):
        handler.is_complete(event("Create", properties(), physical_id=QUOTA_ID))


def test_bad_properties_are_refused_before_any_call(stubs):
    with pytest.raises(handler.HandlerError, match="need ComputeQuota"):
        handler.on_event(event("Create", {"ComputeQuota": "{not json", "OwnerTagKey": OWNER_KEY}))
    request = quota_request(Tags=[{"Key": "project", "Value": "hp"}])
    with pytest.raises(handler.HandlerError, match="carries no task-governance:owner tag"):
        handler.on_event(event("Create", {"ComputeQuota": json.dumps(request), "OwnerTagKey": OWNER_KEY}))
    stubs.assert_done()
