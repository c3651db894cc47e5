"""An EKS-managed add-on whose controller gets AWS credentials through EKS Pod Identity.

Shared by every optional capability that installs an AWS add-on with an IAM role (observability, the
training operator, CSI drivers): one trust policy, one way to associate the role with the add-on's
service account, so no capability grows its own variant. A plain module under constructs/ (like
``nag_acknowledgment``), importable as ``constructs.pod_identity_addon``.

The association is the add-on's own ``PodIdentityAssociations`` property (EKS creates and deletes it
with the add-on), not a separate ``AWS::EKS::PodIdentityAssociation``: EKS then knows the add-on owns
it, and removing the add-on cannot leave an association behind. The role trusts
``pods.eks.amazonaws.com`` for ``sts:AssumeRole`` and ``sts:TagSession`` (EKS Pod Identity needs both),
narrowed with ``aws:SourceAccount`` and ``aws:SourceArn`` to this cluster, as AWS's HyperPod Terraform
modules do (aws-samples/awsome-distributed-training, ``modules/observability/iam_roles.tf``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam

from constructs import Construct

POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"


def pod_identity_role(scope: Construct, construct_id: str, *, cluster: eks.ICluster, description: str) -> iam.Role:
    """A role only pods of ``cluster`` (through the EKS Pod Identity Agent) can assume."""
    principal = iam.SessionTagsPrincipal(
        iam.ServicePrincipal(POD_IDENTITY_PRINCIPAL).with_conditions(
            {
                "StringEquals": {"aws:SourceAccount": Stack.of(scope).account},
                "ArnEquals": {"aws:SourceArn": cluster.cluster_arn},
            }
        )
    )
    return iam.Role(scope, construct_id, assumed_by=principal, description=description)


class PodIdentityAddon(Construct):
    """``addon_name`` on ``cluster``, its service account ``service_account`` bound to ``role``.

    ``configuration_values`` is the add-on's JSON configuration (its schema comes from
    ``DescribeAddonConfiguration``); tokens in it are resolved by CloudFormation.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: eks.ICluster,
        addon_name: str,
        role: iam.IRole | None,
        service_account: str | None,
        configuration_values: Mapping[str, Any] | None = None,
        addon_version: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if (role is None) != (service_account is None):
            raise ValueError(f"{addon_name}: a Pod Identity role needs its service account, and the other way round")
        self.addon = eks.Addon(
            self,
            "Addon",
            cluster=cluster,
            addon_name=addon_name,
            addon_version=addon_version,
            configuration_values=dict(configuration_values) if configuration_values else None,
        )
        self.cfn_addon: eks.CfnAddon = self.addon.node.default_child
        # As for the cluster's base add-ons (stacks/eks.py): EKS owns the fields it manages.
        self.cfn_addon.add_property_override("ResolveConflicts", "OVERWRITE")
        if role is not None:
            self.cfn_addon.add_property_override(
                "PodIdentityAssociations", [{"RoleArn": role.role_arn, "ServiceAccount": service_account}]
            )
            # The association is checked when the add-on is created: the role and its policies first.
            self.addon.node.add_dependency(role)
        self.role = role
