"""The EKS layer: the control plane HyperPod orchestrates through, its add-ons, access, system nodes and
the HyperPod dependency Helm chart (which must be installed before CreateCluster)."""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_kms as kms

from config import AppConfig, compatibility, names, outputs
from config.model import ExistingEksConfig
from constructs import Construct
from constructs.control_plane_log_group.infrastructure import ServiceLogGroupRetention
from constructs.hyperpod_helm_chart.infrastructure import HyperPodHelmChart
from constructs.nag_acknowledgment import acknowledge
from constructs.post_deploy_access.infrastructure import PostDeployAccess
from stacks.existing_network import Network, imported_network
from stacks.log_retention import retention

_ENDPOINT_ACCESS = {
    "public": eks.EndpointAccess.PUBLIC,
    "private": eks.EndpointAccess.PRIVATE,
    "public_and_private": eks.EndpointAccess.PUBLIC_AND_PRIVATE,
}
_LOG_TYPES = [
    eks.ClusterLoggingTypes.API,
    eks.ClusterLoggingTypes.AUDIT,
    eks.ClusterLoggingTypes.AUTHENTICATOR,
    eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
    eks.ClusterLoggingTypes.SCHEDULER,
]
ADDONS = compatibility.EKS_MANAGED_ADDONS


class EksStack(Stack):
    """Exposes ``cluster``, ``access_entries`` and ``helm_chart`` to the HyperPod layer, and
    ``post_deploy_access`` (only with the pipeline) to nobody: the pipeline finds its role by name."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        network: Network | None,
        **kwargs,
    ) -> None:
        """``network``: the network stack's VPC, or None to import ``network.existing`` into this stack."""
        super().__init__(scope, construct_id, **kwargs)
        cfg = config.eks
        self.cluster_name = names.eks_cluster_name(config)
        net = network or imported_network(self, config)
        vpc, security_group = net.vpc, net.security_group
        self.addons: dict[str, eks.Addon] = {}
        self.system_nodes: eks.Nodegroup | None = None
        if cfg.existing:
            self._use_existing_cluster(cfg.existing)
        else:
            self._create_cluster(config, net)
        self._connect_node_kinds(security_group)

        self.access_entries = [
            eks.AccessEntry(
                self,
                f"Admin{i}",
                cluster=self.cluster,
                principal=arn,
                access_policies=[
                    eks.AccessPolicy.from_access_policy_name(
                        "AmazonEKSClusterAdminPolicy",
                        access_scope_type=eks.AccessScopeType.CLUSTER,
                    )
                ],
            )
            for i, arn in enumerate(cfg.admin_principal_arns)
        ]

        # The role the pipeline's post-deploy step assumes, with its own access entry.
        self.post_deploy_access: PostDeployAccess | None = None
        if config.pipeline.enabled:
            self.post_deploy_access = PostDeployAccess(
                self,
                "PostDeployAccess",
                cluster=self.cluster,
                role_name=names.post_deploy_role_name(config),
                trusted_account=config.pipeline.pipeline_account or config.account or self.account,
                codebuild_role_name=names.post_deploy_codebuild_role_name(config),
            )

        self.helm_chart = HyperPodHelmChart(
            self,
            "HyperPodDependencies",
            cluster=self.cluster,
            chart=cfg.helm_chart,
            vpc=vpc,
            # The network stack's VPC knows its private subnets; an imported one has no subnet types.
            subnets=net.eks_subnets if network is None else None,
            security_group=security_group,
            log_retention=retention(cfg.log_retention_days),
        )
        # Device plugins and operators need somewhere to run, and vpc-cni must exist before any pod (an
        # existing cluster already has both).
        for addon in self.addons.values():
            self.helm_chart.node.add_dependency(addon)
        if self.system_nodes:
            self.helm_chart.node.add_dependency(self.system_nodes)

        CfnOutput(self, outputs.EKS_CLUSTER_NAME, value=self.cluster.cluster_name)
        CfnOutput(self, outputs.EKS_CLUSTER_ARN, value=self.cluster.cluster_arn)
        CfnOutput(self, outputs.REGION, value=self.region)

    def _create_cluster(self, config: AppConfig, net: Network) -> None:
        """The app's own cluster: control plane, logs, secrets key, managed add-ons and system nodes."""
        cfg = config.eks
        # EKS creates this group on first log write (and again with its last lines after the cluster is
        # deleted), so it is adopted, not created by name: retention here, a redeploy after destroy still works.
        # The audit log records every API request (users, resources, request metadata): a key of its own.
        logs_key = kms.Key(
            self,
            "ControlPlaneLogsKey",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            description=f"Encryption of the control-plane logs of {self.cluster_name}",
        )
        control_plane_logs = ServiceLogGroupRetention(
            self,
            "ControlPlaneLogs",
            log_group_name=names.eks_control_plane_log_group(config),
            retention_days=cfg.log_retention_days,
            removal_policy=RemovalPolicy.DESTROY,
            own_log_retention=retention(cfg.log_retention_days),
            encryption_key=logs_key,
        )
        secrets_key = kms.Key(
            self,
            "SecretsKey",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            description=f"Envelope encryption of Kubernetes secrets in {self.cluster_name}",
        )
        endpoint = _ENDPOINT_ACCESS[cfg.endpoint_access]
        if cfg.public_access_cidrs:
            endpoint = endpoint.only_from(*cfg.public_access_cidrs)

        self.cluster = eks.Cluster(
            self,
            "Cluster",
            cluster_name=self.cluster_name,
            version=eks.KubernetesVersion.of(cfg.version),
            vpc=net.vpc,
            vpc_subnets=[ec2.SubnetSelection(subnets=net.eks_subnets)],
            security_group=net.security_group,
            endpoint_access=endpoint,
            # Auto Mode is the aws_eks_v2 default, but HyperPod documents managed/HyperPod nodes only.
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
            # The CloudFormation execution role needs no Kubernetes access; people get explicit entries.
            bootstrap_cluster_creator_admin_permissions=False,
            # The add-ons below are EKS-managed from the start; no self-managed copies to conflict with.
            bootstrap_self_managed_addons=False,
            cluster_logging=_LOG_TYPES,
            secrets_encryption_key=secrets_key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.cluster.node.add_dependency(control_plane_logs)
        cfn_cluster = self.cluster.node.default_child
        cfn_cluster.add_property_override("AccessConfig.AuthenticationMode", cfg.authentication_mode)

        self.addons = {
            name: eks.Addon(
                self,
                f"Addon-{name}",
                cluster=self.cluster,
                addon_name=name,
                addon_version=cfg.vpc_cni_version if name == "vpc-cni" else None,
            )
            for name in ADDONS
        }
        for addon in self.addons.values():
            addon.node.default_child.add_property_override("ResolveConflicts", "OVERWRITE")

        self.system_nodes = self.cluster.add_nodegroup_capacity(
            "SystemNodes",
            instance_types=[ec2.InstanceType(cfg.system_node_group.instance_type)],
            # Never CDK's default (AL2_x86_64), which EKS refuses from Kubernetes 1.33 on (config/compatibility.py).
            ami_type=eks.NodegroupAmiType[cfg.system_node_group.resolved_ami_type.upper()],
            desired_size=cfg.system_node_group.desired_size,
            min_size=0,
            max_size=max(cfg.system_node_group.desired_size, 1),
            disk_size=cfg.system_node_group.disk_size_gb,
            subnets=ec2.SubnetSelection(subnets=net.eks_subnets),
            labels={"node-role": "system"},
        )
        # Nodes need the CNI and kube-proxy to become Ready; coredns needs a node to become ACTIVE
        # (CloudFormation accepts DEGRADED, which is what a 0-node group gives).
        for name in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
            self.system_nodes.node.add_dependency(self.addons[name])
        self.addons["coredns"].node.add_dependency(self.system_nodes)
        self._acknowledge_managed_policies()

    def _use_existing_cluster(self, existing: ExistingEksConfig) -> None:
        """Someone else's cluster, by name: its version, add-ons, nodes, logging and authentication stay as they
        are (the stack creates no Addon, node group or cluster setting). No kubectl provider is needed: the
        chart installer reads the endpoint with eks:DescribeCluster at deploy time and authenticates through
        its own access entry, which the API authentication mode (checked by ``make preflight``) allows."""
        self.cluster = eks.Cluster.from_cluster_attributes(
            self,
            "Cluster",
            cluster_name=existing.cluster_name,
            cluster_security_group_id=existing.cluster_security_group_id,
        )

    def _connect_node_kinds(self, hyperpod_sg: ec2.ISecurityGroup) -> None:
        """All traffic between the two kinds of nodes, as EKS allows among the nodes of one cluster group.

        Managed nodes without a launch template carry only the cluster security group EKS creates
        (ingress from itself only); HyperPod nodes carry only the HyperPod group (CreateCluster
        ``VpcConfig``); pods use their node's groups (VPC CNI). Without these two rules a HyperPod pod
        reaches neither coredns nor any webhook or service pod on a system node, and coredns replicas
        that land on HyperPod nodes are unreachable from system pods. The control plane carries both
        groups and needs nothing more. Both groups already allow all egress (EKS's default rule on the
        cluster group, the inline allow-all rule on the HyperPod group). L1 resources with fixed ids:
        the L2 ``connections`` API names rules after the peer's construct path, which differs inside
        the pipeline's Stage. ``tests/rules/network.py`` proves the flows over the synthesized templates.
        """
        cluster_sg = self.cluster.cluster_security_group_id
        ec2.CfnSecurityGroupIngress(
            self,
            "ClusterSecurityGroupFromHyperPodNodes",
            group_id=cluster_sg,
            ip_protocol="-1",
            source_security_group_id=hyperpod_sg.security_group_id,
            description="HyperPod nodes and pods to system nodes: coredns, webhooks, services",
        )
        ec2.CfnSecurityGroupIngress(
            self,
            "HyperPodSecurityGroupFromSystemNodes",
            group_id=hyperpod_sg.security_group_id,
            ip_protocol="-1",
            source_security_group_id=cluster_sg,
            description="System nodes and pods to HyperPod nodes: coredns replicas, webhooks, services",
        )

    def _acknowledge_managed_policies(self) -> None:
        acknowledge(
            self.cluster.role,
            "AmazonEKSClusterPolicy is the policy EKS documents for a cluster service role; AWS maintains it "
            "as the control plane gains features, and no narrower equivalent exists.",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonEKSClusterPolicy]",
        )
        acknowledge(
            self.system_nodes.role,
            "The three policies EKS requires for managed node groups: joining the cluster, the VPC CNI assigning "
            "pod IPs from the node, and pulling images from ECR read-only.",
            *(
                f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]"
                for name in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
            ),
        )
