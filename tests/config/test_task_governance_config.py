"""task_governance: off by default; when on, every team, quota and priority class is checked against
botocore's SageMaker model and the cluster's instance groups before anything is synthesized."""

from __future__ import annotations

import pytest

from config import ConfigError
from config import task_governance_names as names
from tests.conftest import make_config

RESEARCH = "[{name: research, instance_quotas: [{instance_type: ml.p5.48xlarge, count: 1}]}]"


def governed(**overrides):
    return make_config(**{"task_governance.enabled": "true", "task_governance.teams": RESEARCH, **overrides})


def test_task_governance_is_off_by_default_with_awss_default_priority_classes():
    tg = make_config().task_governance
    assert tg.enabled is False and tg.teams == ()
    assert [(c.name, c.weight) for c in tg.priority_classes] == [
        ("inference", 100),
        ("experimentation", 90),
        ("training", 80),
        ("fine-tuning", 70),
        ("interactive", 60),
    ]


def test_a_team_gets_the_namespace_queue_and_defaults_task_governance_documents():
    team = governed().task_governance.teams[0]
    assert (team.lend_and_borrow, team.fair_share_weight, team.preempt_team_tasks) == (True, 1, "LowerPriority")
    assert names.team_namespace(team.name) == "hyperpod-ns-research"
    assert names.local_queue(team.name) == "hyperpod-ns-research-localqueue"
    assert names.priority_class("training") == "training-priority"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task_governance.teams": "[]"}, "task_governance.teams = []: needs at least one team"),
        (
            {"task_governance.teams": "[{name: Research_1, instance_quotas: [{instance_type: ml.p5.48xlarge}]}]"},
            'task_governance.teams[0].name = "Research_1": must match',
        ),
        (
            {"task_governance.teams": "[{name: " + "a" * 41 + ", instance_quotas: []}]"},
            "task_governance.teams[0].name",
        ),
        (
            {"task_governance.teams": "[{name: research, instance_quotas: []}]"},
            "task_governance.teams[0].instance_quotas",
        ),
        (
            {"task_governance.teams": "[{name: r, instance_quotas: [{instance_type: ml.p5.48xlarg, count: 1}]}]"},
            "did you mean ml.p5.48xlarge",
        ),
        (
            {"task_governance.teams": "[{name: r, instance_quotas: [{instance_type: ml.g5.8xlarge, count: 1}]}]"},
            'task_governance.teams[0].instance_quotas[0].instance_type = "ml.g5.8xlarge": no HyperPod instance '
            "group has this type (groups: ml.p5.48xlarge)",
        ),
        (
            {"task_governance.teams": "[{name: r, instance_quotas: [{instance_type: ml.p5.48xlarge, count: 3}]}]"},
            "task_governance.teams[0].instance_quotas[0].count = 3: team 'r' would be guaranteed more "
            "ml.p5.48xlarge than the cluster's 2",
        ),
        (
            {"task_governance.teams": "[{name: r, instance_quotas: [{instance_type: ml.p5.48xlarge, count: 0}]}]"},
            "task_governance.teams[0].instance_quotas[0].count = 0",
        ),
        (
            {"task_governance.teams": RESEARCH[:-1] + ", " + RESEARCH[1:]},
            "team names must be unique; repeated: research",
        ),
        (
            {
                "task_governance.teams": "[{name: r, fair_share_weight: 101, "
                "instance_quotas: [{instance_type: ml.p5.48xlarge, count: 1}]}]"
            },
            "task_governance.teams[0].fair_share_weight = 101: must be between 0 and 100 (botocore shape FairShareWeight)",
        ),
        (
            {"task_governance.priority_classes": "[{name: training, weight: 80}, {name: training, weight: 70}]"},
            "priority class names must be unique; repeated: training",
        ),
        (
            {"task_governance.priority_classes": "[{name: Training, weight: 80}]"},
            'task_governance.priority_classes[0].name = "Training": must match',
        ),
        (
            {"task_governance.priority_classes": "[{name: training, weight: 101}]"},
            "between 0 and 100 (botocore shape PriorityWeight)",
        ),
        (
            {
                "task_governance.priority_classes": "["
                + ", ".join(f"{{name: c{i}, weight: 1}}" for i in range(11))
                + "]"
            },
            "at most 10 priority classes",
        ),
        ({"task_governance.addon_version": "1.0"}, 'task_governance.addon_version = "1.0": must look like'),
    ],
)
def test_bad_task_governance_values_stop_synth_with_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        governed(**overrides)
    text = str(err.value)
    assert "\n" not in text
    assert message in text, text


def test_quotas_are_not_checked_against_the_cluster_while_task_governance_is_off():
    config = make_config(
        **{"task_governance.teams": "[{name: r, instance_quotas: [{instance_type: ml.g5.8xlarge, count: 9}]}]"}
    )
    assert config.task_governance.enabled is False


def test_a_quota_on_a_karpenter_groups_type_is_not_capped_by_its_starting_count_of_zero():
    groups = (
        "[{name: system, instance_type: ml.m5.xlarge, instance_count: 1},"
        " {name: gpu-auto, instance_type: ml.g5.8xlarge, instance_count: 0, karpenter: true}]"
    )
    teams = "[{name: research, instance_quotas: [{instance_type: ml.g5.8xlarge, count: 2}]}]"
    config = make_config(
        **{
            "hyperpod.autoscaling": "karpenter",
            "hyperpod.instance_groups": groups,
            "task_governance.enabled": "true",
            "task_governance.teams": teams,
        }
    )
    assert config.task_governance.teams[0].instance_quotas[0].count == 2
    with pytest.raises(ConfigError, match=r"instance_quotas\[0\]\.count = 2: .* than the cluster's 1"):
        make_config(
            **{
                "task_governance.enabled": "true",
                "task_governance.teams": teams.replace("ml.g5.8xlarge", "ml.m5.xlarge"),
                "hyperpod.instance_groups": groups,
                "hyperpod.autoscaling": "karpenter",
            }
        )
