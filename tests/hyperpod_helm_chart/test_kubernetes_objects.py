"""``Custom::KubernetesObjects`` against the Kubernetes API double: the storage objects applied with
server-side apply, bound, updated, and deleted in an order that releases the claim before anything it
points to goes; API faults retried or reported; a claim still mounted fails the delete by name."""

from __future__ import annotations

import json

import pytest

from constructs.csi_drivers.manifests import PV_NAME, PVC_NAME, fsx_volume, gp3_storage_class
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer import kubernetes_objects as ko
from tests.k8s_double.server import K8sDouble

FS = "fs-0123456789abcdef0"
CLUSTER = "hyperpod-sky-eks"


@pytest.fixture
def double():
    with K8sDouble() as api:
        yield api


def _api(double: K8sDouble, **kwargs) -> ko.KubeApi:
    return ko.KubeApi(double.url, None, lambda: double.token, delay=0, sleep=lambda _: None, **kwargs)


def _objects(capacity: int = 1200, *, storage_class: bool = True) -> list[dict]:
    objects = fsx_volume(
        file_system_id=FS, dns_name=f"{FS}.fsx.us-east-1.amazonaws.com", mount_name="abcdefgh", capacity_gib=capacity
    )
    return objects + ([gp3_storage_class()] if storage_class else [])


def _event(request: str, manifests: list[dict], old: list[dict] | None = None) -> dict:
    event = {
        "RequestType": request,
        "LogicalResourceId": "KubernetesObjects",
        "ResourceType": ko.RESOURCE_TYPE,
        "ResourceProperties": {"ClusterName": CLUSTER, "Region": "us-east-1", "Manifests": json.dumps(manifests)},
    }
    if request != "Create":
        event["PhysicalResourceId"] = f"{CLUSTER}/kubernetes-objects/KubernetesObjects"
    if old is not None:
        event["OldResourceProperties"] = {"ClusterName": CLUSTER, "Manifests": json.dumps(old)}
    return event


def _handle(double: K8sDouble, event: dict, **kwargs) -> dict:
    api = _api(double)
    return ko.handle(event, lambda props: api, deadline=kwargs.pop("deadline", float("inf")))


def _pod_mounting_the_claim(double: K8sDouble) -> None:
    double.add_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "train-head", "namespace": "default"},
            "spec": {"volumes": [{"name": "fsx", "persistentVolumeClaim": {"claimName": PVC_NAME}}]},
        }
    )


def test_create_applies_the_volume_claim_and_storage_class_and_the_claim_binds(double):
    result = _handle(double, _event("Create", _objects()))
    assert result["PhysicalResourceId"] == f"{CLUSTER}/kubernetes-objects/KubernetesObjects"
    pvc = double.storage_object("persistentvolumeclaims", PVC_NAME, "default")
    pv = double.storage_object("persistentvolumes", PV_NAME)
    assert pvc["status"]["phase"] == "Bound" and pv["status"]["phase"] == "Bound"
    assert pv["spec"]["csi"]["volumeHandle"] == FS
    (sc,) = double.storage_objects("storageclasses")
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    # One server-side apply per object, with this stack as the field manager.
    applies = [r for r in double.writes() if r.method == "PATCH"]
    assert [r.content_type for r in applies] == ["application/apply-patch+yaml"] * 3
    assert {r.query["fieldManager"] for r in applies} == {ko.FIELD_MANAGER}


def test_a_second_apply_of_the_same_objects_changes_nothing_but_succeeds(double):
    _handle(double, _event("Create", _objects()))
    before = double.storage_object("persistentvolumeclaims", PVC_NAME, "default")
    _handle(double, _event("Update", _objects(), old=_objects()))
    after = double.storage_object("persistentvolumeclaims", PVC_NAME, "default")
    assert after["metadata"]["uid"] == before["metadata"]["uid"] and after["status"]["phase"] == "Bound"


def test_update_deletes_objects_the_new_properties_no_longer_have(double):
    _handle(double, _event("Create", _objects()))
    _handle(double, _event("Update", _objects(storage_class=False), old=_objects()))
    assert double.storage_objects("storageclasses") == []
    assert double.storage_object("persistentvolumeclaims", PVC_NAME, "default") is not None


def test_update_that_changes_an_immutable_claim_field_fails_with_the_api_servers_message(double):
    _handle(double, _event("Create", _objects()))
    changed = _objects()
    changed[1]["spec"]["accessModes"] = ["ReadWriteOnce"]
    with pytest.raises(ko.KubernetesApiError, match="HTTP 422: .*spec is immutable after creation"):
        _handle(double, _event("Update", changed, old=_objects()))


def test_delete_releases_claim_then_volume_and_waits_until_both_are_gone(double):
    _handle(double, _event("Create", _objects()))
    double.reset_log()
    _handle(double, _event("Delete", _objects()))
    deletes = [r.path for r in double.writes() if r.method == "DELETE"]
    assert deletes == [
        "/apis/storage.k8s.io/v1/storageclasses/gp3",
        f"/api/v1/namespaces/default/persistentvolumeclaims/{PVC_NAME}",
        f"/api/v1/persistentvolumes/{PV_NAME}",
    ]
    assert double.storage_objects("persistentvolumeclaims") == double.storage_objects("persistentvolumes") == []


