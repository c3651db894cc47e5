"""``HyperPodCluster`` synthesized on a bare stack: IAM, the custom resource, the wait, nag and cfn-lint.

The stack imports its VPC, subnet, security group, bucket and EKS cluster, so every resource in the
template (and every cdk-nag or cfn-lint finding) belongs to the construct under test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from constructs.hyperpod_cluster import asset, permissions
from constructs.hyperpod_cluster.infrastructure import HyperPodCluster
from constructs.hyperpod_cluster.nag import flatten
from constructs.hyperpod_cluster.runtime import aws, handler, poller
from constructs.hyperpod_cluster.wait import CHECK_TIMEOUT_SECONDS, POLL_INTERVAL_SECONDS, WAIT_SECONDS
from tests.conftest import make_config

ACCOUNT, REGION = "123456789012", "us-east-1"
PLAN = "arn:aws:sagemaker:us-east-1:123456789012:training-plan/p5-plan"
GROUPS = json.dumps(
    [
        {
            "name": "gpu",
            "instance_type": "ml.p5.48xlarge",
            "instance_count": 2,
            "deep_health_checks": ["InstanceStress", "InstanceConnectivity"],
            "training_plan_arn": PLAN,
        },
        {
            "name": "cpu",
            "instance_type": "ml.m5.xlarge",
            "instance_count": 1,
            "ebs_volume_size_gb": None,
            "threads_per_core": 2,
        },
    ]
)


def build(*, nag: bool = False, outdir: str | None = None, **overrides):
    config = make_config(**{"hyperpod.instance_groups": GROUPS, **overrides})
    app = cdk.App(outdir=outdir) if outdir else cdk.App()
    stack = cdk.Stack(app, "HyperPodTest", env=cdk.Environment(account=ACCOUNT, region=REGION))
    vpc = ec2.Vpc.from_vpc_attributes(
        stack, "Vpc", vpc_id="vpc-0a1b2c3d", availability_zones=["us-east-1a"], isolated_subnet_ids=["subnet-0a1b2c3d"]
    )
    cluster = HyperPodCluster(
        stack,
        "HyperPod",
        config=config.hyperpod,
        tags={"project": "hyperpod-skypilot"},
        eks_cluster=eks.Cluster.from_cluster_attributes(stack, "Eks", cluster_name="hp-eks"),
        vpc=vpc,
        subnets=vpc.isolated_subnets,
        security_group=ec2.SecurityGroup.from_security_group_id(stack, "Sg", "sg-0a1b2c3d"),
        lifecycle_bucket=s3.Bucket.from_bucket_name(stack, "Bucket", "sagemaker-hp-lifecycle"),
    )
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack, cluster


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack, cluster = build(nag=True, outdir=str(outdir))
    app.synth()  # raises if cdk-nag reports any unacknowledged finding
    template = json.loads((outdir / "HyperPodTest.template.json").read_text())
    report = (
        json.loads((outdir / "validation-report.json").read_text())
        if (outdir / "validation-report.json").exists()
        else None
    )
    return {"outdir": outdir, "template": template, "cluster": cluster, "stack": stack, "report": report}


def resources(template, kind):
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def only(template, kind):
    (item,) = resources(template, kind).values()
    return item


def role(template, fragment):
    (found,) = [r for k, r in resources(template, "AWS::IAM::Role").items() if k.startswith(f"HyperPod{fragment}")]
    return found


def statements(role_resource):
    return {
        s.get("Sid"): s
        for p in role_resource["Properties"].get("Policies", [])
        for s in p["PolicyDocument"]["Statement"]
    }


def as_list(value):
    return value if isinstance(value, list) else [value]


def render(value) -> str:
    """A CloudFormation string expression with tokens shown as <Ref> / <Resource.Attr> (JSON-safe)."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        delimiter, items = value["Fn::Join"]
        return delimiter.join(render(i) for i in items)
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    raise AssertionError(f"unexpected intrinsic {value}")


def cluster_request(template):
    return json.loads(render(only(template, "Custom::HyperPodCluster")["Properties"]["ClusterRequest"]))


# --- IAM ------------------------------------------------------------------------------------------


