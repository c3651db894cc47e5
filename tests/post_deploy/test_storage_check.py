"""``check``'s storage part against the Kubernetes API double, with the storage objects put there by the
very applier CloudFormation runs (``kubernetes_objects``): Bound claim, CSI pods, default StorageClass."""

from __future__ import annotations

import argparse
import json

import pytest

from config import outputs as keys
from constructs.csi_drivers.manifests import PV_NAME, PVC_NAME, fsx_volume, gp3_storage_class
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer import kubernetes_objects as ko
from post_deploy import pipeline_run
from post_deploy.outputs import read_outputs
from post_deploy.storage_check import check_storage
from tests.k8s_double import seed

FS = "fs-0123456789abcdef0"
CLUSTER = "hp-test"


def _apply(double, *manifests) -> None:
    api = ko.KubeApi(double.url, None, lambda: double.token, delay=0, sleep=lambda _: None)
    for manifest in manifests:
        ko.apply(api, manifest)


def _volume() -> list[dict]:
    return fsx_volume(
        file_system_id=FS, dns_name=f"{FS}.fsx.us-east-1.amazonaws.com", mount_name="abcdefgh", capacity_gib=1200
    )


def _ready_pod(name: str, node: str | None, app: str, ready: bool = True) -> dict:
    pod = seed.pod(name, namespace="kube-system", node_name=node, labels={"app": app})
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return pod


@pytest.fixture
def healthy(k8s_double):
    """Two HyperPod nodes with the FSx node pod Ready, the EBS controller Ready, the objects applied."""
    for i in range(2):
        node = seed.hyperpod_node(cluster=CLUSTER, name=f"hyperpod-i-{i}")
        k8s_double.add_node(node)
        k8s_double.add_pod(_ready_pod(f"fsx-csi-node-{i}", f"hyperpod-i-{i}", "fsx-csi-node"))
    k8s_double.add_node(seed.system_node(name="ip-10-0-0-1"))
    k8s_double.add_pod(_ready_pod("ebs-csi-controller-0", "ip-10-0-0-1", "ebs-csi-controller"))
    _apply(k8s_double, *_volume(), gp3_storage_class())
    return k8s_double


def _check(api_client, **kwargs):
    kwargs.setdefault("claim", ("default", PVC_NAME))
    kwargs.setdefault("storage_class", "gp3")
    return check_storage(api_client, cluster_name=CLUSTER, **kwargs)


def test_a_healthy_storage_stack_passes(healthy, k8s_api_client):
    report = _check(k8s_api_client)
    assert report.problems == []
    assert report.claim_phase == "Bound" and report.default_storage_class == "gp3"
    assert report.fsx_nodes_ready == ["hyperpod-i-0", "hyperpod-i-1"]


def test_a_missing_claim_is_named_with_the_fix(k8s_double, k8s_api_client):
    (problem, *_) = _check(k8s_api_client, storage_class=None).problems
    assert problem.startswith(f"PersistentVolumeClaim default/{PVC_NAME} does not exist: the storage stack's")


def test_a_claim_whose_volume_is_missing_is_pending_and_says_so(k8s_double, k8s_api_client):
    _apply(k8s_double, _volume()[1])  # the claim without its PV
    (problem,) = _check(k8s_api_client, storage_class=None).problems
    assert problem == (
        f"PersistentVolumeClaim default/{PVC_NAME} is Pending, not Bound to PersistentVolume {PV_NAME}: pods that "
        f"mount it stay Pending; see `kubectl -n default describe pvc {PVC_NAME}` and `kubectl describe pv {PV_NAME}`"
    )


def test_a_hyperpod_node_without_a_ready_fsx_csi_pod_is_named(healthy, k8s_api_client):
    healthy.add_node(seed.hyperpod_node(cluster=CLUSTER, name="hyperpod-i-2"))
    healthy.add_pod(_ready_pod("fsx-csi-node-2", "hyperpod-i-2", "fsx-csi-node", ready=False))
    (problem,) = _check(k8s_api_client).problems
    assert problem.startswith("FSx CSI node pod not Ready on hyperpod-i-2: pods there cannot mount the Lustre claim")


def test_no_default_storage_class_and_no_ebs_controller_are_reported(k8s_double, k8s_api_client):
    problems = _check(k8s_api_client, claim=None).problems
    assert problems[0].startswith("no default StorageClass (expected gp3): PVCs without storageClassName stay Pending")
    assert problems[1].startswith("no Ready EBS CSI controller pod (app=ebs-csi-controller in kube-system)")


def test_a_second_default_storage_class_is_reported(healthy, k8s_api_client):
    other = gp3_storage_class()
    other["metadata"]["name"] = "gp2"
    _apply(healthy, other)
    (problem,) = _check(k8s_api_client).problems
    assert problem.startswith("default StorageClass is gp2, gp3, expected only gp3")


def test_check_fails_with_the_storage_problem_and_exit_code_8(healthy, kubeconfig_for_double, monkeypatch):
    from post_deploy import skypilot_check

    healthy.add_node(seed.hyperpod_node(cluster=CLUSTER, name="hyperpod-i-9"))
    # SkyPilot's own part is checked elsewhere (test_skypilot_check.py); here only the storage part decides.
    monkeypatch.setattr(
        skypilot_check,
        "check_skypilot",
        lambda *a, **k: skypilot_check.CheckReport(
            kubeconfig=str(kubeconfig_for_double.path), context=kubeconfig_for_double.context, enabled=True, nodes=[]
        ),
    )
    args = argparse.Namespace(
        kubeconfig=str(kubeconfig_for_double.path),
        context=kubeconfig_for_double.context,
        cluster_name=CLUSTER,
        fsx_claim=f"default/{PVC_NAME}",
        storage_class="gp3",
        json=False,
    )
    assert skypilot_check.run(args) == 8


def test_run_passes_the_storage_outputs_to_check(tmp_path):
    path = tmp_path / "cdk-outputs.json"
    stack = {keys.FSX_PVC_NAME: "fsx-claim", keys.FSX_PVC_NAMESPACE: "default", keys.DEFAULT_STORAGE_CLASS: "gp3"}
    path.write_text(json.dumps({"hyperpod-sky-storage": stack}))
    assert pipeline_run.storage_args(read_outputs(path, environ={})) == [
        "--fsx-claim",
        "default/fsx-claim",
        "--storage-class",
        "gp3",
    ]
    assert pipeline_run.storage_args(read_outputs(None, environ={})) == []
