"""preflight: each check fails on the problem it exists for and passes without it, against moto (EC2, S3,
SSM, SageMaker clusters, GuardDuty) and botocore Stubber for the APIs moto lacks (Service Quotas'
applied values, EKS versions/add-ons and access config, DescribeTrainingPlan)."""

from __future__ import annotations

import argparse
import datetime as dt
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from post_deploy import preflight
from post_deploy import preflight_checks as checks
from post_deploy.address_budget import node_addresses, subnet_capacity
from post_deploy.exit_codes import ExitCode
from tests.conftest import make_config

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture
def clients(aws):
    return checks.Clients(aws)


def stub(clients: checks.Clients, service: str) -> Stubber:
    client = clients.session.client(service, region_name=REGION)
    stubber = Stubber(client)
    clients.cache[service] = client
    return stubber


def target(clients, **overrides) -> checks.Target:
    t = checks.Target(config=make_config(**overrides), account=ACCOUNT)
    levels = {f.level for f in checks.resolve_az_ids(clients, t)}
    assert checks.BLOCKED not in levels
    return t


def levels(findings) -> list[str]:
    return [f.level for f in findings]


def quotas(stubber: Stubber, values: dict[str, float]) -> None:
    stubber.add_response(
        "list_service_quotas",
        {
            "Quotas": [
                {"QuotaName": name, "Value": value, "QuotaCode": f"L-{i:08X}", "ServiceCode": "sagemaker"}
                for i, (name, value) in enumerate(values.items())
            ]
        },
        {"ServiceCode": "sagemaker"},
    )
    stubber.activate()


ENOUGH = {
    "ml.p5.48xlarge for cluster usage": 4,
    checks.QUOTA_PER_CLUSTER: 20,
    checks.QUOTA_TOTAL: 30,
}


# ----- AZ ids ------------------------------------------------------------------------------------------
def test_az_names_resolve_to_this_accounts_az_ids(clients):
    t = checks.Target(config=make_config(), account=ACCOUNT)
    findings = checks.resolve_az_ids(clients, t)
    assert t.az_ids == ("use1-az6",)  # moto's us-east-1a
    assert levels(findings) == ["ok"]


def test_an_az_id_the_account_lacks_is_blocked(clients):
    t = checks.Target(config=make_config(**{"hyperpod.availability_zone_ids": "[use1-az9]"}), account=ACCOUNT)
    [finding] = checks.resolve_az_ids(clients, t)
    assert finding.level == "blocked" and "use1-az9 is not an AZ id" in finding.message


# ----- quotas ---------------------------------------------------------------------------------------------
def test_quotas_that_cover_the_groups_pass(clients):
    quotas(stub(clients, "service-quotas"), ENOUGH)
    findings = checks.check_quotas(clients, target(clients))
    assert levels(findings) == ["ok", "ok", "ok"]
    assert "'ml.p5.48xlarge for cluster usage' (L-00000000) is 4, 2 needed" in findings[0].message


def test_a_zero_instance_type_quota_blocks_with_the_quota_name_to_raise(clients):
    quotas(stub(clients, "service-quotas"), {**ENOUGH, "ml.p5.48xlarge for cluster usage": 0})
    finding = checks.check_quotas(clients, target(clients))[0]
    assert finding.level == "blocked"
    assert "'ml.p5.48xlarge for cluster usage'" in finding.fix and "Service Quotas" in finding.fix


def test_instances_of_other_clusters_count_against_the_total(clients, aws):
    sm = aws.client("sagemaker")
    sm.create_cluster(
        ClusterName="someone-else",
        InstanceGroups=[
            {
                "InstanceGroupName": "g",
                "InstanceType": "ml.p5.48xlarge",
                "InstanceCount": 3,
                "LifeCycleConfig": {"SourceS3Uri": "s3://sagemaker-x/", "OnCreate": "on_create.sh"},
                "ExecutionRole": f"arn:aws:iam::{ACCOUNT}:role/r",
                "ThreadsPerCore": 1,
            }
        ],
    )
    quotas(stub(clients, "service-quotas"), {**ENOUGH, checks.QUOTA_TOTAL: 4})
    findings = checks.check_quotas(clients, target(clients))
    assert findings[0].level == "blocked" and "5 needed (3 held by other clusters)" in findings[0].message
    assert findings[2].level == "blocked" and checks.QUOTA_TOTAL in findings[2].message