def test_execution_role_trusts_sagemaker_with_the_managed_instance_policy(synthesized):
    exec_role = role(synthesized["template"], "ExecutionRole")
    trust = exec_role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}}
    ]
    assert [flatten(p) for p in exec_role["Properties"]["ManagedPolicyArns"]] == [
        "arn:<AWS::Partition>:iam::aws:policy/AmazonSageMakerClusterInstanceRolePolicy"
    ]


def test_execution_role_scopes_enis_images_pod_identity_and_lifecycle_reads(synthesized):
    by_sid = statements(role(synthesized["template"], "ExecutionRole"))
    arn = f"arn:<AWS::Partition>:ec2:{REGION}:{ACCOUNT}"
    create = by_sid["CreateEnisInHyperPodSubnets"]
    assert create["Action"] == "ec2:CreateNetworkInterface"
    assert sorted(flatten(r) for r in create["Resource"]) == sorted(
        [f"{arn}:subnet/subnet-0a1b2c3d", f"{arn}:security-group/sg-0a1b2c3d", f"{arn}:network-interface/*"]
    )
    lifecycle = by_sid["EniLifecycleInHyperPodVpc"]
    assert sorted(lifecycle["Action"]) == sorted(permissions.ENI_ACTIONS)
    assert flatten(lifecycle["Resource"]) == f"{arn}:network-interface/*"
    in_vpc = {"ec2:Vpc": f"{arn}:vpc/vpc-0a1b2c3d"}
    assert {k: flatten(v) for k, v in lifecycle["Condition"]["ArnEquals"].items()} == in_vpc
    modify = by_sid["ModifyEniSecurityGroupInHyperPodVpc"]
    assert modify["Action"] == "ec2:ModifyNetworkInterfaceAttribute"
    assert flatten(modify["Resource"]) == f"{arn}:security-group/sg-0a1b2c3d"
    assert {k: flatten(v) for k, v in modify["Condition"]["ArnEquals"].items()} == in_vpc
    attach = by_sid["AttachEnisInThisAccount"]
    assert attach["Action"] == "ec2:AttachNetworkInterface"
    assert sorted(flatten(r) for r in attach["Resource"]) == [f"{arn}:instance/*", f"{arn}:network-interface/*"]
    assert flatten(by_sid["PodIdentity"]["Resource"]) == f"arn:<AWS::Partition>:eks:{REGION}:{ACCOUNT}:cluster/hp-eks"
    assert (
        flatten(by_sid["ReadLifecycleScripts"]["Resource"])
        == "arn:<AWS::Partition>:s3:::sagemaker-hp-lifecycle/lifecycle_scripts/*"
    )
    assert by_sid["ListLifecycleScripts"]["Condition"] == {
        "StringLike": {"s3:prefix": ["lifecycle_scripts", "lifecycle_scripts/*"]}
    }
    assert by_sid["DescribeOnly"]["Resource"] == "*"
    assert all(a.split(":")[1].startswith("Describe") for a in by_sid["DescribeOnly"]["Action"])


def test_execution_role_grants_what_aws_documents_without_narrowing_conditions(synthesized):
    # AWS's HyperPod execution role (docs and the official sagemaker-iam-role-template.yaml): the VPC CNI
    # tags interfaces it did not create, so no ec2:CreateAction condition; detach and image pulls on '*'.
    by_sid = statements(role(synthesized["template"], "ExecutionRole"))
    tag = by_sid["TagEnis"]
    assert tag["Action"] == "ec2:CreateTags" and "Condition" not in tag
    assert flatten(tag["Resource"]) == f"arn:<AWS::Partition>:ec2:{REGION}:{ACCOUNT}:network-interface/*"
    detach = by_sid["DetachEnisAsDocumented"]
    assert (detach["Action"], detach["Resource"], "Condition" in detach) == ("ec2:DetachNetworkInterface", "*", False)
    pull = by_sid["PullImages"]
    assert sorted(pull["Action"]) == sorted(permissions.ECR_PULL) and pull["Resource"] == "*"
    assert "ecr:GetAuthorizationToken" in pull["Action"]


