"""The HyperPod training operator (``amazon-sagemaker-hyperpod-training-operator`` EKS add-on) and the
``cert-manager`` add-on it needs.

As AWS documents it ("Installing the training operator", SageMaker developer guide) and as AWS's
Terraform modules build it (aws-samples/awsome-distributed-training ``modules/hyperpod_training_operator``
and ``hyperpod_cluster/cert_manager.tf``): cert-manager installed first (the operator's webhooks get
their certificates from it), the EKS Pod Identity Agent (``stacks/eks.py`` always installs it), and a
Pod Identity role for the operator's service account ``hp-training-operator-controller-manager``
carrying the AWS managed policy ``AmazonSageMakerHyperPodTrainingOperatorAccess``. The operator is
installed after the HyperPod cluster exists (a documented prerequisite).

The HyperPod chart's Kubeflow training operator stays on: it reconciles only ``kubeflow.org`` kinds
(PyTorchJob, TFJob, MXJob, XGBoostJob, PaddleJob: the CRDs of the pinned chart), the HyperPod training
operator only ``hyperpodpytorchjobs.sagemaker.amazonaws.com``, so no job object is claimed by both, and
PyTorchJob manifests users already run keep working (``tests/training_operator`` pins this).
"""

from __future__ import annotations

from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam

from constructs import Construct, IDependable
from constructs.nag_acknowledgment import acknowledge
from constructs.pod_identity_addon import PodIdentityAddon

ADDON_NAME = "amazon-sagemaker-hyperpod-training-operator"
CERT_MANAGER_ADDON_NAME = "cert-manager"
SERVICE_ACCOUNT = "hp-training-operator-controller-manager"
MANAGED_POLICY = "AmazonSageMakerHyperPodTrainingOperatorAccess"
# What the operator reconciles (sagemaker-hyperpod-cli ``HYPERPOD_PYTORCH_CRD_NAME``).
JOB_CRD = "hyperpodpytorchjobs.sagemaker.amazonaws.com"


class TrainingOperator(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, cluster: eks.ICluster, after: IDependable) -> None:
        super().__init__(scope, construct_id)
        # cert-manager calls no AWS API: a plain add-on, EKS-owned fields as for every add-on here.
        self.cert_manager = eks.Addon(self, "CertManager", cluster=cluster, addon_name=CERT_MANAGER_ADDON_NAME)
        self.cert_manager.node.default_child.add_property_override("ResolveConflicts", "OVERWRITE")
        self.cert_manager.node.add_dependency(after)

        self.operator = PodIdentityAddon(
            self,
            "Operator",
            cluster=cluster,
            addon_name=ADDON_NAME,
            service_account=SERVICE_ACCOUNT,
            description=f"{ADDON_NAME} controller (EKS Pod Identity)",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(MANAGED_POLICY)],
        )
        self.role = self.operator.role
        acknowledge(
            self.role,
            f"{MANAGED_POLICY} is the policy AWS documents for the HyperPod training operator's role and maintains "
            "as the operator gains features; the role is assumable only by pods of this EKS cluster.",
            f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{MANAGED_POLICY}]",
        )
        self.operator.node.add_dependency(self.cert_manager)
        self.operator.node.add_dependency(after)
