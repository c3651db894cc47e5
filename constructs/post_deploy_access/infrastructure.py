"""The pipeline's way into the workload account's cluster: a role its post-deploy CodeBuild step
assumes, and that role's EKS access entry.

The EKS stack adds it when the pipeline is enabled; ``stacks/pipeline.py`` only needs the two role
names, which both take from ``config.names``, so the stacks do not import each other.
"""

from __future__ import annotations

import hashlib

from aws_cdk import Stack, Token
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam

from constructs import Construct
from constructs.nag_acknowledgment import acknowledge


class PostDeployAccess(Construct):
    """Attributes: ``role`` (what the step assumes) and ``access_entry`` (its Kubernetes access).

    Trust: ``trusted_account`` (the pipeline's), narrowed by ``aws:PrincipalArn`` to the step's
    fixed-name CodeBuild role (a principal ARN in the trust policy itself would have to exist first),
    so the same statement serves a same-account and a cross-account pipeline.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: eks.ICluster,
        role_name: str,
        trusted_account: str,
        codebuild_role_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        codebuild_role_arn = f"arn:{stack.partition}:iam::{trusted_account}:role/{codebuild_role_name}"
        self.role = iam.Role(
            self,
            "Role",
            role_name=role_name,
            description="Assumed by the pipeline's post-deploy step: kubeconfig, wait for nodes, label GPUs, SkyPilot tasks",
            assumed_by=iam.AccountPrincipal(trusted_account).with_conditions(
                {"ArnEquals": {"aws:PrincipalArn": codebuild_role_arn}}
            ),
        )
        self.role.add_to_policy(iam.PolicyStatement(actions=["eks:DescribeCluster"], resources=[cluster.cluster_arn]))
        hyperpod_clusters = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:cluster/*"
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeCluster", "sagemaker:ListClusterNodes"],
                resources=[hyperpod_clusters],
            )
        )
        nag_partition = "<AWS::Partition>" if Token.is_unresolved(stack.partition) else stack.partition
        nag_account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        acknowledge(
            self.role,
            "A HyperPod cluster ARN ends in a service-generated id (cluster/<id>) that exists only after the "
            "later hyperpod stack creates it; the two read-only actions are limited to this account and region.",
            f"AwsSolutions-IAM5[Resource::arn:{nag_partition}:sagemaker:{stack.region}:{nag_account}:cluster/*]",
        )
        # Cluster admin, cluster-wide: label-gpus patches Node objects (cluster-scoped; no narrower EKS
        # access policy allows it) and SkyPilot creates pods, services, a service account and the
        # ClusterRole/ClusterRoleBinding for it, which needs RBAC bind/escalate rights only cluster-admin has.
        self.access_entry = eks.AccessEntry(
            self,
            "Entry",
            cluster=cluster,
            principal=self.role.role_arn,
            access_policies=[
                eks.AccessPolicy.from_access_policy_name(
                    "AmazonEKSClusterAdminPolicy",
                    access_scope_type=eks.AccessScopeType.CLUSTER,
                )
            ],
        )
        self._keep_logical_ids()

    def _keep_logical_ids(self) -> None:
        """The ids these resources had when the EKS stack created them directly (``PostDeployRole``,
        ``PostDeployAccess``). A new logical id makes CloudFormation create the new resource before
        deleting the old one: the fixed role name, and the access entry's principal, are still taken,
        so the stack update would fail."""
        role_policy = self.role.node.find_child("DefaultPolicy").node.default_child
        for cfn, path in (
            (self.role.node.default_child, ("PostDeployRole", "Resource")),
            (role_policy, ("PostDeployRole", "DefaultPolicy", "Resource")),
            (self.access_entry.node.default_child, ("PostDeployAccess", "Resource")),
        ):
            cfn.override_logical_id(_cdk_logical_id(path))


def _cdk_logical_id(path: tuple[str, ...]) -> str:
    """CDK's logical id for a resource at ``path`` under a stack (aws-cdk-lib ``makeUniqueId``:
    the path's alphanumerics without ``Resource``, plus the first 8 hex digits of its MD5)."""
    human = "".join(p for p in path if p != "Resource")
    return human + hashlib.md5("/".join(path).encode()).hexdigest()[:8].upper()
