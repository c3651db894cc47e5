"""``KarpenterNodePools`` on a bare stack: one ``Custom::KubernetesObjects`` carrying exactly the manifests,
served by the given token and ordered after the cluster is ready (so the CRDs exist on create and the
objects go first on delete); the runtime knows both kinds' API paths."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.kubernetes_objects import ObjectRef
from constructs.karpenter_autoscaling import manifests
from constructs.karpenter_autoscaling.infrastructure import KarpenterNodePools
from tests.karpenter_autoscaling.test_manifests import config

TOKEN = "arn:aws:lambda:us-east-1:123456789012:function:helm-installer"


def _synth(hyperpod):
    app = cdk.App()
    stack = cdk.Stack(app, "KarpenterTest", env=cdk.Environment(account="123456789012", region="us-east-1"))
    ready = cdk.CfnWaitConditionHandle(stack, "ClusterReady")
    KarpenterNodePools(
        stack, "Karpenter", config=hyperpod, service_token=TOKEN, eks_cluster_name="hp-eks", cluster_ready=ready
    )
    return assertions.Template.from_stack(stack).to_json()


def test_one_objects_resource_with_the_manifests_after_the_cluster_is_ready():
    hyperpod = config()
    template = _synth(hyperpod)
    (resource,) = [r for r in template["Resources"].values() if r["Type"] == "Custom::KubernetesObjects"]
    props = resource["Properties"]
    assert props["ServiceToken"] == TOKEN and props["ClusterName"] == "hp-eks"
    assert json.loads(props["Manifests"]) == manifests.manifests(hyperpod)
    assert "ClusterReady" in resource["DependsOn"]


def test_the_objects_runtime_knows_the_karpenter_kinds_and_their_cluster_scoped_paths():
    paths = [ObjectRef.of(m).path for m in manifests.manifests(config())]
    assert paths == [
        "/apis/karpenter.sagemaker.amazonaws.com/v1/hyperpodnodeclasses/hyperpod-sky-karpenter",
        "/apis/karpenter.sh/v1/nodepools/hyperpod-sky-ml-c5-4xlarge",
        "/apis/karpenter.sh/v1/nodepools/hyperpod-sky-ml-g5-8xlarge",
    ]


def test_without_karpenter_groups_the_construct_refuses():
    from tests.conftest import make_config

    with pytest.raises(ValueError, match="needs karpenter instance groups"):
        _synth(make_config().hyperpod)
