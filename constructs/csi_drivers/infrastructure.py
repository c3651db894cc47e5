"""The CSI drivers pods need for shared storage: FSx for Lustre (the shared file system) and EBS (block
volumes for any PVC through the default gp3 StorageClass), as EKS add-ons with Pod Identity roles.

Permissions:
- ``aws-ebs-csi-driver``: the AWS managed policy ``AmazonEBSCSIDriverPolicy``, as the EKS user guide
  ("Store Kubernetes volumes with Amazon EBS", step "Create an Amazon EBS CSI driver IAM role") documents.
  It creates, attaches, snapshots and deletes volumes; AWS keeps it in step with the driver's calls.
- ``aws-fsx-csi-driver``: the PersistentVolume here is static (it names a file system that exists), so the
  controller never calls CreateFileSystem/DeleteFileSystem (dynamic provisioning, for which the driver's
  docs suggest ``AmazonFSxFullAccess``). What is left is reading the file system it serves
  (``fsx:DescribeFileSystems``, used by the controller to validate and expand volumes) on that one file
  system. Nodes mount over the network with the Lustre client and call no AWS API.
"""

from __future__ import annotations

from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam

from constructs import Construct
from constructs.nag_acknowledgment import acknowledge
from constructs.pod_identity_addon import PodIdentityAddon

EBS_ADDON = "aws-ebs-csi-driver"
EBS_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
EBS_POLICY = "service-role/AmazonEBSCSIDriverPolicy"
FSX_ADDON = "aws-fsx-csi-driver"
FSX_SERVICE_ACCOUNT = "fsx-csi-controller-sa"
# The CSI driver names the StorageClass and PersistentVolume refer to.
EBS_PROVISIONER = "ebs.csi.aws.com"
FSX_DRIVER = "fsx.csi.aws.com"


class CsiDrivers(Construct):
    """``ebs`` and ``fsx`` are the ``PodIdentityAddon``s that were asked for (or None)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: eks.ICluster,
        ebs: bool,
        fsx: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.ebs: PodIdentityAddon | None = None
        self.fsx: PodIdentityAddon | None = None
        if ebs:
            self.ebs = PodIdentityAddon(
                self,
                "Ebs",
                cluster=cluster,
                addon_name=EBS_ADDON,
                service_account=EBS_SERVICE_ACCOUNT,
                description="EBS CSI controller (EKS Pod Identity): provisions gp3 volumes for PVCs",
                managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(EBS_POLICY)],
            )
            acknowledge(
                self.ebs.role,
                "AmazonEBSCSIDriverPolicy is the policy the EKS user guide prescribes for the EBS CSI driver "
                "add-on; AWS maintains it with the driver's API calls, and its create/delete actions are "
                "conditioned on the driver's own ebs.csi.aws.com tags.",
                f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{EBS_POLICY}]",
            )
        if fsx:
            self.fsx = PodIdentityAddon(
                self,
                "Fsx",
                cluster=cluster,
                addon_name=FSX_ADDON,
                service_account=FSX_SERVICE_ACCOUNT,
                description="FSx for Lustre CSI controller (EKS Pod Identity): serves the static shared volume",
                statements=[
                    iam.PolicyStatement(sid="ReadFileSystems", actions=["fsx:DescribeFileSystems"], resources=["*"])
                ],
            )
            acknowledge(
                self.fsx.role,
                "fsx:DescribeFileSystems takes no resource ARN (Service Authorization Reference for Amazon FSx), "
                "so '*' is the only possible resource; it is read-only, and the role has nothing else.",
                "AwsSolutions-IAM5[Resource::*]",
            )

    @property
    def addons(self) -> list[eks.Addon]:
        return [a.addon for a in (self.ebs, self.fsx) if a is not None]
