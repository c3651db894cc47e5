"""Pins the double's Kubernetes semantics through the real ``kubernetes`` client, so tests built on it
can trust that a behaviour seen here is a behaviour of the API, not of the double."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.k8s_double import seed


@pytest.fixture
def core(k8s_api_client) -> client.CoreV1Api:
    return client.CoreV1Api(k8s_api_client)


def _status(err: ApiException) -> dict:
    return json.loads(err.body)


def test_discovery_reports_version_and_core_group(k8s_double, k8s_api_client):
    assert client.VersionApi(k8s_api_client).get_code().git_version == k8s_double.git_version
    assert client.CoreApi(k8s_api_client).get_api_versions().versions == ["v1"]


def test_request_without_the_token_is_unauthorized(k8s_double):
    config = client.Configuration(host=k8s_double.url)
    with client.ApiClient(config) as anonymous, pytest.raises(ApiException) as err:
        client.CoreV1Api(anonymous).list_node()
    assert err.value.status == 401
    assert _status(err.value)["reason"] == "Unauthorized"


def test_every_write_bumps_the_cluster_wide_resource_version(k8s_double, core):
    first = k8s_double.add_node(seed.hyperpod_node())["metadata"]
    second = k8s_double.add_node(seed.system_node())["metadata"]
    assert int(second["resourceVersion"]) == int(first["resourceVersion"]) + 1

    patched = core.patch_node(first["name"], {"metadata": {"labels": {"a": "1"}}})
    assert int(patched.metadata.resource_version) == int(second["resourceVersion"]) + 1
    listed = core.list_node()
    assert listed.metadata.resource_version == patched.metadata.resource_version


@pytest.mark.parametrize("content_type", ["application/merge-patch+json", "application/strategic-merge-patch+json"])
def test_patch_merges_labels_and_null_deletes(k8s_double, k8s_api_client, content_type):
    name = k8s_double.add_node(seed.hyperpod_node(accelerator="H100"))["metadata"]["name"]
    core = client.CoreV1Api(k8s_api_client)
    k8s_api_client.set_default_header("Content-Type", content_type)  # the client picks SMP by default
    core.patch_node(
        name,
        {
            "metadata": {
                "labels": {"skypilot.co/accelerator": "h100", "sagemaker.amazonaws.com/node-health-status": None}
            }
        },
    )
    labels = k8s_double.node(name)["metadata"]["labels"]
    assert labels["skypilot.co/accelerator"] == "h100"
    assert "sagemaker.amazonaws.com/node-health-status" not in labels
    assert labels["sagemaker.amazonaws.com/cluster-name"] == "hp-test"  # untouched keys stay
    assert k8s_double.requests[-1].content_type == content_type


def test_json_patch_content_type_is_rejected(k8s_double, k8s_api_client):
    name = k8s_double.add_node(seed.hyperpod_node())["metadata"]["name"]
    with pytest.raises(ApiException) as err:
        k8s_api_client.call_api(
            f"/api/v1/nodes/{name}",
            "PATCH",
            body=[{"op": "add", "path": "/x"}],
            header_params={"Content-Type": "application/json-patch+json"},
            auth_settings=["BearerToken"],
        )
    assert err.value.status == 415


def test_stale_resource_version_in_a_patch_is_a_conflict(k8s_double, core):
    name = k8s_double.add_node(seed.hyperpod_node())["metadata"]["name"]
    stale = core.read_node(name).metadata.resource_version
    k8s_double.update_node(name, lambda n: n["metadata"]["labels"].update(other="writer"))

    with pytest.raises(ApiException) as err:
        core.patch_node(name, {"metadata": {"resourceVersion": stale, "labels": {"a": "1"}}})
    status = _status(err.value)
    assert err.value.status == 409
    assert status["kind"] == "Status" and status["reason"] == "Conflict" and status["code"] == 409
    assert status["details"] == {"name": name, "kind": "nodes"}
    assert "the object has been modified" in status["message"]
    assert "a" not in k8s_double.node(name)["metadata"]["labels"]

    fresh = core.read_node(name).metadata.resource_version
    core.patch_node(name, {"metadata": {"resourceVersion": fresh, "labels": {"a": "1"}}})
    assert k8s_double.node(name)["metadata"]["labels"]["a"] == "1"


def test_put_with_stale_resource_version_is_a_conflict(k8s_double, core):
    name = k8s_double.add_node(seed.hyperpod_node())["metadata"]["name"]
    node = core.read_node(name)
    k8s_double.update_node(name, lambda n: None)
    with pytest.raises(ApiException) as err:
        core.replace_node(name, node)
    assert err.value.status == 409


def test_missing_node_is_a_not_found_status(core):
    with pytest.raises(ApiException) as err:
        core.read_node("hyperpod-i-00000000000000000")
    assert err.value.status == 404
    assert _status(err.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'nodes "hyperpod-i-00000000000000000" not found',
        "reason": "NotFound",
        "details": {"name": "hyperpod-i-00000000000000000", "kind": "nodes"},
        "code": 404,
    }


def test_injected_forbidden_is_a_forbidden_status_until_cleared(k8s_double, core):
    name = k8s_double.add_node(seed.hyperpod_node())["metadata"]["name"]
    k8s_double.inject_fault("PATCH", "^/api/v1/nodes/", status=403, times=None)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            core.patch_node(name, {"metadata": {"labels": {"a": "1"}}})
        assert err.value.status == 403
        assert _status(err.value)["reason"] == "Forbidden"
        assert 'cannot patch resource "nodes"' in _status(err.value)["message"]
    k8s_double.clear_faults()
    core.patch_node(name, {"metadata": {"labels": {"a": "1"}}})


def test_injected_conflict_counts_down_and_moves_the_resource_version(k8s_double, core):
    name = k8s_double.add_node(seed.hyperpod_node())["metadata"]["name"]
    before = k8s_double.node(name)["metadata"]["resourceVersion"]
    k8s_double.inject_fault("PATCH", f"^/api/v1/nodes/{name}$", status=409, times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            core.patch_node(name, {"metadata": {"labels": {"a": "1"}}})
        assert err.value.status == 409
    assert int(k8s_double.node(name)["metadata"]["resourceVersion"]) == int(before) + 2
    core.patch_node(name, {"metadata": {"labels": {"a": "1"}}})
    assert [r.status for r in k8s_double.writes()] == [409, 409, 200]
    assert len(k8s_double.writes(successful=True)) == 1


def test_injected_throttling_on_a_patch_surfaces_with_retry_after(k8s_double, core):
    name = k8s_double.add_node(seed.hyperpod_node())["metadata"]["name"]
    k8s_double.inject_fault("PATCH", "^/api/v1/nodes/", status=429)
    with pytest.raises(ApiException) as err:
        core.patch_node(name, {"metadata": {"labels": {"a": "1"}}})
    assert err.value.status == 429
    assert err.value.headers["Retry-After"] == "1"
    assert _status(err.value)["reason"] == "TooManyRequests"
    assert _status(err.value)["details"]["retryAfterSeconds"] == 1


def test_throttled_get_is_retried_by_urllib3_when_retry_after_is_sent(k8s_double, core):
    # urllib3's default Retry honours Retry-After on 429/503 for idempotent methods, so the
    # kubernetes client hides a throttled GET but not a throttled PATCH (above).
    k8s_double.inject_fault("GET", "^/api/v1/nodes$", status=429, retry_after=0)
    assert core.list_node().items == []
    assert [r.status for r in k8s_double.requests] == [429, 200]


def test_label_selector_equality_existence_and_set_based(k8s_double, core):
    p5 = k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge", accelerator="h100"))
    g5 = k8s_double.add_node(seed.hyperpod_node("ml.g5.12xlarge", cluster="other"))
    cpu = k8s_double.add_node(seed.cpu_hyperpod_node())
    system = k8s_double.add_node(seed.system_node())

    def names(selector: str) -> set[str]:
        return {n.metadata.name for n in core.list_node(label_selector=selector).items}

    def name(obj: dict) -> str:
        return obj["metadata"]["name"]

    assert names("sagemaker.amazonaws.com/cluster-name=hp-test") == {name(p5), name(cpu)}
    assert names("sagemaker.amazonaws.com/cluster-name==other") == {name(g5)}
    assert names("sagemaker.amazonaws.com/cluster-name!=hp-test") == {name(g5), name(system)}
    assert names("skypilot.co/accelerator") == {name(p5)}
    assert names("!skypilot.co/accelerator,sagemaker.amazonaws.com/cluster-name") == {name(g5), name(cpu)}
    assert names("node.kubernetes.io/instance-type in (ml.p5.48xlarge, ml.g5.12xlarge)") == {name(p5), name(g5)}
    assert names(
        "node.kubernetes.io/instance-type notin (ml.p5.48xlarge,ml.g5.12xlarge),sagemaker.amazonaws.com/cluster-name"
    ) == {name(cpu)}


def test_malformed_label_selector_is_a_bad_request(core):
    with pytest.raises(ApiException) as err:
        core.list_node(label_selector="a in b")
    assert err.value.status == 400


def test_pods_filter_by_namespace_and_field_selector(k8s_double, core):
    k8s_double.add_pod(seed.pod("running", namespace="team-a", node_name="n1", gpus=8))
    k8s_double.add_pod(seed.pod("done", namespace="team-a", node_name="n1", phase="Succeeded"))
    k8s_double.add_pod(seed.pod("other", namespace="default", node_name="n2"))

    everywhere = core.list_pod_for_all_namespaces(field_selector="status.phase!=Succeeded,status.phase!=Failed")
    assert {p.metadata.name for p in everywhere.items} == {"running", "other"}
    assert [
        p.metadata.name
        for p in core.list_namespaced_pod("team-a", field_selector="spec.nodeName=n1", label_selector="").items
    ] == ["running", "done"]
    assert core.read_namespaced_pod("running", "team-a").spec.containers[0].resources.limits == {"nvidia.com/gpu": "8"}
    assert "team-a" in {ns.metadata.name for ns in core.list_namespace().items}

    with pytest.raises(ApiException) as err:
        core.list_pod_for_all_namespaces(field_selector="spec.schedulerName=x")
    assert err.value.status == 400 and "field label not supported" in _status(err.value)["message"]


def test_namespaces_get_and_create(core):
    assert core.read_namespace("kube-system").status.phase == "Active"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="skypilot")))
    with pytest.raises(ApiException) as err:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="skypilot")))
    assert err.value.status == 409 and _status(err.value)["reason"] == "Conflict"


def test_unknown_paths_are_logged_and_not_found(k8s_double, core):
    with pytest.raises(ApiException) as err:
        core.list_namespaced_service("default")
    assert err.value.status == 404 and _status(err.value)["kind"] == "Status"
    assert [r.path for r in k8s_double.unknown_requests] == ["/api/v1/namespaces/default/services"]


def test_wrong_method_on_a_known_path_is_method_not_allowed(core):
    with pytest.raises(ApiException) as err:
        core.delete_node("any")
    assert err.value.status == 405


def test_before_request_hook_can_change_state_between_requests(k8s_double, core):
    k8s_double.before_request = lambda request: (
        k8s_double.add_node(seed.hyperpod_node()) if request.path == "/api/v1/nodes" else None
    )
    assert len(core.list_node().items) == 1
    assert len(core.list_node().items) == 2
