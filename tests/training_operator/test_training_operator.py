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
CRDS = yaml.safe_load((Path(__file__).parent / "fixtures" / "kubeflow_training_operator_crds.yaml").read_text())


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


def test_the_two_operators_reconcile_disjoint_job_kinds():
    # Verified against the pinned chart (fixture provenance): the Kubeflow operator only knows kubeflow.org
    # kinds, each enabled scheme is one of them, and the HyperPod operator's kind lives in another group.
    kubeflow = CRDS["crds"]
    assert {c["group"] for c in kubeflow} == {"kubeflow.org"}
    assert {s for s in CRDS["schemes"]} == {c["kind"].lower() for c in kubeflow}
    (hpto,) = CRDS["hyperpod_training_operator"]
    assert hpto["name"] == JOB_CRD == f"hyperpodpytorchjobs.{hpto['group']}"
    assert hpto["group"] not in {c["group"] for c in kubeflow}
    assert hpto["kind"] not in {c["kind"] for c in kubeflow}


def test_the_chart_keeps_kubeflow_and_leaves_cert_manager_to_the_addon(on, off):
    # Kubeflow stays on (no competition, PyTorchJobs keep working); the chart's own cert-manager stays off,
    # so the cert-manager add-on is the only cert-manager in the cluster.
    values = chart_values("us-east-1")
    assert values["trainingOperators"] == {"enabled": True}
    assert values["cert-manager"] == {"enabled": False}
    # Switching the operator on does not touch the EKS layer (and so not the chart release).
    assert on["hyperpod-sky-eks"] == off["hyperpod-sky-eks"]
