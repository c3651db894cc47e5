"""check: real SkyPilot 0.14.1 code against the Kubernetes API double.

Expected GPU types and counts are written out here (not taken from config.gpu_types), so the
table, the labeler and SkyPilot's reading of the labels are checked together.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import pytest
import yaml

from post_deploy import labels, skypilot_check
from post_deploy.exit_codes import ExitCode
from tests.k8s_double import seed


def _args(kubeconfig, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    skypilot_check.register(parser.add_subparsers())
    return parser.parse_args(["check", "--kubeconfig", str(kubeconfig.path), "--context", kubeconfig.context, *extra])


def _check(kubeconfig, capsys, *extra: str) -> tuple[int, dict, str]:
    code = skypilot_check.run(_args(kubeconfig, "--json", *extra))
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


@pytest.fixture
def gpu_cluster(k8s_double, skypilot_env):
    """Two p5, one p4de, one g5, a CPU HyperPod node and a system node, none labelled for SkyPilot."""
    names = {}
    for key, instance_type, gpus in [
        ("p5a", "ml.p5.48xlarge", 8),
        ("p5b", "ml.p5.48xlarge", 8),
        ("p4de", "ml.p4de.24xlarge", 8),
        ("g5", "ml.g5.12xlarge", 4),
    ]:
        names[key] = k8s_double.add_node(seed.hyperpod_node(instance_type, gpus=gpus))["metadata"]["name"]
    names["cpu"] = k8s_double.add_node(seed.cpu_hyperpod_node())["metadata"]["name"]
    names["system"] = k8s_double.add_node(seed.sized(seed.system_node("m7i.large")))["metadata"]["name"]
    k8s_double.add_pod(seed.pod("training", namespace="team-a", node_name=names["p5a"], gpus=2))
    return names


def test_labels_missing_then_skypilot_sees_every_gpu_after_label_gpus(
    gpu_cluster, k8s_double, kubeconfig_for_double, k8s_api_client, capsys
):
    code, before, err = _check(kubeconfig_for_double, capsys)

    assert code == ExitCode.SKYPILOT_CHECK and before["ok"] is False
    assert before["enabled"] is True  # SkyPilot only notes unlabelled GPUs; the step must not stop there
    assert "Cluster has 4 nodes with accelerators that are not labeled" in before["skypilot_message"]
    assert sorted(before["problems"]) == sorted(
        f"{gpu_cluster[key]} ({instance_type}): has no skypilot.co/accelerator label, so SkyPilot cannot tell "
        "its GPU type: run `python -m post_deploy label-gpus`"
        for key, instance_type in [
            ("p5a", "ml.p5.48xlarge"),
            ("p5b", "ml.p5.48xlarge"),
            ("p4de", "ml.p4de.24xlarge"),
            ("g5", "ml.g5.12xlarge"),
        ]
    )
    assert f"problem: {gpu_cluster['g5']} (ml.g5.12xlarge): has no skypilot.co/accelerator label" in err

    assert labels.reconcile_gpu_labels(k8s_api_client).ok

    code, after, err = _check(kubeconfig_for_double, capsys)

    assert code == ExitCode.OK, after["problems"]
    assert (after["ok"], after["enabled"], after["problems"], after["skypilot_message"]) == (True, True, [], None)
    seen = {n["node"]: (n["seen_accelerator"], n["seen_count"]) for n in after["nodes"]}
    assert seen == {
        gpu_cluster["p5a"]: ("H100", 8),
        gpu_cluster["p5b"]: ("H100", 8),
        gpu_cluster["p4de"]: ("A100-80GB", 8),
        gpu_cluster["g5"]: ("A10G", 4),
    }
    assert after["gpus"] == {  # what `sky gpus list --infra k8s` shows; CPU nodes add nothing
        "H100": {"capacity": 16, "available": 14, "requestable": [1, 2, 4, 8]},
        "A100-80GB": {"capacity": 8, "available": 8, "requestable": [1, 2, 4, 8]},
        "A10G": {"capacity": 4, "available": 4, "requestable": [1, 2, 4]},
    }
    assert f"{gpu_cluster['p4de']} (ml.p4de.24xlarge): SkyPilot sees A100-80GB x8, expected A100-80GB x8  ok" in err
    assert "check: ok" in err
    assert k8s_double.unknown_requests == []  # every call SkyPilot made is one the double implements


def test_wrong_label_values_are_named_with_the_value_skypilot_needs(
    k8s_double, kubeconfig_for_double, skypilot_env, capsys, monkeypatch
):
    import sky.sky_logging

    # In a real run SkyPilot's handlers write to the process's stdout; make that this test's stdout,
    # so the warning SkyPilot logs for "H100" would break the JSON below if it were not redirected.
    for handler in logging.getLogger("sky").handlers:
        if isinstance(handler, sky.sky_logging.EnvAwareHandler):  # not pytest's capture handlers
            monkeypatch.setattr(handler, "stream", sys.stdout)
    upper = k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge", gpus=8, accelerator="H100"))
    forty = k8s_double.add_node(seed.hyperpod_node("ml.p4de.24xlarge", gpus=8, accelerator="a100"))

    code, summary, _ = _check(kubeconfig_for_double, capsys)

    assert code == ExitCode.SKYPILOT_CHECK
    assert summary["problems"] == [
        f"{n['metadata']['name']} ({t}): skypilot.co/accelerator={v}, but SkyPilot needs {w!r} for {t}: "
        "run `python -m post_deploy label-gpus`"
        for n, t, v, w in sorted(
            [(upper, "ml.p5.48xlarge", "H100", "h100"), (forty, "ml.p4de.24xlarge", "a100", "a100-80gb")],
            key=lambda x: x[0]["metadata"]["name"],
        )
    ]


def test_gpus_not_allocatable_point_at_the_device_plugin(k8s_double, kubeconfig_for_double, skypilot_env, capsys):
    name = k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge", gpus=0, accelerator="h100"))["metadata"]["name"]

    code, summary, _ = _check(kubeconfig_for_double, capsys)

    assert code == ExitCode.SKYPILOT_CHECK
    assert summary["problems"] == [
        f"{name} (ml.p5.48xlarge): nvidia.com/gpu is not allocatable (0 of 8): {skypilot_check.DEVICE_PLUGIN_FIX}"
    ]
    assert "Could not detect GPU/TPU resources" in summary["skypilot_message"]


def test_gpus_withdrawn_by_the_device_plugin_are_reported(k8s_double, kubeconfig_for_double, skypilot_env, capsys):
    node = seed.hyperpod_node("ml.p5.48xlarge", gpus=8, accelerator="h100")
    node["status"]["allocatable"]["nvidia.com/gpu"] = "6"
    name = k8s_double.add_node(node)["metadata"]["name"]

    code, summary, _ = _check(kubeconfig_for_double, capsys)

    assert code == ExitCode.SKYPILOT_CHECK
    assert summary["problems"] == [
        f"{name} (ml.p5.48xlarge): only 6 of 8 GPUs allocatable; the device plugin "
        "withdrew the others (unhealthy GPUs?)"
    ]


def test_missing_port_forward_tools_and_kubectl_are_named(
    k8s_double, kubeconfig_for_double, skypilot_env, tmp_path, monkeypatch, capsys
):
    k8s_double.add_node(seed.hyperpod_node("ml.g5.12xlarge", gpus=4, accelerator="a10g"))
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    code, summary, _ = _check(kubeconfig_for_double, capsys)

    assert code == ExitCode.SKYPILOT_CHECK
    tools, kubectl, disabled = summary["problems"]
    assert "port-forwarding tools are missing" in tools and "socat" in tools and "`nc`" in tools
    assert kubectl.startswith("kubectl is not on PATH")
    assert disabled.startswith(
        "SkyPilot reports context 'hyperpod-test' disabled: Failed to get kubeconfig "
        "text for context hyperpod-test: /bin/sh: "
    )  # the shell's "kubectl: not found"
    assert "kubectl" in disabled.rsplit(":", 2)[1] and "not found" in disabled
    assert summary["enabled"] is False


def test_context_missing_from_the_kubeconfig(kubeconfig_for_double, skypilot_env, capsys):
    args = _args(kubeconfig_for_double, "--json")
    args.context = "prod"

    assert skypilot_check.run(args) == ExitCode.SKYPILOT_CHECK

    summary = json.loads(capsys.readouterr().out)
    assert summary["problems"] == [
        f"context 'prod' is missing from kubeconfig '{kubeconfig_for_double.path}' "
        "(it has: hyperpod-test); run `python -m post_deploy kubeconfig`"
    ]


def test_context_skypilot_would_not_use_is_explained(k8s_double, kubeconfig_for_double, skypilot_env, capsys):
    k8s_double.add_node(seed.hyperpod_node("ml.g5.12xlarge", gpus=4, accelerator="a10g"))
    config = yaml.safe_load(kubeconfig_for_double.path.read_text())
    config["contexts"].append({"name": "other", "context": dict(config["contexts"][0]["context"])})
    config["current-context"] = "other"
    kubeconfig_for_double.path.write_text(yaml.safe_dump(config))

    code, summary, _ = _check(kubeconfig_for_double, capsys)

    assert code == ExitCode.SKYPILOT_CHECK
    assert summary["problems"] == [
        "SkyPilot will not use context 'hyperpod-test': it uses 'other' (the kubeconfig's current-context "
        "unless kubernetes.allowed_contexts is set in ~/.sky/config.yaml); run "
        "`kubectl config use-context hyperpod-test`"
    ]
    assert summary["nodes"][0]["seen_accelerator"] == "A10G"  # the GPU checks still ran for the context


def test_api_refusing_the_probe_disables_the_context(k8s_double, kubeconfig_for_double, skypilot_env, capsys):
    k8s_double.inject_fault("GET", "/pods$", status=403, times=None)

    code, summary, _ = _check(kubeconfig_for_double, capsys)

    assert code == ExitCode.SKYPILOT_CHECK and summary["enabled"] is False
    assert summary["problems"][0].startswith(
        "SkyPilot reports context 'hyperpod-test' disabled: Failed to communicate with the cluster: (403)"
    )


def test_a_cpu_only_hyperpod_cluster_passes_with_a_note(k8s_double, kubeconfig_for_double, skypilot_env, capsys):
    """The canary's cluster has one CPU instance group: SkyPilot's own check decides, no GPU checks apply."""
    k8s_double.add_node(seed.cpu_hyperpod_node("ml.m5.large", name="hyperpod-i-0canary"))

    code, summary, _ = _check(kubeconfig_for_double, capsys, "--cluster-name", "hp-test")

    assert code == ExitCode.OK and summary["enabled"] is True and summary["problems"] == []
    assert summary["cpu_nodes"] == ["hyperpod-i-0canary"] and summary["nodes"] == []
    assert any(n.startswith("CPU-only HyperPod cluster: 1 node(s) without GPUs") for n in summary["notes"])


def test_no_hyperpod_nodes_is_a_problem(k8s_double, kubeconfig_for_double, skypilot_env, capsys):
    k8s_double.add_node(seed.cpu_hyperpod_node(cluster="another-cluster"))

    code, summary, _ = _check(kubeconfig_for_double, capsys, "--cluster-name", "hp-test")

    assert code == ExitCode.SKYPILOT_CHECK
    assert summary["problems"][0].startswith("no HyperPod nodes of cluster 'hp-test' found")


def test_check_runs_without_a_skypilot_api_server(gpu_cluster, kubeconfig_for_double, skypilot_env, capsys):
    _check(kubeconfig_for_double, capsys)

    from sky.skylet.constants import API_SERVER_LOGS

    server_log = skypilot_env / API_SERVER_LOGS.removeprefix("~/")
    assert not server_log.parent.exists()  # an API server started by the SDK would log here
    assert os.environ["KUBECONFIG"] == str(kubeconfig_for_double.path)  # restored, not left changed


def test_missing_kubeconfig_is_a_usage_error(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    skypilot_check.register(parser.add_subparsers())
    args = parser.parse_args(["check", "--kubeconfig", str(tmp_path / "missing")])
    assert skypilot_check.run(args) == ExitCode.USAGE
    assert "does not exist" in capsys.readouterr().err


def test_json_stdout_stays_clean_in_a_fresh_process(k8s_double, kubeconfig_for_double, skypilot_env):
    """SkyPilot binds its log handlers to the real stdout at import; its warnings must not reach it."""
    import subprocess
    from pathlib import Path

    k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge", gpus=8, accelerator="H100"))  # SkyPilot warns
    script = (
        "import argparse, sys; from post_deploy import skypilot_check as c; p = argparse.ArgumentParser(); "
        "c.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", script, "check", "--json", "--kubeconfig", str(kubeconfig_for_double.path)],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == ExitCode.SKYPILOT_CHECK, result.stderr
    assert "invalid value H100" in result.stderr  # SkyPilot's own warning, on stderr
    assert json.loads(result.stdout)["problems"][0].endswith("run `python -m post_deploy label-gpus`")


# --- the API server submit will use: its own PATH, not this shell's -------------------------------


def _clear_server_caches() -> None:
    from sky.server import common as server_common

    for cached in (server_common.get_server_url, server_common.is_api_server_local):
        cached.cache_clear()


@pytest.fixture
def running_api_server(skypilot_env, tmp_path):
    """A process the SDK takes for the local API server on our port (``-m sky.server.server --port N``
    in its command line, as ``sky/client/sdk.py`` matches it), started from a shell whose PATH has
    only Python: what a server started before socat/nc/kubectl were installed looks like."""
    import subprocess

    port = os.environ["SKYPILOT_API_SERVER_LOCAL_PORT"]
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "-m", "sky.server.server", "--port", port],
        env={"PATH": str(bare)},
    )
    yield server, str(bare)
    server.kill()
    server.wait()


def test_a_running_api_server_without_the_tools_on_its_path_is_a_problem(
    gpu_cluster, running_api_server, kubeconfig_for_double, k8s_api_client, capsys
):
    server, bare = running_api_server
    assert labels.reconcile_gpu_labels(k8s_api_client).ok

    code, report, err = _check(kubeconfig_for_double, capsys)

    assert code == ExitCode.SKYPILOT_CHECK
    (problem,) = report["problems"]  # this process's own PATH has every tool
    assert problem.startswith(
        f"the running SkyPilot API server (pid {server.pid}, http://127.0.0.1:"
        f"{os.environ['SKYPILOT_API_SERVER_LOCAL_PORT']}) cannot find socat, nc, kubectl on its PATH ({bare})"
    )
    assert "`sky api stop`" in problem
    assert report["api_server"]["path_verified"] is True and report["api_server"]["pids"] == [server.pid]
    assert "problem: the running SkyPilot API server" in err


def test_no_running_api_server_means_submit_starts_one_with_this_path(
    gpu_cluster, skypilot_env, kubeconfig_for_double, k8s_api_client, capsys
):
    assert labels.reconcile_gpu_labels(k8s_api_client).ok

    code, report, _ = _check(kubeconfig_for_double, capsys)

    assert code == ExitCode.OK, report["problems"]
    assert report["notes"] == [] and report["api_server"]["pids"] == []


def test_a_remote_api_server_path_is_reported_as_not_verified(
    gpu_cluster, skypilot_env, kubeconfig_for_double, k8s_api_client, capsys, monkeypatch
):
    assert labels.reconcile_gpu_labels(k8s_api_client).ok
    monkeypatch.setenv("SKYPILOT_API_SERVER_ENDPOINT", "http://skypilot.example.internal:46580")
    _clear_server_caches()
    try:
        code, report, err = _check(kubeconfig_for_double, capsys)
    finally:
        monkeypatch.delenv("SKYPILOT_API_SERVER_ENDPOINT")
        _clear_server_caches()

    assert code == ExitCode.OK  # a note, not a failure: this host cannot see that server's PATH
    (note,) = report["notes"]
    assert note.startswith("SkyPilot API server http://skypilot.example.internal:46580 is remote: its PATH was not")
    assert report["api_server"]["path_verified"] is False
    assert "note: SkyPilot API server http://skypilot.example.internal:46580 is remote" in err


def test_no_system_node_for_the_managed_jobs_controller_is_noted(
    skypilot_env, k8s_double, kubeconfig_for_double, k8s_api_client, capsys
):
    """eks.system_node_group.desired_size 0 is allowed; then `submit --managed` has nowhere to go."""
    k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge", gpus=8))
    assert labels.reconcile_gpu_labels(k8s_api_client).ok

    code, report, err = _check(kubeconfig_for_double, capsys)

    assert code == ExitCode.OK  # plain submit still works
    (note,) = report["notes"]
    assert note.startswith("no EKS system node has room for the managed-jobs controller (1 CPU, 4G memory, 10G")
    assert "note: no EKS system node has room" in err


@pytest.mark.skipif(
    os.environ.get("POST_DEPLOY_REAL_SKY_SERVER") != "1",
    reason="starts a real SkyPilot API server; set POST_DEPLOY_REAL_SKY_SERVER=1",
)
def test_a_real_api_server_started_without_the_tools_is_caught(
    gpu_cluster, skypilot_env, kubeconfig_for_double, k8s_api_client, capsys, monkeypatch
):
    """The same check against SkyPilot's own server process, started (as `sky api start` does) from a
    shell whose PATH has Python only; this process then gets the tools on its PATH."""
    import sky

    assert labels.reconcile_gpu_labels(k8s_api_client).ok
    full_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    _clear_server_caches()
    try:
        sky.api_start()
        monkeypatch.setenv("PATH", full_path)
        code, report, _ = _check(kubeconfig_for_double, capsys)
    finally:
        sky.api_stop()
        _clear_server_caches()

    assert code == ExitCode.SKYPILOT_CHECK
    (problem,) = report["problems"]
    assert "cannot find socat, nc, kubectl on its PATH" in problem
    assert report["api_server"]["path"] == str(Path(sys.executable).parent)