def test_a_quota_name_aws_does_not_list_is_a_warning_not_a_pass(clients):
    quotas(stub(clients, "service-quotas"), {checks.QUOTA_PER_CLUSTER: 20, checks.QUOTA_TOTAL: 30})
    assert checks.check_quotas(clients, target(clients))[0].level == "warning"


# ----- offerings --------------------------------------------------------------------------------------
def test_a_type_offered_in_the_az_id_passes(clients):
    assert levels(checks.check_offerings(clients, target(clients))) == ["ok"]


def test_a_type_not_offered_in_the_az_id_warns_with_the_ids_that_offer_it(clients):
    t = target(
        clients,
        **{
            "hyperpod.instance_groups[0].instance_type": "ml.g5.8xlarge",
            "hyperpod.instance_groups[0].deep_health_checks": "[]",
            "hyperpod.availability_zone_ids": "[use1-az3]",  # moto offers no g5.8xlarge there
        },
    )
    [finding] = checks.check_offerings(clients, t)
    assert finding.level == "warning" and "g5.8xlarge is not offered in use1-az3" in finding.message
    assert "use1-az1" in finding.fix


# ----- training plans ------------------------------------------------------------------------------------
PLAN_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-plan/p5-week"


def plan_response(az_id: str, available: int = 2, status: str = "Active") -> dict:
    return {
        "TrainingPlanArn": PLAN_ARN,
        "TrainingPlanName": "p5-week",
        "Status": status,
        "AvailableInstanceCount": available,
        "TotalInstanceCount": 2,
        "TargetResources": ["hyperpod-cluster"],
        "ReservedCapacitySummaries": [
            {
                "ReservedCapacityArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:reserved-capacity/rc-1",
                "InstanceType": "ml.p5.48xlarge",
                "TotalInstanceCount": 2,
                "Status": "Active",
                "AvailabilityZone": "us-east-1a",
                "AvailabilityZoneId": az_id,
            }
        ],
    }


def _plan_findings(clients, response):
    t = target(clients, **{"hyperpod.instance_groups[0].training_plan_arn": PLAN_ARN})
    stubber = stub(clients, "sagemaker")
    stubber.add_response("describe_training_plan", response, {"TrainingPlanName": "p5-week"})
    stubber.activate()
    return checks.check_training_plans(clients, t)


def test_a_training_plan_in_the_subnets_az_id_with_capacity_passes(clients):
    assert levels(_plan_findings(clients, plan_response("use1-az6"))) == ["ok"]


def test_a_training_plan_in_another_az_id_is_refused_with_the_id_to_set(clients):
    [finding] = _plan_findings(clients, plan_response("use1-az4"))
    assert finding.level == "blocked" and "reserves capacity in use1-az4" in finding.message
    assert finding.fix.startswith("set hyperpod.availability_zone_ids: [use1-az4]")


def test_a_training_plan_without_enough_instances_or_expired_is_refused(clients):
    findings = _plan_findings(clients, plan_response("use1-az6", available=1, status="Expired"))
    assert levels(findings) == ["blocked", "blocked"]


# ----- addresses ---------------------------------------------------------------------------------------
def test_p5_node_address_count_from_ec2_data(aws):
    data = aws.client("ec2").describe_instance_types(InstanceTypes=["p5.48xlarge"])["InstanceTypes"][0]
    per = node_addresses("ml.p5.48xlarge", data)
    # 1 primary, 32 EFA, network card 0: 2 ENIs x (50 - 1) pod addresses.
    assert (per.primary, per.efa, per.pods) == (1, 32, 98)
    assert subnet_capacity(18) == 16379


