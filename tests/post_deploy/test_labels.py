"""label-gpus against the Kubernetes API double, through the real kubernetes client."""

from __future__ import annotations

import argparse
import json

import pytest

from post_deploy import kube, labels
from post_deploy.exit_codes import ExitCode
from tests.k8s_double import seed

ACC = "skypilot.co/accelerator"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="post_deploy")
    labels.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _cli(kubeconfig, *extra: str) -> int:
    args = _parse(["label-gpus", "--kubeconfig", str(kubeconfig.path), "--context", kubeconfig.context, *extra])
    return args.func(args)


def _name(node: dict) -> str:
    return node["metadata"]["name"]


@pytest.fixture
def mixed_cluster(k8s_double):
    """One node of every case label-gpus must distinguish."""
    nodes = {
        "p5_unlabelled": k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge")),
        "p4de_uppercase": k8s_double.add_node(seed.hyperpod_node("ml.p4de.24xlarge", accelerator="A100-80GB")),
        "p4de_wrong_gpu": k8s_double.add_node(seed.hyperpod_node("ml.p4de.24xlarge", accelerator="a100")),
        "g5_correct": k8s_double.add_node(seed.hyperpod_node("ml.g5.12xlarge", accelerator="a10g")),
        "cpu": k8s_double.add_node(seed.cpu_hyperpod_node("ml.m5.2xlarge")),
        # GPU instance but not HyperPod (an EKS node group): not ours to label
        "eks_gpu": k8s_double.add_node(seed.system_node("g5.xlarge")),
        "system": k8s_double.add_node(seed.system_node()),
    }
    k8s_double.reset_log()
    return nodes


def _labels(k8s_double, node: dict) -> dict:
    return k8s_double.node(_name(node))["metadata"]["labels"]


def test_adds_missing_fixes_wrong_and_leaves_everything_else_alone(k8s_double, k8s_api_client, mixed_cluster):
    before = {key: k8s_double.node(_name(n)) for key, n in mixed_cluster.items()}

    report = labels.reconcile_gpu_labels(k8s_api_client)

    assert _labels(k8s_double, mixed_cluster["p5_unlabelled"])[ACC] == "h100"
    assert _labels(k8s_double, mixed_cluster["p4de_uppercase"])[ACC] == "a100-80gb"
    assert _labels(k8s_double, mixed_cluster["p4de_wrong_gpu"])[ACC] == "a100-80gb"
    for untouched in ("g5_correct", "cpu", "eks_gpu", "system"):
        assert k8s_double.node(_name(mixed_cluster[untouched])) == before[untouched], untouched
    assert {(c.node, c.old, c.new) for c in report.changed} == {
        (_name(mixed_cluster["p5_unlabelled"]), None, "h100"),
        (_name(mixed_cluster["p4de_uppercase"]), "A100-80GB", "a100-80gb"),
        (_name(mixed_cluster["p4de_wrong_gpu"]), "a100", "a100-80gb"),
    }
    assert report.already_correct == 1 and report.not_gpu == 1 and report.ok
    writes = k8s_double.writes()
    assert len(writes) == report.writes == 3
    assert {w.path for w in writes} == {
        f"/api/v1/nodes/{_name(mixed_cluster[k])}" for k in ("p5_unlabelled", "p4de_uppercase", "p4de_wrong_gpu")
    }
    # Only our label is written, and each patch is conditional on the version we decided from.
    for write in writes:
        name = write.path.rsplit("/", 1)[1]
        original = next(b for b in before.values() if _name(b) == name)
        assert write.body == {
            "metadata": {
                "resourceVersion": original["metadata"]["resourceVersion"],
                "labels": {ACC: write.body["metadata"]["labels"][ACC]},
            }
        }


def test_second_run_writes_nothing(k8s_double, k8s_api_client, mixed_cluster):
    labels.reconcile_gpu_labels(k8s_api_client)
    k8s_double.reset_log()

    report = labels.reconcile_gpu_labels(k8s_api_client)

    assert report.changed == [] and report.writes == 0 and report.already_correct == 4
    assert k8s_double.writes() == []


