"""The real helm from the kubectl v33 layer against the fixture chart: dependencies, values, rendering."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from config.gpu_types import GPU_INSTANCE_TYPES
from constructs.hyperpod_helm_chart.chart_values import HEALTH_TAINT_TOLERATION, chart_values
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.chart_archive import fetch_chart
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.helm_cli import (
    HelmCli,
    HelmError,
    parse_dependency_list,
)

from .support import CHART_PATH, COMMIT, REPOSITORY

pytestmark = pytest.mark.slow


class RecordingRunner:
    """Runs the real command (subprocess.run) and remembers each argv."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, argv, **kwargs):
        self.calls.append(list(argv))
        return subprocess.run(argv, **kwargs)


@pytest.fixture
def chart(github, tmp_path) -> Path:
    return fetch_chart(REPOSITORY, COMMIT, CHART_PATH, tmp_path / "src", base_url=github.base_url)


@pytest.fixture
def helm(helm_binary, tmp_path) -> HelmCli:
    return HelmCli(str(helm_binary), tmp_path / "helm-home", tmp_path / "kubeconfig", runner=RecordingRunner())


def _render(helm: HelmCli, chart: Path, tmp_path: Path, region: str) -> dict[tuple[str, str], dict]:
    values = tmp_path / "values.json"
    values.write_text(json.dumps(chart_values(region)))
    files = [chart / "regional-values" / f"values-{region}.yaml", values]
    args = ["template", "dependencies", str(chart), "--namespace", "kube-system"]
    for f in files:
        if f.is_file():
            args += ["-f", str(f)]
    out = helm.run(args, timeout=60)
    docs = [d for d in yaml.safe_load_all(out) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_dependency_list_table_is_parsed_including_multiword_statuses():
    out = (
        "NAME                \tVERSION\tREPOSITORY                   \tSTATUS  \n"
        "nvidia-device-plugin\t0.16.1 \thttps://nvidia.github.io/k8s-device-plugin\tmissing \n"
        "mlflow              \t0.1.0  \tfile://charts/mlflow         \tunpacked\n"
        "storage             \t0.2.0  \tfile://charts/storage        \twrong version\n\n"
    )
    rows = parse_dependency_list(out)
    assert [(r.name, r.status) for r in rows] == [
        ("nvidia-device-plugin", "missing"),
        ("mlflow", "unpacked"),
        ("storage", "wrong version"),
    ]
    assert parse_dependency_list("WARNING: no dependencies at chart/charts\n") == []


def test_dependency_build_runs_only_while_a_remote_subchart_is_missing(helm, chart):
    before = {d.name: d.status for d in helm.dependencies(chart)}
    assert before["nvidia-device-plugin"] == "missing" and before["aws-efa-k8s-device-plugin"] == "missing"
    assert before["health-monitoring-agent"] == "unpacked"  # local file:// sub-charts need no build

    built = helm.build_dependencies_if_needed(chart)

    assert sorted(d.name for d in built) == ["aws-efa-k8s-device-plugin", "nvidia-device-plugin"]
    assert (chart / "charts/nvidia-device-plugin-0.16.1.tgz").is_file()
    assert (chart / "charts/aws-efa-k8s-device-plugin-0.5.20.tgz").is_file()
    builds = [c for c in helm.runner.calls if c[1:3] == ["dependency", "build"]]
    assert len(builds) == 1

    assert helm.build_dependencies_if_needed(chart) == []
    assert len([c for c in helm.runner.calls if c[1:3] == ["dependency", "build"]]) == 1  # not run again


def test_dependency_build_retries_a_failing_chart_repository_then_succeeds(helm, chart, github):
    github.server.faults["/charts/index.yaml"] = [503, 503]  # helm fetches the index once per build
    delays = []
    built = helm.build_dependencies_if_needed(chart, sleep=delays.append)
    assert sorted(d.name for d in built) == ["aws-efa-k8s-device-plugin", "nvidia-device-plugin"]
    assert delays == [5, 10]
    assert len([c for c in helm.runner.calls if c[1:3] == ["dependency", "build"]]) == 3


def test_dependency_build_failure_reports_the_unreachable_repository(helm, chart, github):
    github.server.faults["/charts/index.yaml"] = [500] * 20
    with pytest.raises(
        HelmError,
        match=r"(?s)helm dependency build failed \(exit 1\): .*output: .*"
        r"Unable to get an update from the \"http://127\.0\.0\.1:\d+/charts\"",
    ):
        helm.build_dependencies_if_needed(chart, sleep=lambda _: None)
    assert len([c for c in helm.runner.calls if c[1:3] == ["dependency", "build"]]) == 3


def test_generated_values_render_region_and_exactly_the_enabled_components(helm, chart, tmp_path):
    helm.build_dependencies_if_needed(chart)
    objects = _render(helm, chart, tmp_path, "us-west-2")

    agent = objects[("DaemonSet", "health-monitoring-agent")]["spec"]["template"]["spec"]["containers"][0]
    # Region from the generated values beats the regional file's; the regional file's image tag is kept.
    assert agent["image"] == (
        "905418368575.dkr.ecr.us-west-2.amazonaws.com/hyperpod-health-monitoring-agent:9.9.9-regional"
    )
    assert agent["env"] == [{"name": "AWS_REGION", "value": "us-west-2"}]

    components = {name for kind, name in objects if kind == "ConfigMap"}
    assert components == {
        f"{c}-component"
        for c in ("deep-health-check", "job-auto-restart", "hyperpod-patching", "training-operators", "mpi-operator")
    }
    # storage is on in the fixture chart's defaults; mlflow and inference are off: all must stay off.

    nvidia = objects[("DaemonSet", "dependencies-nvidia-device-plugin")]["spec"]["template"]["spec"]
    assert HEALTH_TAINT_TOLERATION in nvidia["tolerations"]
    (term,) = nvidia["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"][0]["key"] == "node.kubernetes.io/instance-type"
    assert set(term["matchExpressions"][0]["values"]) == set(GPU_INSTANCE_TYPES)

    efa = objects[("DaemonSet", "dependencies-aws-efa-k8s-device-plugin")]["spec"]["template"]["spec"]
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in efa["tolerations"]
    assert HEALTH_TAINT_TOLERATION in efa["tolerations"]
    efa_types = efa["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][
        0
    ]["matchExpressions"][0]["values"]
    assert "ml.p5.48xlarge" in efa_types and "ml.g5.xlarge" not in efa_types  # g5.xlarge has no EFA
    assert set(efa_types) == {t for t, s in GPU_INSTANCE_TYPES.items() if s.efa_interfaces} | {
        "ml.trn1.32xlarge",
        "ml.trn1n.32xlarge",
        "ml.trn2.3xlarge",
        "ml.trn2.48xlarge",
    }


def test_region_without_a_regional_file_still_reaches_the_agent(helm, chart, tmp_path):
    helm.build_dependencies_if_needed(chart)
    objects = _render(helm, chart, tmp_path, "eu-west-1")
    agent = objects[("DaemonSet", "health-monitoring-agent")]["spec"]["template"]["spec"]["containers"][0]
    assert agent["image"].startswith("533267293120.dkr.ecr.eu-west-1.amazonaws.com/")


def test_chart_lints_clean_with_the_generated_values(helm, chart, tmp_path):
    helm.build_dependencies_if_needed(chart)
    values = tmp_path / "values.json"
    values.write_text(json.dumps(chart_values("us-west-2")))
    out = helm.run(["lint", str(chart), "--strict", "-f", str(values)], timeout=60)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_chart_defaults_alone_would_install_storage(helm, chart, tmp_path):
    """Control for the test above: without the generated values the fixture's default turns storage on."""
    helm.build_dependencies_if_needed(chart)
    out = helm.run(["template", "dependencies", str(chart), "--namespace", "kube-system"], timeout=60)
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(out) if d}
    assert "storage-component" in names