def test_handler_role_scopes_cluster_actions_to_owned_clusters(synthesized):
    template = synthesized["template"]
    by_sid = statements(role(template, "HandlerRole"))
    clusters = f"arn:<AWS::Partition>:sagemaker:{REGION}:{ACCOUNT}:cluster/*"
    owner = only(template, "Custom::HyperPodCluster")
    owner_value = {t["Key"]: t["Value"] for t in cluster_request(template)["Tags"]}["hyperpod-cluster:owner"]
    # <stack name>/<path below the stack>: the same whether the stack sits at the app root or in a Stage.
    assert owner_value == "HyperPodTest/HyperPod" and owner
    legacy = f"HyperPodTest/{synthesized['cluster'].node.addr}"  # what earlier versions tagged with
    assert owner["Properties"]["LegacyOwnerTagValues"] == [legacy]

    assert sorted(by_sid["ReadThisAccountsClusters"]["Action"]) == [
        "sagemaker:DescribeCluster",
        "sagemaker:ListClusterNodes",
        "sagemaker:ListTags",
    ]
    create = by_sid["CreateOwnedClusterOnly"]
    assert create["Action"] == "sagemaker:CreateCluster" and flatten(create["Resource"]) == clusters
    assert create["Condition"]["StringEquals"] == {"aws:RequestTag/hyperpod-cluster:owner": owner_value}
    assert create["Condition"]["ForAllValues:StringEquals"] == {
        "sagemaker:VpcSubnets": ["subnet-0a1b2c3d"],
        "sagemaker:VpcSecurityGroupIds": ["sg-0a1b2c3d"],
    }
    assert by_sid["TagDuringCreateOnly"]["Condition"] == {"StringEquals": {"sagemaker:TaggingAction": "CreateCluster"}}
    change = by_sid["ChangeOwnedClustersOnly"]
    assert sorted(change["Action"]) == [
        "sagemaker:AddTags",
        "sagemaker:BatchAddClusterNodes",
        "sagemaker:BatchDeleteClusterNodes",
        "sagemaker:DeleteCluster",
        "sagemaker:DeleteTags",
        "sagemaker:UpdateCluster",
    ]
    # Clusters tagged by earlier versions stay manageable (and get re-tagged by the next update).
    assert change["Condition"] == {"StringEquals": {"aws:ResourceTag/hyperpod-cluster:owner": [owner_value, legacy]}}


def test_handler_may_use_the_configured_training_plans_and_their_reserved_capacity(synthesized):
    # CreateCluster/UpdateCluster are also authorised on training-plan and reserved-capacity resources
    # (cfn-lint Policies.json); without these a group with TrainingPlanArn gets AccessDenied.
    plans = statements(role(synthesized["template"], "HandlerRole"))["UseConfiguredTrainingPlans"]
    assert sorted(plans["Action"]) == ["sagemaker:CreateCluster", "sagemaker:UpdateCluster"]
    assert sorted(flatten(r) for r in plans["Resource"]) == [
        f"arn:<AWS::Partition>:sagemaker:{REGION}:{ACCOUNT}:reserved-capacity/*",
        PLAN,
    ]
    assert "Condition" not in plans
    assert [g.get("TrainingPlanArn") for g in cluster_request(synthesized["template"])["InstanceGroups"]] == [
        PLAN,
        None,
    ]


def test_without_training_plans_no_plan_or_reserved_capacity_grant_exists():
    config = make_config()
    assert not any(g.training_plan_arn for g in config.hyperpod.instance_groups)
    _, stack, cluster = build(**{"hyperpod.instance_groups": config.hyperpod.model_dump()["instance_groups"]})
    template = assertions.Template.from_stack(stack).to_json()
    assert "UseConfiguredTrainingPlans" not in statements(role(template, "HandlerRole"))