def test_dry_run_prints_the_plan_and_writes_nothing(k8s_double, kubeconfig_for_double, mixed_cluster, capsys):
    before = k8s_double.nodes()

    assert _cli(kubeconfig_for_double, "--dry-run") == ExitCode.OK

    assert k8s_double.writes() == [] and k8s_double.nodes() == before
    err = capsys.readouterr().err
    assert f"{_name(mixed_cluster['p4de_uppercase'])} (ml.p4de.24xlarge): would set {ACC} A100-80GB -> a100-80gb" in err
    assert f"{_name(mixed_cluster['p5_unlabelled'])} (ml.p5.48xlarge): would set {ACC} <unset> -> h100" in err
    assert _name(mixed_cluster["g5_correct"]) not in err


def test_cli_prints_each_change_and_one_json_object(k8s_double, kubeconfig_for_double, mixed_cluster, capsys):
    assert _cli(kubeconfig_for_double, "--json") == ExitCode.OK

    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["step"] == "label-gpus" and summary["ok"] is True and summary["writes"] == 3
    assert {c["node"] for c in summary["changed"]} == {
        _name(mixed_cluster[k]) for k in ("p5_unlabelled", "p4de_uppercase", "p4de_wrong_gpu")
    }
    assert f"{_name(mixed_cluster['p5_unlabelled'])} (ml.p5.48xlarge): set {ACC} <unset> -> h100" in captured.err


