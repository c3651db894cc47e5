"""``HyperPodCluster`` with ``hyperpod.autoscaling: karpenter``: the synthesized request, the cluster role
HyperPod assumes, the handler's right to pass it, cdk-nag and cfn-lint; and that "off" changes nothing.

AWS references: "Create an IAM role for HyperPod autoscaling with Karpenter" (trust and policy), "Create and
configure a HyperPod cluster with Karpenter autoscaling" (request fields), botocore's SageMaker model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest
from aws_cdk import assertions
from botocore.validate import ParamValidator

from constructs.hyperpod_cluster import permissions
from tests.hyperpod_cluster.test_infrastructure import build, cluster_request, only, render, role, statements

GROUPS = json.dumps(
    [
        {"name": "system", "instance_type": "ml.m5.xlarge", "instance_count": 1, "min_instance_count": 1},
        {"name": "gpu-auto", "instance_type": "ml.g5.8xlarge", "instance_count": 0, "karpenter": True},
        {"name": "h100-auto", "instance_type": "ml.p5.48xlarge", "instance_count": 0, "karpenter": True},
    ]
)
ON = {"hyperpod.autoscaling": "karpenter", "hyperpod.instance_groups": GROUPS}


@pytest.fixture(scope="module")
def autoscaled(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack, cluster = build(nag=True, outdir=str(outdir), **ON)
    app.synth()  # raises on any unacknowledged cdk-nag finding
    template = json.loads((outdir / "HyperPodTest.template.json").read_text())
    return {"outdir": outdir, "template": template, "cluster": cluster}


def test_request_enables_karpenter_on_continuous_provisioning_with_the_cluster_role(autoscaled):
    request = cluster_request(autoscaled["template"])
    role_id = next(k for k in autoscaled["template"]["Resources"] if k.startswith("HyperPodClusterRole"))
    assert request["NodeProvisioningMode"] == "Continuous"
    assert request["AutoScaling"] == {"Mode": "Enable", "AutoScalerType": "Karpenter"}
    assert request["ClusterRole"] == f"<{role_id}.Arn>"
    counts = {
        g["InstanceGroupName"]: (g["InstanceCount"], g.get("MinInstanceCount")) for g in request["InstanceGroups"]
    }
    assert counts == {"system": (1, 1), "gpu-auto": (0, None), "h100-auto": (0, None)}
    # Both fields are CreateCluster members of these shapes in botocore's SageMaker model.
    create = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateCluster")
    members = create.input_shape.members
    assert (members["AutoScaling"].name, members["ClusterRole"].name) == ("ClusterAutoScalingConfig", "RoleArn")
    assert not ParamValidator().validate(request["AutoScaling"], members["AutoScaling"]).has_errors()


def test_custom_resource_names_the_groups_karpenter_owns(autoscaled):
    props = only(autoscaled["template"], "Custom::HyperPodCluster")["Properties"]
    assert json.loads(props["KarpenterGroups"]) == ["gpu-auto", "h100-auto"]


def test_cluster_role_is_trusted_by_hyperpod_only(autoscaled):
    trust = role(autoscaled["template"], "ClusterRole")["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "hyperpod.sagemaker.amazonaws.com"}}
    ]


def test_cluster_role_may_add_and_delete_nodes_of_this_cluster_only(autoscaled):
    template = autoscaled["template"]
    granted = statements(role(template, "ClusterRole"))
    assert set(granted) == {"ScaleOwnedClusterOnly", "DescribeThisEksCluster"}
    scale = granted["ScaleOwnedClusterOnly"]
    assert sorted(scale["Action"]) == ["sagemaker:BatchAddClusterNodes", "sagemaker:BatchDeleteClusterNodes"]
    assert render(scale["Resource"]) == "arn:<AWS::Partition>:sagemaker:us-east-1:123456789012:cluster/*"
    owner = {t["Key"]: t["Value"] for t in cluster_request(template)["Tags"]}["hyperpod-cluster:owner"]
    assert scale["Condition"] == {"StringEquals": {"aws:ResourceTag/hyperpod-cluster:owner": owner}}
    eks = granted["DescribeThisEksCluster"]
    assert eks["Action"] == "eks:DescribeCluster" and "cluster/hp-eks" in render(eks["Resource"])
    assert not [s for s in granted.values() if "kms:" in json.dumps(s)]  # no customer managed key to grant


def test_handler_may_pass_the_cluster_role_and_nothing_else_new(autoscaled):
    template = autoscaled["template"]
    handler = statements(role(template, "HandlerRole"))
    passing = handler["PassClusterRoleToHyperPod"]
    role_id = next(k for k in template["Resources"] if k.startswith("HyperPodClusterRole"))
    assert passing["Action"] == "iam:PassRole"
    assert passing["Resource"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": ["sagemaker.amazonaws.com", "hyperpod.sagemaker.amazonaws.com"]}
    }


def test_cdk_nag_passes_and_the_cluster_role_wildcard_is_acknowledged_with_the_owner_tag_reason(autoscaled):
    report = json.loads((autoscaled["outdir"] / "validation-report.json").read_text())
    (plugin,) = report["pluginReports"]
    assert plugin["conclusion"] == "success" and plugin.get("violations", []) == []
    on_cluster_role = [
        v for v in plugin["suppressedViolations"] if v["acknowledgedAt"].startswith("HyperPodTest/HyperPod/ClusterRole")
    ]
    assert [v["ruleName"] for v in on_cluster_role] == [
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:us-east-1:123456789012:cluster/*]"
    ]
    assert on_cluster_role[0]["reason"] == permissions.WILDCARD_REASONS["ScaleOwnedClusterOnly"]


def test_cfn_lint_reports_nothing_but_w3005(autoscaled):
    template = autoscaled["outdir"] / "HyperPodTest.template.json"
    lint = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", str(template)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    findings = [line for line in lint.stdout.splitlines() if line.strip()]
    assert [f for f in findings if ":W3005:" not in f] == [], lint.stdout + lint.stderr


def _template(**overrides) -> dict:
    _, stack, _ = build(**overrides)
    return assertions.Template.from_stack(stack).to_json()


def test_autoscaling_off_leaves_the_template_exactly_as_without_the_settings():
    groups = json.loads(
        json.dumps(
            [
                {"name": "gpu", "instance_type": "ml.p5.48xlarge", "instance_count": 2},
                {"name": "cpu", "instance_type": "ml.m5.xlarge", "instance_count": 0},
            ]
        )
    )
    plain = _template(**{"hyperpod.instance_groups": json.dumps(groups)})
    spelled_out = [{**g, "karpenter": False, "min_instance_count": None} for g in groups]
    explicit = _template(**{"hyperpod.autoscaling": None, "hyperpod.instance_groups": json.dumps(spelled_out)})
    assert explicit == plain
    text = json.dumps(plain)
    assert "AutoScaling" not in text and "KarpenterGroups" not in text and "PassClusterRoleToHyperPod" not in text
    assert not [k for k in plain["Resources"] if k.startswith("HyperPodClusterRole")]
