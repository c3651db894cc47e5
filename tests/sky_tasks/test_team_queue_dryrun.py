"""``submit --team`` through SkyPilot's own launch, up to pod creation, on the loopback Kubernetes double:
the pod lands in the team's namespace with task governance's Kueue queue label and priority class, and a
multi-node task is one Kueue pod group; without ``--team`` nothing of that is added."""

from __future__ import annotations

import json

import pytest

from config import outputs as keys
from config import task_governance_names as names
from tests.sky_tasks import scheduling
from tests.sky_tasks.test_placement_dryrun import REPO, Cluster

SMOKE = REPO / "sky_tasks" / "smoke.yaml"
TRAIN = REPO / "sky_tasks" / "train.yaml"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teams")
    c = Cluster(tmp)
    c.doubles["mixed"].add_namespace(names.team_namespace("research"))
    c.outputs = tmp / "cdk-outputs.json"
    c.outputs.write_text(
        json.dumps(
            {
                "hyperpod-sky-hyperpod": {
                    keys.TASK_GOVERNANCE_TEAMS: "research,platform",
                    keys.TASK_GOVERNANCE_PRIORITY_CLASSES: "training=80,interactive=60",
                }
            }
        )
    )
    yield c
    c.stop()


@pytest.fixture(scope="module")
def governed(cluster):
    extra = ("--outputs", str(cluster.outputs), "--team", "research", "--priority", "training")
    return cluster.dryrun(["mixed"], [SMOKE, TRAIN], None, *extra)


def test_a_team_task_lands_in_the_teams_namespace_and_kueue_queue_with_its_priority(governed):
    result = governed[("mixed", "smoke.yaml", None)]
    assert "error" not in result, result.get("error")
    pod = result["pod"]
    assert pod["namespace"] == "hyperpod-ns-research"
    assert pod["labels"][names.QUEUE_LABEL] == "hyperpod-ns-research-localqueue"
    assert pod["labels"][names.PRIORITY_CLASS_LABEL] == "training-priority"


def test_a_multi_node_team_task_is_one_kueue_pod_group_still_placed_on_healthy_gpu_nodes(cluster, governed):
    result = governed[("mixed", "train.yaml", None)]
    assert "error" not in result, result.get("error")
    pod = result["pod"]
    assert pod["labels"][names.QUEUE_LABEL] == "hyperpod-ns-research-localqueue"
    assert pod["annotations"]["kueue.x-k8s.io/pod-group-total-count"] == "2"
    # The task's own pod_config (health selector, EFA) survives the team's config.
    nodes = scheduling.feasible_nodes(pod, cluster.doubles["mixed"].nodes())
    assert nodes and all(n.startswith("hyperpod-p5-") and "replacing" not in n for n in nodes)


def test_without_team_no_queue_label_and_the_contexts_namespace(cluster):
    result = cluster.dryrun(["mixed"], [SMOKE])[("mixed", "smoke.yaml", None)]
    assert result["pod"]["namespace"] == "default"
    assert names.QUEUE_LABEL not in result["pod"]["labels"]
    assert names.PRIORITY_CLASS_LABEL not in result["pod"]["labels"]
