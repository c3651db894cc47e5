"""``submit`` through the real SkyPilot SDK, faked only at its HTTP boundary (``sky_api_double``).

Nothing of ours is mocked: the CLI validates the task files, the SkyPilot client serialises the
task and talks REST to a loopback server that answers as the 0.14.1 API server does (its own
payload models and encoders), and the exit code comes back through ``sky.tail_logs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

import pytest
import requests
from sky import exceptions
from sky.server import common as server_common
from sky.utils import dag_utils

from post_deploy.cli import main
from post_deploy.exit_codes import ExitCode
from tests.post_deploy.sky_api_double import Scenario, SkyApiDouble

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "sky_tasks" / "smoke.yaml")
DEV = str(REPO / "sky_tasks" / "dev.yaml")
TRAIN = str(REPO / "sky_tasks" / "train.yaml")
BAD_CONFIG = str(REPO / "tests" / "sky_tasks" / "fixtures" / "unknown-config-key.yaml")


def _clear_sdk_caches() -> None:
    """The SDK caches the server URL process-wide; each test points it somewhere else."""
    for cached in (
        server_common.get_server_url,
        server_common.is_api_server_local,
        server_common.get_api_server_status_response,
    ):
        cached.cache_clear()


@pytest.fixture
def sky_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
    for var in ("SKYPILOT_API_SERVER_ENDPOINT", "SKYPILOT_API_SERVER_LOCAL_PORT", "SKYPILOT_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    _clear_sdk_caches()
    yield home
    _clear_sdk_caches()


@pytest.fixture
def sky_api(sky_home, monkeypatch):
    """The double as a remote API server (SKYPILOT_API_SERVER_ENDPOINT)."""
    with SkyApiDouble() as double:
        monkeypatch.setenv("SKYPILOT_API_SERVER_ENDPOINT", double.url)
        _clear_sdk_caches()
        yield double


def summary(capsys) -> tuple[dict, str]:
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1, f"stdout must hold only the JSON summary, got: {captured.out!r}"
    return json.loads(lines[0]), captured.err


def launched_task(double: SkyApiDouble, index: int = 0):
    """The task the server received, parsed by SkyPilot's own loader."""
    return dag_utils.load_dag_from_yaml_str(double.bodies("/launch")[index]["task"]).tasks[0]


# --- offline validation comes first ----------------------------------------------------------------


def test_invalid_task_yaml_is_task_invalid_before_any_request(sky_api, capsys):
    code = main(["submit", BAD_CONFIG, "--json"])
    assert code == ExitCode.TASK_INVALID
    result, err = summary(capsys)
    assert result["exit_code"] == ExitCode.TASK_INVALID
    assert "config.kubernetes: unknown key 'pod_confg'" in result["error"]
    assert sky_api.calls == []


def test_a_bad_second_task_stops_the_first_from_launching(sky_api):
    assert main(["submit", SMOKE, BAD_CONFIG]) == ExitCode.TASK_INVALID
    assert sky_api.calls == []


def test_validate_only_checks_and_contacts_nothing(sky_api, capsys):
    assert main(["submit", SMOKE, TRAIN, "--validate-only", "--json"]) == ExitCode.OK
    result, _ = summary(capsys)
    assert result["validated"] == [SMOKE, TRAIN]
    assert sky_api.calls == []


def test_server_side_rejection_is_task_invalid_and_nothing_is_launched(sky_api, capsys):
    sky_api.scenario = Scenario(validate_error=ValueError("Invalid accelerator name 'H100' for Kubernetes"))
    assert main(["submit", SMOKE, "--json"]) == ExitCode.TASK_INVALID
    result, _ = summary(capsys)
    assert "rejected by the SkyPilot API server: ValueError: Invalid accelerator name" in result["error"]
    assert "POST /launch" not in sky_api.paths()


def test_server_failing_to_validate_for_outside_reasons_is_launch_failed(sky_api, capsys):
    """What a real local server answers offline: it cannot download its accelerator catalog."""
    sky_api.scenario = Scenario(
        validate_error=exceptions.CloudError(
            "HTTPSConnectionPool(host='raw.githubusercontent.com', port=443): Max retries exceeded",
            "requests",
            "ConnectionError",
        )
    )
    assert main(["submit", SMOKE, "--json"]) == ExitCode.LAUNCH_FAILED
    result, _ = summary(capsys)
    assert "could not validate" in result["error"] and "raw.githubusercontent.com" in result["error"]
    assert "POST /launch" not in sky_api.paths()


