"""``submit --team``: the teams and priority classes come from the stack outputs, the SkyPilot config it
sends passes SkyPilot 0.14.1's own schema validator, and every mistake is one line before any launch."""

from __future__ import annotations

import argparse
import json

import pytest
from sky.utils import common_utils, schemas

from config import outputs as keys
from post_deploy import skypilot_check
from post_deploy import task_governance as tgv
from post_deploy.cli import main
from post_deploy.common import StepError
from post_deploy.exit_codes import ExitCode
from post_deploy.outputs import read_outputs
from tests.k8s_double import seed

GOVERNANCE = tgv.Governance(teams=("research", "platform"), priority_classes={"training": 80, "interactive": 60})


def _skypilot_accepts(config: dict) -> None:
    common_utils.validate_schema(config, schemas.get_config_schema(), "Invalid config: ")


def test_the_team_config_passes_skypilots_own_schema_and_names_the_documented_objects():
    placement = tgv.placement_for(GOVERNANCE, "research", "training")
    config = tgv.team_config({}, "hyperpod-sky-eks", placement)
    _skypilot_accepts(config)
    assert config == {
        "kubernetes": {
            "context_configs": {
                "hyperpod-sky-eks": {
                    "namespace": "hyperpod-ns-research",
                    "kueue": {"local_queue_name": "hyperpod-ns-research-localqueue"},
                    "pod_config": {"metadata": {"labels": {"kueue.x-k8s.io/priority-class": "training-priority"}}},
                }
            }
        }
    }


def test_the_users_own_config_survives_and_a_stale_quota_queue_alias_is_dropped():
    user = {
        "kubernetes": {
            "allowed_contexts": ["hyperpod-sky-eks"],
            "context_configs": {
                "hyperpod-sky-eks": {
                    "quota": {"queue": "someone-elses-queue"},
                    "pod_config": {"metadata": {"labels": {"cost-center": "42"}}},
                }
            },
        },
        "jobs": {"controller": {"resources": {"cpus": "1+"}}},
    }
    config = tgv.team_config(user, "hyperpod-sky-eks", tgv.placement_for(GOVERNANCE, "platform", "interactive"))
    _skypilot_accepts(config)
    ctx = config["kubernetes"]["context_configs"]["hyperpod-sky-eks"]
    assert ctx["pod_config"]["metadata"]["labels"] == {
        "cost-center": "42",
        "kueue.x-k8s.io/priority-class": "interactive-priority",
    }
    assert "queue" not in ctx["quota"]  # SkyPilot lets quota.queue win over kueue.local_queue_name
    assert config["jobs"] == user["jobs"] and config["kubernetes"]["allowed_contexts"] == ["hyperpod-sky-eks"]
    assert user["kubernetes"]["context_configs"]["hyperpod-sky-eks"]["quota"] == {"queue": "someone-elses-queue"}


def test_without_priority_no_priority_label_is_sent():
    config = tgv.team_config({}, "ctx", tgv.placement_for(GOVERNANCE, "research", None))
    assert "pod_config" not in config["kubernetes"]["context_configs"]["ctx"]


def test_the_full_class_name_is_accepted_too():
    assert tgv.placement_for(GOVERNANCE, "research", "training-priority").priority_class == "training-priority"


def test_a_users_config_skypilot_would_refuse_is_task_invalid_in_one_line():
    user = {"kubernetes": {"kueue": {"local_queue_nam": "typo"}}}
    with pytest.raises(StepError) as err:
        tgv.team_config(user, "ctx", tgv.placement_for(GOVERNANCE, "research", None))
    assert err.value.code == ExitCode.TASK_INVALID
    assert (
        err.value.message == "Invalid SkyPilot config: Instead of 'local_queue_nam', did you mean 'local_queue_name'?"
    )