def test_handler_may_pass_only_the_execution_role_and_only_to_sagemaker(synthesized):
    template = synthesized["template"]
    exec_logical = next(k for k in resources(template, "AWS::IAM::Role") if k.startswith("HyperPodExecutionRole"))
    pass_role = statements(role(template, "HandlerRole"))["PassExecutionRoleToSageMaker"]
    assert pass_role["Action"] == "iam:PassRole"
    assert pass_role["Resource"] == {"Fn::GetAtt": [exec_logical, "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    passes = [
        s
        for r in resources(template, "AWS::IAM::Role").values()
        for s in statements(r).values()
        if "iam:PassRole" in as_list(s["Action"])
    ]
    assert passes == [pass_role]


def test_handler_eks_slr_and_poller_grants_are_exact(synthesized):
    template = synthesized["template"]
    by_sid = statements(role(template, "HandlerRole"))
    assert sorted(by_sid["HyperPodEksCluster"]["Action"]) == ["eks:CreateAccessEntry", "eks:DescribeCluster"]
    assert (
        flatten(by_sid["HyperPodAccessEntries"]["Resource"])
        == f"arn:<AWS::Partition>:eks:{REGION}:{ACCOUNT}:access-entry/hp-eks/*"
    )
    slr = by_sid["HyperPodServiceLinkedRole"]
    assert slr["Action"] == "iam:CreateServiceLinkedRole"
    assert flatten(slr["Resource"]) == (
        f"arn:<AWS::Partition>:iam::{ACCOUNT}:role/aws-service-role/"
        "hyperpod.sagemaker.amazonaws.com/AWSServiceRoleForSageMakerHyperPod"
    )
    assert slr["Condition"] == {"StringEquals": {"iam:AWSServiceName": "hyperpod.sagemaker.amazonaws.com"}}
    poller_sm = next(
        k for k in resources(template, "AWS::StepFunctions::StateMachine") if k.startswith("HyperPodPoller")
    )
    assert by_sid["StartThisPoller"] == {
        "Action": "states:StartExecution",
        "Effect": "Allow",
        "Resource": {"Ref": poller_sm},
        "Sid": "StartThisPoller",
    }
    poller_role = statements(role(template, "PollerRole"))
    assert set(poller_role) == {"ReadThisAccountsClusters"}
    assert sorted(poller_role["ReadThisAccountsClusters"]["Action"]) == [
        "sagemaker:DescribeCluster",
        "sagemaker:ListClusterNodes",
    ]


def test_no_policy_in_the_template_uses_a_wildcard_action(synthesized):
    template = synthesized["template"]
    documents = [
        p["PolicyDocument"]
        for r in resources(template, "AWS::IAM::Role").values()
        for p in r["Properties"].get("Policies", [])
    ]
    documents += [p["Properties"]["PolicyDocument"] for p in resources(template, "AWS::IAM::Policy").values()]
    actions = [a for d in documents for s in d["Statement"] for a in as_list(s["Action"])]
    assert actions and not [a for a in actions if "*" in a]


# --- custom resource ------------------------------------------------------------------------------


def test_custom_resource_carries_the_full_create_cluster_request(synthesized):
    template = synthesized["template"]
    request = cluster_request(template)
    exec_role = next(k for k in resources(template, "AWS::IAM::Role") if k.startswith("HyperPodExecutionRole"))
    gpu, cpu = request["InstanceGroups"]
    assert gpu == {
        "InstanceGroupName": "gpu",
        "InstanceType": "ml.p5.48xlarge",
        "InstanceCount": 2,
        "LifeCycleConfig": {
            "SourceS3Uri": "s3://sagemaker-hp-lifecycle/lifecycle_scripts/",
            "OnCreate": "on_create.sh",
        },
        "ExecutionRole": f"<{exec_role}.Arn>",
        "ThreadsPerCore": 1,
        "InstanceStorageConfigs": [{"EbsVolumeConfig": {"VolumeSizeInGB": 500}}],
        "OnStartDeepHealthChecks": ["InstanceStress", "InstanceConnectivity"],
        "TrainingPlanArn": PLAN,
        "KubernetesConfig": {"Labels": {"skypilot.co/accelerator": "h100"}},
    }
    assert cpu == {
        "InstanceGroupName": "cpu",
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 1,
        "LifeCycleConfig": gpu["LifeCycleConfig"],
        "ExecutionRole": gpu["ExecutionRole"],
        "ThreadsPerCore": 2,
    }
    assert request["VpcConfig"] == {"SecurityGroupIds": ["sg-0a1b2c3d"], "Subnets": ["subnet-0a1b2c3d"]}
    assert request["Orchestrator"] == {
        "Eks": {"ClusterArn": f"arn:<AWS::Partition>:eks:{REGION}:{ACCOUNT}:cluster/hp-eks"}
    }
    assert request["NodeRecovery"] == "Automatic" and "NodeProvisioningMode" not in request
    assert [t["Key"] for t in request["Tags"]] == ["hyperpod-cluster:owner", "project"]


def test_custom_resource_properties_and_service_timeout(synthesized):
    template = synthesized["template"]
    resource = only(template, "Custom::HyperPodCluster")
    handle = next(iter(resources(template, "AWS::CloudFormation::WaitConditionHandle")))
    props = resource["Properties"]
    assert set(props) == {
        "ServiceToken",
        "ServiceTimeout",
        "ClusterRequest",
        "OwnerTagKey",
        "LegacyOwnerTagValues",
        "WaitHandleUrl",
        "WaitTimeoutSeconds",
    }
    assert props["WaitHandleUrl"] == {"Ref": handle}
    assert props["WaitTimeoutSeconds"] == "43200" and props["ServiceTimeout"] == "3600"
    assert props["OwnerTagKey"] == "hyperpod-cluster:owner"
    assert resource["DeletionPolicy"] == "Delete"


def test_handler_deadline_comes_before_the_provider_timeout_which_comes_before_cloudformations(synthesized):
    """CloudFormation gives a custom resource 3600 s. The Provider must time out before that, and the handler
    must give up (with its own message) before the Provider does, even if its last is_complete runs long."""
    template = synthesized["template"]
    waiter = next(v for k, v in resources(template, "AWS::StepFunctions::StateMachine").items() if "waiter" in k)
    definition = json.loads(render(waiter["Properties"]["DefinitionString"]))
    (retry,) = definition["States"]["framework-isComplete-task"]["Retry"]
    assert retry["BackoffRate"] == 1
    provider_total = retry["IntervalSeconds"] * retry["MaxAttempts"]
    cloudformation = int(only(template, "Custom::HyperPodCluster")["Properties"]["ServiceTimeout"])
    is_complete = next(
        v for k, v in resources(template, "AWS::Lambda::Function").items() if k.startswith("HyperPodIsComplete")
    )["Properties"]["Timeout"]
    assert cloudformation == 3600
    assert handler.HANDLER_DEADLINE_SECONDS + is_complete + retry["IntervalSeconds"] <= provider_total < cloudformation
    assert (handler.HANDLER_DEADLINE_SECONDS, provider_total) == (45 * 60, 54 * 60)
    assert waiter["Properties"]["LoggingConfiguration"]["Level"] == "ALL"


def test_handler_lambda_timeouts_cover_every_botocore_retry_of_their_calls(synthesized):
    functions = resources(synthesized["template"], "AWS::Lambda::Function")

    def timeout(prefix):
        return next(v for k, v in functions.items() if k.startswith(prefix))["Properties"]["Timeout"]

    per_call = aws.worst_case_seconds("event")
    assert per_call == 4 * (3 + 8) + (1 + 5) + (2 + 5) + (4 + 5)
    assert timeout("HyperPodOnEvent") > handler.ON_EVENT_MAX_CALLS * per_call
    assert timeout("HyperPodIsComplete") > handler.IS_COMPLETE_MAX_CALLS * per_call


def test_node_provisioning_mode_and_recovery_are_passed_when_set():
    _, stack, _ = build(**{"hyperpod.node_provisioning_mode": "Continuous", "hyperpod.node_recovery": "None"})
    request = cluster_request(assertions.Template.from_stack(stack).to_json())
    assert request["NodeProvisioningMode"] == "Continuous" and request["NodeRecovery"] == "None"


def test_reserved_or_invalid_tags_fail_at_synth_naming_the_tag():
    with pytest.raises(ValueError, match=r"tags\['aws:team'\]"):
        _build_with_tags({"aws:team": "x"})
    with pytest.raises(ValueError, match=r"tags\['hyperpod-cluster:owner'\]: this key is reserved"):
        _build_with_tags({"hyperpod-cluster:owner": "me"})
    with pytest.raises(ValueError, match=r"tags\['team'\] = 'a\|b'"):
        _build_with_tags({"team": "a|b"})


def _build_with_tags(tags):
    config = make_config()
    stack = cdk.Stack(cdk.App(), "T")
    vpc = ec2.Vpc.from_vpc_attributes(
        stack, "Vpc", vpc_id="vpc-1", availability_zones=["us-east-1a"], isolated_subnet_ids=["subnet-1"]
    )
    HyperPodCluster(
        stack,
        "HyperPod",
        config=config.hyperpod,
        tags=tags,
        eks_cluster=eks.Cluster.from_cluster_attributes(stack, "Eks", cluster_name="e"),
        vpc=vpc,
        subnets=vpc.isolated_subnets,
        security_group=ec2.SecurityGroup.from_security_group_id(stack, "Sg", "sg-1"),
        lifecycle_bucket=s3.Bucket.from_bucket_name(stack, "B", "sagemaker-b"),
    )


# --- the wait -------------------------------------------------------------------------------------


def test_wait_condition_times_out_with_the_config_and_waits_for_the_custom_resource(synthesized):
    template = synthesized["template"]
    ((wait_id, wait),) = resources(template, "AWS::CloudFormation::WaitCondition").items()
    (handle_id,) = resources(template, "AWS::CloudFormation::WaitConditionHandle")
    (resource_id,) = resources(template, "Custom::HyperPodCluster")
    assert wait["Properties"] == {"Count": 1, "Handle": {"Ref": handle_id}, "Timeout": "43200"}
    assert wait["DependsOn"] == [resource_id]


def test_spec_changes_rename_the_handle_and_wait_condition_so_updates_wait_again():
    def ids(**overrides):
        template = assertions.Template.from_stack(build(**overrides)[1]).to_json()
        return (
            sorted(resources(template, "AWS::CloudFormation::WaitCondition")),
            sorted(resources(template, "AWS::CloudFormation::WaitConditionHandle")),
            only(template, "AWS::CloudFormation::WaitCondition")["Properties"]["Timeout"],
        )

    base = ids()
    assert ids() == base  # deterministic for the same spec
    bigger = ids(**{"hyperpod.instance_groups": GROUPS.replace('"instance_count": 2', '"instance_count": 4')})
    assert bigger[0] != base[0] and bigger[1] != base[1]
    shorter = ids(**{"hyperpod.creation_timeout_hours": "3"})
    assert shorter[0] != base[0] and shorter[2] == "10800"


def test_wait_disabled_drops_the_wait_condition_and_the_poller():
    _, stack, cluster = build(**{"hyperpod.wait_for_in_service": "false"})
    template = assertions.Template.from_stack(stack).to_json()
    assert not resources(template, "AWS::CloudFormation::WaitCondition")
    assert not resources(template, "AWS::CloudFormation::WaitConditionHandle")
    assert [k for k in resources(template, "AWS::StepFunctions::StateMachine") if "Poller" in k] == []
    props = only(template, "Custom::HyperPodCluster")["Properties"]
    assert "WaitHandleUrl" not in props and "WaitTimeoutSeconds" not in props
    assert "StartThisPoller" not in statements(role(template, "HandlerRole"))
    assert cluster.wait_condition is None and cluster.ready is cluster.resource


def test_poller_state_machine_loops_and_turns_check_errors_into_another_wait(synthesized):
    template = synthesized["template"]
    machine = next(
        v for k, v in resources(template, "AWS::StepFunctions::StateMachine").items() if k.startswith("HyperPodPoller")
    )
    function = next(k for k in resources(template, "AWS::Lambda::Function") if k.startswith("HyperPodPollerFunction"))
    definition = json.loads(render(machine["Properties"]["DefinitionString"]))
    states = definition["States"]
    assert definition["StartAt"] == "WaitBetweenChecks"
    assert states["WaitBetweenChecks"] == {"Type": "Wait", "Seconds": WAIT_SECONDS, "Next": "CheckCluster"}
    check = states["CheckCluster"]
    assert check["Resource"] == f"<{function}.Arn>" and check["TimeoutSeconds"] == CHECK_TIMEOUT_SECONDS
    assert WAIT_SECONDS + CHECK_TIMEOUT_SECONDS == POLL_INTERVAL_SECONDS == 75
    # The check's Lambda and task timeout outlast DescribeCluster + one ListClusterNodes page through every
    # botocore retry (2 x 18 s), plus the signal: a slow API makes a check wait, not time out.
    assert aws.worst_case_seconds("poll") == 2 * (2 + 4) + (1 + 5)
    assert 2 * aws.worst_case_seconds("poll") + poller.SIGNAL_TIMEOUT_SECONDS < CHECK_TIMEOUT_SECONDS
    assert resources(template, "AWS::Lambda::Function")[function]["Properties"]["Timeout"] == CHECK_TIMEOUT_SECONDS
    assert check["ResultPath"] == "$.Check" and check["Next"] == "Finished"
    assert check["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.Error", "Next": "ReportError"}]
    assert "SignalError" in check["Retry"][0]["ErrorEquals"] and check["Retry"][0]["MaxAttempts"] == 3
    assert states["Finished"]["Choices"] == [
        {"Variable": "$.Check.Outcome", "StringEquals": "SUCCESS", "Next": "ClusterReady"},
        {"Variable": "$.Check.Outcome", "StringEquals": "FAILURE", "Next": "ClusterNotReady"},
    ]
    assert states["Finished"]["Default"] == "WaitBetweenChecks"
    assert states["ClusterNotReady"] == {"Type": "Fail", "Error": "HyperPodNotReady", "CausePath": "$.Check.Reason"}
    report = states["ReportError"]
    assert report["Resource"] == f"<{function}.Arn>" and report["TimeoutSeconds"] == CHECK_TIMEOUT_SECONDS
    # The whole state in, the whole state out (without $.Error); the same Choice decides: wait or fail.
    assert report["ResultPath"] == "$" and report["Next"] == "Finished"
    assert report["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.ReportFailure", "Next": "PollerFailed"}]
    assert definition["TimeoutSeconds"] == 43200 + 600
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD" and props["TracingConfiguration"] == {"Enabled": True}
    assert (
        props["LoggingConfiguration"]["Level"] == "ALL"
        and props["LoggingConfiguration"]["IncludeExecutionData"] is False
    )