# --- launch failures ---------------------------------------------------------------------------------


def test_launch_failure_is_launch_failed_and_no_logs_are_followed(sky_api, capsys):
    sky_api.scenario = Scenario(
        launch_error=exceptions.ResourcesUnavailableError(
            "Failed to acquire resources in all zones in Kubernetes for {Kubernetes({'H100': 1})}."
        )
    )
    assert main(["submit", SMOKE, "--json"]) == ExitCode.LAUNCH_FAILED
    result, _ = summary(capsys)
    task = result["tasks"][0]
    assert task["exit_code"] == ExitCode.LAUNCH_FAILED and task["job_id"] is None
    assert "ResourcesUnavailableError: Failed to acquire resources" in task["error"]
    assert "POST /logs" not in sky_api.paths()


def test_unreachable_api_server_is_launch_failed(sky_home, monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("SKYPILOT_API_SERVER_ENDPOINT", f"http://127.0.0.1:{port}")
    _clear_sdk_caches()
    assert main(["submit", SMOKE]) == ExitCode.LAUNCH_FAILED
    assert "SkyPilot API server unavailable" in capsys.readouterr().err


# --- the job's exit code -------------------------------------------------------------------------------


@pytest.mark.parametrize("job_exit", [100, 103])
def test_non_zero_job_exit_code_is_passed_through(sky_api, capsys, job_exit):
    sky_api.scenario = Scenario(job_exit_code=job_exit, job_log=["step 1\n", "Traceback: CUDA error\n"])
    assert main(["submit", SMOKE, "--json"]) == job_exit
    result, err = summary(capsys)
    assert result["exit_code"] == job_exit and result["ok"] is False
    assert result["tasks"][0] | {"error": None} == {
        "task": SMOKE,
        "cluster": "smoke",
        "managed": False,
        "job_id": 1,
        "exit_code": job_exit,
        "torn_down": False,
        "error": None,
    }
    assert "Traceback: CUDA error" in err  # the job's log streamed to stderr, not stdout
    assert sky_api.bodies("/logs")[0]["job_id"] == 1 and sky_api.bodies("/logs")[0]["follow"] is True


def test_a_failing_task_stops_the_ones_after_it(sky_api):
    sky_api.scenario = Scenario(job_exit_code=100)
    assert main(["submit", SMOKE, TRAIN]) == 100
    assert [body["cluster_name"] for body in sky_api.bodies("/launch")] == ["smoke"]


def test_success_with_down_tears_the_cluster_down(sky_api, capsys):
    assert main(["submit", SMOKE, "--down", "--json"]) == ExitCode.OK
    result, _ = summary(capsys)
    assert result["tasks"][0]["torn_down"] is True and result["exit_code"] == 0 and result["ok"] is True
    assert sky_api.bodies("/down")[0]["cluster_name"] == "smoke"
    assert sky_api.clusters == {}
    # SkyPilot's own autodown is requested too, in case this process dies before the teardown.
    assert all(r.autostop_config.down for r in launched_task(sky_api).resources)


def test_failed_teardown_of_a_successful_job_is_launch_failed(sky_api, capsys):
    sky_api.scenario = Scenario(down_error=RuntimeError("Failed to terminate pods: 403 Forbidden"))
    assert main(["submit", SMOKE, "--down", "--json"]) == ExitCode.LAUNCH_FAILED
    result, _ = summary(capsys)
    assert "teardown of 'smoke' failed" in result["tasks"][0]["error"]
    assert "sky down smoke" in result["tasks"][0]["error"]


def test_task_without_run_leaves_the_cluster_up_and_exits_ok(sky_api, capsys):
    assert main(["submit", DEV, "--cluster-name", "dev", "--json"]) == ExitCode.OK
    result, err = summary(capsys)
    assert result["tasks"][0]["job_id"] is None
    assert "ssh dev" in err
    assert "POST /logs" not in sky_api.paths() and "dev" in sky_api.clusters


def test_runs_each_task_with_its_own_cluster_name(sky_api):
    assert main(["submit", SMOKE, TRAIN]) == ExitCode.OK
    assert [body["cluster_name"] for body in sky_api.bodies("/launch")] == ["smoke", "train"]
    assert launched_task(sky_api, 1).num_nodes == 2


# --- managed jobs -----------------------------------------------------------------------------------------


def test_managed_job_uses_jobs_launch_and_passes_its_exit_code(sky_api, capsys):
    sky_api.scenario = Scenario(job_id=7, job_exit_code=100)
    assert main(["submit", TRAIN, "--managed", "--json"]) == 100
    result, _ = summary(capsys)
    assert result["tasks"][0]["managed"] is True and result["tasks"][0]["job_id"] == 7
    assert "POST /launch" not in sky_api.paths()
    assert sky_api.bodies("/jobs/launch")[0]["name"] == "train"
    assert sky_api.bodies("/jobs/logs")[0]["job_id"] == 7


def test_managed_job_sends_a_controller_home_on_the_system_nodes(sky_api):
    """The request's config reaches the server (jobs.controller.resources is a client-overridable key)."""
    assert main(["submit", TRAIN, "--managed", "--context", "hyperpod-test"]) == ExitCode.OK
    resources = sky_api.bodies("/jobs/launch")[0]["override_skypilot_config"]["jobs"]["controller"]["resources"]
    assert (resources["infra"], resources["cpus"], resources["memory"], resources["disk_size"]) == (
        "k8s/hyperpod-test",
        "1",
        "4",
        10,
    )
    term = resources["_cluster_config_overrides"]["kubernetes"]["pod_config"]["spec"]["affinity"]["nodeAffinity"]
    assert term["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "sagemaker.amazonaws.com/cluster-name", "operator": "DoesNotExist"}]}
    ]


def test_users_own_controller_resources_win_with_a_warning(sky_api, sky_home, capsys):
    (sky_home / ".sky").mkdir(exist_ok=True)
    (sky_home / ".sky" / "config.yaml").write_text("jobs:\n  controller:\n    resources:\n      cpus: 4+\n")
    from sky import skypilot_config

    skypilot_config.reload_config()
    try:
        assert main(["submit", TRAIN, "--managed"]) == ExitCode.OK
    finally:
        (sky_home / ".sky" / "config.yaml").unlink()
        skypilot_config.reload_config()
    resources = sky_api.bodies("/jobs/launch")[0]["override_skypilot_config"]["jobs"]["controller"]["resources"]
    assert (resources["cpus"], resources["memory"]) == ("4+", "4")
    assert "warning: your SkyPilot config sets jobs.controller.resources cpus" in capsys.readouterr().err


def test_launched_gpu_task_selects_schedulable_nodes(sky_api):
    assert main(["submit", SMOKE]) == ExitCode.OK
    for resources in launched_task(sky_api).resources:
        pod_config = resources.cluster_config_overrides["kubernetes"]["pod_config"]
        assert pod_config["spec"]["nodeSelector"] == {"sagemaker.amazonaws.com/node-health-status": "Schedulable"}


def test_managed_with_down_is_a_usage_error(sky_api):
    assert main(["submit", TRAIN, "--managed", "--down"]) == ExitCode.USAGE
    assert sky_api.calls == []


# --- where the task runs ----------------------------------------------------------------------------------


def test_context_pins_the_task_and_allows_that_context(sky_api):
    assert main(["submit", SMOKE, "--context", "hyperpod-test"]) == ExitCode.OK
    resources = launched_task(sky_api).resources
    assert {(str(r.cloud), r.region) for r in resources} == {("Kubernetes", "hyperpod-test")}
    config = sky_api.bodies("/launch")[0]["override_skypilot_config"]
    assert "hyperpod-test" in config["kubernetes"]["allowed_contexts"]


def test_kubeconfig_reaches_a_local_api_server_with_the_request(sky_home, monkeypatch, tmp_path):
    """A local API server gets KUBECONFIG from each request; the double stands in for one that
    was already running (it is on the local port), so submit must leave it running."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    with SkyApiDouble() as double:
        monkeypatch.setenv("SKYPILOT_API_SERVER_LOCAL_PORT", str(double.port))
        _clear_sdk_caches()
        assert main(["submit", SMOKE, "--kubeconfig", str(kubeconfig)]) == ExitCode.OK
        assert double.bodies("/launch")[0]["env_vars"]["KUBECONFIG"] == str(kubeconfig.resolve())
        assert main(["submit", SMOKE]) == ExitCode.OK  # still up: nothing stopped it


# --- the real SkyPilot API server (opt-in: ~15 s to start it, ~30-60 s in all) ---------------------------


@pytest.mark.skipif(
    os.environ.get("POST_DEPLOY_REAL_SKY_SERVER") != "1",
    reason="starts a real SkyPilot API server; set POST_DEPLOY_REAL_SKY_SERVER=1",
)
def test_real_local_api_server_started_by_submit_is_stopped_again(sky_home, monkeypatch, tmp_path, capsys):
    """No server runs on the (free) local port, so the SDK starts a real one; the launch fails for
    want of any Kubernetes context, and submit stops the server it caused to start."""
    catalogs = sky_home / ".sky" / "catalogs" / "v8" / "common"
    catalogs.mkdir(parents=True)
    # The two catalog files validation needs, seeded so nothing is downloaded.
    (catalogs / "accelerators.csv").write_text("AcceleratorName,Clouds\nH100,Kubernetes\n")
    (catalogs / "metadata.csv").write_text("AcceleratorName,MemoryGB,Manufacturer\nH100,80,NVIDIA\n")
    (sky_home / ".sky" / "config.yaml").write_text("allowed_clouds:\n  - kubernetes\n")
    kubeconfig = tmp_path / "empty-kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("SKYPILOT_API_SERVER_LOCAL_PORT", str(port))
    _clear_sdk_caches()
    try:
        code = main(["submit", DEV, "--kubeconfig", str(kubeconfig), "--json"])
        result, err = summary(capsys)
        assert code == ExitCode.LAUNCH_FAILED, err
        assert "NoCloudAccessError" in result["tasks"][0]["error"]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
    finally:
        _clear_sdk_caches()
        with contextlib.suppress(Exception):
            import sky

            sky.api_stop()  # only matters if the assertions above failed


# --- SkyPilot volumes the tasks mount ------------------------------------------------------------------


def test_the_fsx_volume_is_registered_before_the_task_that_mounts_it(sky_api):
    assert main(["submit", SMOKE, TRAIN, "--context", "hyperpod-test"]) == ExitCode.OK
    paths = [p for p in sky_api.paths() if p.startswith("POST /volumes") or p.startswith("POST /launch")]
    assert paths == ["POST /volumes/apply", "POST /launch", "POST /launch"]
    (body,) = sky_api.bodies("/volumes/apply")
    assert (body["name"], body["volume_type"], body["use_existing"]) == ("fsx-claim", "k8s-pvc", True)
    assert body["cloud"] == "kubernetes" and body["region"] == "hyperpod-test"  # pinned to the launch context
    assert body["config"] == {"namespace": "default", "access_mode": "ReadWriteMany"}
    assert "fsx-claim" in sky_api.volumes


def test_a_rerun_registers_the_volume_again_without_harm(sky_api):
    assert main(["submit", TRAIN]) == ExitCode.OK
    assert main(["submit", TRAIN]) == ExitCode.OK
    assert len(sky_api.bodies("/volumes/apply")) == 2 and list(sky_api.volumes) == ["fsx-claim"]


def test_tasks_that_mount_nothing_register_no_volume(sky_api):
    assert main(["submit", SMOKE]) == ExitCode.OK
    assert sky_api.bodies("/volumes/apply") == []


def test_a_volume_that_cannot_be_registered_stops_before_any_launch(sky_api, capsys):
    sky_api.scenario = Scenario(
        volume_error=ValueError("PVC with name or label skypilot-name=fsx-claim does not exist in namespace 'default'")
    )
    assert main(["submit", TRAIN]) == ExitCode.LAUNCH_FAILED
    assert sky_api.bodies("/launch") == []
    err = capsys.readouterr().err
    assert "could not register SkyPilot volume 'fsx-claim'" in err and "does not exist in namespace" in err
    assert "is the storage stack deployed?" in err
