"""The storage layer, between EKS and HyperPod: the shared FSx for Lustre file system, the CSI drivers,
the PersistentVolume/Claim SkyPilot tasks mount and the default gp3 StorageClass.

A stack of its own because data outlives compute: the HyperPod cluster can be replaced (or its stack
deleted and redeployed) without touching the file system, and ``cdk destroy`` deletes the HyperPod
stack first, so no pod still mounts the claim when this stack releases it. On delete CloudFormation
goes: Kubernetes objects (claim and volume released, waited for), then the final backup (``snapshot``),
then the file system, then the CSI add-ons.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack

from config import AppConfig, outputs
from constructs import Construct
from constructs.csi_drivers.infrastructure import CsiDrivers
from constructs.csi_drivers.manifests import PVC_NAME, PVC_NAMESPACE, STORAGE_CLASS_NAME, fsx_volume, gp3_storage_class
from constructs.fsx_lustre.infrastructure import FsxLustre
from constructs.kubernetes_objects.infrastructure import KubernetesObjects
from stacks.eks import EksStack
from stacks.existing_network import Network, imported_network
from stacks.log_retention import retention


class StorageStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        eks_stack: EksStack,
        network: Network | None,
        **kwargs,
    ) -> None:
        """``network``: the network stack's VPC, or None to import ``network.existing`` into this stack
        (its security group must then admit the Lustre ports from itself, as the all-traffic self rule EFA
        needs does)."""
        super().__init__(scope, construct_id, **kwargs)
        net = network or imported_network(self, config)
        storage = config.storage
        cluster = eks_stack.cluster
        manifests: list[dict] = []
        self.file_system: FsxLustre | None = None
        if storage.fsx.enabled:
            self.file_system = FsxLustre(
                self,
                "Fsx",
                config=storage.fsx,
                name=f"{config.prefix}-fsx",
                vpc=net.vpc,
                subnet=net.hyperpod_subnets[0],
                security_group=net.security_group,
                tags=config.tags,
                log_retention=retention(config.eks.log_retention_days),
            )
            manifests += fsx_volume(
                file_system_id=self.file_system.file_system_id,
                dns_name=self.file_system.dns_name,
                mount_name=self.file_system.mount_name,
                capacity_gib=storage.fsx.storage_capacity_gib,
            )
        if storage.ebs_csi:
            manifests.append(gp3_storage_class())

        # An existing cluster (eks.existing) keeps its own add-ons: creating one it already has fails the
        # deploy, so its CSI drivers are the owner's to install (`check` reports them missing).
        own_addons = not config.eks.existing
        self.csi_drivers = CsiDrivers(
            self,
            "CsiDrivers",
            cluster=cluster,
            ebs=storage.ebs_csi and own_addons,
            fsx=storage.fsx.enabled and own_addons,
        )
        self.kubernetes_objects = KubernetesObjects(
            self,
            "KubernetesObjects",
            service_token=eks_stack.helm_chart.service_token,
            cluster_name=cluster.cluster_name,
            manifests=manifests,
        )
        for addon in self.csi_drivers.addons:
            self.kubernetes_objects.node.add_dependency(addon)
        if self.file_system is not None:
            self.kubernetes_objects.node.add_dependency(self.file_system.resource)
            fs = self.file_system
            removal = "existing" if storage.fsx.existing_file_system_id else storage.fsx.removal_policy
            for key, value in (
                (outputs.FSX_FILE_SYSTEM_ID, fs.file_system_id),
                (outputs.FSX_DNS_NAME, fs.dns_name),
                (outputs.FSX_MOUNT_NAME, fs.mount_name),
                (outputs.FSX_MOUNT_PATH, storage.fsx.mount_path),
                (outputs.FSX_PVC_NAME, PVC_NAME),
                (outputs.FSX_PVC_NAMESPACE, PVC_NAMESPACE),
                (outputs.FSX_REMOVAL_POLICY, removal),
            ):
                CfnOutput(self, key, value=value)
        if storage.ebs_csi:
            CfnOutput(self, outputs.DEFAULT_STORAGE_CLASS, value=STORAGE_CLASS_NAME)
