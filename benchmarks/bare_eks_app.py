"""The floor for benchmarks/synth.py: one aws_eks_v2 cluster with a kubectl layer, nothing else."""

import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk.lambda_layer_kubectl_v33 import KubectlV33Layer

app = cdk.App()
stack = cdk.Stack(app, "BareEks", env=cdk.Environment(region="us-east-1"))
eks.Cluster(
    stack,
    "Cluster",
    version=eks.KubernetesVersion.V1_33,
    kubectl_provider_options=eks.KubectlProviderOptions(kubectl_layer=KubectlV33Layer(stack, "Kubectl")),
)
app.synth()