def test_lambdas_use_the_bundled_asset_on_python_arm_with_retained_logs(synthesized):
    template = synthesized["template"]
    functions = {k: v["Properties"] for k, v in resources(template, "AWS::Lambda::Function").items()}
    ours = {k: p for k, p in functions.items() if p["Handler"].startswith("hyperpod_cluster_runtime.")}
    assert sorted(p["Handler"] for p in ours.values()) == [
        "hyperpod_cluster_runtime.handler.is_complete",
        "hyperpod_cluster_runtime.handler.on_event",
        "hyperpod_cluster_runtime.poller.handle",
    ]
    assert {(p["Runtime"], tuple(p["Architectures"])) for p in ours.values()} == {("python3.14", ("arm64",))}
    assert len({json.dumps(p["Code"]) for p in ours.values()}) == 1
    poller_sm = next(
        k for k in resources(template, "AWS::StepFunctions::StateMachine") if k.startswith("HyperPodPoller")
    )
    on_event = next(p for p in ours.values() if p["Handler"].endswith("on_event"))
    assert on_event["Environment"]["Variables"] == {"POLLER_STATE_MACHINE_ARN": {"Ref": poller_sm}}
    log_groups = resources(template, "AWS::Logs::LogGroup")
    for props in functions.values():  # framework functions included
        assert props["LoggingConfig"]["LogGroup"]["Ref"] in log_groups
    assert log_groups and {g["Properties"]["RetentionInDays"] for g in log_groups.values()} == {30}
    assert not resources(template, "Custom::LogRetention")