def test_delete_fails_loudly_while_a_pod_still_mounts_the_claim(double):
    _handle(double, _event("Create", _objects()))
    _pod_mounting_the_claim(double)
    with pytest.raises(ko.KubernetesApiError) as err:
        _handle(double, _event("Delete", _objects()), deadline=0)
    message = str(err.value)
    assert (
        f"PersistentVolumeClaim default/{PVC_NAME} is terminating, finalizers: kubernetes.io/pvc-protection" in message
    )
    assert "sky down" in message
    # The volume is still bound to the claim, so it is not gone either: the file system stays safe.
    assert double.storage_object("persistentvolumes", PV_NAME) is not None
    # Once the pod is gone, deleting again finishes.
    double.remove_pod("default", "train-head")
    _handle(double, _event("Delete", _objects()))
    assert double.storage_objects("persistentvolumes") == []


def test_delete_of_objects_already_gone_succeeds(double):
    _handle(double, _event("Delete", _objects()))
    assert [r.status for r in double.writes() if r.method == "DELETE"] == [404, 404, 404]


def test_delete_when_the_cluster_no_longer_exists_succeeds_without_calls(double):
    result = ko.handle(_event("Delete", _objects()), lambda props: None, deadline=float("inf"))
    assert result["PhysicalResourceId"].endswith("/kubernetes-objects/KubernetesObjects")
    assert double.requests == []


def test_unauthorized_at_first_and_server_errors_are_retried(double):
    double.inject_fault("PATCH", r"/persistentvolumes/", status=401, times=2)
    double.inject_fault("PATCH", r"/persistentvolumeclaims/", status=503, times=1)
    _handle(double, _event("Create", _objects()))
    assert double.storage_object("persistentvolumeclaims", PVC_NAME, "default")["status"]["phase"] == "Bound"


def test_a_permanent_refusal_is_reported_with_the_api_message_after_bounded_attempts(double):
    double.inject_fault("PATCH", r"/persistentvolumes/", status=403, times=None)
    with pytest.raises(
        ko.KubernetesApiError, match=r"gave up after 3 attempts: PATCH /api/v1/persistentvolumes/fsx-pv: HTTP 403"
    ):
        ko.handle(_event("Create", _objects()), lambda props: _api(double, attempts=3), deadline=float("inf"))


def test_a_claim_in_a_namespace_that_does_not_exist_fails_by_name(double):
    objects = _objects()
    objects[1]["metadata"]["namespace"] = "ml-team"
    objects[0]["spec"]["claimRef"]["namespace"] = "ml-team"
    with pytest.raises(
        ko.KubernetesApiError, match='apply PersistentVolumeClaim ml-team/fsx-claim: namespaces "ml-team" not found'
    ):
        _handle(double, _event("Create", objects))


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}, "unsupported object Deployment"),
        ({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {}}, "without metadata.name"),
        (
            {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "x", "namespace": "default"}},
            "cluster-scoped but names namespace",
        ),
    ],
)
def test_malformed_manifests_are_refused_before_any_call(double, manifest, expected):
    with pytest.raises(ValueError, match=expected):
        _handle(double, _event("Create", [manifest]))
    assert double.requests == []


def test_the_construct_refuses_unsupported_kinds_at_synth_time():
    import aws_cdk as cdk

    from constructs.kubernetes_objects.infrastructure import KubernetesObjects

    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(ValueError, match="unsupported object Secret"):
        KubernetesObjects(
            stack,
            "Objects",
            service_token="arn:aws:lambda:us-east-1:123456789012:function:x",
            cluster_name="c",
            manifests=[{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}],
        )


# ----- through the installer's entry point (its EKS look-up and auth) ------------------------------


def _installer(double: K8sDouble, monkeypatch, cluster_exists: bool = True):
    import base64

    import botocore.session
    from botocore.stub import Stubber

    from constructs.hyperpod_helm_chart.runtime.helm_chart_installer import eks_auth
    from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.handler import Installer

    tokens = []
    monkeypatch.setattr(eks_auth, "bearer_token", lambda session, name, region: tokens.append(name) or double.token)
    client = botocore.session.Session().create_client("eks", region_name="us-east-1")
    stub = Stubber(client)
    if cluster_exists:
        cluster = {
            "name": CLUSTER,
            "endpoint": double.url,
            "certificateAuthority": {"data": base64.b64encode(b"unused for http").decode()},
        }
        stub.add_response("describe_cluster", {"cluster": cluster}, {"name": CLUSTER})
    else:
        stub.add_client_error("describe_cluster", "ResourceNotFoundException", http_status_code=404)
    stub.activate()
    installer = Installer(
        session=botocore.session.Session(),
        helm_binary="/nonexistent/helm",  # objects never run helm
        archive_base_url="http://127.0.0.1:9",
        scratch_root=None,
        remaining_seconds=lambda: 600.0,
        eks_client_for=lambda region: client,
        reach_delay=0,
        sleep=lambda _: None,
    )
    return installer, stub, tokens


def test_the_helm_installer_function_serves_kubernetes_objects_with_its_eks_auth(double, monkeypatch):
    installer, stub, tokens = _installer(double, monkeypatch)
    result = installer.handle(_event("Create", _objects()))
    assert "PersistentVolumeClaim default/fsx-claim" in result["Data"]["Objects"]
    assert double.storage_object("persistentvolumeclaims", PVC_NAME, "default")["status"]["phase"] == "Bound"
    assert set(tokens) == {CLUSTER} and len(tokens) == 3  # a fresh token for every request
    stub.assert_no_pending_responses()


def test_delete_after_the_cluster_is_gone_succeeds(double, monkeypatch):
    installer, stub, _ = _installer(double, monkeypatch, cluster_exists=False)
    installer.handle(_event("Delete", _objects()))
    assert double.requests == []
    stub.assert_no_pending_responses()
