"""The HyperPod layer: the SageMaker HyperPod cluster, created only after EKS, the Helm chart, the
access entries and the lifecycle-script upload are all in place; then the optional HyperPod add-ons
(observability, the training operator, task governance), which AWS documents as installed on an existing
cluster."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_s3 as s3

from config import AppConfig, outputs
from constructs import Construct
from constructs.hyperpod_cluster.infrastructure import HyperPodCluster
from constructs.hyperpod_cluster.request import labels_for
from constructs.karpenter_autoscaling.infrastructure import KarpenterNodePools
from constructs.observability.infrastructure import Observability
from constructs.task_governance.infrastructure import TaskGovernance, priority_classes_output, teams_output
from constructs.training_operator.infrastructure import TrainingOperator
from stacks.eks import EksStack
from stacks.existing_network import Network, imported_network
from stacks.log_retention import retention


class HyperPodStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        eks_stack: EksStack,
        network: Network | None,
        lifecycle_bucket: s3.IBucket,
        lifecycle_prefix: str,
        cluster_id: str = "Cluster",
        legacy_owner_tag_values: list[str] | None = None,
        **kwargs,
    ) -> None:
        """``network``: the network stack's VPC, or None to import ``network.existing`` into this stack."""
        super().__init__(scope, construct_id, **kwargs)
        net = network or imported_network(self, config)
        self.cluster = HyperPodCluster(
            self,
            cluster_id,
            config=config.hyperpod,
            tags=config.tags,
            eks_cluster=eks_stack.cluster,
            vpc=net.vpc,
            subnets=net.hyperpod_subnets,
            security_group=net.security_group,
            lifecycle_bucket=lifecycle_bucket,
            lifecycle_prefix=lifecycle_prefix,
            log_retention=retention(config.eks.log_retention_days),
            legacy_owner_tag_values=legacy_owner_tag_values or [],
        )
        # CreateCluster fails without the chart's CRDs/agents; admins must be able to reach the nodes.
        self.cluster.node.add_dependency(eks_stack.helm_chart)
        for entry in eks_stack.access_entries:
            self.cluster.node.add_dependency(entry)

        CfnOutput(self, outputs.HYPERPOD_CLUSTER_NAME, value=self.cluster.cluster_name)
        CfnOutput(self, outputs.HYPERPOD_CLUSTER_ARN, value=self.cluster.cluster_arn)
        if config.hyperpod.karpenter_groups:
            # post_deploy reads it: groups at 0 are normal, and SkyPilot waits for Karpenter's nodes.
            CfnOutput(self, outputs.HYPERPOD_KARPENTER_GROUPS, value=",".join(config.hyperpod.karpenter_groups))
            # What the groups can offer at all: SkyPilot cannot ask Karpenter, so submit narrows tasks to these.
            accelerators = sorted(
                {v for g in config.hyperpod.instance_groups for v in labels_for(g.instance_type).values()}
            )
            CfnOutput(self, outputs.HYPERPOD_ACCELERATORS, value=",".join(accelerators) or "none")
            self.karpenter = KarpenterNodePools(
                self,
                "KarpenterNodePools",
                config=config.hyperpod,
                service_token=eks_stack.helm_chart.service_token,
                eks_cluster_name=eks_stack.cluster.cluster_name,
                cluster_ready=self.cluster.ready,
            )

        self.observability: Observability | None = None
        if config.observability.enabled:
            self.observability = Observability(
                self,
                "Observability",
                config=config.observability,
                cluster=eks_stack.cluster,
                hyperpod_cluster_name=config.hyperpod.cluster_name,
                name_prefix=config.prefix,
                tags=config.tags,
                after=self.cluster.ready,
            )
            obs = self.observability
            CfnOutput(self, outputs.PROMETHEUS_WORKSPACE_ID, value=obs.workspace.attr_workspace_id)
            CfnOutput(self, outputs.PROMETHEUS_QUERY_URL, value=obs.query_url)
            CfnOutput(self, outputs.PROMETHEUS_REMOTE_WRITE_URL, value=obs.remote_write_url)
            if obs.grafana_url is not None:
                CfnOutput(self, outputs.GRAFANA_WORKSPACE_URL, value=obs.grafana_url)

        self.training_operator: TrainingOperator | None = None
        if config.training_operator.enabled:
            self.training_operator = TrainingOperator(
                self, "TrainingOperator", cluster=eks_stack.cluster, after=self.cluster.ready
            )

        self.task_governance: TaskGovernance | None = None
        if config.task_governance.enabled:
            self.task_governance = TaskGovernance(
                self,
                "TaskGovernance",
                config=config.task_governance,
                prefix=config.prefix,
                tags=config.tags,
                eks_cluster_name=eks_stack.cluster.cluster_name,
                hyperpod_cluster_arn=self.cluster.cluster_arn,
                hyperpod_ready=self.cluster.ready,
                log_retention=retention(config.eks.log_retention_days),
            )
            CfnOutput(self, outputs.TASK_GOVERNANCE_TEAMS, value=teams_output(config.task_governance))
            CfnOutput(
                self, outputs.TASK_GOVERNANCE_PRIORITY_CLASSES, value=priority_classes_output(config.task_governance)
            )