@pytest.mark.parametrize(
    ("team", "priority", "message"),
    [
        (
            "reserch",
            None,
            "--team reserch: not one of the teams task governance has on this cluster: research, platform",
        ),
        (
            "research",
            "urgent",
            "--priority urgent: not a priority class of the cluster policy; known (weight): "
            "training (80), interactive (60)",
        ),
    ],
)
def test_unknown_teams_and_priorities_are_usage_errors_naming_the_valid_ones(team, priority, message):
    with pytest.raises(StepError) as err:
        tgv.placement_for(GOVERNANCE, team, priority)
    assert err.value.code == ExitCode.USAGE and err.value.message == message


def test_governance_is_read_from_the_outputs_file_and_absent_without_task_governance(tmp_path):
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "hyperpod-sky-hyperpod": {
                    keys.HYPERPOD_CLUSTER_NAME: "hyperpod-sky",
                    keys.TASK_GOVERNANCE_TEAMS: "research,platform",
                    keys.TASK_GOVERNANCE_PRIORITY_CLASSES: "training=80,interactive=60",
                }
            }
        )
    )
    assert tgv.Governance.from_outputs(read_outputs(outputs, environ={})) == GOVERNANCE
    outputs.write_text(json.dumps({"hyperpod-sky-hyperpod": {keys.HYPERPOD_CLUSTER_NAME: "hyperpod-sky"}}))
    assert tgv.Governance.from_outputs(read_outputs(outputs, environ={})) is None


def test_submit_team_without_task_governance_outputs_stops_before_validating_or_launching(
    tmp_path, capsys, monkeypatch
):
    for key in (keys.TASK_GOVERNANCE_TEAMS, keys.TASK_GOVERNANCE_PRIORITY_CLASSES):
        monkeypatch.delenv(key, raising=False)
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(json.dumps({"hyperpod-sky-hyperpod": {keys.HYPERPOD_CLUSTER_NAME: "hyperpod-sky"}}))
    code = main(["submit", "--team", "research", "--outputs", str(outputs), "no-such-task.yaml"])
    assert code == ExitCode.USAGE
    assert "the stack outputs have no TaskGovernanceTeams" in capsys.readouterr().err


def test_submit_priority_without_team_is_a_usage_error(capsys):
    assert main(["submit", "--priority", "training", "no-such-task.yaml"]) == ExitCode.USAGE
    assert "--priority needs --team" in capsys.readouterr().err


def test_submit_team_reads_the_teams_from_environment_variables_as_the_pipeline_passes_them(monkeypatch, capsys):
    monkeypatch.setenv(keys.TASK_GOVERNANCE_TEAMS, "research")
    monkeypatch.setenv(keys.TASK_GOVERNANCE_PRIORITY_CLASSES, "training=80")
    code = main(["submit", "--team", "platform", "no-such-task.yaml"])
    assert code == ExitCode.USAGE
    assert "not one of the teams task governance has on this cluster: research" in capsys.readouterr().err


# --- check: each team's queue and quota -----------------------------------------------------------


def _seed_team_queue(double, team: str, *, version: str = "v1beta1", gpus: str = "8", pending: int = 1) -> None:
    """A team's LocalQueue and ClusterQueue shaped as task governance creates them (names per AWS docs)."""
    namespace = f"hyperpod-ns-{team}"
    double.add_namespace(namespace)
    double.add_custom_object(
        "kueue.x-k8s.io",
        version,
        "localqueues",
        {
            "apiVersion": f"kueue.x-k8s.io/{version}",
            "kind": "LocalQueue",
            "metadata": {"name": f"{namespace}-localqueue", "namespace": namespace},
            "spec": {"clusterQueue": f"{namespace}-clusterqueue"},
            "status": {"pendingWorkloads": pending, "admittedWorkloads": 2, "reservingWorkloads": 2},
        },
    )
    double.add_custom_object(
        "kueue.x-k8s.io",
        version,
        "clusterqueues",
        {
            "apiVersion": f"kueue.x-k8s.io/{version}",
            "kind": "ClusterQueue",
            "metadata": {"name": f"{namespace}-clusterqueue"},
            "spec": {
                "cohort": "shared-pool",
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                        "flavors": [
                            {
                                "name": "ml.p5.48xlarge",
                                "resources": [
                                    {"name": "cpu", "nominalQuota": "192"},
                                    {"name": "memory", "nominalQuota": "2048Gi"},
                                    {"name": "nvidia.com/gpu", "nominalQuota": gpus},
                                ],
                            }
                        ],
                    }
                ],
            },
        },
    )


