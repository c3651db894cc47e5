"""The custom-resource handlers against moto's in-process SageMaker (create, describe, adopt, delete).

moto creates clusters InService at once and has no UpdateCluster; those paths are covered with Stubber.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from constructs.hyperpod_cluster.runtime import handler
from tests.hyperpod_cluster.conftest import OWNER_KEY, REGION, cluster_request, event, group, properties


@pytest.fixture
def sagemaker():
    with mock_aws():
        yield boto3.client("sagemaker", region_name=REGION)


def test_create_sends_the_whole_request_and_returns_name_and_arn(sagemaker):
    result = handler.on_event(event("Create", properties()))

    assert result["PhysicalResourceId"] == "hp-test"
    described = sagemaker.describe_cluster(ClusterName="hp-test")
    assert result["Data"] == {"ClusterArn": described["ClusterArn"], "ClusterName": "hp-test"}
    (created,) = described["InstanceGroups"]
    assert (created["InstanceGroupName"], created["InstanceType"], created["TargetCount"]) == (
        "workers",
        "ml.g5.8xlarge",
        2,
    )
    assert created["ExecutionRole"] == group()["ExecutionRole"]
    assert described["VpcConfig"]["Subnets"] == ["subnet-0123456789abcdef0"]
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=described["ClusterArn"])["Tags"]}
    assert tags[OWNER_KEY] == "HyperPodStack/c8abcdef"
    assert len(sagemaker.list_cluster_nodes(ClusterName="hp-test")["ClusterNodeSummaries"]) == 2


def test_is_complete_after_create_reports_the_cluster_status(sagemaker):
    handler.on_event(event("Create", properties()))
    assert handler.is_complete(event("Create", properties(), physical_id="hp-test")) == {
        "IsComplete": True,
        "Data": {"ClusterStatus": "InService"},
    }


def test_retried_create_adopts_the_cluster_it_already_created(sagemaker):
    first = handler.on_event(event("Create", properties()))
    second = handler.on_event(event("Create", properties()))

    assert second == first
    assert [c["ClusterName"] for c in sagemaker.list_clusters()["ClusterSummaries"]] == ["hp-test"]


def test_create_refuses_a_same_named_cluster_this_stack_does_not_own(sagemaker):
    foreign = cluster_request(Tags=[{"Key": "team", "Value": "other"}])
    sagemaker.create_cluster(**{k: v for k, v in foreign.items() if k not in ("Orchestrator", "NodeRecovery")})

    with pytest.raises(
        handler.HandlerError,
        match=r"already exists .* not created by this stack .*choose another hyperpod.cluster_name",
    ):
        handler.on_event(event("Create", properties()))


def test_create_refuses_to_adopt_an_owned_cluster_with_another_spec(sagemaker):
    handler.on_event(event("Create", properties()))
    bigger = cluster_request(groups=[group(count=4)])

    with pytest.raises(handler.HandlerError, match=r"different spec \(instance group workers: InstanceCount 2 -> 4\)"):
        handler.on_event(event("Create", properties(bigger)))


def test_delete_removes_the_cluster_and_is_complete_once_gone(sagemaker):
    handler.on_event(event("Create", properties()))

    assert set(handler.on_event(event("Delete", properties(), physical_id="hp-test"))) == {handler.DELETE_DEADLINE_KEY}
    assert sagemaker.list_clusters()["ClusterSummaries"] == []
    assert handler.is_complete(event("Delete", properties(), physical_id="hp-test")) == {"IsComplete": True}


def test_delete_of_a_cluster_that_never_existed_succeeds(sagemaker):
    assert set(handler.on_event(event("Delete", properties(), physical_id="hp-test"))) == {handler.DELETE_DEADLINE_KEY}
    assert handler.is_complete(event("Delete", properties(), physical_id="hp-test")) == {"IsComplete": True}


def test_delete_after_a_failed_create_touches_nothing(sagemaker):
    marker = "AWSCDK::CustomResourceProviderFramework::CREATE_FAILED"
    assert handler.on_event(event("Delete", properties(), physical_id=marker)) == {}
    assert handler.is_complete(event("Delete", properties(), physical_id=marker)) == {"IsComplete": True}


def test_replacement_by_new_name_creates_the_new_cluster_and_keeps_the_old(sagemaker):
    handler.on_event(event("Create", properties()))
    renamed = properties(cluster_request(name="hp-test-2", groups=[group(instance_type="ml.g5.12xlarge")]))

    result = handler.on_event(event("Update", renamed, physical_id="hp-test", old=properties()))

    assert result["PhysicalResourceId"] == "hp-test-2"
    names = sorted(c["ClusterName"] for c in sagemaker.list_clusters()["ClusterSummaries"])
    assert names == ["hp-test", "hp-test-2"]  # CloudFormation deletes the old one in its cleanup phase
    assert (
        json.loads(renamed["ClusterRequest"])["InstanceGroups"][0]["InstanceType"]
        == sagemaker.describe_cluster(ClusterName="hp-test-2")["InstanceGroups"][0]["InstanceType"]
    )