def _existing_network(aws, hyperpod_cidr: str, self_egress: bool = True, eks_in_other_vpc: bool = False) -> dict:
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    other = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    hp = ec2.create_subnet(VpcId=vpc, CidrBlock=hyperpod_cidr, AvailabilityZoneId="use1-az6")["Subnet"]["SubnetId"]
    eks_a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.100.0/24", AvailabilityZoneId="use1-az6")["Subnet"]["SubnetId"]
    eks_b = ec2.create_subnet(
        VpcId=other if eks_in_other_vpc else vpc,
        CidrBlock="10.9.101.0/24" if eks_in_other_vpc else "10.0.101.0/24",
        AvailabilityZoneId="use1-az1",
    )["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(VpcId=vpc, GroupName="efa", Description="efa")["GroupId"]
    pairs = [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": sg}]}]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=pairs)
    if self_egress:
        ec2.authorize_security_group_egress(GroupId=sg, IpPermissions=pairs)
    return {
        "network.existing.vpc_id": vpc,
        "network.existing.hyperpod_subnet_ids": f"[{hp}]",
        "network.existing.eks_subnet_ids": f"[{eks_a}, {eks_b}]",
        "network.existing.security_group_id": sg,
    }


def test_new_hyperpod_subnets_hold_the_default_cluster(clients):
    [finding] = checks.check_addresses(clients, target(clients))
    assert finding.level == "ok" and "nodes need 66 to start, 262 with every pod address" in finding.message


def test_an_existing_subnet_too_small_to_start_the_nodes_blocks(clients, aws):
    t = target(clients, **_existing_network(aws, "10.0.0.0/26"))  # 59 free, two p5 need 66
    [finding] = checks.check_addresses(clients, t)
    assert finding.level == "blocked" and "59 free" in finding.message


def test_an_existing_subnet_that_starts_nodes_but_not_all_pods_warns(clients, aws):
    t = target(
        clients,
        **_existing_network(aws, "10.0.0.0/25"),
        **{
            "hyperpod.instance_groups[0].instance_count": "1",
            "hyperpod.instance_groups[0].deep_health_checks": "[InstanceStress]",
        },
    )
    [finding] = checks.check_addresses(clients, t)  # 123 free: 33 to start, 131 full
    assert finding.level == "warning" and "pods go Pending" in finding.message


# ----- bootstrap -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "level"), [(None, "blocked"), ("5", "blocked"), ("21", "ok")])
def test_bootstrap_version_parameter(clients, aws, value, level):
    if value:
        aws.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value=value, Type="String")
    [finding] = checks.check_bootstrap(clients, target(clients))
    assert finding.level == level
    if level == "blocked":
        assert finding.fix == f"cdk bootstrap aws://{ACCOUNT}/{REGION}"


# ----- EKS versions and add-ons ----------------------------------------------------------------------------
def _eks_versions(clients, offered_cni: list[str], status: str = "STANDARD_SUPPORT") -> Stubber:
    stubber = stub(clients, "eks")
    stubber.add_response(
        "describe_cluster_versions",
        {"clusterVersions": [{"clusterVersion": "1.33", "versionStatus": status}]},
        {"clusterVersions": ["1.33"]},
    )
    for addon in ("vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent"):
        versions = offered_cni if addon == "vpc-cni" else ["v1.0.0-eksbuild.1"]
        stubber.add_response(
            "describe_addon_versions",
            {"addons": [{"addonName": addon, "addonVersions": [{"addonVersion": v} for v in versions]}]},
            {"kubernetesVersion": "1.33", "addonName": addon},
        )
    stubber.activate()
    return stubber


def test_eks_version_and_addons_offered_pass(clients):
    _eks_versions(clients, ["v1.19.2-eksbuild.1"])
    assert set(levels(checks.check_eks_versions(clients, target(clients)))) == {"ok"}


def test_a_pinned_vpc_cni_eks_does_not_offer_is_blocked(clients):
    _eks_versions(clients, ["v1.19.2-eksbuild.1"])
    findings = checks.check_eks_versions(clients, target(clients, **{"eks.vpc_cni_version": "v1.18.9-eksbuild.1"}))
    [blocked] = [f for f in findings if f.level == "blocked"]
    assert "vpc-cni v1.18.9-eksbuild.1 is not offered" in blocked.message


def test_a_version_in_extended_support_warns(clients):
    _eks_versions(clients, ["v1.19.2-eksbuild.1"], status="EXTENDED_SUPPORT")
    assert checks.check_eks_versions(clients, target(clients))[0].level == "warning"


# ----- existing network ---------------------------------------------------------------------------------
def test_an_existing_network_as_configured_passes(clients, aws):
    t = target(clients, **_existing_network(aws, "10.0.0.0/20"))
    assert levels(checks.check_existing_network(clients, t)) == ["ok"]


def test_an_existing_group_without_the_self_egress_rule_is_blocked(clients, aws):
    t = target(clients, **_existing_network(aws, "10.0.0.0/20", self_egress=False))
    [finding] = checks.check_existing_network(clients, t)
    assert finding.level == "blocked" and "does not allow all traffic to itself" in finding.message
    assert "authorize-security-group-egress" in finding.fix


def test_an_existing_group_without_all_egress_warns(clients, aws):
    config = _existing_network(aws, "10.0.0.0/20")
    sg = config["network.existing.security_group_id"]
    aws.client("ec2").revoke_security_group_egress(
        GroupId=sg, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    [finding] = checks.check_existing_network(clients, target(clients, **config))
    assert finding.level == "warning" and "does not allow all egress" in finding.message


def test_an_eks_subnet_of_another_vpc_is_blocked(clients, aws):
    t = target(clients, **_existing_network(aws, "10.0.0.0/20", eks_in_other_vpc=True))
    findings = checks.check_existing_network(clients, t)
    assert any(f.level == "blocked" and "is in vpc-" in f.message for f in findings)


# ----- existing cluster ------------------------------------------------------------------------------------
def _existing_cluster(clients, aws, mode: str, cni: str = "v1.19.2-eksbuild.1", endpoint: dict | None = None):
    network = _existing_network(aws, "10.0.0.0/20")
    t = target(
        clients,
        **network,
        **{"eks.existing.cluster_name": "team", "eks.existing.cluster_security_group_id": "sg-0123456789abcdef0"},
    )
    stubber = stub(clients, "eks")
    stubber.add_response(
        "describe_cluster",
        {
            "cluster": {
                "name": "team",
                "status": "ACTIVE",
                "version": "1.33",
                "accessConfig": {"authenticationMode": mode},
                "resourcesVpcConfig": {
                    "vpcId": network["network.existing.vpc_id"],
                    "clusterSecurityGroupId": "sg-0123456789abcdef0",
                    **(endpoint or {"endpointPrivateAccess": True}),
                },
            }
        },
        {"name": "team"},
    )
    stubber.add_response("list_addons", {"addons": ["vpc-cni", "coredns"]}, {"clusterName": "team"})
    stubber.add_response(
        "describe_addon",
        {"addon": {"addonName": "vpc-cni", "addonVersion": cni}},
        {"clusterName": "team", "addonName": "vpc-cni"},
    )
    stubber.activate()
    return checks.check_existing_cluster(clients, t)


def test_an_existing_cluster_with_api_access_entries_passes(clients, aws):
    assert levels(_existing_cluster(clients, aws, "API_AND_CONFIG_MAP")) == ["ok"]


def test_an_existing_cluster_with_config_map_only_authentication_is_blocked(clients, aws):
    [finding] = _existing_cluster(clients, aws, "CONFIG_MAP")
    assert finding.level == "blocked" and "authenticationMode=API_AND_CONFIG_MAP" in finding.fix


def test_an_existing_cluster_reachable_only_from_listed_public_addresses_warns(clients, aws):
    endpoint = {"endpointPrivateAccess": False, "endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}
    [finding] = _existing_cluster(clients, aws, "API", endpoint=endpoint)
    assert finding.level == "warning" and "admits only 203.0.113.0/24" in finding.message


def test_an_existing_cluster_with_an_old_vpc_cni_is_blocked(clients, aws):
    [finding] = _existing_cluster(clients, aws, "API", cni="v1.16.0-eksbuild.1")
    assert finding.level == "blocked" and "v1.18.3" in finding.message


# ----- bucket ---------------------------------------------------------------------------------------------
def test_the_app_bucket_name_free_passes_and_taken_blocks(clients, aws):
    t = target(clients)
    assert levels(checks.check_bucket(clients, t)) == ["ok"]
    aws.client("s3").create_bucket(Bucket=f"sagemaker-hyperpod-sky-lifecycle-{ACCOUNT}-{REGION}")
    [finding] = checks.check_bucket(clients, t)
    assert finding.level == "blocked" and "already exists" in finding.message


def test_an_existing_bucket_in_the_cluster_region_passes(clients, aws):
    aws.client("s3").create_bucket(Bucket="sagemaker-team-scripts")
    t = target(clients, **{"lifecycle_bucket.existing_bucket_name": "sagemaker-team-scripts"})
    [finding] = checks.check_bucket(clients, t)
    assert finding.level == "ok" and "hyperpod-sky/lifecycle_scripts/" in finding.message


def test_an_existing_bucket_in_another_region_or_missing_is_blocked(clients, aws):
    aws.client("s3", region_name="us-west-2").create_bucket(
        Bucket="sagemaker-team-west", CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    west = target(clients, **{"lifecycle_bucket.existing_bucket_name": "sagemaker-team-west"})
    [finding] = checks.check_bucket(clients, west)
    assert finding.level == "blocked" and "is in us-west-2" in finding.message
    missing = target(clients, **{"lifecycle_bucket.existing_bucket_name": "sagemaker-nobody"})
    assert "does not exist" in checks.check_bucket(clients, missing)[0].message


# ----- GuardDuty -------------------------------------------------------------------------------------------
def test_guardduty_runtime_monitoring_with_agents_warns_about_its_endpoint(clients, aws):
    assert levels(checks.check_guardduty(clients, target(clients))) == ["ok"]
    aws.client("guardduty").create_detector(
        Enable=True,
        Features=[
            {
                "Name": "RUNTIME_MONITORING",
                "Status": "ENABLED",
                "AdditionalConfiguration": [{"Name": "EC2_AGENT_MANAGEMENT", "Status": "ENABLED"}],
            }
        ],
    )
    [finding] = checks.check_guardduty(clients, target(clients))
    assert finding.level == "warning" and "guardduty-data VPC endpoint" in finding.message


# ----- the whole step -----------------------------------------------------------------------------------------
def _args(*context: str, as_json: bool = True) -> argparse.Namespace:
    return argparse.Namespace(cdk_context=list(context), profile=None, qualifier="hnb659fds", json=as_json)


def _ready_account(clients, aws, quota_values=ENOUGH):
    aws.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="21", Type="String")
    quotas(stub(clients, "service-quotas"), quota_values)
    _eks_versions(clients, ["v1.19.2-eksbuild.1"])


def test_a_ready_account_exits_0_and_prints_the_cost_with_sources(clients, aws, capsys):
    _ready_account(clients, aws)
    code = preflight.run(_args(), clients=clients)
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert code == 0 and summary["ok"] is True
    assert {f["level"] for f in summary["findings"]} == {"ok"}
    assert "Estimated on-demand cost in us-east-1" in err and "price source (read " in err
    assert summary["cost"]["lower_bound"] is True  # no HyperPod price is known (config/pricing.py)
    assert any(i["source"] for i in summary["cost"]["items"])


def test_a_blocked_account_exits_with_the_blocked_code_and_one_line_per_problem(clients, aws, capsys):
    _ready_account(clients, aws, {**ENOUGH, "ml.p5.48xlarge for cluster usage": 0})
    code = preflight.run(_args(as_json=False), clients=clients)
    err = capsys.readouterr().err
    assert code == ExitCode.PREFLIGHT_BLOCKED == 11
    [line] = [line for line in err.splitlines() if line.startswith("BLOCKED")]
    assert line.startswith("BLOCKED  quota: 'ml.p5.48xlarge for cluster usage'") and "-> fix:" in line


def test_warnings_only_exit_with_their_own_code(clients, aws):
    _ready_account(clients, aws)
    aws.client("guardduty").create_detector(
        Enable=True,
        Features=[
            {
                "Name": "EKS_RUNTIME_MONITORING",
                "Status": "ENABLED",
                "AdditionalConfiguration": [{"Name": "EKS_ADDON_MANAGEMENT", "Status": "ENABLED"}],
            }
        ],
    )
    assert preflight.run(_args(), clients=clients) == ExitCode.PREFLIGHT_WARNINGS == 12


def test_a_refused_call_is_reported_as_not_checked_never_passed(clients, aws):
    _ready_account(clients, aws)
    refused = stub(clients, "guardduty")
    refused.add_client_error("list_detectors", "AccessDeniedException", "not allowed", 403)
    refused.activate()
    findings = preflight.run_checks(clients, checks.Target(config=make_config(), account=ACCOUNT))
    [finding] = [f for f in findings if f.check == "guardduty"]
    assert finding.level == "warning" and finding.message.startswith("not checked: guardduty:ListDetectors")


def test_a_config_error_is_a_usage_error_before_any_call():
    with pytest.raises(preflight.StepError) as info:
        preflight.load_deploy_config(["network.existing.vpc_id=vpc-1"])
    assert info.value.code == ExitCode.USAGE and "network.existing" in info.value.message


def test_credentials_of_another_account_are_refused(clients):
    with pytest.raises(preflight.StepError) as info:
        preflight.run(_args("account=210987654321"), clients=clients)
    assert "account 123456789012 but the config says 210987654321" in info.value.message


def test_cost_leaves_out_what_an_existing_vpc_and_cluster_already_pay(clients, aws):
    from config import pricing

    network = _existing_network(aws, "10.0.0.0/20")
    config = make_config(
        **network,
        **{"eks.existing.cluster_name": "t", "eks.existing.cluster_security_group_id": "sg-0123456789abcdef0"},
    )
    whats = [i.what for i in pricing.estimate_hourly(config, on=dt.date(2026, 12, 1)).items]
    assert not any(w.startswith(("NAT", "public IPv4", "EKS control plane", "system nodes")) for w in whats)
    assert any(w.startswith("HyperPod ml.p5.48xlarge") for w in whats)