def test_conflict_rereads_the_node_and_patches_again(k8s_double, k8s_api_client):
    name = _name(k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge")))
    k8s_double.inject_fault("PATCH", f"/nodes/{name}$", status=409, times=2)

    report = labels.reconcile_gpu_labels(k8s_api_client)

    assert report.ok and [c.node for c in report.changed] == [name]
    assert k8s_double.node(name)["metadata"]["labels"][ACC] == "h100"
    assert [(r.method, r.status) for r in k8s_double.requests if r.path == f"/api/v1/nodes/{name}"] == [
        ("PATCH", 409),
        ("GET", 200),
        ("PATCH", 409),
        ("GET", 200),
        ("PATCH", 200),
    ]
    # every retry carries the version it just read, never the stale one
    patches = [r for r in k8s_double.requests if r.method == "PATCH"]
    versions = [p.body["metadata"]["resourceVersion"] for p in patches]
    assert len(set(versions)) == 3


def test_conflict_with_a_writer_that_already_fixed_the_label_ends_without_a_write(k8s_double, k8s_api_client):
    name = _name(k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge", accelerator="H100")))

    def concurrent_fix(request):  # another labeler gets there between our list and our patch
        if request.method == "PATCH" and k8s_double.node(name)["metadata"]["labels"][ACC] == "H100":
            k8s_double.update_node(name, lambda n: n["metadata"]["labels"].update({ACC: "h100"}))

    k8s_double.before_request = concurrent_fix

    report = labels.reconcile_gpu_labels(k8s_api_client)

    assert report.changed == [] and report.already_correct == 1 and report.ok
    assert [r.status for r in k8s_double.writes()] == [409]


def test_throttling_and_server_errors_are_retried_with_backoff(k8s_double, k8s_api_client):
    name = _name(k8s_double.add_node(seed.hyperpod_node("ml.g5.12xlarge")))
    k8s_double.inject_fault("PATCH", "/nodes/", status=429, times=2, retry_after=3)
    k8s_double.inject_fault("PATCH", "/nodes/", status=503, times=1)
    k8s_double.inject_fault("GET", "^/api/v1/nodes$", status=500, times=1)
    slept: list[float] = []

    report = labels.reconcile_gpu_labels(k8s_api_client, sleep=slept.append)

    assert report.ok and k8s_double.node(name)["metadata"]["labels"][ACC] == "a10g"
    assert [r.status for r in k8s_double.writes()] == [429, 429, 503, 200]
    assert len(slept) == 4 and slept[1:3] == [3.0, 3.0]  # list 500, then Retry-After honoured
    assert all(0 <= s <= 5 for s in (slept[0], slept[3]))


def test_persistent_server_errors_give_up_after_bounded_retries(k8s_double, k8s_api_client):
    name = _name(k8s_double.add_node(seed.hyperpod_node("ml.g5.12xlarge")))
    k8s_double.inject_fault("PATCH", "/nodes/", status=500, times=None)

    report = labels.reconcile_gpu_labels(k8s_api_client, sleep=lambda s: None)

    assert not report.ok and report.failed[0].node == name
    assert "HTTP 500" in report.failed[0].error
    assert len(k8s_double.writes()) == kube.MAX_TRANSIENT_RETRIES


def test_endless_conflicts_are_bounded_and_reported(k8s_double, k8s_api_client):
    name = _name(k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge")))
    k8s_double.inject_fault("PATCH", "/nodes/", status=409, times=None)

    report = labels.reconcile_gpu_labels(k8s_api_client)

    assert [f.node for f in report.failed] == [name] and "still conflicting" in report.failed[0].error
    assert len(k8s_double.writes()) == labels.MAX_CONFLICT_RETRIES + 1


def test_forbidden_patch_fails_the_step_with_kubernetes_api_code(k8s_double, kubeconfig_for_double, capsys):
    ok = _name(k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge")))
    denied = _name(k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge")))
    k8s_double.inject_fault("PATCH", f"/nodes/{denied}$", status=403, times=None)

    assert _cli(kubeconfig_for_double, "--json") == ExitCode.KUBERNETES_API

    captured = capsys.readouterr()
    assert k8s_double.node(ok)["metadata"]["labels"][ACC] == "h100"
    assert f"{denied}: FAILED to set {ACC}: HTTP 403 Forbidden" in captured.err
    summary = json.loads(captured.out)
    assert summary["ok"] is False and [f["node"] for f in summary["failed"]] == [denied]
    assert len([w for w in k8s_double.writes() if w.path.endswith(denied)]) == 1  # 403 is not retried


def test_unreadable_node_list_fails_with_kubernetes_api_code(k8s_double, kubeconfig_for_double, capsys):
    k8s_double.inject_fault("GET", "^/api/v1/nodes$", status=403, times=None)

    assert _cli(kubeconfig_for_double) == ExitCode.KUBERNETES_API

    assert "cannot list nodes: HTTP 403 Forbidden" in capsys.readouterr().err


def test_node_deleted_mid_run_is_reported_not_failed(k8s_double, k8s_api_client):
    name = _name(k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge")))
    k8s_double.before_request = lambda r: k8s_double.remove_node(name) if r.method == "PATCH" else None

    report = labels.reconcile_gpu_labels(k8s_api_client)

    assert report.ok and report.gone == [name] and report.changed == []


def test_gpu_type_missing_from_the_table_is_reported_and_left_alone(k8s_double, k8s_api_client):
    name = _name(k8s_double.add_node(seed.hyperpod_node("ml.p9.96xlarge", gpus=8)))

    report = labels.reconcile_gpu_labels(k8s_api_client)

    assert report.unknown_gpu_types == {name: "ml.p9.96xlarge"} and k8s_double.writes() == []


def test_cluster_name_limits_the_run_to_one_hyperpod_cluster(k8s_double, k8s_api_client):
    mine = _name(k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge", cluster="mine")))
    other = _name(k8s_double.add_node(seed.hyperpod_node("ml.p5.48xlarge", cluster="other")))

    labels.reconcile_gpu_labels(k8s_api_client, cluster_name="mine")

    assert ACC in k8s_double.node(mine)["metadata"]["labels"]
    assert ACC not in k8s_double.node(other)["metadata"]["labels"]


def test_many_nodes_get_exactly_one_write_each(k8s_double, k8s_api_client):
    nodes = [k8s_double.add_node(seed.hyperpod_node(t)) for t in ["ml.p5.48xlarge", "ml.g6e.12xlarge"] * 40]

    report = labels.reconcile_gpu_labels(k8s_api_client, workers=8)

    assert len(report.changed) == 80 and report.writes == 80
    assert sorted(w.path for w in k8s_double.writes()) == sorted(f"/api/v1/nodes/{_name(n)}" for n in nodes)


def test_missing_kubeconfig_is_a_usage_error(tmp_path, capsys):
    args = _parse(["label-gpus", "--kubeconfig", str(tmp_path / "nope")])
    assert args.func(args) == ExitCode.USAGE
    assert f"kubeconfig '{tmp_path / 'nope'}' does not exist" in capsys.readouterr().err


def test_unknown_context_is_a_usage_error(kubeconfig_for_double, capsys):
    args = _parse(["label-gpus", "--kubeconfig", str(kubeconfig_for_double.path), "--context", "prod"])
    assert args.func(args) == ExitCode.USAGE
    assert "context 'prod'" in capsys.readouterr().err
