"""Training-operator switch (constructs/training_operator): the HyperPod training operator add-on with
its Pod Identity role, after cert-manager and the HyperPod cluster; and why the chart's Kubeflow training
operator stays on beside it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from constructs.hyperpod_helm_chart.chart_values import chart_values
from constructs.training_operator.infrastructure import (
    ADDON_NAME,
    CERT_MANAGER_ADDON_NAME,
    JOB_CRD,
    MANAGED_POLICY,
    SERVICE_ACCOUNT,
)
from tests.in_process import synth

HP = "hyperpod-sky-hyperpod"
# The pinned HyperPod chart, vendored (tests/fixtures/sagemaker-hyperpod-cli/README.md).
CHART = Path(__file__).resolve().parents[1] / "fixtures" / "sagemaker-hyperpod-cli" / "helm_chart" / "HyperPodHelmChart"
KUBEFLOW = CHART / "charts" / "training-operators"


@pytest.fixture(scope="module")
def on() -> dict[str, dict]:
    return synth(**{"training_operator.enabled": "true"})


@pytest.fixture(scope="module")
def off() -> dict[str, dict]:
    return synth()


def _addons(template: dict) -> dict[str, tuple[str, dict]]:
    return {
        r["Properties"]["AddonName"]: (k, r) for k, r in template["Resources"].items() if r["Type"] == "AWS::EKS::Addon"
    }


def test_the_operator_addon_gets_a_pod_identity_role_with_the_documented_managed_policy(on):
    hp = on[HP]
    _, operator = _addons(hp)[ADDON_NAME]
    (association,) = operator["Properties"]["PodIdentityAssociations"]
    assert association["ServiceAccount"] == SERVICE_ACCOUNT
    role = hp["Resources"][association["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    assert role["ManagedPolicyArns"] == [
        {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":iam::aws:policy/{MANAGED_POLICY}"]]}
    ]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(trust["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert "aws:SourceArn" in trust["Condition"]["ArnEquals"]
    assert "Policies" not in role  # nothing beyond the managed policy


def test_cert_manager_comes_first_and_both_wait_for_the_hyperpod_cluster(on):
    hp = on[HP]
    addons = _addons(hp)
    (wait_id,) = [k for k, r in hp["Resources"].items() if r["Type"] == "AWS::CloudFormation::WaitCondition"]
    cert_id, cert_manager = addons[CERT_MANAGER_ADDON_NAME]
    _, operator = addons[ADDON_NAME]
    assert "PodIdentityAssociations" not in cert_manager["Properties"]
    assert {cert_id, wait_id} <= set(operator["DependsOn"])
    assert wait_id in cert_manager["DependsOn"]
    assert operator["Properties"]["ResolveConflicts"] == cert_manager["Properties"]["ResolveConflicts"] == "OVERWRITE"


def test_off_installs_neither_addon(off):
    hp = off[HP]
    assert not {ADDON_NAME, CERT_MANAGER_ADDON_NAME} & set(_addons(hp))


def _kubeflow_crds() -> list[str]:
    # The CRD files are too large to vendor; their paths (named <plural>.<group>-CustomResourceDefinition.yaml)
    # are listed with their sha256 beside the chart.
    listed = (CHART.parents[1] / "omitted-files.sha256").read_text().split()[1::2]
    prefix = "charts/training-operators/crds/"
    return [
        p.removeprefix(prefix).removesuffix("-CustomResourceDefinition.yaml") for p in listed if p.startswith(prefix)
    ]


def test_the_two_operators_reconcile_disjoint_job_kinds():
    # What the chart's Kubeflow operator is: CRDs all in kubeflow.org, one --enable-scheme per kind it runs.
    crds = _kubeflow_crds()
    assert sorted(crds) == [f"{k}jobs.kubeflow.org" for k in ("mx", "paddle", "pytorch", "tf", "xgboost")]
    schemes = yaml.safe_load((KUBEFLOW / "values.yaml").read_text())["schemes"]
    assert {f"{s.removesuffix('job')}jobs.kubeflow.org" for s in schemes} == set(crds)
    assert (
        "--enable-scheme"
        in (KUBEFLOW / "templates" / "Deployment" / "training-operator-kubeflow-Deployment.yaml").read_text()
    )
    # What it may touch: its ClusterRole names kubeflow.org and no group of the HyperPod operator.
    role = yaml.safe_load((KUBEFLOW / "templates" / "ClusterRole" / "training-operator-ClusterRole.yaml").read_text())
    groups = {g for rule in role["rules"] for g in rule.get("apiGroups", [])}
    assert "kubeflow.org" in groups
    hyperpod_group = JOB_CRD.split(".", 1)[1]
    assert hyperpod_group == "sagemaker.amazonaws.com" and hyperpod_group not in groups and "*" not in groups
    assert JOB_CRD not in crds


def test_the_chart_keeps_kubeflow_and_leaves_cert_manager_to_the_addon(on, off):
    # Kubeflow stays on (no competition, PyTorchJobs keep working); the chart's own cert-manager stays off,
    # so the cert-manager add-on is the only cert-manager in the cluster.
    values = chart_values("us-east-1")
    assert values["trainingOperators"] == {"enabled": True}
    assert values["cert-manager"] == {"enabled": False}
    # Switching the operator on does not touch the EKS layer (and so not the chart release).
    assert on["hyperpod-sky-eks"] == off["hyperpod-sky-eks"]
