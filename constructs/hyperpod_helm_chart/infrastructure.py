"""Installs the SageMaker HyperPod dependency Helm chart into an EKS cluster at deploy time.

The chart lives only in the aws/sagemaker-hyperpod-cli repository (no Helm repository, no OCI
registry) and ``cdk synth`` must stay offline, so ``aws_eks_v2.HelmChart`` (repository, OCI or a
synth-time asset) cannot install it. Instead a custom resource's Lambda fetches the pinned commit
at deploy time, checks the chart files' digest and runs helm from the kubectl v33 layer. See
``runtime/helm_chart_installer`` for what happens on create, update and delete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from aws_cdk.lambda_layer_kubectl_v33 import KubectlV33Layer

from config.model import HelmChartConfig
from constructs import Construct
from constructs.hyperpod_helm_chart.chart_values import chart_values
from constructs.nag_acknowledgment import acknowledge

RUNTIME_DIR = Path(__file__).parent / "runtime"
HANDLER = "helm_chart_installer.handler.on_event"
ARCHIVE_BASE_URL = "https://codeload.github.com"
# Where the KubectlV33Layer puts helm inside the Lambda.
HELM_BINARY = "/opt/helm/helm"
RESOURCE_TYPE = "Custom::HyperPodHelmChart"


class HyperPodHelmChart(Construct):
    """The HyperPod dependency chart as a helm release managed by CloudFormation.

    Attributes:
      chart_digest: the chart files sha256 the Lambda computed (a token; pin it in
        ``eks.helm_chart.files_sha256``).
      release_name, namespace: where the release lives.
      handler_role: the role that talks to the cluster (it has an EKS access entry).
      resource: the custom resource; make HyperPod's CreateCluster depend on it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: eks.ICluster,
        chart: HelmChartConfig,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        subnets: Sequence[ec2.ISubnet] | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        kubectl_layer: lambda_.ILayerVersion | None = None,
    ) -> None:
        """``subnets``: where the installer runs (it needs the cluster endpoint and GitHub); default every
        private subnet with egress of ``vpc``. An imported VPC has no subnet types, so pass them."""
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.release_name = chart.release_name
        self.namespace = chart.namespace

        self.handler_role = iam.Role(
            self,
            "HandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Installs the HyperPod dependency Helm chart into the EKS cluster",
            managed_policies=[
                # Lambda attaches VPC functions through ENIs it creates with this role; the AWS-managed
                # policy is the documented minimum and also covers writing the function's logs.
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSLambdaVPCAccessExecutionRole"),
            ],
        )
        self.handler_role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadClusterEndpoint", actions=["eks:DescribeCluster"], resources=[cluster.cluster_arn]
            )
        )
        acknowledge(
            self.handler_role,
            "Required for a Lambda function in a VPC: Lambda creates and deletes the function's ENIs with "
            "these EC2 actions, and CreateFunction validates they are granted. AWS maintains the policy; "
            "it grants no data access beyond ENI management and CloudWatch Logs writes.",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]",
        )

        log_group = logs.LogGroup(
            self, "HandlerLogs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        selection = {"subnets": list(subnets)} if subnets else {"subnet_type": ec2.SubnetType.PRIVATE_WITH_EGRESS}
        private_subnets = ec2.SubnetSelection(**selection)
        self.handler = lambda_.Function(
            self,
            "Handler",
            description="Installs/upgrades/uninstalls the HyperPod dependency Helm chart (custom resource)",
            runtime=lambda_.Runtime.PYTHON_3_13,
            # helm and kubectl in the KubectlV33Layer are linux/amd64 binaries.
            architecture=lambda_.Architecture.X86_64,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(RUNTIME_DIR), exclude=["**/__pycache__", "**/*.pyc"]),
            layers=[kubectl_layer or KubectlV33Layer(self, "KubectlLayer")],
            role=self.handler_role,
            log_group=log_group,
            memory_size=1024,
            ephemeral_storage_size=cdk.Size.mebibytes(1024),
            # The Provider framework's own function also stops at 15 minutes; the handler budgets its
            # helm timeouts from the time it has left, so it answers before either limit.
            timeout=cdk.Duration.minutes(14),
            vpc=vpc,
            vpc_subnets=private_subnets,
            security_groups=[security_group],
            environment={"ARCHIVE_BASE_URL": ARCHIVE_BASE_URL, "HELM_BINARY": HELM_BINARY},
        )
        acknowledge(
            self.handler,
            "Pinned on purpose to python3.13, a current AWS-supported Lambda runtime: the installer runs "
            "helm subprocesses from the KubectlV33Layer, and a runtime bump should be a reviewed change, "
            "not a side effect of upgrading CDK or cdk-nag.",
            "AwsSolutions-L1",
        )

        # helm installs CRDs, ClusterRoles/Bindings, webhooks and namespaces across the cluster, which no
        # namespaced or view/edit policy allows; cluster admin is the smallest EKS access policy that can.
        # The entry belongs to this function's role only, and is deleted with the release.
        self.access_entry = eks.AccessEntry(
            self,
            "HandlerAccess",
            cluster=cluster,
            principal=self.handler_role.role_arn,
            access_policies=[
                eks.AccessPolicy.from_access_policy_name(
                    "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER
                )
            ],
        )

        provider_logs = logs.LogGroup(
            self, "ProviderLogs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        provider = cr.Provider(self, "Provider", on_event_handler=self.handler, log_group=provider_logs)
        framework_role = provider.node.find_child("framework-onEvent").node.find_child("ServiceRole")
        acknowledge(
            framework_role,
            "The CDK Provider framework's relay function only writes its own CloudWatch logs; the AWS managed "
            "basic execution policy is what CDK attaches to it and grants nothing else.",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        )
        handler_logical_id = stack.get_logical_id(self.handler.node.default_child)
        acknowledge(
            framework_role.node.find_child("DefaultPolicy"),
            "The framework may invoke versions and aliases of this one installer function only "
            "(lambda:InvokeFunction on its ARN and ARN:*); no other function is reachable.",
            f"AwsSolutions-IAM5[Resource::<{handler_logical_id}.Arn>:*]",
        )

        self.resource = cdk.CustomResource(
            self,
            "Release",
            service_token=provider.service_token,
            resource_type=RESOURCE_TYPE,
            # The handler answers within 15 minutes; fail fast rather than waiting CloudFormation's hour if
            # the framework ever cannot respond.
            service_timeout=cdk.Duration.minutes(20),
            properties={
                "ClusterName": cluster.cluster_name,
                "Region": stack.region,
                "Repository": chart.repository,
                "Commit": chart.commit,
                "ChartPath": chart.chart_path,
                "ExpectedFilesSha256": chart.files_sha256,
                "ReleaseName": chart.release_name,
                "Namespace": chart.namespace,
                # One JSON string: CloudFormation would turn booleans inside a nested object into strings,
                # and helm conditions need real booleans.
                "Values": stack.to_json_string(chart_values(stack.region)),
            },
        )
        # The access entry must exist before helm runs and outlive the release on delete; the NAT routes
        # must exist before the handler fetches the chart from GitHub.
        self.resource.node.add_dependency(self.access_entry)
        # (Per subnet: selecting imported subnets would ask for AZs they were imported without.)
        for subnet in subnets or vpc.select_subnets(**selection).subnets:
            self.resource.node.add_dependency(subnet.internet_connectivity_established)
        self.chart_digest = self.resource.get_att_string("FilesSha256")
