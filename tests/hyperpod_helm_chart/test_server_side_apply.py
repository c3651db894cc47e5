"""helm 4 upgrades apply server-side; the installer forces conflicts so the chart's fields win (issue 9 item 8).

Real helm from the kubectl layer, run through the installer's own ``HelmCli`` flags, against a small
API double that keeps field managers and answers conflicts as kube-apiserver does (``apply_double``).
The scenario: the release is installed, another manager changes a field the chart sets and adds one of
its own, then the release is upgraded.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

import pytest

from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.helm_cli import HelmCli, HelmError

from .apply_double import ApplyApiDouble

CHART = Path(__file__).parent / "fixture_apply_chart"
NAMESPACE = "kube-system"
RELEASE = "dependencies"


@pytest.fixture
def api(tmp_path):
    double = ApplyApiDouble(tmp_path)
    yield double
    double.close()


@pytest.fixture
def helm(api, helm_binary, tmp_path) -> HelmCli:
    return HelmCli(str(helm_binary), tmp_path / "helm-home", api.kubeconfig(tmp_path / "kubeconfig"))


def _values(tmp_path: Path, mode: str) -> Path:
    path = tmp_path / f"values-{mode}.json"
    path.write_text(json.dumps({"mode": mode}))
    return path


def _edit_by_hand(api: ApplyApiDouble) -> None:
    """What `kubectl edit` sends: a merge patch under its own field manager."""
    patch = {"data": {"mode": "edited"}, "metadata": {"annotations": {"team.example/note": "hand edit"}}}
    request = urllib.request.Request(
        f"{api.endpoint}/api/v1/namespaces/{NAMESPACE}/configmaps/settings?fieldManager=kubectl-edit",
        method="PATCH",
        data=json.dumps(patch).encode(),
        headers={"Content-Type": "application/merge-patch+json", "Authorization": f"Bearer {api.token}"},
    )
    context = ssl.create_default_context(cadata=api.ca_pem.decode())
    with urllib.request.urlopen(request, context=context) as response:
        assert response.status == 200


def _install_then_edit(helm: HelmCli, api: ApplyApiDouble, tmp_path: Path) -> None:
    helm.upgrade_install(RELEASE, CHART, NAMESPACE, [_values(tmp_path, "a")], timeout_seconds=60)
    _edit_by_hand(api)
    assert api.managers("configmaps", NAMESPACE, "settings")["kubectl-edit"] == {
        ".data.mode",
        ".metadata.annotations.team.example/note",
    }


def test_upgrade_takes_back_a_field_another_manager_changed_and_keeps_that_managers_own_fields(helm, api, tmp_path):
    _install_then_edit(helm, api, tmp_path)

    helm.upgrade_install(RELEASE, CHART, NAMESPACE, [_values(tmp_path, "b")], timeout_seconds=60)

    settings = api.get("configmaps", NAMESPACE, "settings")
    assert settings["data"] == {"mode": "b", "fixed": "x"}
    assert settings["metadata"]["annotations"]["team.example/note"] == "hand edit"
    assert api.managers("configmaps", NAMESPACE, "settings")["kubectl-edit"] == {
        ".metadata.annotations.team.example/note"
    }
    last = api.applies()[-1]
    assert last["query"]["fieldManager"] == "helm" and last["query"]["force"] == "true"
    assert all("apply-patch" in a["content_type"] for a in api.applies())  # never a client-side 3-way merge
    assert api.unknown == []


def test_the_same_upgrade_without_forcing_conflicts_fails_naming_the_field_and_its_manager(helm, api, tmp_path):
    _install_then_edit(helm, api, tmp_path)
    args = HelmCli.upgrade_install_args(RELEASE, CHART, NAMESPACE, [_values(tmp_path, "b")], 60)
    args.remove("--force-conflicts")

    with pytest.raises(HelmError, match=r'conflict with \\"?kubectl-edit\\"? using v1: \.data\.mode'):
        helm.run(args, timeout=120)
    assert api.get("configmaps", NAMESPACE, "settings")["data"]["mode"] == "edited"


def test_double_answers_an_unforced_conflicting_apply_with_409_and_the_field(api):
    key = ("configmaps", NAMESPACE, "c")
    assert api._apply(key, "ConfigMap", {"data": {"k": "1"}}, {"fieldManager": "one"})[0] == 201
    api._write(key, {**api.get(*key), "data": {"k": "2", "own": "y"}}, "two")
    code, status = api._apply(key, "ConfigMap", {"data": {"k": "1"}}, {"fieldManager": "one"})
    assert code == 409 and status["reason"] == "Conflict"
    assert status["details"]["causes"] == [
        {"type": "FieldManagerConflict", "message": 'conflict with "two" using v1', "field": ".data.k"}
    ]
    # The same value is shared, not a conflict; a field the applier drops is removed unless another owns it.
    assert api._apply(key, "ConfigMap", {"data": {"k": "2", "mine": "z"}}, {"fieldManager": "one"})[0] == 200
    assert api._apply(key, "ConfigMap", {"data": {"k": "2"}}, {"fieldManager": "one"})[0] == 200
    assert api.get(*key)["data"] == {"k": "2", "own": "y"}
