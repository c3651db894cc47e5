"""Observability switch (constructs/observability): the HyperPod observability add-on with its Pod
Identity role, the Prometheus workspace it writes to, the optional Grafana workspace, their outputs
and removal policies, and the Prometheus interface endpoint of a closed network."""

from __future__ import annotations

import json

import pytest

from config import outputs
from constructs.observability.infrastructure import ADDON_NAME, GRAFANA_READ_ACTIONS, SERVICE_ACCOUNT
from tests.in_process import synth

HP = "hyperpod-sky-hyperpod"
NET = "hyperpod-sky-network"
ON = {"observability.enabled": "true"}
GRAFANA = {**ON, "observability.grafana": "true"}


@pytest.fixture(scope="module")
def on() -> dict[str, dict]:
    return synth(**ON)


@pytest.fixture(scope="module")
def grafana() -> dict[str, dict]:
    return synth(**GRAFANA, **{"observability.logging": "true", "network.interface_endpoints": "true"})


def _render(value) -> str:
    """A ``Fn::Join`` of strings and intrinsics as text, each intrinsic written ``${Logical.Attr}`` or ``${Ref}``."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return "${" + value["Ref"] + "}"
    if "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    if "Fn::ImportValue" in value:
        return "${import:" + value["Fn::ImportValue"] + "}"
    delimiter, parts = value["Fn::Join"]
    return delimiter.join(_render(p) for p in parts)


def _configuration(template: dict) -> dict:
    return json.loads(_render(_addon(template, ADDON_NAME)["Properties"]["ConfigurationValues"]))


def _of_type(template: dict, kind: str) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _one(template: dict, kind: str) -> tuple[str, dict]:
    (item,) = _of_type(template, kind).items()
    return item


def _addon(template: dict, name: str) -> dict:
    (addon,) = [r for r in _of_type(template, "AWS::EKS::Addon").values() if r["Properties"]["AddonName"] == name]
    return addon


def _policy_statements(template: dict, role_id: str) -> list[dict]:
    return [
        st
        for p in _of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_addon_writes_to_its_own_prometheus_workspace_through_a_pod_identity_role(on):
    hp = on[HP]
    workspace_id, _ = _one(hp, "AWS::APS::Workspace")
    addon = _addon(hp, ADDON_NAME)
    (association,) = addon["Properties"]["PodIdentityAssociations"]
    assert association["ServiceAccount"] == SERVICE_ACCOUNT
    role_id = association["RoleArn"]["Fn::GetAtt"][0]
    values = _configuration(hp)
    assert values["ampWorkspace"] == {
        # No trailing slash (the workspace's PrometheusEndpoint attribute has one; the add-on wants none).
        "prometheusEndpoint": f"https://aps-workspaces.${{AWS::Region}}.${{AWS::URLSuffix}}/workspaces/${{{workspace_id}.WorkspaceId}}",
        "arn": f"${{{workspace_id}.Arn}}",
    }
    assert values["metricsProvider"]["acceleratedComputeMetrics"] == {"level": "BASIC", "scrapeInterval": 30}
    assert values["logging"] == {"enabled": False}
    assert "amgWorkspace" not in values
    # Remote write to this workspace only; no log actions unless logging is on.
    assert _policy_statements(hp, role_id) == [
        {"Action": "aps:RemoteWrite", "Effect": "Allow", "Resource": {"Fn::GetAtt": [workspace_id, "Arn"]}}
    ]
    assert not _of_type(hp, "AWS::Grafana::Workspace")


def test_only_pods_of_this_eks_cluster_can_assume_the_collector_role(on):
    hp = on[HP]
    role_id = _addon(hp, ADDON_NAME)["Properties"]["PodIdentityAssociations"][0]["RoleArn"]["Fn::GetAtt"][0]
    (statement,) = hp["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::ImportValue"]
    assert source_arn.startswith("hyperpod-sky-eks:") and "ClusterEB0386A7Arn" in source_arn


def test_the_addon_is_installed_after_the_hyperpod_cluster_is_in_service_and_its_role_policy(on):
    hp = on[HP]
    addon = _addon(hp, ADDON_NAME)
    wait_id, _ = _one(hp, "AWS::CloudFormation::WaitCondition")
    role_id = addon["Properties"]["PodIdentityAssociations"][0]["RoleArn"]["Fn::GetAtt"][0]
    (policy_id,) = [
        k for k, p in _of_type(hp, "AWS::IAM::Policy").items() if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    workspace_id, _ = _one(hp, "AWS::APS::Workspace")
    assert {wait_id, role_id, policy_id, workspace_id} <= set(addon["DependsOn"])


def test_endpoints_are_stack_outputs(on, grafana):
    assert {outputs.PROMETHEUS_WORKSPACE_ID, outputs.PROMETHEUS_QUERY_URL, outputs.PROMETHEUS_REMOTE_WRITE_URL} <= set(
        on[HP]["Outputs"]
    )
    assert outputs.GRAFANA_WORKSPACE_URL not in on[HP]["Outputs"]
    write = on[HP]["Outputs"][outputs.PROMETHEUS_REMOTE_WRITE_URL]["Value"]["Fn::Join"][1]
    assert write[0] == "https://aps-workspaces." and write[-1] == "/api/v1/remote_write"
    grafana_id, _ = _one(grafana[HP], "AWS::Grafana::Workspace")
    assert grafana[HP]["Outputs"][outputs.GRAFANA_WORKSPACE_URL]["Value"] == {
        "Fn::Join": ["", ["https://", {"Fn::GetAtt": [grafana_id, "Endpoint"]}]]
    }


def test_grafana_gets_a_customer_managed_role_that_reads_only_this_workspace(grafana):
    hp = grafana[HP]
    workspace_id, _ = _one(hp, "AWS::APS::Workspace")
    grafana_id, ws = _one(hp, "AWS::Grafana::Workspace")
    props = ws["Properties"]
    assert props["PermissionType"] == "CUSTOMER_MANAGED"
    assert props["AuthenticationProviders"] == ["AWS_SSO"]
    assert props["AccountAccessType"] == "CURRENT_ACCOUNT"
    assert props["DataSources"] == ["PROMETHEUS"]
    role_id = props["RoleArn"]["Fn::GetAtt"][0]
    (trust,) = hp["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "grafana.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    statements = _policy_statements(hp, role_id)
    assert {
        "Action": list(GRAFANA_READ_ACTIONS),
        "Effect": "Allow",
        "Resource": {"Fn::GetAtt": [workspace_id, "Arn"]},
    } in statements
    star = [st for st in statements if st["Resource"] == "*"]
    assert star == [{"Action": "aps:ListWorkspaces", "Effect": "Allow", "Resource": "*"}]
    # The add-on is told about the Grafana workspace.
    assert _configuration(hp)["amgWorkspace"] == {
        "workspaceName": props["Name"],
        "arn": f"arn:${{AWS::Partition}}:grafana:${{AWS::Region}}:${{AWS::AccountId}}:/workspaces/${{{grafana_id}.Id}}",
    }


def test_logging_grants_log_actions_on_this_clusters_log_groups_only(grafana):
    hp = grafana[HP]
    role_id = _addon(hp, ADDON_NAME)["Properties"]["PodIdentityAssociations"][0]["RoleArn"]["Fn::GetAtt"][0]
    (logs,) = [st for st in _policy_statements(hp, role_id) if st["Action"][0].startswith("logs:")]
    resources = [r["Fn::Join"][1][-1] for r in logs["Resource"]]
    assert resources == [
        ":log-group:/aws/sagemaker/Clusters/hyperpod-sky/*",
        ":log-group:/aws/sagemaker/Clusters/hyperpod-sky/*:log-stream:*",
    ]
    assert _configuration(hp)["logging"] == {"enabled": True}


@pytest.mark.parametrize(("policy", "deletion"), [("destroy", "Delete"), ("retain", "Retain")])
def test_the_workspaces_removal_follows_the_config(policy, deletion, grafana):
    templates = grafana if policy == "destroy" else synth(**GRAFANA, **{"observability.removal_policy": policy})
    for kind in ("AWS::APS::Workspace", "AWS::Grafana::Workspace"):
        _, resource = _one(templates[HP], kind)
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == (deletion, deletion), kind


def test_a_closed_network_gets_the_prometheus_endpoint_only_with_observability(grafana):
    def services(templates):
        return {
            _render(r["Properties"]["ServiceName"])
            for r in _of_type(templates[NET], "AWS::EC2::VPCEndpoint").values()
            if r["Properties"].get("VpcEndpointType") == "Interface"
        }

    closed_without = synth(**{"network.interface_endpoints": "true"})
    assert "com.amazonaws.us-east-1.aps-workspaces" in services(grafana)
    assert "com.amazonaws.us-east-1.aps-workspaces" not in services(closed_without)
    assert services(grafana) - services(closed_without) == {"com.amazonaws.us-east-1.aps-workspaces"}
