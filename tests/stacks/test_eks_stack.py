"""The EKS layer: auth mode, logging, encryption, add-ons, access entries, system nodes, Helm chart order."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk.assertions import Match, Template

from stacks.eks import ADDONS, EksStack
from stacks.existing_network import created_network
from stacks.network import NetworkStack
from tests.conftest import make_config


def _stacks(**overrides) -> tuple[EksStack, Template]:
    config = make_config(**overrides)
    app = cdk.App()
    env = cdk.Environment(region=config.region)
    net = NetworkStack(app, "Net", config=config, env=env)
    eks = EksStack(
        app,
        "Eks",
        config=config,
        env=env,
        network=created_network(net),
    )
    return eks, Template.from_stack(eks)


def test_cluster_uses_api_auth_all_control_plane_logs_and_kms_secrets():
    _, template = _stacks()
    template.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "Name": "hyperpod-sky-eks",
            "Version": "1.33",
            "AccessConfig": Match.object_like(
                {
                    "AuthenticationMode": "API_AND_CONFIG_MAP",
                    "BootstrapClusterCreatorAdminPermissions": False,
                }
            ),
            "Logging": {
                "ClusterLogging": {
                    "EnabledTypes": Match.array_equals(
                        [{"Type": t} for t in ("api", "audit", "authenticator", "controllerManager", "scheduler")]
                    )
                }
            },
            "EncryptionConfig": [Match.object_like({"Resources": ["secrets"]})],
            "ResourcesVpcConfig": Match.object_like({"EndpointPublicAccess": True, "EndpointPrivateAccess": True}),
        },
    )
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_api_only_auth_and_private_endpoint_follow_config():
    _, template = _stacks(**{"eks.authentication_mode": "API", "eks.endpoint_access": "private", "eks.version": "1.32"})
    template.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "Version": "1.32",
            "AccessConfig": Match.object_like({"AuthenticationMode": "API"}),
            "ResourcesVpcConfig": Match.object_like({"EndpointPublicAccess": False, "EndpointPrivateAccess": True}),
        },
    )


def test_cluster_is_not_in_auto_mode():
    _, template = _stacks()
    props = template.find_resources("AWS::EKS::Cluster")
    (cluster,) = props.values()
    assert "ComputeConfig" not in cluster["Properties"] or not cluster["Properties"]["ComputeConfig"].get("Enabled")


def test_control_plane_log_group_is_adopted_with_retention_not_created_by_name_and_comes_first():
    # EKS recreates /aws/eks/<name>/cluster with its last lines after the cluster is deleted, so an
    # AWS::Logs::LogGroup of that name would fail the next deploy (tests/control_plane_log_group has the moto run).
    _, template = _stacks()
    assert not template.find_resources(
        "AWS::Logs::LogGroup", {"Properties": {"LogGroupName": "/aws/eks/hyperpod-sky-eks/cluster"}}
    )
    ((log_id, retention),) = template.find_resources("Custom::ServiceLogGroupRetention").items()
    props = retention["Properties"]
    assert (props["LogGroupName"], props["RetentionInDays"], props["RemovalPolicy"]) == (
        "/aws/eks/hyperpod-sky-eks/cluster",
        "30",
        "destroy",
    )
    (cluster,) = template.find_resources("AWS::EKS::Cluster").values()
    assert log_id in cluster["DependsOn"]


def test_the_four_addons_are_installed():
    _, template = _stacks()
    names = sorted(r["Properties"]["AddonName"] for r in template.find_resources("AWS::EKS::Addon").values())
    assert names == sorted(ADDONS)


def test_vpc_cni_version_is_pinned_when_configured():
    _, template = _stacks(**{"eks.vpc_cni_version": "v1.19.2-eksbuild.1"})
    template.has_resource_properties("AWS::EKS::Addon", {"AddonName": "vpc-cni", "AddonVersion": "v1.19.2-eksbuild.1"})


def test_each_admin_gets_a_cluster_admin_access_entry():
    admins = ["arn:aws:iam::123456789012:role/Admin", "arn:aws:iam::123456789012:user/alice"]
    _, template = _stacks(**{"eks.admin_principal_arns": admins})
    entries = {
        r["Properties"]["PrincipalArn"]: r["Properties"]["AccessPolicies"]
        for r in template.find_resources("AWS::EKS::AccessEntry").values()
        if isinstance(r["Properties"]["PrincipalArn"], str)
    }
    assert sorted(entries) == sorted(admins)
    for policies in entries.values():
        ((policy,),) = [policies]
        assert policy["AccessScope"] == {"Type": "cluster"}
        assert policy["PolicyArn"]["Fn::Join"][1][-1] == ":eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


def test_system_node_group_size_follows_config_and_may_be_zero():
    _, template = _stacks()
    template.has_resource_properties(
        "AWS::EKS::Nodegroup",
        {
            "ScalingConfig": {"DesiredSize": 2, "MinSize": 0, "MaxSize": 2},
            "InstanceTypes": ["m7i.large"],
            "Labels": {"node-role": "system"},
        },
    )
    _, empty = _stacks(**{"eks.system_node_group.desired_size": "0"})
    empty.has_resource_properties(
        "AWS::EKS::Nodegroup", {"ScalingConfig": {"DesiredSize": 0, "MinSize": 0, "MaxSize": 1}}
    )


def test_helm_chart_is_installed_after_addons_and_system_nodes():
    stack, template = _stacks()
    helm_ids = {stack.get_logical_id(c) for c in stack.helm_chart.node.find_all() if isinstance(c, cdk.CfnResource)}
    custom = [k for k, v in template.find_resources("AWS::CloudFormation::CustomResource").items() if k in helm_ids]
    custom += [
        k
        for k in template.to_json()["Resources"]
        if k in helm_ids and template.to_json()["Resources"][k]["Type"].startswith("Custom::")
    ]
    assert custom, "the Helm chart custom resource is missing"
    resources = template.to_json()["Resources"]
    addon_ids = set(template.find_resources("AWS::EKS::Addon"))
    nodegroup_ids = set(template.find_resources("AWS::EKS::Nodegroup"))
    for logical_id in set(custom):
        depends = set(resources[logical_id].get("DependsOn", []))
        assert addon_ids <= depends and nodegroup_ids <= depends


def test_stack_exports_cluster_name_arn_and_region():
    _, template = _stacks()
    outputs = template.to_json()["Outputs"]
    assert {"EksClusterName", "EksClusterArn", "Region"} <= set(outputs)


def test_system_nodes_get_an_explicit_al2023_ami_never_cdks_al2_default():
    # CDK writes AL2_x86_64 when no AMI type is set; EKS refuses AL2 node groups from Kubernetes 1.33 on.
    _, template = _stacks()
    template.has_resource_properties("AWS::EKS::Nodegroup", {"AmiType": "AL2023_x86_64_STANDARD"})
    _, graviton = _stacks(**{"eks.system_node_group.instance_type": "m7g.large"})
    graviton.has_resource_properties(
        "AWS::EKS::Nodegroup", {"AmiType": "AL2023_ARM_64_STANDARD", "InstanceTypes": ["m7g.large"]}
    )
    _, bottlerocket = _stacks(**{"eks.system_node_group.ami_type": "BOTTLEROCKET_x86_64"})
    bottlerocket.has_resource_properties("AWS::EKS::Nodegroup", {"AmiType": "BOTTLEROCKET_x86_64"})


def test_system_and_hyperpod_nodes_admit_each_other_with_fixed_logical_ids():
    # Managed nodes carry only the EKS cluster group, HyperPod nodes only the HyperPod group: without
    # these, HyperPod pods reach no coredns (reachability proof: tests/rules/test_network_reachability.py).
    _, template = _stacks()
    rules = template.find_resources("AWS::EC2::SecurityGroupIngress")
    (cluster_id,) = template.find_resources("AWS::EKS::Cluster")
    cluster_sg = {"Fn::GetAtt": [cluster_id, "ClusterSecurityGroupId"]}
    into_cluster = rules["ClusterSecurityGroupFromHyperPodNodes"]["Properties"]
    into_hyperpod = rules["HyperPodSecurityGroupFromSystemNodes"]["Properties"]
    assert into_cluster["GroupId"] == cluster_sg and into_cluster["IpProtocol"] == "-1"
    assert into_hyperpod["SourceSecurityGroupId"] == cluster_sg and into_hyperpod["IpProtocol"] == "-1"
    assert into_cluster["SourceSecurityGroupId"] == into_hyperpod["GroupId"]
    assert "Fn::ImportValue" in into_hyperpod["GroupId"]