def test_team_queues_reads_each_teams_local_queue_and_its_cluster_queues_quota(k8s_double, k8s_api_client):
    _seed_team_queue(k8s_double, "research")
    teams = tgv.team_queues(k8s_api_client, GOVERNANCE)
    research, platform = teams
    assert research.line() == (
        "team research: hyperpod-ns-research/hyperpod-ns-research-localqueue -> cluster queue "
        "hyperpod-ns-research-clusterqueue: 1 pending, 2 admitted; quota ml.p5.48xlarge: cpu 192, memory 2048Gi, "
        "nvidia.com/gpu 8"
    )
    assert platform.problem.startswith("LocalQueue not found: task governance creates it with the team's compute quota")
    # v1beta2 is asked first and is not served here (Kueue before 0.15): the fallback found v1beta1.
    paths = [r.path for r in k8s_double.requests if "localqueues" in r.path]
    assert paths[:2] == [
        "/apis/kueue.x-k8s.io/v1beta2/namespaces/hyperpod-ns-research/localqueues/hyperpod-ns-research-localqueue",
        "/apis/kueue.x-k8s.io/v1beta1/namespaces/hyperpod-ns-research/localqueues/hyperpod-ns-research-localqueue",
    ]


def test_team_queues_prefers_v1beta2_and_retries_a_throttled_read(k8s_double, k8s_api_client):
    _seed_team_queue(k8s_double, "research", version="v1beta2")
    _seed_team_queue(k8s_double, "platform", version="v1beta2", gpus="16", pending=0)
    k8s_double.inject_fault("GET", r"/apis/kueue.x-k8s.io/v1beta2/clusterqueues/", status=429, times=1)
    research, platform = tgv.team_queues(k8s_api_client, GOVERNANCE)
    assert research.problem is None and platform.problem is None
    assert platform.quota == {"ml.p5.48xlarge": {"cpu": "192", "memory": "2048Gi", "nvidia.com/gpu": "16"}}
    assert not [r for r in k8s_double.requests if "/v1beta1/" in r.path]


def test_check_shows_each_teams_queue_and_fails_on_a_missing_one(
    k8s_double, kubeconfig_for_double, skypilot_env, capsys, tmp_path
):
    k8s_double.add_node(seed.cpu_hyperpod_node("ml.m5.large", name="hyperpod-i-0team"))
    _seed_team_queue(k8s_double, "research")
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(json.dumps({"hyperpod-sky-hyperpod": {keys.TASK_GOVERNANCE_TEAMS: "research,platform"}}))
    parser = argparse.ArgumentParser()
    skypilot_check.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "check",
            "--kubeconfig",
            str(kubeconfig_for_double.path),
            "--context",
            kubeconfig_for_double.context,
            "--outputs",
            str(outputs),
            "--json",
        ]
    )
    code = skypilot_check.run(args)
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == ExitCode.SKYPILOT_CHECK
    assert "team research: hyperpod-ns-research/hyperpod-ns-research-localqueue -> cluster queue" in captured.err
    assert summary["problems"] == [
        "task governance team platform: LocalQueue not found: task governance creates it with the team's compute "
        "quota (is the amazon-sagemaker-hyperpod-taskgovernance add-on ACTIVE and the quota Created?)"
    ]
    assert [t["team"] for t in summary["teams"]] == ["research", "platform"]
    assert summary["teams"][0]["quota"]["ml.p5.48xlarge"]["nvidia.com/gpu"] == "8"
