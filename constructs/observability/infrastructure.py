"""HyperPod observability: the ``amazon-sagemaker-hyperpod-observability`` EKS add-on writing to an
Amazon Managed Service for Prometheus workspace, and optionally an Amazon Managed Grafana workspace
that may read it.

What AWS builds for the same switch (the HyperPod console stacks and aws-samples/awsome-distributed-training
``terraform-modules/.../modules/observability``): the add-on with a Pod Identity association for its
collector's service account ``hyperpod-observability-operator-otel-collector``, configured with the
workspace (``ampWorkspace.prometheusEndpoint``/``arn``, ``amgWorkspace.workspaceName``/``arn``), metric
levels and logging; a role allowed ``aps:RemoteWrite`` (and, for logging, the CloudWatch Logs actions on
``/aws/sagemaker/Clusters/*``); a Grafana workspace (``CUSTOMER_MANAGED`` role, IAM Identity Center
sign-in) whose role reads Prometheus. Narrower here: ``aps:RemoteWrite`` and the Grafana read actions
name this workspace only, the log actions this HyperPod cluster's log groups only, and the log actions
exist only when ``observability.logging`` is on.

Grafana's data source: CloudFormation has no resource for a data source inside a workspace (it is an
object of Grafana's own HTTP API, which needs a workspace service-account token). AWS's stacks create one
with a token-minting custom resource; this construct instead gives the workspace a role that can read
exactly this Prometheus workspace and lists ``PROMETHEUS`` in its data sources, so adding the data source
is one documented console step (README, "Observability") that needs no long-lived admin token.
"""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy, Stack
from aws_cdk import aws_aps as aps
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_grafana as grafana
from aws_cdk import aws_iam as iam

from config.model import ObservabilityConfig
from constructs import Construct, IDependable
from constructs.nag_acknowledgment import acknowledge
from constructs.pod_identity_addon import PodIdentityAddon

ADDON_NAME = "amazon-sagemaker-hyperpod-observability"
SERVICE_ACCOUNT = "hyperpod-observability-operator-otel-collector"
# Metric levels of AWS's Terraform module defaults: what its dashboards show without extra cost.
METRIC_LEVELS = {
    "trainingMetrics": "BASIC",
    "inferenceMetrics": "BASIC",
    "taskGovernanceMetrics": "DISABLED",
    "scalingMetrics": "DISABLED",
    "customMetrics": "BASIC",
    "nodeMetrics": "BASIC",
    "acceleratedComputeMetrics": "BASIC",
    "networkMetrics": "DISABLED",
}
SCRAPE_INTERVAL_SECONDS = 30
LOG_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
)
GRAFANA_READ_ACTIONS = (
    "aps:DescribeWorkspace",
    "aps:QueryMetrics",
    "aps:GetLabels",
    "aps:GetSeries",
    "aps:GetMetricMetadata",
)


