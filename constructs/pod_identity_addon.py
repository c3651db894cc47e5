"""An EKS add-on whose controller reaches AWS through EKS Pod Identity: the pattern every add-on here follows.

Why the add-on's own ``PodIdentityAssociations`` and not a separate ``AWS::EKS::PodIdentityAssociation``:
EKS then creates the association together with the add-on, so the controller's first pods already get
credentials (a separate association can land after the pods start, which leaves them without any until
they restart), and deleting the add-on removes it. The role trusts only the EKS Pod Identity service,
for this account and this cluster (EKS user guide, "Create an IAM role for Pod Identity": the
``aws:SourceAccount`` / ``aws:SourceArn`` conditions guard against the confused deputy).

A plain module (no runtime code), importable as ``constructs.pod_identity_addon``.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam

from constructs import Construct

POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"


class PodIdentityAddon(Construct):
    """``addon`` (the EKS add-on) and ``role`` (what its service account assumes)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: eks.ICluster,
        addon_name: str,
        service_account: str,
        description: str,
        managed_policies: Sequence[iam.IManagedPolicy] = (),
        statements: Sequence[iam.PolicyStatement] = (),
        addon_version: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            description=description,
            assumed_by=iam.SessionTagsPrincipal(
                iam.ServicePrincipal(POD_IDENTITY_PRINCIPAL).with_conditions(
                    {
                        "StringEquals": {"aws:SourceAccount": stack.account},
                        "ArnEquals": {"aws:SourceArn": cluster.cluster_arn},
                    }
                )
            ),
            managed_policies=list(managed_policies),
        )
        for statement in statements:
            self.role.add_to_policy(statement)
        self.addon = eks.Addon(self, "Addon", cluster=cluster, addon_name=addon_name, addon_version=addon_version)
        cfn = self.addon.node.default_child
        cfn.add_property_override(
            "PodIdentityAssociations", [{"RoleArn": self.role.role_arn, "ServiceAccount": service_account}]
        )
        # Same as the core add-ons (stacks/eks.py): EKS owns these objects, a manual edit is overwritten.
        cfn.add_property_override("ResolveConflicts", "OVERWRITE")
        # The role's policy must exist before the controller first calls AWS.
        self.addon.node.add_dependency(self.role)