# --- cdk-nag and cfn-lint -------------------------------------------------------------------------


EXPECTED_ACKNOWLEDGED = {
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSageMakerClusterInstanceRolePolicy]",
    "AwsSolutions-IAM5[Resource::*]",
    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:{REGION}:{ACCOUNT}:network-interface/*]",
    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:{REGION}:{ACCOUNT}:instance/*]",
    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:{REGION}:{ACCOUNT}:reserved-capacity/*]",
    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudwatch:{REGION}:{ACCOUNT}:alarm:*]",
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::sagemaker-hp-lifecycle/lifecycle_scripts/*]",
    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:{REGION}:{ACCOUNT}:cluster/*]",
    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:eks:{REGION}:{ACCOUNT}:access-entry/hp-eks/*]",
    "AwsSolutions-SF2",
}


def test_cdk_nag_has_no_unacknowledged_findings_and_each_acknowledgment_has_a_reason(synthesized):
    report = synthesized["report"]
    assert report is not None
    (plugin,) = report["pluginReports"]
    assert plugin["pluginName"] == "AwsSolutions" and plugin["conclusion"] == "success"
    assert plugin.get("violations", []) == []
    suppressed = plugin["suppressedViolations"]
    assert all(len(v["reason"]) > 60 for v in suppressed)
    names = {v["ruleName"] for v in suppressed}
    lambda_arn_wildcards = {
        n for n in names if n.startswith("AwsSolutions-IAM5[Resource::<") and n.endswith(".Arn>:*]")
    }
    assert names - lambda_arn_wildcards == EXPECTED_ACKNOWLEDGED
    assert all(v["acknowledgedAt"].startswith("HyperPodTest/HyperPod/") for v in suppressed)


def test_cfn_lint_reports_nothing_but_w3005(synthesized):
    template = synthesized["outdir"] / "HyperPodTest.template.json"
    lint = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", str(template)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    findings = [line for line in lint.stdout.splitlines() if line.strip()]
    assert [f for f in findings if ":W3005:" not in f] == [], lint.stdout + lint.stderr


def test_cross_stack_references_are_acknowledged_after_cdk_resolves_them(tmp_path):
    """A bucket in another stack turns the IAM5 resource into an export name that only exists after prepare."""
    app = cdk.App(outdir=str(tmp_path))
    env = cdk.Environment(account=ACCOUNT, region=REGION)
    storage = cdk.Stack(app, "Storage", env=env)
    bucket = s3.Bucket(
        storage, "Lifecycle", bucket_name="sagemaker-hp-x", enforce_ssl=True, server_access_logs_prefix="access/"
    )
    cdk.Validations.of(bucket).acknowledge(
        cdk.Acknowledgment(
            id="AwsSolutions::AwsSolutions-S1", reason="test scaffolding: only its ARN crosses the stack boundary"
        )
    )
    stack = cdk.Stack(app, "Cluster", env=env)
    vpc = ec2.Vpc.from_vpc_attributes(
        stack, "Vpc", vpc_id="vpc-1", availability_zones=["us-east-1a"], isolated_subnet_ids=["subnet-1"]
    )
    HyperPodCluster(
        stack,
        "HyperPod",
        config=make_config().hyperpod,
        tags={},
        eks_cluster=eks.Cluster.from_cluster_attributes(stack, "Eks", cluster_name="e"),
        vpc=vpc,
        subnets=vpc.isolated_subnets,
        security_group=ec2.SecurityGroup.from_security_group_id(stack, "Sg", "sg-1"),
        lifecycle_bucket=bucket,
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    names = {v["ruleName"] for p in report["pluginReports"] for v in p["suppressedViolations"]}
    assert any(
        n.startswith("AwsSolutions-IAM5[Resource::Storage:ExportsOutput") and n.endswith("/lifecycle_scripts/*]")
        for n in names
    ), names


# --- the asset ------------------------------------------------------------------------------------


@pytest.fixture
def private_asset_dir(tmp_path, monkeypatch):
    """Tests that delete or tamper with the staged asset do it in their own temp dir, not the one the
    other xdist workers' synths are reading."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()


def test_asset_bundles_a_trimmed_sdk_and_rebuilds_byte_identical(tmp_path, private_asset_dir):
    first = asset.build()
    assert not list(first.rglob("__pycache__"))
    models = sorted(p.name for p in (first / "botocore" / "data").iterdir() if p.is_dir())
    assert models == sorted(asset.BOTOCORE_SERVICES)
    size = sum(p.stat().st_size for p in first.rglob("*") if p.is_file())
    assert size < 8 * 1024 * 1024
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    shutil.rmtree(first)
    second = asset.build()
    assert second == first
    assert _tree(second) == _tree(copy)
    app = cdk.App()
    stack = cdk.Stack(app, "A")
    assert (
        cdk.aws_lambda.Code.from_asset(str(second)).bind(stack).s3_location.object_key
        == cdk.aws_lambda.Code.from_asset(str(copy)).bind(cdk.Stack(app, "B")).s3_location.object_key
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_asset_touched_after_build_is_rebuilt_clean(private_asset_dir):
    built = asset.build()
    stray = built / "hyperpod_cluster_runtime" / "__pycache__" / "handler.cpython-311.pyc"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"not part of the asset")
    assert asset.build() == built
    assert not stray.exists()


def test_generated_wildcards_are_justified_when_cdk_merges_logging_and_tracing_statements():
    # With @aws-cdk/aws-iam:minimizePolicies (on in cdk.json) CDK merges the Step Functions log-delivery
    # and X-Ray statements into one; the merged statement is still only CDK-generated actions.
    from constructs.hyperpod_cluster.nag import generated_by_cdk

    merged = {"Action": ["logs:CreateLogDelivery", "xray:PutTraceSegments"], "Resource": "*"}
    reason = generated_by_cdk(merged)
    assert reason and "vended-log" in reason and "X-Ray" in reason
    assert generated_by_cdk({"Action": ["logs:CreateLogDelivery", "s3:GetObject"], "Resource": "*"}) is None
