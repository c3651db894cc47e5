"""The real HyperPod dependency chart at the pinned commit, rendered by real helm with this app's values.

What is real: the chart files of aws/sagemaker-hyperpod-cli at the pinned commit (vendored under
tests/fixtures/sagemaker-hyperpod-cli; the nine large CRD files are left out and listed with their
sha256, so the digest over all 144 files is still checked against the pinned one); the NVIDIA device
plugin chart 0.16.1 and the EFA device plugin chart v0.5.10 it depends on (vendored from their
publishers' repositories at those releases); helm 4 from the kubectl Lambda layer; the values the
construct passes (``chart_values``) and the ``-f`` files the installer Lambda builds from them
(``write_values_files``). What is a stand-in: cert-manager (an OCI dependency that cannot be pulled
offline) is a one-object chart with the same name and version, so helm resolves the dependency and a
test can see whether it rendered. Left-out CRDs only shorten what training-operators and mpi-operator
render; no assertion here reads them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from config.gpu_types import GPU_INSTANCE_TYPES, INSTANCE_TYPE_LABEL
from config.model import HelmChartConfig
from constructs.hyperpod_helm_chart.chart_values import (
    HEALTH_TAINT_TOLERATION,
    chart_values,
    efa_instance_types,
    gpu_instance_types,
)
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.chart_digest import chart_files, file_sha256
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.handler import ReleaseSpec, write_values_files
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.helm_cli import HelmCli

from .support import helm_env

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
VENDORED = FIXTURES / "sagemaker-hyperpod-cli"
CHART = VENDORED / "helm_chart" / "HyperPodHelmChart"
DEPENDENCIES = FIXTURES / "helm-dependencies"
# sha256 over `sha256sum` lines of all 144 files at 0e32919 (chart_digest's algorithm).
PINNED_FILES_SHA256 = "26fc72dde401b2bfac8a6c7a9b2af03ab8ab363794fb3cad83756cd423249330"

# Sub-charts this app switches on; every other dependency of the chart must not render.
SWITCHED_ON = {
    "health-monitoring-agent",
    "deep-health-check",
    "job-auto-restart",
    "hyperpod-patching",
    "training-operators",
    "mpi-operator",
    "nvidia-device-plugin",
    "aws-efa-k8s-device-plugin",
    "neuron-device-plugin",
}


def _vendored_digest() -> tuple[str, int]:
    lines = {rel: f"{file_sha256(full)}  {rel}\n" for rel, full in chart_files(CHART)}
    for line in (VENDORED / "omitted-files.sha256").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        assert rel not in lines, f"{rel} is both vendored and listed as omitted"
        lines[rel] = f"{digest}  {rel}\n"
    outer = hashlib.sha256()
    for rel in sorted(lines, key=lambda r: r.encode()):
        outer.update(lines[rel].encode())
    return outer.hexdigest(), len(lines)


def test_vendored_chart_is_the_pinned_commit_file_for_file():
    digest, count = _vendored_digest()
    assert (digest, count) == (PINNED_FILES_SHA256, 144)
    assert HelmChartConfig().commit == "0e32919013e957dc9bd2051bca645a4d60df9e8e"


@pytest.fixture(scope="session")
def staged(helm_binary, tmp_path_factory) -> tuple[Path, list[str]]:
    """The vendored chart as the installer prepares it: remote dependencies unpacked into charts/ (as
    `helm dependency build` would), then the installer's own clean-up; returns (chart, removed files)."""
    root = tmp_path_factory.mktemp("rendered-chart")
    stage = root / "HyperPodHelmChart"
    shutil.copytree(CHART, stage)
    for dep in (d for d in DEPENDENCIES.iterdir() if d.is_dir()):
        shutil.copytree(dep, stage / "charts" / dep.name)
    removed = HelmCli(str(helm_binary), root / "helm-home", root / "kubeconfig").drop_packaged_duplicates(stage)
    return stage, removed


@pytest.fixture(scope="session")
def staged_chart(staged) -> Path:
    return staged[0]


@pytest.fixture(scope="session")
def render(staged_chart, helm_binary, tmp_path_factory):
    """``render(values, region)`` -> the rendered objects, each as (sub-chart, object)."""
    home = tmp_path_factory.mktemp("helm-home")
    cache: dict[str, list[tuple[str, dict]]] = {}

    def _render(values: dict, region: str, *, cached: bool = True) -> list[tuple[str, dict]]:
        key = json.dumps([values, region], sort_keys=True)
        if cached and key in cache:
            return cache[key]
        spec = ReleaseSpec.from_properties(
            {
                "ClusterName": "hp-eks",
                "Region": region,
                "Repository": "aws/sagemaker-hyperpod-cli",
                "Commit": HelmChartConfig().commit,
                "ChartPath": HelmChartConfig().chart_path,
                "ExpectedFilesSha256": PINNED_FILES_SHA256,
                "ReleaseName": HelmChartConfig().release_name,
                "Namespace": HelmChartConfig().namespace,
                "Values": json.dumps(values),
            }
        )
        work = tmp_path_factory.mktemp("values")
        args = [str(helm_binary), "template", spec.release_name, str(staged_chart), "--namespace", spec.namespace]
        for path in write_values_files(spec, staged_chart, work):
            args += ["-f", str(path)]
        done = subprocess.run(args, capture_output=True, text=True, env=helm_env(home), timeout=120)
        assert done.returncode == 0, done.stderr
        objects = []
        for doc in re.split(r"(?m)^---\s*$", done.stdout):
            source = re.search(r"^# Source: [^/]+/charts/([^/]+)/", doc, re.M)
            body = yaml.safe_load(doc)
            if body:
                objects.append((source.group(1) if source else "", body))
        cache[key] = objects
        return objects

    return _render


