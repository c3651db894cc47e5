"""``KarpenterNodePools``: the HyperpodNodeClass and NodePools (``manifests.py``) that make HyperPod's managed
Karpenter scale the ``karpenter: true`` groups, applied from CloudFormation and deleted with the stack.

Applied by ``KubernetesObjects`` (the Helm chart installer's function, which already holds the EKS access
entry), after the HyperPod cluster is ready: the cluster's WaitCondition is released only once HyperPod
reports autoscaling InService, which is when HyperPod has installed Karpenter's CRDs (AWS: "Wait for the
Status to show InService before proceeding to configure NodeClass and NodePool"). Depending on the cluster
also orders deletion: the pools and the class go first (Karpenter then removes the nodes it made), the
cluster after.
"""

from __future__ import annotations

from config.model import HyperPodConfig
from constructs import Construct, IDependable
from constructs.karpenter_autoscaling import manifests
from constructs.kubernetes_objects.infrastructure import KubernetesObjects


class KarpenterNodePools(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: HyperPodConfig,
        service_token: str,
        eks_cluster_name: str,
        cluster_ready: IDependable,
    ) -> None:
        super().__init__(scope, construct_id)
        if not config.karpenter_groups:
            raise ValueError(f"{self.node.path}: hyperpod.autoscaling karpenter needs karpenter instance groups")
        self.manifests = manifests.manifests(config)
        self.objects = KubernetesObjects(
            self,
            "Objects",
            service_token=service_token,
            cluster_name=eks_cluster_name,
            manifests=self.manifests,
        )
        self.objects.node.add_dependency(cluster_ready)
