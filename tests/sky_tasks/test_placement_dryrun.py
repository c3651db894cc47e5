"""Where SkyPilot would put each pod on a HyperPod cluster: SkyPilot 0.14.1's own launch (optimizer,
fit check, pod rendering with every pod_config merged) run up to pod creation against loopback
Kubernetes doubles, then kube-scheduler's filters over the doubles' nodes (``scheduling``).

Fleets (one double and kubeconfig context each; node sizes from EC2's data, ``seed.sized``):
- ``mixed``: two healthy ml.p5.48xlarge, one ml.g5.xlarge, one ml.p5.48xlarge and one ml.g5.xlarge
  HyperPod marked UnschedulablePendingReplacement by label only, one ml.m5.2xlarge HyperPod CPU
  node (as in examples/cluster.yaml), two m7i.large EKS system nodes (the default node group);
- ``g5`` / ``g6`` / ``g6e``: one 4-vCPU GPU node of that family plus the two system nodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config.gpu_types import gpu_spec
from post_deploy import placement
from tests.k8s_double import seed
from tests.k8s_double.server import K8sDouble
from tests.sky_tasks import scheduling

REPO = Path(__file__).resolve().parents[2]
TASKS = sorted((REPO / "sky_tasks").glob("*.yaml"))
GPU_TASKS = [p for p in TASKS if (yaml.safe_load(p.read_text()).get("resources") or {}).get("accelerators")]
SINGLE_GPU_TASKS = [REPO / "sky_tasks" / "smoke.yaml", REPO / "sky_tasks" / "dev.yaml"]
HYPERPOD_DISK_GIB = 500  # the default instance group's ebs_volume_size_gb holds kubelet's root (on_create.sh)
SMALL_GPU_TYPES = {"g5": "ml.g5.xlarge", "g6": "ml.g6.xlarge", "g6e": "ml.g6e.xlarge"}
REPLACING = {"h100": "hyperpod-p5-replacing", "a10g": "hyperpod-g5-replacing"}
CPU_TASK = Path(__file__).resolve().parent / "fixtures" / "cpu-task.yaml"
CPU_TASKS = [p for p in TASKS if p not in GPU_TASKS] + [CPU_TASK]


def _hyperpod(instance_type: str, name: str, **kwargs) -> dict:
    spec = gpu_spec(instance_type)
    node = seed.hyperpod_node(instance_type, name=name, accelerator=spec.accelerator if spec else None, **kwargs)
    return seed.sized(node, disk_gib=HYPERPOD_DISK_GIB)


def _system(name: str) -> dict:
    return seed.sized(seed.system_node("m7i.large", name=name))


def _fleets() -> dict[str, list[dict]]:
    fleets = {
        "mixed": [
            _hyperpod("ml.p5.48xlarge", "hyperpod-p5-a"),
            _hyperpod("ml.p5.48xlarge", "hyperpod-p5-b"),
            _hyperpod("ml.p5.48xlarge", "hyperpod-p5-replacing", health="UnschedulablePendingReplacement", taint=False),
            _hyperpod("ml.g5.xlarge", "hyperpod-g5"),
            _hyperpod("ml.g5.xlarge", "hyperpod-g5-replacing", health="UnschedulablePendingReplacement", taint=False),
            seed.sized(seed.cpu_hyperpod_node("ml.m5.2xlarge", name="hyperpod-cpu"), disk_gib=100),
            _system("system-a"),
            _system("system-b"),
        ]
    }
    for family, instance_type in SMALL_GPU_TYPES.items():
        fleets[family] = [_hyperpod(instance_type, f"hyperpod-{family}"), _system("system-a"), _system("system-b")]
    return fleets


def _seed_catalog(home: Path) -> None:
    """The two catalog files SkyPilot's optimizer reads (it downloads them when missing), from EC2's
    GPU data in moto, as the rehearsal seeds them."""
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    gpus: dict[str, tuple[float, str]] = {}
    for info in INSTANCE_TYPES.values():
        for gpu in info.get("GpuInfo", {}).get("Gpus", []):
            gpus.setdefault(gpu["Name"], (gpu["MemoryInfo"]["SizeInMiB"] / 1024, gpu["Manufacturer"]))
    catalog = home / ".sky" / "catalogs" / "v8" / "common"
    catalog.mkdir(parents=True)
    (catalog / "accelerators.csv").write_text(
        "AcceleratorName,Clouds\n" + "".join(f"{name},Kubernetes\n" for name in sorted(gpus))
    )
    (catalog / "metadata.csv").write_text(
        "AcceleratorName,MemoryGB,Manufacturer\n"
        + "".join(f"{name},{memory:g},{maker}\n" for name, (memory, maker) in sorted(gpus.items()))
    )
    # The controller names no image, so SkyPilot looks its default CPU image tag up here
    # (sky/clouds/kubernetes.py IMAGE_CPU); which image it maps to does not matter for placement.
    images = home / ".sky" / "catalogs" / "v8" / "kubernetes"
    images.mkdir(parents=True)
    (images / "images.csv").write_text("Tag,ImageId\nskypilot:custom-cpu-ubuntu-2204-v1,skypilot-default-cpu-image\n")


class Cluster:
    def __init__(self, tmp: Path, fleets: dict[str, list[dict]] | None = None):
        self.fleets = _fleets() if fleets is None else fleets
        self.doubles: dict[str, K8sDouble] = {}
        for context, nodes in self.fleets.items():
            double = K8sDouble().start()
            double.add_nodes(nodes)
            self.doubles[context] = double
        self.home = tmp / "home"
        self.home.mkdir()
        _seed_catalog(self.home)
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": next(iter(self.doubles)),
                    "clusters": [{"name": c, "cluster": {"server": d.url}} for c, d in self.doubles.items()],
                    "users": [{"name": c, "user": {"token": d.token}} for c, d in self.doubles.items()],
                    "contexts": [
                        {"name": c, "context": {"cluster": c, "user": c, "namespace": "default"}} for c in self.doubles
                    ],
                }
            )
        )

    def dryrun(self, contexts: list[str], tasks: list[Path], controller: str | None = None, *extra: str) -> dict:
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.sky_tasks.dryrun",
                "--kubeconfig",
                str(self.kubeconfig),
                "--contexts",
                ",".join(contexts),
                *(["--controller", controller] if controller else []),
                *extra,
                *map(str, tasks),
            ],
            cwd=REPO,
            env={
                "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                "HOME": str(self.home),
                "LANG": "C.UTF-8",
                "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
            },
            capture_output=True,
            text=True,
            timeout=900,
        )
        results = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
        assert results, completed.stderr[-3000:]
        return {(r["context"], Path(r["task"]).name, r["controller"]): r for r in results}

    def stop(self) -> None:
        for double in self.doubles.values():
            double.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("placement"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def launches(cluster):
    """Every task on the mixed fleet, the single-GPU tasks on each 4-vCPU GPU fleet (one process)."""
    found = cluster.dryrun(["mixed"], [*GPU_TASKS, *CPU_TASKS])
    found.update(cluster.dryrun(list(SMALL_GPU_TYPES), SINGLE_GPU_TASKS))
    return found


@pytest.fixture(scope="module")
def controllers(cluster):
    """The managed-jobs controller for train.yaml: with submit's config, and with SkyPilot's defaults."""
    found = cluster.dryrun(["mixed"], [REPO / "sky_tasks" / "train.yaml"], controller="home,default")
    return found[("mixed", "train.yaml", "home")], found[("mixed", "train.yaml", "default")]


def _placement(cluster: Cluster, context: str, result: dict) -> list[str]:
    assert "error" not in result, result.get("error")
    return scheduling.feasible_nodes(result["pod"], cluster.fleets[context])


@pytest.mark.parametrize("task", [p.name for p in GPU_TASKS])
def test_every_gpu_task_lands_only_on_healthy_nodes_of_its_gpu_on_the_mixed_fleet(cluster, launches, task):
    nodes = _placement(cluster, "mixed", launches[("mixed", task, None)])
    assert nodes, f"{task} fits no node of the mixed fleet"
    assert not set(REPLACING.values()) & set(nodes)
    assert not {"system-a", "system-b", "hyperpod-cpu"} & set(nodes)


def _chosen_accelerator(pod: dict) -> str:
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (expression,) = [e for e in term["matchExpressions"] if e["key"] == "skypilot.co/accelerator"]
    (value,) = expression["values"]
    return value


@pytest.mark.parametrize("task", [p.name for p in GPU_TASKS])
def test_without_the_health_selector_the_node_pending_replacement_would_take_the_pod(cluster, launches, task):
    """Why the selector exists: HyperPod's label alone does not keep SkyPilot's pod off the node."""
    pod = dict(launches[("mixed", task, None)]["pod"])
    assert pod["nodeSelector"] == {placement.HEALTH_LABEL: placement.SCHEDULABLE}
    pod["nodeSelector"] = {}
    assert REPLACING[_chosen_accelerator(pod)] in scheduling.feasible_nodes(pod, cluster.fleets["mixed"])


@pytest.mark.parametrize("task", [p.name for p in CPU_TASKS])
def test_a_cpu_task_stays_off_gpu_nodes_and_unhealthy_nodes(cluster, launches, task):
    result = launches[("mixed", task, None)]
    assert set(_placement(cluster, "mixed", result)) == {"system-a", "system-b", "hyperpod-cpu"}
    # SkyPilot's own terms alone (a preference away from accelerator-labelled nodes) would allow a p5.
    pod = json.loads(json.dumps(result["pod"]))
    pod["affinity"]["nodeAffinity"].pop("requiredDuringSchedulingIgnoredDuringExecution")
    assert "hyperpod-p5-a" in scheduling.feasible_nodes(pod, cluster.fleets["mixed"])


@pytest.mark.parametrize("family", sorted(SMALL_GPU_TYPES))
@pytest.mark.parametrize("task", [p.name for p in SINGLE_GPU_TASKS])
def test_single_gpu_tasks_fit_a_4_vcpu_gpu_node(cluster, launches, task, family):
    assert _placement(cluster, family, launches[(family, task, None)]) == [f"hyperpod-{family}"]


@pytest.mark.parametrize("task", ["train.yaml", "nccl-test-efa.yaml"])
def test_multi_node_tasks_request_every_efa_interface_of_the_instance_type_they_land_on(cluster, launches, task):
    result = launches[("mixed", task, None)]
    nodes = _placement(cluster, "mixed", result)
    assert set(nodes) == {"hyperpod-p5-a", "hyperpod-p5-b"}
    (requests,) = [r["requests"] for r in result["pod"]["resources"]]
    assert int(requests["vpc.amazonaws.com/efa"]) == gpu_spec("ml.p5.48xlarge").efa_interfaces == 32


def test_skypilots_default_gpu_sizing_does_not_fit_a_4_vcpu_gpu_node(cluster):
    """Finding 1 of issue 10, against SkyPilot itself: without cpus/memory a 1-GPU task asks for
    4 vCPU and 16 GB, more than a g5.xlarge reports as capacity."""
    task = cluster.home.parent / "unsized.yaml"
    smoke = yaml.safe_load((REPO / "sky_tasks" / "smoke.yaml").read_text())
    smoke["resources"].pop("cpus"), smoke["resources"].pop("memory")
    smoke["resources"]["accelerators"] = "A10G:1"
    task.write_text(yaml.safe_dump(smoke))
    (result,) = cluster.dryrun(["g5"], [task]).values()
    assert "ResourcesUnavailableError" in result["error"]


def test_managed_jobs_controller_lands_on_a_system_node_only(cluster, controllers):
    home, _ = controllers
    nodes = _placement(cluster, "mixed", home)
    assert set(nodes) == {"system-a", "system-b"}
    assert home["config_sent"]["resources"]["infra"] == "k8s/mixed"


def test_skypilots_default_controller_would_take_a_training_node(cluster, controllers):
    """Finding 6: SkyPilot's own controller size (4 CPUs, 16 GB, 50 GB disk) fits no system node,
    only HyperPod nodes (the p5s, the one being replaced, the CPU group)."""
    _, default = controllers
    nodes = _placement(cluster, "mixed", default)
    assert nodes and all(n.startswith("hyperpod-") for n in nodes)