class Observability(Construct):
    """Exposes ``workspace``, ``remote_write_url``, ``query_url``, ``grafana_workspace`` and ``grafana_url``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ObservabilityConfig,
        cluster: eks.ICluster,
        hyperpod_cluster_name: str,
        name_prefix: str,
        tags: dict[str, str],
        after: IDependable,
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.removal_policy == "retain" else RemovalPolicy.DESTROY

        self.workspace = aps.CfnWorkspace(
            self,
            "Prometheus",
            alias=f"{name_prefix}-{hyperpod_cluster_name}",
            tags=[{"key": k, "value": v} for k, v in sorted(tags.items())],
        )
        self.workspace.apply_removal_policy(removal)
        # Built rather than read from PrometheusEndpoint, which ends in "/" (the add-on wants no slash).
        self.query_url = (
            f"https://aps-workspaces.{Aws.REGION}.{Aws.URL_SUFFIX}/workspaces/{self.workspace.attr_workspace_id}"
        )
        self.remote_write_url = f"{self.query_url}/api/v1/remote_write"

        statements = [iam.PolicyStatement(actions=["aps:RemoteWrite"], resources=[self.workspace.attr_arn])]
        log_groups = f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/Clusters/{hyperpod_cluster_name}/*"
        if config.logging:
            statements.append(
                iam.PolicyStatement(actions=list(LOG_ACTIONS), resources=[log_groups, f"{log_groups}:log-stream:*"])
            )

        self.grafana_workspace: grafana.CfnWorkspace | None = None
        self.grafana_url: str | None = None
        configuration = {
            "ampWorkspace": {"prometheusEndpoint": self.query_url, "arn": self.workspace.attr_arn},
            "metricsProvider": {
                name: {"level": level, "scrapeInterval": SCRAPE_INTERVAL_SECONDS}
                for name, level in METRIC_LEVELS.items()
            },
            "logging": {"enabled": config.logging},
        }
        if config.grafana:
            self.grafana_workspace = self._grafana(f"{name_prefix}-{hyperpod_cluster_name}", removal)
            self.grafana_url = f"https://{self.grafana_workspace.attr_endpoint}"
            configuration["amgWorkspace"] = {
                "workspaceName": self.grafana_workspace.name,
                "arn": f"arn:{Aws.PARTITION}:grafana:{Aws.REGION}:{Aws.ACCOUNT_ID}:/workspaces/{self.grafana_workspace.attr_id}",
            }

        self.addon = PodIdentityAddon(
            self,
            "Addon",
            cluster=cluster,
            addon_name=ADDON_NAME,
            service_account=SERVICE_ACCOUNT,
            description=f"{ADDON_NAME} collector (EKS Pod Identity): remote write, HyperPod logs",
            statements=statements,
        )
        self.role = self.addon.role
        cfn_addon: eks.CfnAddon = self.addon.addon.node.default_child
        cfn_addon.configuration_values = Stack.of(self).to_json_string(configuration)
        # A HyperPod add-on: it collects from the HyperPod cluster's nodes and agents, so after the cluster.
        self.addon.node.add_dependency(self.workspace, after)
        if self.grafana_workspace is not None:
            self.addon.node.add_dependency(self.grafana_workspace)
        if config.logging:
            acknowledge(
                self.role,
                "HyperPod names its log groups /aws/sagemaker/Clusters/<cluster name>/<cluster id>; the id exists only "
                "after CreateCluster, so the collector's log actions are limited to this cluster's groups by name.",
                *(
                    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                    f"/aws/sagemaker/Clusters/{hyperpod_cluster_name}/*{suffix}]"
                    for suffix in ("", ":log-stream:*")
                ),
            )

    def _grafana(self, name: str, removal: RemovalPolicy) -> grafana.CfnWorkspace:
        role = iam.Role(
            self,
            "GrafanaRole",
            description="Amazon Managed Grafana workspace: reads the HyperPod Prometheus workspace",
            assumed_by=iam.ServicePrincipal("grafana.amazonaws.com").with_conditions(
                {"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
        )
        role.add_to_policy(iam.PolicyStatement(actions=list(GRAFANA_READ_ACTIONS), resources=[self.workspace.attr_arn]))
        # The console's Prometheus data-source picker lists workspaces; ListWorkspaces takes no resource.
        role.add_to_policy(iam.PolicyStatement(actions=["aps:ListWorkspaces"], resources=["*"]))
        acknowledge(
            role,
            "aps:ListWorkspaces has no resource type (Service Authorization Reference), so it can only be granted "
            "on *; it reveals workspace names and ids in this account, no metrics. Reads are limited to this workspace.",
            "AwsSolutions-IAM5[Resource::*]",
        )
        workspace = grafana.CfnWorkspace(
            self,
            "Grafana",
            name=name,
            description="HyperPod cluster dashboards (Prometheus data source: README, Observability)",
            account_access_type="CURRENT_ACCOUNT",
            authentication_providers=["AWS_SSO"],
            permission_type="CUSTOMER_MANAGED",
            role_arn=role.role_arn,
            data_sources=["PROMETHEUS"],
        )
        workspace.apply_removal_policy(removal)
        workspace.node.add_dependency(role)
        return workspace