def _subcharts(objects) -> set[str]:
    return {chart for chart, _ in objects}


def _daemonset(objects, chart: str, name_suffix: str) -> dict:
    (found,) = [
        o for c, o in objects if c == chart and o["kind"] == "DaemonSet" and o["metadata"]["name"].endswith(name_suffix)
    ]
    return found


def test_only_the_switched_on_subcharts_render(render):
    objects = render(chart_values("us-east-1"), "us-east-1")
    declared = {d["name"] for d in yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]}
    assert SWITCHED_ON <= declared
    # Sub-chart folder names differ from dependency names for the inference operator only.
    assert _subcharts(objects) == SWITCHED_ON
    names = {o["metadata"]["name"] for _, o in objects}
    assert "cert-manager-stand-in" not in names
    assert "hyperpod-scientist-user-namespace-level-role" not in names


def test_the_charts_own_enable_spelling_would_leave_namespaced_rbac_on(render):
    """Issue 8 finding 5: `namespaced-role-and-bindings: {enable: false}` switches nothing off."""
    old = copy.deepcopy(chart_values("us-east-1"))
    old["namespaced-role-and-bindings"] = {"enable": False}
    objects = render(old, "us-east-1")
    rbac = [(o["kind"], o["metadata"]["name"]) for c, o in objects if c == "namespaced-role-and-bindings"]
    assert rbac == [
        ("Role", "hyperpod-scientist-user-namespace-level-role"),
        ("RoleBinding", "hyperpod-scientist-user-namespace-level-role-binding"),
    ]


def test_nvidia_device_plugin_runs_on_every_gpu_type_and_only_there_despite_the_health_taint(render):
    objects = render(chart_values("us-east-1"), "us-east-1")
    for suffix in ("nvidia-device-plugin", "mps-control-daemon"):
        pod = _daemonset(objects, "nvidia-device-plugin", suffix)["spec"]["template"]["spec"]
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [
            {"matchExpressions": [{"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": gpu_instance_types()}]}
        ]
        assert set(terms[0]["matchExpressions"][0]["values"]) == set(GPU_INSTANCE_TYPES)
        assert HEALTH_TAINT_TOLERATION in pod["tolerations"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_efa_device_plugin_selects_efa_types_only_and_tolerates_the_health_taint(render):
    objects = render(chart_values("us-east-1"), "us-east-1")
    pod = _daemonset(objects, "aws-efa-k8s-device-plugin", "aws-efa-k8s-device-plugin")["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    by_key = {e["key"]: e for e in term["matchExpressions"]}
    assert by_key[INSTANCE_TYPE_LABEL] == {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": efa_instance_types()}
    assert "ml.p5.48xlarge" in efa_instance_types() and "ml.g5.xlarge" not in efa_instance_types()
    # The chart's own list (EC2 names without the ml. prefix) is replaced, not merged: no system node matches.
    assert all(t.startswith("ml.") for t in by_key[INSTANCE_TYPE_LABEL]["values"])
    assert HEALTH_TAINT_TOLERATION in pod["tolerations"]
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in pod["tolerations"]


@pytest.mark.parametrize(
    ("region", "account"),
    [("us-east-1", "767398015722"), ("us-west-2", "905418368575"), ("eu-west-1", "533267293120")],
)
def test_health_monitoring_agent_pulls_from_its_regional_registry(render, region, account):
    objects = render(chart_values(region), region)
    agents = [o for c, o in objects if c == "health-monitoring-agent" and o["kind"] == "DaemonSet"]
    assert len(agents) == 2  # NVIDIA and non-NVIDIA nodes
    for agent in agents:
        (container,) = agent["spec"]["template"]["spec"]["containers"]
        assert container["image"].startswith(
            f"{account}.dkr.ecr.{region}.amazonaws.com/hyperpod-health-monitoring-agent:"
        )


def test_the_stale_packaged_health_agent_is_dropped_so_every_render_is_the_same(staged, render):
    """Upstream commits charts/health-monitoring-agent-0.1.0.tgz beside charts/health-monitoring-agent/;
    helm then renders one or the other from run to run. The packaged one is older (another image tag,
    no agent on non-NVIDIA nodes), so the installer removes it before helm runs."""
    _, removed = staged
    assert removed == ["health-monitoring-agent-0.1.0.tgz"]
    with tarfile.open(CHART / "charts" / "health-monitoring-agent-0.1.0.tgz") as tgz:
        stale = tgz.extractfile("health-monitoring-agent/templates/_helpers.tpl").read().decode()
    assert '"1.0.674.0_1.0.199.0"' in stale
    renders = [render(chart_values("us-east-1"), "us-east-1", cached=False) for _ in range(4)]
    assert all(r == renders[0] for r in renders)
    images = sorted(
        o["spec"]["template"]["spec"]["containers"][0]["image"]
        for c, o in renders[0]
        if c == "health-monitoring-agent" and o["kind"] == "DaemonSet"
    )
    assert (
        images
        == ["767398015722.dkr.ecr.us-east-1.amazonaws.com/hyperpod-health-monitoring-agent:1.0.1038.0_1.0.305.0"] * 2
    )
